package app

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trackops/trackops/internal/audit"
	"github.com/trackops/trackops/internal/auth"
	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/cdc"
	"github.com/trackops/trackops/internal/dlq"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/inventory"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/metrics"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/outbox"
)

// appMetrics are the process's registry, served on /metrics, and each
// package's metrics registered on it once; the app hands them to the
// components it builds through their constructors.
type appMetrics struct {
	registry  *prometheus.Registry
	kafka     *kafka.Metrics
	http      *httpapi.Metrics
	cache     *cache.Metrics
	auth      *auth.Metrics
	audit     *audit.Metrics
	dlq       *dlq.Metrics
	order     *order.Metrics
	inventory *inventory.Metrics
	outbox    *outbox.Metrics
	cdc       *cdc.Metrics
}

func newAppMetrics() *appMetrics {
	reg := metrics.NewRegistry(Version)
	return &appMetrics{
		registry:  reg,
		kafka:     kafka.NewMetrics(reg),
		http:      httpapi.NewMetrics(reg),
		cache:     cache.NewMetrics(reg),
		auth:      auth.NewMetrics(reg),
		audit:     audit.NewMetrics(reg),
		dlq:       dlq.NewMetrics(reg),
		order:     order.NewMetrics(reg),
		inventory: inventory.NewMetrics(reg),
		outbox:    outbox.NewMetrics(reg),
		cdc:       cdc.NewMetrics(reg),
	}
}
