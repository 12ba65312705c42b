package cdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/lease"
)

// Manager errors the REST API maps to status codes.
var (
	ErrNotFound = errors.New("connector not found")
	ErrExists   = errors.New("connector already exists")
)

// Connector states as Kafka Connect reports them.
const (
	StateRunning    = "RUNNING"
	StatePaused     = "PAUSED"
	StateFailed     = "FAILED"
	StateUnassigned = "UNASSIGNED"
)

// StateStandby is TrackOps' own state of a connector in a process that
// stands by while another process streams it (holds its lease). It appears
// in this process's own reports (Status, GET /api/v1/ops/cdc, /health),
// never in the Kafka Connect REST API, whose states have no such value:
// there every process answers with the connector's state on the process
// running it and that process's worker_id (see ClusterState).
const StateStandby = "STANDBY"

// Defaults of the fail-over settings (ManagerOptions).
const (
	// DefaultLeaseRetry is how often a standby tries to take a connector's
	// lease: after the active process dies (its session, and so its lock,
	// ends at once) a standby takes over within about this long.
	DefaultLeaseRetry = time.Second
	// DefaultLeaseCheck is how often the active process checks its lease's
	// connection; a process that lost its database connection stops
	// streaming within about this long plus the check's timeout (1 s).
	DefaultLeaseCheck = time.Second
	// DefaultSlotReleaseGrace is how long a process that took a
	// connector's lease waits for the previous holder's walsender to let
	// the replication slot go before it terminates that session (a holder
	// cut off from the database cannot close it itself).
	DefaultSlotReleaseGrace = 3 * time.Second
	// DefaultReconcileInterval is how often definitions are read again from
	// cdc_connectors, in case a notification was missed.
	DefaultReconcileInterval = 10 * time.Second
)

// ManagerOptions configure a Manager.
type ManagerOptions struct {
	// Kafka configures every connector's producer.
	Kafka kafka.Options
	// Logger receives connector logs.
	Logger *slog.Logger
	// WorkerID is what status reports as worker_id (Kafka Connect's
	// host:port) and the identity of this process's connector leases; it
	// must differ between the processes of a cluster (see WorkerIDFor).
	WorkerID string
	// TopicPartitions is the partition count of topics connectors create.
	TopicPartitions int32
	// RetryMin and RetryMax bound the back-off between restarts of a
	// failed connector (defaults 1 s and 30 s).
	RetryMin, RetryMax time.Duration
	// DirectURL reaches the TrackOps database (the one of the pool, holding
	// cdc_connectors) without a transaction pooler: each connector's lease
	// and the LISTEN for definition changes hold sessions on it. Default:
	// the pool's own connection string.
	DirectURL string
	// LeaseRetry and LeaseCheck tune the connector leases (defaults
	// DefaultLeaseRetry, DefaultLeaseCheck).
	LeaseRetry, LeaseCheck time.Duration
	// SlotReleaseGrace: see DefaultSlotReleaseGrace.
	SlotReleaseGrace time.Duration
	// ReconcileInterval: see DefaultReconcileInterval.
	ReconcileInterval time.Duration
	// Metrics are shared by every connector the Manager runs, so a
	// connector's series keep counting across its runs; nil counts without
	// exporting.
	Metrics *Metrics
}

// Manager owns the connectors of one process. Definitions live in
// cdc_connectors, shared by every process of the cdc role: a change made
// through any process's REST API (create, new configuration, pause,
// resume, restart, delete) is written there with a new generation and
// announced with NOTIFY, and every process applies it at once; a periodic
// reconcile catches a missed notification. The built-in connector of the
// cdc strategy is defined by each process's configuration (RunBuiltin) and
// shares its row's pause, restart and configuration overrides.
//
// Every process runs every connector's lease (a PostgreSQL advisory lock
// per connector name, on DirectURL): the holder streams the connector, the
// others stand by (StateStandby) and take over within about LeaseRetry of
// its death, resuming from the replication slot's confirmed position (no
// change lost; the unconfirmed tail is sent again). The slot itself admits
// one reader at a time, so even a brief overlap of two holders cannot
// stream twice.
//
// A connector that fails is reported FAILED with its error and restarted
// with back-off, keeping its lease; configuration errors are not retried.
type Manager struct {
	pool      *pgxpool.Pool
	opts      ManagerOptions
	log       *slog.Logger
	directURL string

	mu       sync.Mutex
	ctx      context.Context
	entries  map[string]*entry
	builtins map[string]builtinDef
	closed   bool

	// changed carries connector names announced by NOTIFY to the reconcile
	// loop ("" means: every connector).
	changed   chan string
	stopWatch context.CancelFunc
	watchDone chan struct{}
}

