package order

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the order domain's series: the saga's outcomes and the
// pending-order sweeper's work. A process builds them once, on its
// registry, and gives them to the Service (WithMetrics); the saga and the
// sweeper acting through that service count in them.
type Metrics struct {
	sagaOutcomes  *prometheus.CounterVec
	sweepOutcomes *prometheus.CounterVec
	sweeperPasses prometheus.Counter
}

// NewMetrics creates the order metrics and registers them on reg (nil:
// counted, not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		sagaOutcomes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "trackops_order_saga_events_total",
			Help: "Inventory outcomes the order saga handled, by event type and outcome (confirmed, cancelled, stale, duplicate).",
		}, []string{"type", "outcome"}),
		sweepOutcomes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "trackops_order_sweeper_orders_total",
			Help: "Orders found PENDING past TRACKOPS_SAGA_PENDING_TIMEOUT by the sweeper, by outcome (confirmed, cancelled, skipped, failed).",
		}, []string{"outcome"}),
		sweeperPasses: f.NewCounter(prometheus.CounterOpts{
			Name: "trackops_order_sweeper_passes_total",
			Help: "Passes of the pending-order sweeper in this process.",
		}),
	}
	return m
}

// WithMetrics counts the service's saga and sweeper in m; without it they
// count without exporting.
func WithMetrics(m *Metrics) Option { return func(s *Service) { s.metrics = m } }
