package metrics

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ConsumerLagCollector exports the lag of consumer groups per topic and
// partition, as the broker sees it (committed offset against end offset), so
// it covers every consumer of the cluster, TrackOps' own or not. The lag is
// asked of the broker at most once per interval.
type ConsumerLagCollector struct {
	adm      *kadm.Client
	groups   []string
	interval time.Duration
	timeout  time.Duration

	lag, up *prometheus.Desc

	mu     sync.Mutex
	last   []partitionLag
	readAt time.Time
	ok     bool
}

type partitionLag struct {
	group, topic string
	partition    int32
	lag          int64
}

// NewConsumerLagCollector returns a collector of the lag of groups (every
// group of the cluster when none is named), using client for admin requests
// and asking at most once per interval (10 s when zero).
func NewConsumerLagCollector(client *kgo.Client, interval time.Duration, groups ...string) *ConsumerLagCollector {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	return &ConsumerLagCollector{
		adm: kadm.NewClient(client), groups: groups, interval: interval, timeout: 3 * time.Second,
		lag: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "kafka", "consumer_lag"),
			"Records a consumer group has yet to consume, per topic and partition.",
			[]string{"group", "topic", "partition"}, nil),
		up: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "kafka", "consumer_lag_up"),
			"1 when the last consumer lag query succeeded, else 0.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *ConsumerLagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lag
	ch <- c.up
}

// Collect implements prometheus.Collector.
func (c *ConsumerLagCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if c.readAt.IsZero() || time.Since(c.readAt) >= c.interval {
		c.refresh()
	}
	lags, ok := c.last, c.ok
	c.mu.Unlock()
	up := 0.0
	if ok {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	for _, l := range lags {
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(l.lag),
			l.group, l.topic, strconv.Itoa(int(l.partition)))
	}
}

func (c *ConsumerLagCollector) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	c.readAt = time.Now()
	described, err := c.adm.Lag(ctx, c.groups...)
	if err != nil {
		c.ok = false
		return // keep the last figures; consumer_lag_up tells they are stale
	}
	c.ok = true
	c.last = c.last[:0]
	for _, g := range described.Sorted() {
		if g.Error() != nil {
			continue
		}
		for _, m := range g.Lag.Sorted() {
			if m.Err != nil || m.Lag < 0 {
				continue
			}
			c.last = append(c.last, partitionLag{group: g.Group, topic: m.Topic, partition: m.Partition, lag: m.Lag})
		}
	}
}

var (
	producedRecords = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "kafka_produced_total",
		Help: "Records produced by TrackOps clients, by topic and outcome (ok, error).",
	}, []string{"topic", "outcome"})
	producedBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "kafka_produced_bytes_total",
		Help: "Uncompressed bytes of the records TrackOps clients produced (keys, values, headers and record framing), by topic.",
	}, []string{"topic"})
)

func init() {
	prometheus.MustRegister(producedRecords, producedBytes)
}

// produceHooks count what a client produces: acknowledged records once per
// batch, as the broker accepts it, and failed records one by one. A
// per-record count of every success (a label lookup per record) cost about
// a tenth of the CDC connector's CPU; per batch it is one lookup for
// hundreds of records.
type produceHooks struct{}

// OnProduceBatchWritten implements kgo.HookProduceBatchWritten: it runs once
// per batch the broker acknowledged, shortly after the acknowledgement (on
// a goroutine of the client's), so the counters may trail a record's
// promise by a moment.
func (produceHooks) OnProduceBatchWritten(_ kgo.BrokerMetadata, topic string, _ int32, m kgo.ProduceBatchMetrics) {
	producedRecords.WithLabelValues(topic, "ok").Add(float64(m.NumRecords))
	producedBytes.WithLabelValues(topic).Add(float64(m.UncompressedBytes))
}

// OnProduceRecordUnbuffered implements kgo.HookProduceRecordUnbuffered: it
// runs once per record when it leaves the client, and counts the failed
// ones (successes are counted per batch).
func (produceHooks) OnProduceRecordUnbuffered(r *kgo.Record, err error) {
	if err != nil {
		producedRecords.WithLabelValues(r.Topic, "error").Inc()
	}
}

// ProduceHooks is the client option that counts produced records in
// trackops_kafka_produced_total and their bytes in
// trackops_kafka_produced_bytes_total; add it to every producing client
// (kafka.Options.Extra).
func ProduceHooks() kgo.Opt { return kgo.WithHooks(produceHooks{}) }