// builtinDef is a connector this process defines from its configuration.
type builtinDef struct {
	raw       map[string]string
	transform TxTransform
}

// entry is one connector the Manager runs (or stands by for, or holds
// paused): one generation of its definition.
type entry struct {
	name    string
	raw     map[string]string
	builtin bool
	paused  bool
	gen     int64
	// transform is the built-in connector's TxTransform, kept across
	// restarts and reconfigurations through the REST API.
	transform TxTransform

	mu        sync.Mutex
	state     string
	trace     string
	connector *Connector
	// eventsBefore are the events of this connector's earlier runs here
	// (before a pause, restart, failure or new generation): each run is a
	// new Connector, and events_total must keep counting as
	// trackops_cdc_events_total does.
	eventsBefore uint64
	lease        *lease.Lease
	// cancel stops the lease (and done closes when it has stopped);
	// stopJob and jobDone do the same for the run under the lease.
	cancel  context.CancelFunc
	done    chan struct{}
	stopJob context.CancelFunc
	jobDone chan struct{}
}

// Info is a connector's definition as the REST API returns it.
type Info struct {
	Name   string            `json:"name"`
	Config map[string]string `json:"config"`
	Tasks  []TaskID          `json:"tasks"`
	Type   string            `json:"type"`
}

// TaskID names a connector task.
type TaskID struct {
	Connector string `json:"connector"`
	Task      int    `json:"task"`
}

// NewManager returns a Manager storing definitions and offsets in pool.
func NewManager(pool *pgxpool.Pool, opts ManagerOptions) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = time.Second
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 30 * time.Second
	}
	if opts.WorkerID == "" {
		opts.WorkerID = "trackops"
	}
	if opts.LeaseRetry <= 0 {
		opts.LeaseRetry = DefaultLeaseRetry
	}
	if opts.LeaseCheck <= 0 {
		opts.LeaseCheck = DefaultLeaseCheck
	}
	if opts.SlotReleaseGrace <= 0 {
		opts.SlotReleaseGrace = DefaultSlotReleaseGrace
	}
	if opts.ReconcileInterval <= 0 {
		opts.ReconcileInterval = DefaultReconcileInterval
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	direct := opts.DirectURL
	if direct == "" {
		direct = pool.Config().ConnString()
	}
	return &Manager{pool: pool, opts: opts, log: opts.Logger.With("component", "cdc"), directURL: direct,
		entries: map[string]*entry{}, builtins: map[string]builtinDef{}, ctx: context.Background(),
		changed: make(chan string, 64)}
}

// Start loads the connector definitions, starts competing for the
// connectors not paused, and follows later changes of the definitions
// (NOTIFY, and a reconcile every ReconcileInterval). Connectors run until
// Close, independent of ctx after Start returns. When the definitions
// cannot be read now, Start says so and the reconcile loop keeps trying.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	if m.stopWatch == nil {
		wctx, cancel := context.WithCancel(context.Background())
		m.stopWatch, m.watchDone = cancel, make(chan struct{})
		go m.watch(wctx, m.watchDone)
	}
	rctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	if err := m.reconcileAllLocked(rctx); err != nil {
		return fmt.Errorf("load connectors (retrying in the background): %w", err)
	}
	return nil
}

// BuiltinOption configures a connector started with RunBuiltin.
type BuiltinOption func(*builtinDef)

// WithTransform derives records from the connector's committed transactions
// with t (see TxTransform).
func WithTransform(t TxTransform) BuiltinOption { return func(b *builtinDef) { b.transform = t } }

