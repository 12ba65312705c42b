package cdc

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestEventsTotalSurvivesPauseAndResume checks that a connector's
// events_total (GET /api/v1/ops/cdc, `trackops cdc status`) and the
// trackops_cdc_events_total series on /metrics are one figure: a pause
// and resume starts a new run of the connector, and neither count starts
// over.
func TestEventsTotalSurvivesPauseAndResume(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	reg := prometheus.NewRegistry()
	m := NewManager(db.Pool, ManagerOptions{Kafka: kafkatest.Options(b), Logger: testLogger(), TopicPartitions: 1,
		Metrics: NewMetrics(reg)})
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	name := "counters-" + uniqueSlot()
	if _, _, err := m.Create(ctx, name, rawConfig(t, db, nil)); err != nil {
		t.Fatal(err)
	}
	insert := func(n int) {
		t.Helper()
		eventually(t, "connector streaming", 30*time.Second, func() bool {
			s, err := m.StatusOf(ctx, name)
			return err == nil && s.State == StateRunning && s.Phase == "streaming"
		})
		for range n {
			if _, err := db.Pool.Exec(ctx, insertOrder, uuid.New()); err != nil {
				t.Fatal(err)
			}
		}
	}
	total := func() uint64 {
		s, err := m.StatusOf(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return s.EventsTotal
	}

	insert(3)
	eventually(t, "3 events", 30*time.Second, func() bool { return total() == 3 })
	if err := m.Pause(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := m.Resume(ctx, name); err != nil {
		t.Fatal(err)
	}
	insert(2)
	eventually(t, "5 events", 30*time.Second, func() bool { return total() == 5 })
	if got := metricEvents(t, reg, name); got != 5 {
		t.Fatalf("trackops_cdc_events_total for %s = %v, events_total = 5", name, got)
	}
}

// metricEvents sums trackops_cdc_events_total over the connector's tables
// and operations, as /metrics exposes it from reg.
func metricEvents(t *testing.T, reg prometheus.Gatherer, connector string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != "trackops_cdc_events_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "connector" && l.GetValue() == connector {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
