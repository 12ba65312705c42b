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
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/multitracer"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/cdc"
	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/console"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/health"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/journey"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/lease"
	"github.com/trackops/trackops/internal/metrics"
	"github.com/trackops/trackops/internal/ops"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/runinfo"
	"github.com/trackops/trackops/internal/tlsconfig"
)

// Version is set at build time.
var Version = "dev"

// App is one running TrackOps process.
type App struct {
	cfg     config.Config
	roles   Roles
	log     *slog.Logger
	started time.Time
	pool    *pgxpool.Pool
	// direct is the pool of session-bound work (LISTEN, leases) on
	// TRACKOPS_DATABASE_DIRECT_URL; the same as pool without a pooler.
	direct   *pgxpool.Pool
	stores   *cache.Stores
	embedded *kafka.Embedded
	producer *kgo.Client
	// relay publishes the outbox when this process has the relay role.
	relay *outbox.Relay
	// kafkaSecurity are the TLS and SASL options of every Kafka client.
	kafkaSecurity []kgo.Opt
	health        *health.Checker
	metrics       *appMetrics
	security      *security
	obs           observability
	cdc           *cdc.Manager
	orders        *order.Service
	opsKafka      *ops.Kafka
	// leases are the cluster-wide leases of this process's singleton jobs.
	leases []*lease.Lease
	// reads routes read-only queries to the read replica; nil without one.
	reads         *postgres.Reads
	recentWriters *cache.RecentWriters

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

// consumerWorker is a Kafka consumer the process runs as a worker.
type consumerWorker interface {
	Run(ctx context.Context) error
	Close()
}

// addConsumer runs c as the worker name, and releases its Kafka clients
// with the rest of the process: New's failure after c was built (a port
// taken further on) must not leave them dialling a broker that is gone.
func (a *App) addConsumer(name string, c consumerWorker) {
	a.workers = append(a.workers, worker{name: name, run: c.Run})
	a.closers = append(a.closers, c.Close)
}

// New connects to PostgreSQL, Redis and Kafka (starting the embedded broker
// when none is configured), migrates the schema, binds the HTTP address and
// builds the parts the roles need. Nothing runs until Run. On failure
// everything acquired so far is released and the error says, in one line,
// what failed and what to do.
func New(ctx context.Context, cfg config.Config, roles Roles, log *slog.Logger) (*App, error) {
	a := &App{cfg: cfg, roles: roles, log: log, started: time.Now(), metrics: newAppMetrics()}
	if err := a.build(ctx); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

// build acquires the process's resources in order; New releases them if it
// fails part way.
func (a *App) build(ctx context.Context) error {
	cfg, log := a.cfg, a.log
	if err := a.startTracing(ctx); err != nil {
		return err
	}
	// The ports first: a taken port is the commonest start-up failure and
	// costs nothing to find.
	if _, err := a.Listen(); err != nil {
		return err
	}
	if err := Migrate(ctx, cfg); err != nil {
		return err
	}
	var err error
	if a.pool, err = connectDatabase(ctx, cfg, postgres.WithTracer(a.queryTracer())); err != nil {
		return err
	}
	a.closers = append(a.closers, a.pool.Close)
	var closeDirect func()
	if a.direct, closeDirect, err = connectDirect(ctx, cfg, a.pool); err != nil {
		return err
	}
	a.closers = append(a.closers, closeDirect)
	// One-shot commands on other shells read the strategy from here.
	if err := runinfo.Record(ctx, a.pool, runinfo.EventStrategy, cfg.EventStrategy, Version); err != nil {
		return err
	}

	if a.stores, err = cache.Open(cfg.Redis.URL, cache.Options{Logger: log.With("component", "cache"), Metrics: a.metrics.cache,
		NearEntries: cfg.Redis.NearCacheSize, NearTTL: cfg.Redis.NearCacheTTL}); err != nil {
		return err
	}
	a.closers = append(a.closers, func() { _ = a.stores.Close() })
	if err := a.connectReadReplica(); err != nil {
		return err
	}

	if a.kafkaSecurity, err = tlsconfig.Kafka(cfg.Kafka.Security); err != nil {
		return err
	}
	if cfg.Kafka.Embedded() {
		dir := filepath.Join(cfg.DataDir, "kafka")
		durability, err := kafka.ParseDurability(cfg.Kafka.Durability)
		if err != nil {
			return err
		}
		if a.embedded, err = kafka.StartEmbedded(cfg.Kafka.EmbeddedAddr, dir, cfg.Kafka.Partitions,
			kafka.WithDurability(durability, cfg.Kafka.FlushInterval), kafka.EmbeddedLogger(log.With("component", "embedded-kafka")),
			kafka.EmbeddedMetrics(a.metrics.registry)); err != nil {
			return listenError("the embedded Kafka broker", "TRACKOPS_EMBEDDED_KAFKA_ADDR", cfg.Kafka.EmbeddedAddr, err,
				" (or point TRACKOPS_KAFKA_BROKERS at a running Kafka)")
		}
		a.closers = append(a.closers, a.embedded.Close)
		log.Info("embedded Kafka-protocol broker started (single node; use TRACKOPS_KAFKA_BROKERS for a real cluster in production)",
			"addr", a.embedded.Addr(), "data_dir", dir, "durability", durability)
		if err := a.republishLost(ctx); err != nil {
			return err
		}
	}
	if a.producer, err = kafka.NewProducer(a.kafkaOptions("trackops-producer")); err != nil {
		return err
	}
	a.closers = append(a.closers, a.producer.Close)
	const brokerWait = 60 * time.Second
	waitCtx, cancel := context.WithTimeout(ctx, brokerWait)
	defer cancel()
	if err := kafka.WaitForBroker(waitCtx, a.producer, log); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("cannot reach Kafka at %s within %s (TRACKOPS_KAFKA_BROKERS); is it running? %w",
			strings.Join(cfg.Kafka.Bootstrap(), ","), brokerWait, err)
	}
	topics := append([]string{}, events.AllTypes...)
	for _, t := range events.AllTypes {
		topics = append(topics, t+events.DLQSuffix)
	}
	if err := kafka.EnsureTopics(ctx, a.producer, cfg.Kafka.Partitions, topics...); err != nil {
		return err
	}
	a.warnUnderReplicated(ctx, topics)

	if err := a.buildObservability(); err != nil {
		return err
	}
	if a.security, err = a.buildSecurity(); err != nil {
		return err
	}
	if err := a.bootstrapAdminKey(ctx); err != nil {
		return err
	}
	a.opsKafka = ops.NewKafka(a.producer, a.kafkaOptions("trackops-ops"))
	a.routes = append(a.routes, a.opsKafka.Routes()...)
	a.routes = append(a.routes, ops.NewSearch(a.pool).Routes()...)
	if a.roles.Has(RoleConsole) {
		a.routes = append(a.routes, console.Routes()...)
		pulse := ops.NewPulse(a.pool, a.producer, ops.PulseOptions{Logger: a.log.With("component", "overview")})
		a.routes = append(a.routes, pulse.Routes()...)
		a.workers = append(a.workers, worker{name: "overview", run: pulse.Run})
	}

	// The relay first: the services that write outbox events wake it.
	if a.roles.Has(RoleRelay) {
		a.buildRelay()
	}
	if err := a.buildOrders(); err != nil {
		return err
	}
	if err := a.buildInventory(); err != nil {
		return err
	}
	if err := a.buildSweeper(); err != nil {
		return err
	}
	if err := a.buildDLQ(); err != nil {
		return err
	}
	if err := a.buildCache(a.orders); err != nil {
		return err
	}
	if err := a.buildCDC(a.orders); err != nil {
		return err
	}
	a.buildSingletonHealth()
	a.buildReplicaHealth()
	return nil
}

// Test hooks, set only by tests before New, that see the order's path at
// its I/O on the goroutine doing it, so a test can read the stack of each
// handler (TestOrderPathNeverPassesThroughApp): testHookQueryTracer sees
// every query of the main pool, testHookOrderCache wraps the order cache of
// the orders role.
var (
	testHookQueryTracer pgx.QueryTracer
	testHookOrderCache  func(order.Cache) order.Cache
)

// queryTracer is the main pool's tracer: the tracing's (nil when off), and
// a test's hook beside it.
func (a *App) queryTracer() pgx.QueryTracer {
	t := a.obs.tracing.QueryTracer()
	switch {
	case testHookQueryTracer == nil:
		return t
	case t == nil:
		return testHookQueryTracer
	}
	return multitracer.New(t, testHookQueryTracer)
}

// listenError turns a failed bind into one actionable line: which part,
// which variable, what to do. The system's error stays in the chain.
func listenError(what, variable, addr string, err error, more string) error {
	var msg string
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		msg = fmt.Sprintf("%s cannot listen on %s=%s: the address is already in use; stop the process using it (another trackops run?) or set %s to a free address%s",
			what, variable, addr, variable, more)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		msg = fmt.Sprintf("%s cannot listen on %s=%s: no interface of this machine has that address; set %s to a local address such as 127.0.0.1:PORT",
			what, variable, addr, variable)
	case errors.Is(err, syscall.EACCES):
		msg = fmt.Sprintf("%s cannot listen on %s=%s: permission denied (ports below 1024 need privileges); set %s to a port above 1023",
			what, variable, addr, variable)
	default:
		msg = fmt.Sprintf("%s cannot listen on %s=%s (want HOST:PORT): %v", what, variable, addr, err)
	}
	return &startupError{msg: msg, err: err}
}

