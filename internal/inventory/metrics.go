package inventory

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the inventory service's series: reservations decided, order
// events handled, and transactions rerun. A process builds them once, on
// its registry, and gives them to its services (WithMetrics).
type Metrics struct {
	reservations *prometheus.CounterVec
	reactions    *prometheus.CounterVec
	txRetries    prometheus.Counter
}

// NewMetrics creates the inventory metrics and registers them on reg (nil:
// counted, not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		reservations: f.NewCounterVec(prometheus.CounterOpts{
			Name: "trackops_inventory_reservations_total",
			Help: "Orders whose reservation was decided, by outcome (reserved, failed).",
		}, []string{"outcome"}),
		reactions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "trackops_inventory_reactions_total",
			Help: "Order events the inventory reactions handled, by event type and outcome (applied, duplicate, ignored).",
		}, []string{"type", "outcome"}),
		txRetries: f.NewCounter(prometheus.CounterOpts{
			Name: "trackops_inventory_tx_retries_total",
			Help: "Inventory transactions rerun after a deadlock or serialization failure.",
		}),
	}
	return m
}

// WithMetrics counts the service's reactions in m; without it they count
// without exporting.
func WithMetrics(m *Metrics) Option { return func(s *Service) { s.metrics = m } }

// count records one handled order event.
func (m *Metrics) count(typ string, applied bool) {
	if applied {
		m.reactions.WithLabelValues(typ, "applied").Inc()
	} else {
		m.reactions.WithLabelValues(typ, "duplicate").Inc()
	}
}
