package cdc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/lease"
	"github.com/trackops/trackops/internal/postgres"
)

// NotifyChannel is the LISTEN/NOTIFY channel on which a change of a
// connector definition is announced; the payload is the connector's name.
const NotifyChannel = "trackops_cdc_connectors"

// LeaseName is the name of the lease under which one process of the
// cluster streams the connector called connector.
func LeaseName(connector string) string { return "cdc-connector:" + connector }

// WorkerIDFor is the worker id of a process whose Kafka Connect REST API
// listens on addr, as Kafka Connect names a worker by its advertised
// host:port. An unspecified host (":8083", "0.0.0.0:8083", "[::]:8083" in a
// container) is replaced by the machine's host name, so the processes of a
// cluster get distinct ids.
func WorkerIDFor(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if h, err := os.Hostname(); err == nil && h != "" {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

// Roles of a process in a connector's fail-over, as ClusterState reports them.
const (
	RoleActive  = "active"
	RoleStandby = "standby"
	RolePaused  = "paused"
)

// ClusterState is a connector's state across the processes of the cluster:
// what Kafka Connect's status API reports on every worker — the state on
// the process running the connector and that process's worker id — plus
// this process's own part in it.
type ClusterState struct {
	// State is Kafka Connect's: RUNNING, PAUSED, FAILED or UNASSIGNED (no
	// process holds the connector's lease, or its holder is still starting).
	State string
	// ActiveWorkerID is the worker id of the process holding the lease;
	// while nobody does, the last one known (or this process's).
	ActiveWorkerID string
	// Trace is the active process's failure, when FAILED.
	Trace string
	// Role is this process's part: RoleActive, RoleStandby or RolePaused.
	Role string
	// WorkerID is this process's worker id.
	WorkerID string
}

// ClusterState reports the connector called name across the cluster. This
// process answers for itself when it holds the lease; otherwise it finds
// the holder in pg_locks and trusts the status that holder published
// (cdc_connector_status) only when it names the same lease session.
func (m *Manager) ClusterState(ctx context.Context, name string) (ClusterState, error) {
	e, err := m.lookup(name)
	if err != nil {
		return ClusterState{}, err
	}
	self := m.opts.WorkerID
	e.mu.Lock()
	paused, l, state, trace := e.paused, e.lease, e.currentState(), e.trace
	e.mu.Unlock()
	if paused {
		return ClusterState{State: StatePaused, ActiveWorkerID: self, Role: RolePaused, WorkerID: self}, nil
	}
	if l != nil && l.Held() && state != StateStandby {
		return ClusterState{State: state, ActiveWorkerID: self, Trace: trace, Role: RoleActive, WorkerID: self}, nil
	}
	out := ClusterState{State: StateUnassigned, ActiveWorkerID: self, Role: RoleStandby, WorkerID: self}
	identity, pid, held, err := lease.Holder(ctx, m.pool, LeaseName(name))
	if err != nil {
		return ClusterState{}, err
	}
	var st struct {
		worker, state, trace string
		pid                  int32
	}
	err = m.pool.QueryRow(ctx, `SELECT worker_id, lease_pid, state, trace FROM cdc_connector_status WHERE name = $1`, name).
		Scan(&st.worker, &st.pid, &st.state, &st.trace)
	found := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return ClusterState{}, fmt.Errorf("read status of connector %s: %w", name, err)
	}
	switch {
	case !held:
		if found {
			out.ActiveWorkerID = st.worker
		}
	case found && st.worker == identity && st.pid == pid:
		out.State, out.ActiveWorkerID, out.Trace = st.state, identity, st.trace
	default: // the holder has not published yet: it is starting
		out.ActiveWorkerID = identity
	}
	return out, nil
}

// leaseURL is DirectURL with server-side TCP keepalives, so that the
// server ends the lease session of a holder cut off from it (no FIN, no
// RST) within seconds, not hours, and a standby can take over.
func (m *Manager) leaseURL() string { return postgres.WithServerKeepalives(m.directURL) }

// publishStatus writes this process's state of e to cdc_connector_status
// whenever it changes, while this process holds e's lease, so every other
// process's status API can report it.
func (m *Manager) publishStatus(ctx context.Context, e *entry) {
	_, pid, _, err := lease.Holder(ctx, m.pool, LeaseName(e.name))
	if err != nil && ctx.Err() == nil {
		m.log.Warn("cannot find this process's lease session", "connector", e.name, "err", err)
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	last := ""
	for {
		e.mu.Lock()
		state, trace := e.currentState(), e.trace
		e.mu.Unlock()
		if state != StateStandby && state+"\x00"+trace != last {
			_, err := m.pool.Exec(ctx, `INSERT INTO cdc_connector_status (name, worker_id, lease_pid, state, trace)
				VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (name) DO UPDATE SET worker_id = EXCLUDED.worker_id, lease_pid = EXCLUDED.lease_pid,
				  state = EXCLUDED.state, trace = EXCLUDED.trace, updated_at = now()`,
				e.name, m.opts.WorkerID, pid, state, trace)
			if err == nil {
				last = state + "\x00" + trace
			} else if ctx.Err() == nil {
				m.log.Warn("cannot publish connector status", "connector", e.name, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// takeSlot makes the connector's replication slot free for this process,
// which holds the connector's lease: a walsender still streaming the slot
// belongs to the previous holder, which lost its lease. Normally it lets go
// by itself at once (the holder died, or stopped when it found its lease
// lost); a holder cut off from the database cannot close it, and its
// walsender would keep the slot until wal_sender_timeout, so after
// SlotReleaseGrace that session is terminated. What it streamed but did not
// confirm is streamed again from the slot's confirmed position.
func (m *Manager) takeSlot(ctx context.Context, cfg Config, log *slog.Logger) {
	cctx, cancel := context.WithTimeout(ctx, m.opts.SlotReleaseGrace+10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, cfg.ConnString(false))
	if err != nil {
		return // the connector's own start reports it
	}
	defer conn.Close(context.WithoutCancel(ctx))
	activePID := func() (int32, error) {
		var pid *int32
		err := conn.QueryRow(cctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1 AND active`, cfg.SlotName).Scan(&pid)
		if errors.Is(err, pgx.ErrNoRows) || pid == nil {
			return 0, nil
		}
		return *pid, err
	}
	deadline := time.Now().Add(m.opts.SlotReleaseGrace)
	for {
		pid, err := activePID()
		if err != nil || pid == 0 {
			return
		}
		if time.Now().After(deadline) {
			var ok bool
			if err := conn.QueryRow(cctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&ok); err != nil {
				log.Warn("cannot terminate the previous holder's walsender", "slot", cfg.SlotName, "pid", pid, "err", err)
				return
			}
			log.Warn("the previous holder's walsender still held the replication slot; terminated it",
				"slot", cfg.SlotName, "pid", pid, "grace", m.opts.SlotReleaseGrace)
			deadline = time.Now().Add(m.opts.SlotReleaseGrace)
		}
		select {
		case <-cctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// watch follows changes of the definitions until ctx ends: names announced
// on NotifyChannel are reconciled at once, everything every
// ReconcileInterval and after the listening connection was (re)made.
func (m *Manager) watch(ctx context.Context, done chan struct{}) {
	defer close(done)
	go m.listen(ctx)
	t := time.NewTicker(m.opts.ReconcileInterval)
	defer t.Stop()
	for {
		var name string
		all := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			all = true
		case name = <-m.changed:
			all = name == ""
		}
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return
		}
		// Bounded: the REST API and status wait for m.mu meanwhile.
		rctx, cancel := context.WithTimeout(ctx, dbTimeout)
		var err error
		if all {
			err = m.reconcileAllLocked(rctx)
		} else {
			err = m.reconcileLocked(rctx, name)
		}
		cancel()
		m.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			m.log.Warn("cannot read connector definitions; retrying", "err", err)
		}
	}
}

// listen LISTENs on NotifyChannel on a session of its own (DirectURL) and
// hands each announced name to the reconcile loop.
func (m *Manager) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := m.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("connector definition listener lost its connection; reconnecting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(m.opts.LeaseRetry):
		}
	}
}

func (m *Manager) listenOnce(ctx context.Context) error {
	cfg, err := postgres.ParseConnConfig(m.leaseURL())
	if err != nil {
		return err
	}
	cfg.RuntimeParams["application_name"] = m.opts.WorkerID
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return err
	}
	m.announce("") // whatever changed while not listening
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		m.announce(n.Payload)
	}
}

// announce queues name for the reconcile loop; when the queue is full,
// everything is reconciled instead.
func (m *Manager) announce(name string) {
	select {
	case m.changed <- name:
	default:
		select {
		case m.changed <- "":
		default: // a full reconcile is already queued behind the others
		}
	}
}

// defRow is a connector's definition as cdc_connectors holds it.
type defRow struct {
	name    string
	config  map[string]string
	paused  bool
	builtin bool
	gen     int64
}

const defColumns = `name, config, paused, builtin, generation`

func scanDef(row pgx.Row) (defRow, error) {
	var d defRow
	err := row.Scan(&d.name, &d.config, &d.paused, &d.builtin, &d.gen)
	return d, err
}

// reconcileLocked applies the stored definition of name. Callers hold m.mu.
func (m *Manager) reconcileLocked(ctx context.Context, name string) error {
	row, err := scanDef(m.pool.QueryRow(ctx, `SELECT `+defColumns+` FROM cdc_connectors WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		m.applyLocked(name, nil, false)
		return nil
	}
	if err != nil {
		return err
	}
	m.applyLocked(name, &row, false)
	return nil
}

// reconcileAllLocked applies every stored definition and removes the
// connectors no longer defined. Callers hold m.mu.
func (m *Manager) reconcileAllLocked(ctx context.Context) error {
	rows, err := m.pool.Query(ctx, `SELECT `+defColumns+` FROM cdc_connectors ORDER BY name`)
	if err != nil {
		return err
	}
	defs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (defRow, error) { return scanDef(r) })
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for i := range defs {
		seen[defs[i].name] = true
		m.applyLocked(defs[i].name, &defs[i], false)
	}
	for name := range m.entries {
		if !seen[name] {
			m.applyLocked(name, nil, false)
		}
	}
	return nil
}

// dbTimeout bounds the database work done while holding the Manager's
// lock, so a database that stops answering cannot hold the REST API and
// status reports up for longer.
const dbTimeout = 15 * time.Second

// inTx runs fn in a transaction that also announces the connector's change.
func (m *Manager) inTx(ctx context.Context, name string, fn func(tx pgx.Tx) error) error {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	return postgres.WithTx(ctx, m.pool, func(tx pgx.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, name)
		return err
	})
}

// insertDef stores a new definition; ErrExists if the name is taken.
func (m *Manager) insertDef(ctx context.Context, name string, raw map[string]string) (defRow, error) {
	b, err := json.Marshal(raw)
	if err != nil {
		return defRow{}, err
	}
	var row defRow
	err = m.inTx(ctx, name, func(tx pgx.Tx) error {
		var err error
		row, err = scanDef(tx.QueryRow(ctx, `INSERT INTO cdc_connectors (name, config) VALUES ($1, $2) RETURNING `+defColumns, name, b))
		return err
	})
	if postgres.IsUniqueViolation(err) {
		return defRow{}, ErrExists
	}
	if err != nil {
		return defRow{}, fmt.Errorf("save connector %s: %w", name, err)
	}
	return row, nil
}

// upsertDef creates or reconfigures a definition, keeping its pause state;
// created reports which. known says whether this process runs the
// connector: a built-in connector of other processes only is not replaced.
func (m *Manager) upsertDef(ctx context.Context, name string, raw map[string]string, known bool) (defRow, bool, error) {
	b, err := json.Marshal(raw)
	if err != nil {
		return defRow{}, false, err
	}
	var (
		row     defRow
		created bool
	)
	err = m.inTx(ctx, name, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO cdc_connectors (name, config) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET config = EXCLUDED.config, generation = cdc_connectors.generation + 1, updated_at = now()
			WHERE $3 OR NOT cdc_connectors.builtin
			RETURNING `+defColumns+`, xmax = 0`, name, b, known).
			Scan(&row.name, &row.config, &row.paused, &row.builtin, &row.gen, &created)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrExists
		}
		return err
	})
	if errors.Is(err, ErrExists) {
		return defRow{}, false, err
	}
	if err != nil {
		return defRow{}, false, fmt.Errorf("save connector %s: %w", name, err)
	}
	return row, created, nil
}

// updateDef runs update (a statement on the row of $1, with args after
// name) and returns the definition as it is afterwards; found is false
// when there is none. An update that matches nothing returns the row
// unchanged.
func (m *Manager) updateDef(ctx context.Context, name, update string, args ...any) (defRow, bool, error) {
	var (
		row   defRow
		found bool
	)
	err := m.inTx(ctx, name, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, update, append([]any{name}, args...)...); err != nil {
			return err
		}
		var err error
		row, err = scanDef(tx.QueryRow(ctx, `SELECT `+defColumns+` FROM cdc_connectors WHERE name = $1`, name))
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil {
		return defRow{}, false, fmt.Errorf("update connector %s: %w", name, err)
	}
	return row, found, nil
}

// deleteDef removes a definition and its published status.
func (m *Manager) deleteDef(ctx context.Context, name string) error {
	err := m.inTx(ctx, name, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM cdc_connectors WHERE name = $1`, name); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM cdc_connector_status WHERE name = $1`, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete connector %s: %w", name, err)
	}
	return nil
}

// registerBuiltin records the built-in connector called name: a row with
// no configuration of its own. A row that overrides the configuration (a
// PUT through the REST API) or belongs to a connector of the same name
// created through the REST API is put back to the built-in one, with a new
// generation, so every process restarts it with its own configuration; a
// paused built-in connector stays paused.
func (m *Manager) registerBuiltin(ctx context.Context, name string) (defRow, error) {
	var row defRow
	err := m.inTx(ctx, name, func(tx pgx.Tx) error {
		var wasREST bool
		err := tx.QueryRow(ctx, `SELECT NOT builtin FROM cdc_connectors WHERE name = $1 FOR UPDATE`, name).Scan(&wasREST)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if wasREST {
			m.log.Warn("connector created through the REST API replaced by the built-in one of the same name", "connector", name)
		}
		row, err = scanDef(tx.QueryRow(ctx, `INSERT INTO cdc_connectors (name, config, builtin) VALUES ($1, '{}', true)
			ON CONFLICT (name) DO UPDATE SET config = '{}', builtin = true, generation = cdc_connectors.generation + 1, updated_at = now()
			WHERE cdc_connectors.config <> '{}'::jsonb OR NOT cdc_connectors.builtin
			RETURNING `+defColumns, name))
		if errors.Is(err, pgx.ErrNoRows) { // already the built-in one, unchanged
			row, err = scanDef(tx.QueryRow(ctx, `SELECT `+defColumns+` FROM cdc_connectors WHERE name = $1`, name))
		}
		return err
	})
	if err != nil {
		return defRow{}, fmt.Errorf("register built-in connector %s: %w", name, err)
	}
	return row, nil
}

// ConnectorSummary is one connector of the cluster as `trackops cdc status`
// shows it, read from the database alone (no running process needed).
type ConnectorSummary struct {
	Name    string `json:"name"`
	Builtin bool   `json:"builtin"`
	Paused  bool   `json:"paused"`
	// State is Kafka Connect's, as the active process published it:
	// RUNNING, FAILED, PAUSED, or UNASSIGNED while no process holds the
	// connector's lease.
	State string `json:"state"`
	// ActiveWorkerID is the worker holding the lease ("" when none does).
	ActiveWorkerID string `json:"active_worker_id,omitempty"`
	Trace          string `json:"trace,omitempty"`
}

// Connectors lists the connector definitions of the database of db with
// the process streaming each (the holder of its lease) and the state that
// process published.
func Connectors(ctx context.Context, db postgres.Querier) ([]ConnectorSummary, error) {
	rows, err := db.Query(ctx, `SELECT c.name, c.builtin, c.paused, coalesce(s.worker_id, ''), coalesce(s.lease_pid, 0),
		coalesce(s.state, ''), coalesce(s.trace, '')
		FROM cdc_connectors c LEFT JOIN cdc_connector_status s ON s.name = c.name ORDER BY c.name`)
	if err != nil {
		return nil, fmt.Errorf("list connectors: %w", err)
	}
	type row struct {
		ConnectorSummary
		worker string
		pid    int32
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.Name, &x.Builtin, &x.Paused, &x.worker, &x.pid, &x.State, &x.Trace)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("list connectors: %w", err)
	}
	out := make([]ConnectorSummary, 0, len(list))
	for _, x := range list {
		s := x.ConnectorSummary
		identity, pid, held, err := lease.Holder(ctx, db, LeaseName(s.Name))
		if err != nil {
			return nil, err
		}
		switch {
		case s.Paused:
			s.State, s.Trace = StatePaused, ""
		case !held:
			s.State, s.Trace = StateUnassigned, ""
		case identity != x.worker || pid != x.pid: // the holder has not published yet
			s.State, s.Trace, s.ActiveWorkerID = StateUnassigned, "", identity
		default:
			s.ActiveWorkerID = identity
		}
		out = append(out, s)
	}
	return out, nil
}
