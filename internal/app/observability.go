package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/health"
	"github.com/trackops/trackops/internal/metrics"
	"github.com/trackops/trackops/internal/tracing"
)

// observability is the process's tracing.
type observability struct {
	tracing *tracing.Provider
}

// startTracing sets up OpenTelemetry tracing when an OTLP endpoint is
// configured (OTEL_EXPORTER_OTLP_ENDPOINT or ..._TRACES_ENDPOINT) and adds
// trace and span ids to every log line of a traced context. It runs first in
// New: the Kafka clients and the pool are built with its hooks. Off, it
// installs none.
func (a *App) startTracing(ctx context.Context) error {
	a.log = slog.New(tracing.LogHandler(a.log.Handler()))
	tc := a.cfg.Tracing
	p, err := tracing.Setup(ctx, tracing.Options{Endpoint: tc.Endpoint, Sampler: tc.Sampler, SamplerArg: tc.SamplerArg,
		ServiceVersion: Version, Logger: a.log.With("component", "tracing")})
	if err != nil {
		return err
	}
	a.obs.tracing = p
	if !p.Enabled() {
		return nil
	}
	a.closers = append(a.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			a.log.Warn("trace export at shutdown", "err", err)
		}
	})
	a.log.Info("exporting traces (OTLP/HTTP)", "endpoint", tc.Endpoint, "sampler", tc.Sampler, "ratio", tc.SamplerArg)
	return nil
}

// kafkaClientOpts are added to every Kafka client: with tracing on,
// producer and consumer spans (kafkaOptions adds the kprom metrics).
func (a *App) kafkaClientOpts() []kgo.Opt {
	return a.obs.tracing.KafkaOpts()
}

// embeddedHealth feeds the embedded broker's durability and last log check
// to the kafka health component.
func (a *App) embeddedHealth() []health.EmbeddedBroker {
	if a.embedded == nil {
		return nil
	}
	return []health.EmbeddedBroker{a.embedded}
}

// traceHTTP wraps the router in server spans.
func (a *App) traceHTTP(h http.Handler) http.Handler { return a.obs.tracing.Middleware(h) }

// buildObservability builds the health checker over every component, serves
// /health, /health/live and /health/ready, and registers the collectors
// that read state on scrape.
func (a *App) buildObservability() error {
	a.health = health.NewChecker(
		health.Application(Version, a.started),
		health.Database(a.pool),
		health.Redis(a.stores, health.CacheStatsFunc(func() health.CacheCounters {
			hits, misses, errs := a.stores.Counters()
			return health.CacheCounters{Hits: hits, Misses: misses, Errors: errs}
		})),
		health.Kafka(a.producer, a.cfg.Kafka.Embedded(), a.embeddedHealth()...),
		health.CDC(a.pool, health.CDCConfig{Strategy: a.cfg.EventStrategy, SlotName: a.cfg.CDC.SlotName, Source: a.cdcStatusSource()}),
	)
	a.routes = append(a.routes, a.health.Routes()...)

	for _, c := range []prometheus.Collector{
		metrics.NewPoolCollector(a.pool),
		metrics.NewOutboxCollector(a.pool, 5*time.Second),
		metrics.NewConsumerLagCollector(a.producer, 10*time.Second),
	} {
		if err := a.metrics.registry.Register(c); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	return nil
}