// startupError is a start-up failure worded for the operator; the cause
// stays reachable through Unwrap.
type startupError struct {
	msg string
	err error
}

func (e *startupError) Error() string { return e.msg }
func (e *startupError) Unwrap() error { return e.err }

func (a *App) kafkaOptions(clientID string) kafka.Options {
	extra := append(a.kafkaClientOpts(), a.kafkaSecurity...)
	if a.embedded != nil && len(a.kafkaSecurity) == 0 {
		extra = append(extra, a.embedded.InProcessDialer())
	}
	return kafka.Options{Brokers: a.cfg.Kafka.Bootstrap(), ClientID: clientID,
		Extra: extra, ConsumerRetry: consumerRetry(a.cfg),
		Topics:      kafka.TopicConfig{ReplicationFactor: int16(a.cfg.Kafka.ReplicationFactor), MinInsyncReplicas: a.cfg.Kafka.MinInsyncReplicas},
		Compression: a.cfg.Kafka.Compression, Logger: a.log, Durability: a.durability(), Metrics: a.metrics.kafka,
		// Each consumer's attempts run in a span of the record's trace.
		WrapHandler: a.obs.tracing.Handler}
}

// durability is the embedded broker's durability barrier; nil with a real
// cluster, where acks=all is the durability.
func (a *App) durability() kafka.Barrier {
	if a.embedded == nil {
		return nil
	}
	return a.embedded.Barrier()
}