// RunBuiltin defines a connector from this process's configuration
// (TrackOps' own under the cdc strategy) and starts competing for it. It is
// listed and controllable through the REST API like any other; its row in
// cdc_connectors carries no configuration of its own, only the shared
// pause state and generation, unless a client replaced its configuration
// through the REST API — which then applies on every process until a
// process starts again: start-up puts the built-in connector back to the
// process's own configuration.
func (m *Manager) RunBuiltin(name string, raw map[string]string, opts ...BuiltinOption) error {
	if _, _, err := ParseConfig(name, raw); err != nil {
		return err
	}
	b := builtinDef{raw: copyMap(raw)}
	for _, o := range opts {
		o(&b)
	}
	ctx, cancel := context.WithTimeout(m.ctx, 30*time.Second)
	defer cancel()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.builtins[name] = b
	row, err := m.registerBuiltin(ctx, name)
	if err != nil {
		delete(m.builtins, name)
		return err
	}
	m.applyLocked(name, &row, true)
	return nil
}

// Close stops every connector, releasing their leases, and waits for them
// to finish.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	stopWatch, watchDone := m.stopWatch, m.watchDone
	entries := make([]*entry, 0, len(m.entries))
	for _, e := range m.entries {
		entries = append(entries, e)
	}
	m.mu.Unlock()
	if stopWatch != nil {
		stopWatch()
		<-watchDone
	}
	for _, e := range entries {
		e.stop()
	}
}

