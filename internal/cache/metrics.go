package cache

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the cache's series: calls and their latency per store,
// invalidations, purges, and the degraded state. A process builds them once,
// on its registry, and hands them to Open through Options.Metrics.
type Metrics struct {
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	invalidations *prometheus.CounterVec
	purges        *prometheus.CounterVec
	behind        *prometheus.CounterVec
	degraded      prometheus.Gauge
	pending       prometheus.Gauge
	nearEntries   *prometheus.GaugeVec
}

// NewMetrics creates the cache's metrics and registers them on reg (nil:
// counted, not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "trackops_cache_requests_total",
			Help: "Cache calls by store and result: hit or miss for Redis reads, near_hit or near_miss for the in-process near cache in front of them, error for any failed or skipped call (Redis down, degraded).",
		}, []string{"store", "result"}),
		latency: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "trackops_cache_latency_seconds",
			Help:    "Latency of cache operations (get, set, invalidate) and of the loads behind misses (load).",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
		}, []string{"store", "op"}),
		invalidations: f.NewCounterVec(prometheus.CounterOpts{
			Name: "trackops_cache_invalidations_total",
			Help: "Keys invalidated (version tombstones requested), including replays after an outage.",
		}, []string{"store"}),
		purges: f.NewCounterVec(prometheus.CounterOpts{
			Name: "trackops_cache_purges_total",
			Help: "Whole-store purges after a Redis restart or an overflow of remembered invalidations.",
		}, []string{"store"}),
		behind: f.NewCounterVec(prometheus.CounterOpts{
			Name: "trackops_cache_loads_behind_total",
			Help: "Loads that returned a version older than the invalidation their reader found (the commit was reported before PostgreSQL showed it) and were read again.",
		}, []string{"store"}),
		degraded: f.NewGauge(prometheus.GaugeOpts{
			Name: "trackops_cache_degraded",
			Help: "1 while the cache is degraded (Redis failing; reads served from PostgreSQL).",
		}),
		pending: f.NewGauge(prometheus.GaugeOpts{
			Name: "trackops_cache_pending_invalidations",
			Help: "Invalidations remembered while Redis was unreachable, to replay on recovery.",
		}),
		nearEntries: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trackops_cache_near_entries",
			Help: "Keys held by the in-process near cache of a store.",
		}, []string{"store"}),
	}
	m.degraded.Set(1) // until the first reconcile succeeds
	return m
}
