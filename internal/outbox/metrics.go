package outbox

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the relay's series: events published and failed per topic,
// the publish latency and batch time, and the events queued again after the
// broker's log lost them. A process builds them once, on its registry, and
// hands them to its relays through RelayConfig.Metrics and to RequeueLost.
type Metrics struct {
	published    *prometheus.CounterVec
	failures     *prometheus.CounterVec
	latency      prometheus.Histogram
	batchSeconds prometheus.Histogram
	requeued     *prometheus.CounterVec
}

// NewMetrics creates the relay's metrics and registers them on reg (nil:
// counted, not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trackops_outbox_published_total",
			Help: "Outbox events published to Kafka, by topic.",
		}, []string{"topic"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trackops_outbox_publish_failures_total",
			Help: "Failed attempts to publish an outbox event, by topic and whether the event was given up (permanent).",
		}, []string{"topic", "permanent"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "trackops_relay_publish_latency_seconds",
			Help:    "Time from an outbox event's creation to Kafka's acknowledgement of it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "trackops_relay_batch_seconds",
			Help:    "Time from reading one relay batch to recording it published (after the broker's durability barrier).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		requeued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trackops_outbox_requeued_total",
			Help: "Published outbox events queued again because the broker's log no longer held them, by topic.",
		}, []string{"topic"}),
	}
	if reg != nil {
		reg.MustRegister(m.published, m.failures, m.latency, m.batchSeconds, m.requeued)
	}
	return m
}