// republishLost queues again, after the embedded broker's log lost records
// on an unclean stop, the outbox events it no longer holds. It runs before
// any relay publishes, while the recorded offsets still refer to the log
// that was loaded.
func (a *App) republishLost(ctx context.Context) error {
	rec := a.embedded.Recovery()
	if !rec.NeedsRepublish() {
		return nil
	}
	requeued, err := outbox.RequeueLost(ctx, a.pool, rec.Ends, a.metrics.outbox)
	if err != nil {
		return err
	}
	a.embedded.NoteRepublished(requeued)
	if len(requeued) > 0 {
		a.log.Warn("outbox events the broker's log lost are published again", "events", requeued)
	}
	return nil
}

func (a *App) buildOrders() error {
	if !a.roles.Has(RoleOrders) {
		return nil
	}
	var opts []order.Option
	if a.cfg.EventStrategy == config.StrategyCDC {
		opts = append(opts, order.WithChangeStream())
	}
	var orderCache order.Cache = order.NewRedisCache(a.stores)
	if testHookOrderCache != nil {
		orderCache = testHookOrderCache(orderCache)
	}
	opts = append(opts, order.WithCache(orderCache), order.WithReads(a.reads), order.WithMetrics(a.metrics.order),
		order.WithRelayWake(a.relayWake()))
	svc := order.NewService(a.pool, opts...)
	a.orders = svc
	a.routes = append(a.routes, order.NewHandlers(svc).Routes()...)
	jopts := journey.Options{Strategy: a.cfg.EventStrategy}
	if a.cfg.EventStrategy == config.StrategyCDC {
		jopts.ChangeFinder = a.opsKafka.NewChangeFinder(order.ChangeTopic)
	}
	a.routes = append(a.routes, journey.NewBuilder(a.readQuerier(), jopts).Routes()...)
	return a.buildSaga(svc)
}

