package kafka

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// Metrics are the Kafka series of one process: what TrackOps' consumers
// handled (trackops_kafka_consumed_total, _handle_seconds,
// _dead_lettered_total) and, through franz-go's kprom plugin, every client's
// own figures (trackops_kafka_client_*: connections, bytes and records
// produced and fetched by topic, request latency, buffered records), each
// client's series labelled with its client_id. Give one Metrics to every
// client through Options.Metrics; a process builds it once, on its
// registry.
type Metrics struct {
	reg prometheus.Registerer

	consumed     *prometheus.CounterVec
	handle       *prometheus.HistogramVec
	deadLettered *prometheus.CounterVec

	mu   sync.Mutex
	live map[string]bool // client_id labels of clients not closed yet
}

// ClientSubsystem is the subsystem of the kprom series:
// trackops_kafka_client_<name>.
const ClientSubsystem = "kafka_client"

// NewMetrics creates the Kafka metrics and registers them on reg; each
// client built with them registers its kprom series there too, and
// unregisters them when it is closed. A nil reg counts without exporting
// (and builds clients without kprom hooks).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		reg: reg,
		consumed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "trackops_kafka_consumed_total",
			Help: "Records handled by TrackOps consumers, by topic, group and outcome (ok, retry, dead_letter).",
		}, []string{"topic", "group", "outcome"}),
		handle: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "trackops_kafka_handle_seconds",
			Help:    "Time to handle one record, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"topic", "group"}),
		deadLettered: f.NewCounterVec(prometheus.CounterOpts{
			Name: "trackops_kafka_dead_lettered_total",
			Help: "Records sent to a dead-letter topic by TrackOps consumers.",
		}, []string{"topic", "group", "permanent"}),
		live: map[string]bool{},
	}
	return m
}

// unregistered are the metrics of consumers built without Options.Metrics:
// counted, never exported.
var unregistered = sync.OnceValue(func() *Metrics { return NewMetrics(nil) })

// metricsOf returns o's metrics, or unexported ones.
func (o Options) metricsOf() *Metrics {
	if o.Metrics != nil {
		return o.Metrics
	}
	return unregistered()
}

// clientOpts are the kprom hooks of one new client whose series are
// labelled client_id=label. Two live clients never share a label (a
// second one gets "#2"): kprom registers a client's collectors when it
// starts and unregisters exactly those when it closes, so equal labels
// would collide on the registry.
func (m *Metrics) clientOpts(label string) []kgo.Opt {
	if m == nil || m.reg == nil {
		return nil
	}
	m.mu.Lock()
	unique := label
	for n := 2; m.live[unique]; n++ {
		unique = label + "#" + strconv.Itoa(n)
	}
	m.live[unique] = true
	m.mu.Unlock()
	k := kprom.NewMetrics("trackops",
		kprom.Subsystem(ClientSubsystem),
		kprom.Registerer(m.reg),
		kprom.WithStaticLabel(prometheus.Labels{"client_id": unique}),
		// Per topic, not per broker: the records and bytes a topic took are
		// what a dashboard compares with the outbox and the consumers.
		kprom.FetchAndProduceDetail(kprom.ByTopic, kprom.Records, kprom.UncompressedBytes, kprom.ConsistentNaming),
	)
	// Hooks run in order: kprom unregisters its collectors, then the label
	// is free again.
	return []kgo.Opt{kgo.WithHooks(k, releaseLabel{m: m, label: unique})}
}

// releaseLabel frees a client's label when the client is closed.
type releaseLabel struct {
	m     *Metrics
	label string
}

// OnClientClosed implements kgo.HookClientClosed.
func (r releaseLabel) OnClientClosed(*kgo.Client) {
	r.m.mu.Lock()
	delete(r.m.live, r.label)
	r.m.mu.Unlock()
}
