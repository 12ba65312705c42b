package metrics

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// PoolCollector exports a pgx pool's statistics, read on each scrape.
type PoolCollector struct {
	pool *pgxpool.Pool

	conns, maxConns                         *prometheus.Desc
	acquires, emptyAcquires, canceled       *prometheus.Desc
	acquireWait, emptyAcquireWait, newConns *prometheus.Desc
}

// NewPoolCollector returns a collector over pool.
func NewPoolCollector(pool *pgxpool.Pool) *PoolCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "db_pool", name), help, labels, nil)
	}
	return &PoolCollector{
		pool:             pool,
		conns:            d("connections", "PostgreSQL pool connections by state (acquired, idle, constructing).", "state"),
		maxConns:         d("max_connections", "Maximum size of the PostgreSQL pool."),
		acquires:         d("acquires_total", "Successful connection acquisitions from the pool."),
		emptyAcquires:    d("empty_acquires_total", "Acquisitions that had to wait for a connection because none was idle."),
		canceled:         d("canceled_acquires_total", "Acquisitions abandoned because their context ended."),
		acquireWait:      d("acquire_seconds_total", "Total time spent acquiring connections."),
		emptyAcquireWait: d("empty_acquire_wait_seconds_total", "Total time spent waiting for a connection when none was idle."),
		newConns:         d("new_connections_total", "Connections opened by the pool."),
	}
}

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.conns, c.maxConns, c.acquires, c.emptyAcquires, c.canceled,
		c.acquireWait, c.emptyAcquireWait, c.newConns} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.pool.Stat()
	g, ctr := prometheus.GaugeValue, prometheus.CounterValue
	ch <- prometheus.MustNewConstMetric(c.conns, g, float64(st.AcquiredConns()), "acquired")
	ch <- prometheus.MustNewConstMetric(c.conns, g, float64(st.IdleConns()), "idle")
	ch <- prometheus.MustNewConstMetric(c.conns, g, float64(st.ConstructingConns()), "constructing")
	ch <- prometheus.MustNewConstMetric(c.maxConns, g, float64(st.MaxConns()))
	ch <- prometheus.MustNewConstMetric(c.acquires, ctr, float64(st.AcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.emptyAcquires, ctr, float64(st.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.canceled, ctr, float64(st.CanceledAcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.acquireWait, ctr, st.AcquireDuration().Seconds())
	ch <- prometheus.MustNewConstMetric(c.emptyAcquireWait, ctr, st.EmptyAcquireWaitTime().Seconds())
	ch <- prometheus.MustNewConstMetric(c.newConns, ctr, float64(st.NewConnsCount()))
}
