package cache

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics on the default Prometheus registry, shared by every Stores of the
// process.
var (
	requestsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "trackops_cache_requests_total",
		Help: "Cache calls by store and result: hit or miss for reads, error for any failed or skipped call (Redis down, degraded).",
	}, []string{"store", "result"})
	latencySeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "trackops_cache_latency_seconds",
		Help:    "Latency of cache operations (get, set, invalidate) and of the loads behind misses (load).",
		Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
	}, []string{"store", "op"})
	invalidationsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "trackops_cache_invalidations_total",
		Help: "Keys invalidated (version tombstones requested), including replays after an outage.",
	}, []string{"store"})
	purgesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "trackops_cache_purges_total",
		Help: "Whole-store purges after a Redis restart or an overflow of remembered invalidations.",
	}, []string{"store"})
	degradedGauge = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "trackops_cache_degraded",
		Help: "1 while the cache is degraded (Redis failing; reads served from PostgreSQL).",
	})
	pendingGauge = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "trackops_cache_pending_invalidations",
		Help: "Invalidations remembered while Redis was unreachable, to replay on recovery.",
	})
)

func init() { degradedGauge.Set(1) } // until the first reconcile succeeds