func (a *App) buildRelay() {
	// The relay runs under both strategies: inventory events always go
	// through the outbox; under cdc only order events come from the WAL.
	// Every relay process publishes (claims never overlap); pruning is a
	// singleton job (buildPruning), so the relay itself prunes nothing.
	relay := outbox.NewRelay(a.pool, a.producer, outbox.RelayConfig{
		BatchSize:    a.cfg.Relay.BatchSize,
		Workers:      a.cfg.Relay.Workers,
		PollInterval: a.cfg.Relay.PollInterval,
		Durability:   a.durability(),
		ListenPool:   a.direct,
		Metrics:      a.metrics.outbox,
		Logger:       a.log.With("component", "relay"),
	})
	a.relay = relay
	a.workers = append(a.workers, worker{name: "relay", run: relay.Run})
	a.buildPruning()
	a.routes = append(a.routes, outbox.NewHandlers(a.pool, relay).Routes()...)
}

// relayWake is what services writing outbox events call after their
// commit: the relay of this process reads at once (LISTEN/NOTIFY and the
// poll reach relays in other processes). nil without the relay role.
func (a *App) relayWake() func() {
	if a.relay == nil {
		return nil
	}
	return a.relay.Wake
}

// Handler is the HTTP API with every route the process serves.
func (a *App) Handler() http.Handler {
	routes := append([]httpapi.Route{}, a.routes...)
	routes = append(routes, httpapi.Route{Method: http.MethodGet, Pattern: "/metrics", Role: httpapi.RolePublic,
		Handler: metrics.Handler(a.metrics.registry).ServeHTTP})
	// Each request gets one Redis budget for all its cache, session and
	// rate-limit commands (docs/cache.md).
	return a.traceHTTP(cache.RequestBudget(a.readYourWrites(httpapi.NewRouter(httpapi.RouterConfig{
		Logger:       a.log,
		MaxBodyBytes: a.cfg.HTTP.MaxBodyBytes,
		Auth:         a.security.auth,
		Limiter:      a.security.limiter,
		Auditor:      a.security.audit,
		Metrics:      a.metrics.http,
	}, routes))))
}

// Listen binds the HTTP address (New already does); callers (and tests)
// learn the address before serving starts.
func (a *App) Listen() (net.Addr, error) {
	if a.listener != nil {
		return a.listener.Addr(), nil
	}
	ln, err := net.Listen("tcp", a.cfg.HTTP.Addr)
	if err != nil {
		return nil, listenError("the HTTP API", "TRACKOPS_HTTP_ADDR", a.cfg.HTTP.Addr, err, "")
	}
	a.listener = ln
	// Closed here only if New fails; once serving, Shutdown closes it.
	a.closers = append(a.closers, func() { _ = ln.Close() })
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
		if a.cfg.HTTP.TLSCertFile != "" {
			tc, tlsErr := tlsconfig.Server(a.cfg.HTTP.TLSCertFile, a.cfg.HTTP.TLSKeyFile)
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
		"strategy", a.cfg.EventStrategy, "kafka", a.cfg.Kafka.Bootstrap())

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

// Migrate creates the database if it is missing and applies migrations,
// over the direct URL: goose's lock is a session advisory lock, which a
// transaction pooler would not keep.
func Migrate(ctx context.Context, cfg config.Config) error {
	if err := postgres.EnsureDatabase(ctx, cfg.Database.Direct()); err != nil {
		return err
	}
	return postgres.Migrate(ctx, cfg.Database.Direct())
}
