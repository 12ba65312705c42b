package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trackops/trackops/internal/outbox"
)

// OutboxCollector exports the outbox backlog: pending and failed events and
// the age of the oldest pending one. The counting query runs at most once per
// interval however often Prometheus (or several) scrape; the oldest age is
// recomputed at every scrape from the remembered creation time, so it keeps
// growing between queries as it does in reality.
type OutboxCollector struct {
	pool     *pgxpool.Pool
	interval time.Duration
	timeout  time.Duration

	pending, failed, oldestAge, up *prometheus.Desc

	mu     sync.Mutex
	last   outbox.Stats
	have   bool
	readAt time.Time
	err    error
}

// NewOutboxCollector returns a collector over the outbox in pool, querying at
// most once per interval (5 s when zero).
func NewOutboxCollector(pool *pgxpool.Pool, interval time.Duration) *OutboxCollector {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "outbox", name), help, nil, nil)
	}
	return &OutboxCollector{
		pool: pool, interval: interval, timeout: 2 * time.Second,
		pending:   d("pending", "Outbox events not yet published (failed ones excluded)."),
		failed:    d("failed", "Outbox events given up as unpublishable."),
		oldestAge: d("oldest_pending_age_seconds", "Age of the oldest unpublished outbox event; 0 when none is pending."),
		up:        d("stats_up", "1 when the last outbox statistics query succeeded, else 0."),
	}
}

// Describe implements prometheus.Collector.
func (c *OutboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.failed
	ch <- c.oldestAge
	ch <- c.up
}

// Collect implements prometheus.Collector.
func (c *OutboxCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if c.readAt.IsZero() || time.Since(c.readAt) >= c.interval {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		st, err := outbox.ReadStats(ctx, c.pool)
		cancel()
		c.readAt, c.err = time.Now(), err
		if err == nil {
			c.last, c.have = st, true
		}
	}
	st, have, err := c.last, c.have, c.err
	c.mu.Unlock()

	up := 1.0
	if err != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	if !have {
		return // never read: export nothing rather than zeros that look healthy
	}
	age := 0.0
	if st.OldestPending != nil {
		age = time.Since(*st.OldestPending).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(st.Pending))
	ch <- prometheus.MustNewConstMetric(c.failed, prometheus.GaugeValue, float64(st.Failed))
	ch <- prometheus.MustNewConstMetric(c.oldestAge, prometheus.GaugeValue, age)
}
