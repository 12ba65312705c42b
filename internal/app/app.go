// Package app wires TrackOps together: it alone knows every part, builds the
// ones a process's roles need, runs them and shuts them down in order.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/cdc"
	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/console"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/health"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/inbox"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/ops"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/tlsconfig"
)

// Version is set at build time.
var Version = "dev"

// App is one running TrackOps process.
type App struct {
	cfg      config.Config
	roles    Roles
	log      *slog.Logger
	started  time.Time
	pool     *pgxpool.Pool
	stores   *cache.Stores
	embedded *kafka.Embedded
	producer *kgo.Client
	// kafkaSecurity are the TLS and SASL options of every Kafka client.
	kafkaSecurity []kgo.Opt
	health        *health.Checker
	security      *security
	obs           observability
	cdc           *cdc.Manager
	orders        *order.Service
	orderCache    *order.RedisCache

	routes  []httpapi.Route
	workers []worker
	closers []func()

	httpServer *http.Server
	listener   net.Listener
}

// worker is a long-running part (relay, consumer) stopped by cancelling ctx.
type worker struct {
	name string
	run  func(ctx context.Context) error
}

// New connects to PostgreSQL, Redis and Kafka (starting the embedded broker
// when none is configured), migrates the schema and builds the parts the
// roles need. Nothing runs until Run.
func New(ctx context.Context, cfg config.Config, roles Roles, log *slog.Logger) (a *App, err error) {
	a = &App{cfg: cfg, roles: roles, log: log, started: time.Now()}
	a.startTracing()
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if err := Migrate(ctx, cfg); err != nil {
		return nil, err
	}
	if a.pool, err = postgres.Connect(ctx, cfg.DatabaseURL); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, a.pool.Close)

	if a.stores, err = cache.Open(cfg.RedisURL, cache.Options{Logger: log.With("component", "cache")}); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() { _ = a.stores.Close() })

	if a.kafkaSecurity, err = tlsconfig.Kafka(os.Getenv); err != nil {
		return nil, err
	}
	if cfg.EmbeddedKafka() {
		dir := filepath.Join(cfg.DataDir, "kafka")
		if a.embedded, err = kafka.StartEmbedded(cfg.EmbeddedKafkaAddr, dir, cfg.KafkaPartitions); err != nil {
			return nil, err
		}
		a.closers = append(a.closers, a.embedded.Close)
		log.Info("embedded Kafka-protocol broker started (single node; use TRACKOPS_KAFKA_BROKERS for a real cluster in production)",
			"addr", a.embedded.Addr(), "data_dir", dir)
	}
	if a.producer, err = kafka.NewProducer(a.kafkaOptions("trackops-producer")); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, a.producer.Close)
	waitCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := kafka.WaitForBroker(waitCtx, a.producer, log); err != nil {
		return nil, fmt.Errorf("kafka at %v: %w", cfg.Brokers(), err)
	}
	topics := append([]string{}, events.AllTypes...)
	for _, t := range events.AllTypes {
		topics = append(topics, t+events.DLQSuffix)
	}
	if err := kafka.EnsureTopics(ctx, a.producer, cfg.KafkaPartitions, topics...); err != nil {
		return nil, err
	}

	if err := a.buildObservability(); err != nil {
		return nil, err
	}
	if a.security, err = a.buildSecurity(); err != nil {
		return nil, err
	}
	a.routes = append(a.routes, ops.NewKafka(a.producer).Routes()...)
	if roles.Has(RoleConsole) {
		a.routes = append(a.routes, console.Routes()...)
	}

	if err := a.buildOrders(); err != nil {
		return nil, err
	}
	if err := a.buildInventory(); err != nil {
		return nil, err
	}
	if err := a.buildSweeper(); err != nil {
		return nil, err
	}
	if roles.Has(RoleRelay) {
		a.buildRelay()
	}
	if err := a.buildDLQ(); err != nil {
		return nil, err
	}
	if err := a.buildCache(a.orders); err != nil {
		return nil, err
	}
	if err := a.buildCDC(a.orders); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *App) kafkaOptions(clientID string) kafka.Options {
	return kafka.Options{Brokers: a.cfg.Brokers(), ClientID: clientID,
		Extra: append(a.kafkaClientOpts(), a.kafkaSecurity...), ConsumerRetry: consumerRetry(a.cfg)}
}

func (a *App) buildOrders() error {
	if !a.roles.Has(RoleOrders) {
		return nil
	}
	var opts []order.Option
	if a.cfg.EventStrategy == config.StrategyCDC {
		opts = append(opts, order.WithoutOutboxEvents())
	}
	a.orderCache = order.NewRedisCache(a.stores)
	opts = append(opts, order.WithCache(a.orderCache))
	svc := order.NewService(a.pool, opts...)
	a.orders = svc
	a.routes = append(a.routes, order.NewHandlers(svc).Routes()...)
	return a.buildSaga(svc)
}

func (a *App) buildRelay() {
	// The relay runs under both strategies: inventory events always go
	// through the outbox; under cdc only order events come from the WAL.
	relay := outbox.NewRelay(a.pool, a.producer, outbox.RelayConfig{
		BatchSize:    a.cfg.RelayBatchSize,
		Workers:      a.cfg.RelayWorkers,
		PollInterval: a.cfg.RelayPollInterval,
		Retention:    a.cfg.OutboxRetention,
		Logger:       a.log.With("component", "relay"),
	})
	a.workers = append(a.workers, worker{name: "relay", run: relay.Run})
	a.workers = append(a.workers, worker{name: "inbox-pruning", run: a.pruneInbox})
	a.routes = append(a.routes, outbox.NewHandlers(a.pool, relay).Routes()...)
}

// pruneInbox deletes, every hour, consumers' processed-event rows older than
// TRACKOPS_INBOX_RETENTION; it runs with the relay, which prunes the outbox.
func (a *App) pruneInbox(ctx context.Context) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if n, err := inbox.Prune(ctx, a.pool, a.cfg.InboxRetention); err != nil && ctx.Err() == nil {
			a.log.Warn("inbox prune failed", "err", err)
		} else if n > 0 {
			a.log.Info("inbox pruned", "rows", n)
		}
	}
}

// Handler is the HTTP API with every route the process serves.
func (a *App) Handler() http.Handler {
	routes := append([]httpapi.Route{}, a.routes...)
	routes = append(routes, httpapi.Route{Method: http.MethodGet, Pattern: "/metrics", Role: httpapi.RolePublic,
		Handler: promhttp.Handler().ServeHTTP})
	// Each request gets one Redis budget for all its cache, session and
	// rate-limit commands (docs/cache.md).
	return a.traceHTTP(cache.RequestBudget(httpapi.NewRouter(httpapi.RouterConfig{
		Logger:       a.log,
		MaxBodyBytes: a.cfg.HTTPMaxBodyBytes,
		Auth:         a.security.auth,
		Limiter:      a.security.limiter,
		Auditor:      a.security.audit,
	}, routes)))
}

// Listen binds the HTTP address; separate from Run so callers (and tests)
// know the address before serving starts.
func (a *App) Listen() (net.Addr, error) {
	ln, err := net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on TRACKOPS_HTTP_ADDR=%s: %w", a.cfg.HTTPAddr, err)
	}
	a.listener = ln
	return ln.Addr(), nil
}

// Run serves HTTP and runs every worker until ctx ends, then shuts down:
// HTTP stops taking requests and finishes those in flight, workers finish
// their current batch, then connections close.
func (a *App) Run(ctx context.Context) error {
	defer a.close()
	if a.listener == nil {
		if _, err := a.Listen(); err != nil {
			return err
		}
	}
	a.httpServer = &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, w := range a.workers {
		wg.Go(func() {
			if err := w.run(wctx); err != nil && wctx.Err() == nil {
				a.log.Error("worker stopped", "worker", w.name, "err", err)
			}
		})
	}

	// Under the cdc strategy an order written before the replication slot
	// exists would never become an event: serve only once it does.
	if err := a.waitForCDCSlot(ctx); err != nil {
		stopWorkers()
		wg.Wait()
		return err
	}
	errc := make(chan error, 1)
	go func() {
		var err error
		if a.cfg.TLSCertFile != "" {
			tc, tlsErr := tlsconfig.Server(a.cfg.TLSCertFile, a.cfg.TLSKeyFile)
			if tlsErr != nil {
				errc <- tlsErr
				return
			}
			a.httpServer.TLSConfig = tc
			err = a.httpServer.ServeTLS(a.listener, "", "")
		} else {
			err = a.httpServer.Serve(a.listener)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	a.log.Info("TrackOps running", "version", Version, "roles", a.roles.String(), "http", a.listener.Addr().String(),
		"strategy", a.cfg.EventStrategy, "kafka", a.cfg.Brokers())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		a.log.Error("HTTP server failed", "err", runErr)
	}
	a.log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if err := a.httpServer.Shutdown(shutCtx); err != nil {
		a.log.Warn("HTTP shutdown", "err", err)
	}
	// Every request has finished: write the audit rows they queued.
	a.security.close(shutCtx)
	stopWorkers()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-shutCtx.Done():
		a.log.Warn("workers did not stop in time; abandoning (unacknowledged work is redelivered)")
	}
	return runErr
}

// close releases resources in reverse order of acquisition.
func (a *App) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// Migrate creates the database if it is missing and applies migrations.
func Migrate(ctx context.Context, cfg config.Config) error {
	if err := postgres.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	return postgres.Migrate(ctx, cfg.DatabaseURL)
}
