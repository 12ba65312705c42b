package metrics_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/metrics"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

func TestPoolCollector(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	if _, err := db.Pool.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	c := metrics.NewPoolCollector(db.Pool)
	if err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP trackops_db_pool_max_connections Maximum size of the PostgreSQL pool.
# TYPE trackops_db_pool_max_connections gauge
trackops_db_pool_max_connections `+itoa(db.Pool.Stat().MaxConns())+`
`), "trackops_db_pool_max_connections"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c, "trackops_db_pool_connections"); n != 3 {
		t.Fatalf("%d connection-state series, want 3", n)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("pedantic gather: %v", err)
	}
}

func TestOutboxCollectorThrottlesTheQuery(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	c := metrics.NewOutboxCollector(db.Pool, time.Hour)
	if got := gauge(t, c, "trackops_outbox_pending"); got != 0 {
		t.Fatalf("pending %v on an empty outbox", got)
	}
	if got := gauge(t, c, "trackops_outbox_oldest_pending_age_seconds"); got != 0 {
		t.Fatalf("oldest age %v on an empty outbox", got)
	}
	writeEvents(t, db.Pool, 3)
	// Within the interval the collector answers from the last query.
	if got := gauge(t, c, "trackops_outbox_pending"); got != 0 {
		t.Fatalf("pending %v: the query ran again within its interval", got)
	}

	fresh := metrics.NewOutboxCollector(db.Pool, time.Hour)
	if got := gauge(t, fresh, "trackops_outbox_pending"); got != 3 {
		t.Fatalf("pending %v, want 3", got)
	}
	if got := gauge(t, fresh, "trackops_outbox_oldest_pending_age_seconds"); got <= 0 {
		t.Fatalf("oldest age %v, want > 0", got)
	}
	if got := gauge(t, fresh, "trackops_outbox_stats_up"); got != 1 {
		t.Fatalf("stats_up %v", got)
	}
}

func TestConsumerLagPerGroupAndPartition(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := kafkatest.New(t)
	// The producer's own series come from kprom, on the registry its
	// options' metrics were built for.
	reg := prometheus.NewRegistry()
	opts := kafkatest.Options(b)
	opts.ClientID, opts.Metrics = "lag-producer", kafka.NewMetrics(reg)
	producer, err := kafka.NewProducer(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	topic := "lag-" + uuid.NewString()[:8]
	if err := kafka.EnsureTopics(ctx, producer, 2, topic); err != nil {
		t.Fatal(err)
	}
	produced := func() float64 {
		return sample(t, reg, "trackops_kafka_client_produce_records_total", map[string]string{"topic": topic, "client_id": "lag-producer"})
	}
	before := produced()
	var recs []*kgo.Record
	for i := range 5 {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte{byte('a' + i)}, Value: []byte("v")})
	}
	res := producer.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Counted per batch, on a client goroutine after the ack: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for produced()-before < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := produced() - before; got != 5 {
		t.Fatalf("produced counter grew by %v, want 5", got)
	}
	// The group has consumed exactly one record of partition 0.
	perPartition := map[int32]int64{}
	for _, r := range res {
		perPartition[r.Record.Partition]++
	}
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: 1, LeaderEpoch: -1})
	if _, err := kadm.NewClient(producer).CommitOffsets(ctx, "lag-group", offs); err != nil {
		t.Fatal(err)
	}
	c := metrics.NewConsumerLagCollector(producer, time.Hour, "lag-group")
	want := perPartition[0] - 1
	got := map[string]float64{}
	for _, m := range collect(t, c, "trackops_kafka_consumer_lag") {
		got[m.labels["partition"]] = m.value
		if m.labels["group"] != "lag-group" || m.labels["topic"] != topic {
			t.Errorf("labels %v", m.labels)
		}
	}
	if perPartition[0] > 0 && got["0"] != float64(want) {
		t.Fatalf("partition 0 lag %v, want %d (all: %v, produced %v)", got["0"], want, got, perPartition)
	}
	if gauge(t, c, "trackops_kafka_consumer_lag_up") != 1 {
		t.Fatal("consumer_lag_up is not 1")
	}
}

func TestRegistryServesBuildInfoAndRuntime(t *testing.T) {
	t.Parallel()
	reg := metrics.NewRegistry("v1.2.3")
	if n, err := testutil.GatherAndCount(reg, "trackops_build_info", "go_goroutines", "process_resident_memory_bytes"); err != nil || n != 3 {
		t.Fatalf("%d series of build info, goroutines and RSS (err %v), want 3", n, err)
	}
	if got := sample(t, reg, "trackops_build_info", map[string]string{"version": "v1.2.3"}); got != 1 {
		t.Fatalf("build_info{version=v1.2.3} = %v, want 1", got)
	}
	// Two registries are independent: what one registers, the other lacks.
	other := metrics.NewRegistry("v2")
	other.MustRegister(metrics.NewPoolCollector(postgrestest.New(t).Pool))
	if n, _ := testutil.GatherAndCount(reg, "trackops_db_pool_max_connections"); n != 0 {
		t.Fatalf("a pool collector registered on another registry shows here (%d series)", n)
	}
}

func writeEvents(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	err := postgres.WithTx(context.Background(), pool, func(tx pgx.Tx) error {
		for range n {
			e, err := events.New(events.OrderCreated, events.AggregateOrder, uuid.NewString(), map[string]string{"k": "v"}, "")
			if err != nil {
				return err
			}
			e.Time = e.Time.Add(-time.Second) // an age that is surely positive
			if err := outbox.Write(context.Background(), tx, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

type metricSample struct {
	labels map[string]string
	value  float64
}

// collect returns the samples of family name that c exports.
func collect(t *testing.T, c prometheus.Collector, name string) []metricSample {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	return samples(t, reg, name)
}

func samples(t *testing.T, g prometheus.Gatherer, name string) []metricSample {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []metricSample
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			s := metricSample{labels: map[string]string{}}
			for _, lp := range m.GetLabel() {
				s.labels[lp.GetName()] = lp.GetValue()
			}
			switch {
			case m.Gauge != nil:
				s.value = m.GetGauge().GetValue()
			case m.Counter != nil:
				s.value = m.GetCounter().GetValue()
			}
			out = append(out, s)
		}
	}
	return out
}

// sample is the value of the one series of name whose labels include want,
// 0 when there is none yet.
func sample(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
next:
	for _, s := range samples(t, g, name) {
		for k, v := range want {
			if s.labels[k] != v {
				continue next
			}
		}
		return s.value
	}
	return 0
}

// gauge is the value of an unlabelled gauge c exports.
func gauge(t *testing.T, c prometheus.Collector, name string) float64 {
	t.Helper()
	ss := collect(t, c, name)
	if len(ss) != 1 {
		t.Fatalf("%s: %d series, want 1", name, len(ss))
	}
	return ss[0].value
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }
