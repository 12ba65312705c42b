package cdc

import (
	"context"
	"encoding/json"
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

// ManagerOptions configure a Manager.
type ManagerOptions struct {
	// Kafka configures every connector's producer.
	Kafka kafka.Options
	// Logger receives connector logs.
	Logger *slog.Logger
	// WorkerID is what status reports as worker_id (Kafka Connect's host:port).
	WorkerID string
	// TopicPartitions is the partition count of topics connectors create.
	TopicPartitions int32
	// RetryMin and RetryMax bound the back-off between restarts of a
	// failed connector (defaults 1 s and 30 s).
	RetryMin, RetryMax time.Duration
}

// Manager owns the running connectors: definitions created through the
// REST API persist in cdc_connectors and start again with the process; the
// built-in connector of the cdc strategy runs without being persisted.
//
// A connector that fails is reported FAILED with its error and restarted
// with back-off; configuration errors are not retried.
type Manager struct {
	pool *pgxpool.Pool
	opts ManagerOptions
	log  *slog.Logger

	mu      sync.Mutex
	ctx     context.Context
	entries map[string]*entry
	closed  bool
}

// entry is one connector the Manager knows.
type entry struct {
	name       string
	raw        map[string]string
	persistent bool
	paused     bool
	// transform is the built-in connector's TxTransform, kept across
	// restarts and reconfigurations through the REST API.
	transform TxTransform

	mu        sync.Mutex
	state     string
	trace     string
	connector *Connector
	// eventsBefore are the events of this entry's earlier runs (before a
	// pause, restart or failure): each run is a new Connector, and
	// events_total must keep counting as trackops_cdc_events_total does.
	eventsBefore uint64
	cancel       context.CancelFunc
	done         chan struct{}
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
	return &Manager{pool: pool, opts: opts, log: opts.Logger.With("component", "cdc"), entries: map[string]*entry{}, ctx: context.Background()}
}

// Start loads the persisted connectors and starts those not paused.
// Connectors run until Close, independent of ctx after Start returns.
func (m *Manager) Start(ctx context.Context) error {
	rows, err := m.pool.Query(ctx, `SELECT name, config, paused FROM cdc_connectors ORDER BY name`)
	if err != nil {
		return fmt.Errorf("load connectors: %w", err)
	}
	type def struct {
		name   string
		raw    map[string]string
		paused bool
	}
	var defs []def
	for rows.Next() {
		var d def
		if err := rows.Scan(&d.name, &d.raw, &d.paused); err != nil {
			rows.Close()
			return fmt.Errorf("load connectors: %w", err)
		}
		defs = append(defs, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load connectors: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range defs {
		if _, ok := m.entries[d.name]; ok {
			m.log.Warn("persisted connector shadowed by the built-in one of the same name", "connector", d.name)
			continue
		}
		e := &entry{name: d.name, raw: d.raw, persistent: true, paused: d.paused}
		m.entries[d.name] = e
		m.launch(e)
	}
	return nil
}

// BuiltinOption configures a connector started with RunBuiltin.
type BuiltinOption func(*entry)

// WithTransform derives records from the connector's committed transactions
// with t (see TxTransform).
func WithTransform(t TxTransform) BuiltinOption { return func(e *entry) { e.transform = t } }

// RunBuiltin starts a connector that is not persisted (TrackOps' own under
// the cdc strategy): it is listed and controllable through the REST API but
// is defined by the process's configuration, not by the database.
func (m *Manager) RunBuiltin(name string, raw map[string]string, opts ...BuiltinOption) error {
	if _, _, err := ParseConfig(name, raw); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.entries[name]; ok {
		m.stopLocked(old)
	}
	e := &entry{name: name, raw: copyMap(raw)}
	for _, o := range opts {
		o(e)
	}
	m.entries[name] = e
	m.launch(e)
	return nil
}

// Close stops every connector and waits for them to finish.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	entries := make([]*entry, 0, len(m.entries))
	for _, e := range m.entries {
		entries = append(entries, e)
	}
	m.mu.Unlock()
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

// Create defines and starts a new connector; ErrExists if the name is taken.
// The returned warnings list unknown configuration keys.
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
	if err := m.save(ctx, name, raw, false); err != nil {
		if isUnique(err) {
			return Info{}, warnings, ErrExists
		}
		return Info{}, warnings, err
	}
	e := &entry{name: name, raw: raw, persistent: true}
	m.entries[name] = e
	m.launch(e)
	return e.info(), warnings, nil
}

// Put creates or reconfigures a connector (restarting it); created reports
// which.
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
	e, exists := m.entries[name]
	paused := exists && e.paused
	if !exists || e.persistent {
		if err := m.save(ctx, name, raw, paused); err != nil {
			return Info{}, false, warnings, err
		}
	}
	if exists {
		m.stopLocked(e)
	}
	ne := &entry{name: name, raw: raw, persistent: !exists || e.persistent, paused: paused}
	if exists {
		ne.transform = e.transform
	}
	m.entries[name] = ne
	m.launch(ne)
	return ne.info(), !exists, warnings, nil
}

// Delete stops a connector and removes its definition. Its offsets stay, as
// Kafka Connect keeps offsets; its slot stays unless slot.drop.on.stop.
func (m *Manager) Delete(ctx context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[name]
	if !ok {
		return ErrNotFound
	}
	if e.persistent {
		if _, err := m.pool.Exec(ctx, `DELETE FROM cdc_connectors WHERE name = $1`, name); err != nil {
			return fmt.Errorf("delete connector %s: %w", name, err)
		}
	}
	m.stopLocked(e)
	delete(m.entries, name)
	return nil
}

// Pause stops a connector's work, keeping it defined (PAUSED).
func (m *Manager) Pause(ctx context.Context, name string) error {
	return m.setPaused(ctx, name, true)
}

// Resume starts a paused connector again.
func (m *Manager) Resume(ctx context.Context, name string) error {
	return m.setPaused(ctx, name, false)
}

func (m *Manager) setPaused(ctx context.Context, name string, paused bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[name]
	if !ok {
		return ErrNotFound
	}
	if e.paused == paused {
		return nil
	}
	if e.persistent {
		if _, err := m.pool.Exec(ctx, `UPDATE cdc_connectors SET paused = $2, updated_at = now() WHERE name = $1`, name, paused); err != nil {
			return fmt.Errorf("update connector %s: %w", name, err)
		}
	}
	m.stopLocked(e)
	e.paused = paused
	m.launch(e)
	return nil
}

// Restart stops and starts a connector (clearing a FAILED state).
func (m *Manager) Restart(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[name]
	if !ok {
		return ErrNotFound
	}
	m.stopLocked(e)
	m.launch(e)
	return nil
}

// ConnectorState is a connector's state and failure trace.
func (m *Manager) ConnectorState(name string) (state, trace string, err error) {
	m.mu.Lock()
	e, ok := m.entries[name]
	m.mu.Unlock()
	if !ok {
		return "", "", ErrNotFound
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

// Status reports every connector's state and lag.
func (m *Manager) Status(ctx context.Context) []Status {
	var out []Status
	for _, n := range m.Names() {
		if s, err := m.StatusOf(ctx, n); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// StatusOf reports one connector's state and lag.
func (m *Manager) StatusOf(ctx context.Context, name string) (Status, error) {
	m.mu.Lock()
	e, ok := m.entries[name]
	m.mu.Unlock()
	if !ok {
		return Status{}, ErrNotFound
	}
	e.mu.Lock()
	c, state, trace := e.connector, e.currentState(), e.trace
	raw, before := e.raw, e.eventsBefore
	e.mu.Unlock()
	var s Status
	if c == nil {
		cfg, _, err := ParseConfig(name, raw)
		if err != nil {
			return Status{Name: name, State: state, Trace: trace}, nil
		}
		c = NewConnector(cfg, Options{})
		c.stats.phase.Store("stopped")
	}
	s = c.Status(ctx)
	s.State, s.Trace = state, trace
	s.EventsTotal += before
	return s, nil
}

// save upserts a definition.
func (m *Manager) save(ctx context.Context, name string, raw map[string]string, paused bool) error {
	b, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	_, err = m.pool.Exec(ctx, `
INSERT INTO cdc_connectors (name, config, paused) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE SET config = EXCLUDED.config, paused = EXCLUDED.paused, updated_at = now()`, name, b, paused)
	if err != nil {
		return fmt.Errorf("save connector %s: %w", name, err)
	}
	return nil
}

func isUnique(err error) bool {
	var pgErr interface{ SQLState() string }
	return errors.As(err, &pgErr) && pgErr.SQLState() == "23505"
}

// launch starts e's run loop unless it is paused. Callers hold m.mu.
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
	e.cancel, e.done = cancel, make(chan struct{})
	e.state, e.trace = StateRunning, ""
	go m.run(ctx, e, e.done)
}

func (m *Manager) stopLocked(e *entry) { e.stop() }

func (e *entry) stop() {
	e.mu.Lock()
	cancel, done := e.cancel, e.done
	e.cancel, e.done = nil, nil
	e.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// run runs the connector, restarting it with back-off after failures.
func (m *Manager) run(ctx context.Context, e *entry, done chan struct{}) {
	defer close(done)
	log := m.log.With("connector", e.name)
	wait := m.opts.RetryMin
	for {
		cfg, warnings, err := ParseConfig(e.name, e.raw)
		for _, w := range warnings {
			log.Warn(w)
		}
		if err != nil {
			e.setFailed(err)
			log.Error("connector configuration invalid", "err", err)
			return
		}
		c := NewConnector(cfg, Options{Kafka: m.opts.Kafka, Offsets: PostgresOffsets{Pool: m.pool}, Logger: m.opts.Logger,
			TopicPartitions: m.opts.TopicPartitions, Transform: e.transform})
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
			return
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
			return
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
	m.mu.Lock()
	e, ok := m.entries[name]
	m.mu.Unlock()
	if !ok {
		return Config{}, ErrNotFound
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
