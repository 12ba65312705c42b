package app

import (
	"github.com/trackops/trackops/internal/health"
)

// buildObservability builds the health checker over every component and
// serves /health, /health/live and /health/ready.
func (a *App) buildObservability() error {
	a.health = health.NewChecker(
		health.Application(Version, a.started),
		health.Database(a.pool),
		// The cache layer's hit/miss counters plug in here
		// (health.CacheStatsFunc) once it exists.
		health.Redis(a.stores, nil),
		health.Kafka(a.producer, a.cfg.EmbeddedKafka()),
		// Under the cdc strategy the connector's status plugs in as
		// CDCConfig.Source (health.CDCStatusFunc over cdc's Status).
		health.CDC(a.pool, health.CDCConfig{Strategy: a.cfg.EventStrategy}),
		// The DLQ monitor's counts may replace the broker's offsets here.
		health.DLQ(health.KafkaDLQCounter(a.producer)),
	)
	a.routes = append(a.routes, a.health.Routes()...)
	return nil
}