// Names lists the connectors, sorted.
func (m *Manager) Names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.entries))
	for n := range m.entries {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Get returns a connector's definition.
func (m *Manager) Get(name string) (Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[name]
	if !ok {
		return Info{}, ErrNotFound
	}
	return e.info(), nil
}

// Create defines and starts a new connector on every process; ErrExists if
// the name is taken. The returned warnings list unknown configuration keys.
func (m *Manager) Create(ctx context.Context, name string, raw map[string]string) (Info, []string, error) {
	if name == "" {
		return Info{}, nil, &ConfigError{Problems: []string{"connector name is required"}}
	}
	raw = copyMap(raw)
	delete(raw, "name")
	_, warnings, err := ParseConfig(name, raw)
	if err != nil {
		return Info{}, warnings, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.entries[name]; ok {
		return Info{}, warnings, ErrExists
	}
	row, err := m.insertDef(ctx, name, raw)
	if err != nil {
		return Info{}, warnings, err
	}
	m.applyLocked(name, &row, false)
	e, ok := m.entries[name]
	if !ok {
		return Info{}, warnings, ErrExists
	}
	return e.info(), warnings, nil
}

// Put creates or reconfigures a connector on every process (restarting
// it); created reports which.
func (m *Manager) Put(ctx context.Context, name string, raw map[string]string) (Info, bool, []string, error) {
	raw = copyMap(raw)
	if n, ok := raw["name"]; ok && n != name {
		return Info{}, false, nil, &ConfigError{Problems: []string{fmt.Sprintf("connector name %q in the configuration does not match %q in the path", n, name)}}
	}
	delete(raw, "name")
	_, warnings, err := ParseConfig(name, raw)
	if err != nil {
		return Info{}, false, warnings, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, known := m.entries[name]
	row, created, err := m.upsertDef(ctx, name, raw, known)
	if err != nil {
		return Info{}, false, warnings, err
	}
	m.applyLocked(name, &row, false)
	e, ok := m.entries[name]
	if !ok {
		return Info{}, false, warnings, ErrExists
	}
	return e.info(), created, warnings, nil
}

// Delete stops a connector on every process and removes its definition.
// Its offsets stay, as Kafka Connect keeps offsets; its slot stays unless
// slot.drop.on.stop.
func (m *Manager) Delete(ctx context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.entries[name]; !ok {
		return ErrNotFound
	}
	if err := m.deleteDef(ctx, name); err != nil {
		return err
	}
	m.applyLocked(name, nil, false)
	return nil
}

// Pause stops a connector's work on every process, keeping it defined
// (PAUSED).
func (m *Manager) Pause(ctx context.Context, name string) error {
	return m.setPaused(ctx, name, true)
}

// Resume starts a paused connector again.
func (m *Manager) Resume(ctx context.Context, name string) error {
	return m.setPaused(ctx, name, false)
}

func (m *Manager) setPaused(ctx context.Context, name string, paused bool) error {
	return m.redefine(ctx, name,
		`UPDATE cdc_connectors SET paused = $2, generation = generation + 1, updated_at = now()
		 WHERE name = $1 AND paused <> $2`, paused)
}

// Restart stops and starts a connector (clearing a FAILED state) on every
// process; whichever process takes its lease first streams it. It uses a
// bounded background context for its database work.
func (m *Manager) Restart(name string) error {
	ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
	defer cancel()
	return m.redefine(ctx, name,
		`UPDATE cdc_connectors SET generation = generation + 1, updated_at = now() WHERE name = $1`)
}

// redefine runs update, which gives connector name's row in cdc_connectors
// a new generation ($1 is the name, args follow), and applies the row here
// at once; the other processes apply it on its notification.
func (m *Manager) redefine(ctx context.Context, name, update string, args ...any) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.entries[name]; !ok {
		return ErrNotFound
	}
	row, found, err := m.updateDef(ctx, name, update, args...)
	if err != nil {
		return err
	}
	if !found {
		return ErrNotFound
	}
	m.applyLocked(name, &row, false)
	return nil
}

// lookup returns the connector named name, or ErrNotFound.
func (m *Manager) lookup(name string) (*entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[name]
	if !ok {
		return nil, ErrNotFound
	}
	return e, nil
}

// ConnectorState is the connector's state in this process and its failure
// trace: StateStandby where another process streams it. ClusterState is
// the state across the cluster, as the Kafka Connect API reports it.
func (m *Manager) ConnectorState(name string) (state, trace string, err error) {
	e, err := m.lookup(name)
	if err != nil {
		return "", "", err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.currentState(), e.trace, nil
}

// currentState is the state to report: a connector that has not yet set up
// its slot and publication is UNASSIGNED, as Kafka Connect reports a task
// that is not running yet; RUNNING means changes are being captured.
// Callers hold e.mu.
func (e *entry) currentState() string {
	if e.state == StateRunning && e.connector != nil {
		if phase, _ := e.connector.stats.phase.Load().(string); phase == "starting" {
			return StateUnassigned
		}
	}
	return e.state
}

// WorkerID is the worker id status reports.
func (m *Manager) WorkerID() string { return m.opts.WorkerID }

// Status reports every connector's state and lag as this process sees it.
func (m *Manager) Status(ctx context.Context) []Status {
	var out []Status
	for _, n := range m.Names() {
		if s, err := m.StatusOf(ctx, n); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// StatusOf reports one connector's state and lag as this process sees it:
// its own state (StateStandby where another process streams it), this
// process's worker id and the active one's, and the slot's lag read from
// the server.
func (m *Manager) StatusOf(ctx context.Context, name string) (Status, error) {
	e, err := m.lookup(name)
	if err != nil {
		return Status{}, err
	}
	e.mu.Lock()
	c, state, trace := e.connector, e.currentState(), e.trace
	raw, before := e.raw, e.eventsBefore
	e.mu.Unlock()
	var s Status
	if c == nil || state == StateStandby || state == StatePaused {
		if c != nil {
			before += c.stats.events.Load()
		}
		cfg, _, err := ParseConfig(name, raw)
		if err != nil {
			return Status{Name: name, State: state, Trace: trace, WorkerID: m.opts.WorkerID}, nil
		}
		c = NewConnector(cfg, Options{Metrics: m.opts.Metrics})
		c.stats.phase.Store("stopped")
	}
	s = c.Status(ctx)
	s.State, s.Trace = state, trace
	s.EventsTotal += before
	s.WorkerID = m.opts.WorkerID
	if cs, err := m.ClusterState(ctx, name); err == nil {
		s.ActiveWorkerID = cs.ActiveWorkerID
	}
	return s, nil
}

// applyLocked makes this process run row, the current definition of the
// connector called name (nil: there is none), unless it already runs that
// generation (force: even then, for a new RunBuiltin). Callers hold m.mu.
func (m *Manager) applyLocked(name string, row *defRow, force bool) {
	e, have := m.entries[name]
	if row == nil {
		if have {
			e.stop()
			delete(m.entries, name)
			m.log.Info("connector removed", "connector", name)
		}
		return
	}
	raw, transform := row.config, TxTransform(nil)
	if row.builtin {
		b, ok := m.builtins[name]
		if !ok {
			// Another process's built-in connector, defined by its
			// configuration: not run here.
			if have {
				e.stop()
				delete(m.entries, name)
			}
			return
		}
		transform = b.transform
		if len(raw) == 0 {
			raw = b.raw
		}
	}
	if have && e.gen == row.gen && !force {
		return
	}
	ne := &entry{name: name, raw: copyMap(raw), builtin: row.builtin, paused: row.paused, gen: row.gen, transform: transform}
	if have {
		e.stop()
		ne.eventsBefore = e.totalEvents()
	}
	m.entries[name] = ne
	m.launch(ne)
}

// launch starts competing for e's lease unless it is paused. Callers hold
// m.mu.
func (m *Manager) launch(e *entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if m.closed {
		e.state = StateUnassigned
		return
	}
	if e.paused {
		e.state, e.trace = StatePaused, ""
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	l := lease.New(m.leaseURL(), LeaseName(e.name), lease.Options{
		Identity:      m.opts.WorkerID,
		RetryInterval: m.opts.LeaseRetry,
		CheckInterval: m.opts.LeaseCheck,
		Logger:        m.log.With("connector", e.name),
	})
	done := make(chan struct{})
	e.lease, e.cancel, e.done = l, cancel, done
	e.state, e.trace = StateStandby, ""
	go func() {
		defer close(done)
		_ = l.Run(ctx, func(jctx context.Context) error { return m.run(jctx, e) })
	}()
}

// stop ends e's run first and then its lease, so no other process takes
// the connector over while this one still streams it; it waits for both.
func (e *entry) stop() {
	e.mu.Lock()
	cancel, done, stopJob, jobDone := e.cancel, e.done, e.stopJob, e.jobDone
	e.cancel, e.done, e.lease = nil, nil, nil
	e.mu.Unlock()
	if stopJob != nil {
		stopJob()
		<-jobDone
	}
	if cancel != nil {
		cancel()
		<-done
	}
}

// totalEvents is every event this entry's runs produced.
func (e *entry) totalEvents() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.eventsBefore
	if e.connector != nil {
		n += e.connector.stats.events.Load()
	}
	return n
}

// run streams the connector while this process holds its lease,
// restarting it with back-off after failures, until ctx ends (the lease is
// lost or the connector stopped).
func (m *Manager) run(leaseCtx context.Context, e *entry) error {
	ctx, cancel := context.WithCancel(leaseCtx)
	defer cancel()
	jobDone := make(chan struct{})
	e.mu.Lock()
	e.stopJob, e.jobDone = cancel, jobDone
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.stopJob, e.jobDone = nil, nil
		if e.state != StatePaused {
			e.state, e.trace = StateStandby, ""
		}
		e.mu.Unlock()
		close(jobDone)
	}()
	log := m.log.With("connector", e.name)
	log.Info("connector lease taken; streaming from this process", "worker_id", m.opts.WorkerID)
	go m.publishStatus(ctx, e)
	wait := m.opts.RetryMin
	for {
		cfg, warnings, err := ParseConfig(e.name, e.raw)
		for _, w := range warnings {
			log.Warn(w)
		}
		if err != nil {
			e.setFailed(err)
			log.Error("connector configuration invalid", "err", err)
			<-ctx.Done() // keep the lease: another process would fail the same way
			return nil
		}
		m.takeSlot(ctx, cfg, log)
		c := NewConnector(cfg, Options{Kafka: m.opts.Kafka, Offsets: PostgresOffsets{Pool: m.pool}, Logger: m.opts.Logger,
			TopicPartitions: m.opts.TopicPartitions, Transform: e.transform, Metrics: m.opts.Metrics})
		e.mu.Lock()
		if e.connector != nil {
			e.eventsBefore += e.connector.stats.events.Load()
		}
		e.connector = c
		e.state, e.trace = StateRunning, ""
		e.mu.Unlock()
		started := time.Now()
		err = c.Run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("connector stopped unexpectedly")
		}
		e.setFailed(err)
		if time.Since(started) > time.Minute {
			wait = m.opts.RetryMin
		}
		log.Error("connector failed; restarting", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(wait*2, m.opts.RetryMax)
	}
}

func (e *entry) setFailed(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.state = StateFailed
	e.trace = errorTrace(err)
}

// errorTrace is the error chain, outermost first: Kafka Connect shows a
// Java stack trace here; Go errors carry their chain instead.
func errorTrace(err error) string {
	s := err.Error()
	for e := errors.Unwrap(err); e != nil; e = errors.Unwrap(e) {
		s += fmt.Sprintf("\nCaused by: %T: %s", e, e.Error())
	}
	return s
}

func (e *entry) info() Info {
	cfg := copyMap(e.raw)
	cfg["name"] = e.name
	return Info{Name: e.name, Config: cfg, Tasks: []TaskID{{Connector: e.name, Task: 0}}, Type: "source"}
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ExecuteSnapshot asks connector name for an ad-hoc snapshot of tables by
// writing Debezium's execute-snapshot signal to its signaling table, the
// row a user would insert: the signal travels through the WAL like any
// change, so it is durable, ordered with the stream, and applied once the
// connector reaches it (a paused connector applies it when resumed). It
// returns the signal. ErrNotFound for an unknown connector;
// ErrSignalsDisabled when it has no signaling table; a *ConfigError for
// tables the connector does not capture.
func (m *Manager) ExecuteSnapshot(ctx context.Context, name string, req SnapshotRequest) (Signal, error) {
	cfg, err := m.signalConfig(name)
	if err != nil {
		return Signal{}, err
	}
	var problems []string
	for _, t := range req.Tables {
		schema, table, ok := splitTableName(strings.TrimSpace(t))
		if !ok || !cfg.captures(schema, table) {
			problems = append(problems, fmt.Sprintf("%s is not a table connector %s captures (table.include.list / table.exclude.list)", t, name))
		}
	}
	if len(problems) > 0 {
		return Signal{}, &ConfigError{Problems: problems}
	}
	sig, err := executeSnapshotSignal(req)
	if err != nil {
		return Signal{}, &ConfigError{Problems: []string{err.Error()}}
	}
	return sig, m.writeSignal(ctx, name, &cfg, sig)
}

// StopSnapshot writes the stop-snapshot signal of connector name's
// incremental snapshot: of tables, or all of it when tables is empty.
func (m *Manager) StopSnapshot(ctx context.Context, name string, tables []string) (Signal, error) {
	cfg, err := m.signalConfig(name)
	if err != nil {
		return Signal{}, err
	}
	sig := stopSnapshotSignal(tables)
	return sig, m.writeSignal(ctx, name, &cfg, sig)
}

// signalConfig is the configuration of a connector that takes signals.
func (m *Manager) signalConfig(name string) (Config, error) {
	e, err := m.lookup(name)
	if err != nil {
		return Config{}, err
	}
	e.mu.Lock()
	raw := e.raw
	e.mu.Unlock()
	cfg, _, err := ParseConfig(name, raw)
	if err != nil {
		return Config{}, err
	}
	if cfg.SignalTable == "" || !cfg.SignalChannels["source"] {
		return Config{}, fmt.Errorf("connector %s: %w: set signal.data.collection to a table shaped (id varchar(42) PRIMARY KEY, type varchar(32) NOT NULL, data varchar(2048)) and keep source in signal.enabled.channels", name, ErrSignalsDisabled)
	}
	return cfg, nil
}

// writeSignal inserts sig through the running connector's own connection,
// or a connection of its own when the connector is not running.
func (m *Manager) writeSignal(ctx context.Context, name string, cfg *Config, sig Signal) error {
	m.mu.Lock()
	e := m.entries[name]
	m.mu.Unlock()
	var c *Connector
	if e != nil {
		e.mu.Lock()
		c = e.connector
		e.mu.Unlock()
	}
	if c != nil {
		if pool := c.pool.Load(); pool != nil {
			return writeSignal(ctx, pool, cfg, sig)
		}
	}
	conn, err := pgx.Connect(ctx, cfg.ConnString(false))
	if err != nil {
		return fmt.Errorf("connect to %s:%d/%s to write the signal: %w", cfg.Host, cfg.Port, cfg.DBName, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return writeSignal(ctx, conn, cfg, sig)
}
