// Package lease gives a cluster of TrackOps processes singleton jobs: a
// named lease that at most one process holds at a time, held as a
// PostgreSQL session-level advisory lock on a connection of its own.
//
// Every process that wants to run a singleton job (the pending-order
// sweeper, a CDC connector's stream, DLQ alerts, outbox and inbox pruning)
// builds a Lease with the job's name and calls Run with the job. The one
// that takes the lock runs the job; the others wait as standbys and try
// again every RetryInterval. The holder checks its connection every
// CheckInterval; when the connection is lost (the server restarted, the
// session was terminated, the network failed) the job's context is
// cancelled, Held turns false, and the process competes again on a new
// connection after RejoinDelay, leaving a standby the first chance. Because
// the lock belongs to the session, PostgreSQL releases it the moment that
// session ends, so a standby takes over within about RetryInterval of the
// holder's death (or, when the holder's host vanishes without closing its
// connection, once the server's TCP keepalive gives the session up).
//
// The connection is dedicated — never one of a pool's — because a session
// lock lives and dies with its session, and a pool would hand that session
// to other work (or close it) behind the lease's back. Through PgBouncer in
// transaction mode use a direct URL: advisory locks need a real session.
//
// What a lease does not promise: between the server releasing a lost
// holder's lock and that holder noticing (at most CheckInterval plus the
// check's timeout), a standby may already run the job. Jobs run under a
// lease must therefore stay safe when two runs overlap briefly — idempotent,
// and guarded by row locks where they change data — as the sweeper is. The
// lease spares the cluster duplicated work; it is not a fence.
package lease

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/postgres"
)

// Defaults of Options.
const (
	DefaultRetryInterval = time.Second
	DefaultCheckInterval = time.Second
)

// Options tune a Lease. Zero values take the defaults.
type Options struct {
	// Identity names this process in pg_stat_activity.application_name of
	// the lease's connection (and so in Holder's answer), e.g.
	// "trackops@host:pid". Default "trackops".
	Identity string
	// RetryInterval is how often a standby tries to take the lease, and how
	// long it waits before reconnecting after an error. Default 1 s.
	RetryInterval time.Duration
	// CheckInterval is how often the holder checks that its connection,
	// and so its lock, is alive. Default 1 s.
	CheckInterval time.Duration
	// RejoinDelay is how long a process that lost the lease waits before
	// competing again, so that a healthy standby takes over rather than the
	// process whose connection just failed. Default 5 × RetryInterval.
	RejoinDelay time.Duration
	// OnChange, when set, is called (from the lease's goroutine) each time
	// the lease is taken or lost.
	OnChange func(held bool)
	// Logger receives acquisitions, losses and connection errors.
	// Default slog.Default().
	Logger *slog.Logger
}

// Lease is one named lease of one process. Its methods are safe for
// concurrent use; Run must be called at most once at a time.
type Lease struct {
	name    string
	key     int64
	connStr string
	o       Options

	mu     sync.Mutex
	held   bool
	since  time.Time
	terms  int64
	lost   int64
	errMsg string
	// wake is closed and replaced whenever held changes.
	wake chan struct{}
}

// Status is a lease as health and ops pages show it.
type Status struct {
	Name string `json:"name"`
	// Held is true while this process holds the lease.
	Held bool `json:"held"`
	// Since is when the lease was taken (held) or last changed hands here.
	Since time.Time `json:"since,omitzero"`
	// Acquisitions counts how often this process took the lease, Losses
	// how often it lost it without giving it up.
	Acquisitions int64  `json:"acquisitions"`
	Losses       int64  `json:"losses"`
	LastError    string `json:"lastError,omitempty"`
}

// New returns the lease called name over the PostgreSQL server and
// database of connString (a libpq URL or DSN). Nothing happens until Run.
func New(connString, name string, o Options) *Lease {
	if o.Identity == "" {
		o.Identity = "trackops"
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.RejoinDelay <= 0 {
		o.RejoinDelay = 5 * o.RetryInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Lease{name: name, key: Key(name), connStr: connString, o: o, wake: make(chan struct{}),
		since: time.Now()}
}

// Key is the advisory lock key of the lease called name: a 64-bit FNV-1a
// hash of "trackops.lease:" + name. Other tools can take the same lock with
// pg_try_advisory_lock(key).
func Key(name string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("trackops.lease:" + name))
	return int64(h.Sum64())
}

// Name is the lease's name.
func (l *Lease) Name() string { return l.name }

// Held reports whether this process holds the lease now. It turns false as
// soon as the lease is found lost, before the job has stopped.
func (l *Lease) Held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held
}

// Status describes the lease as this process sees it.
func (l *Lease) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Status{Name: l.name, Held: l.held, Since: l.since, Acquisitions: l.terms, Losses: l.lost, LastError: l.errMsg}
}

// WaitHeld blocks until this process holds the lease (true) or ctx ends
// (false).
func (l *Lease) WaitHeld(ctx context.Context) bool {
	for {
		l.mu.Lock()
		held, wake := l.held, l.wake
		l.mu.Unlock()
		if held {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-wake:
		}
	}
}

// WaitLost blocks until this process does not hold the lease (true) or ctx
// ends (false).
func (l *Lease) WaitLost(ctx context.Context) bool {
	for {
		l.mu.Lock()
		held, wake := l.held, l.wake
		l.mu.Unlock()
		if !held {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-wake:
		}
	}
}

func (l *Lease) setHeld(held, lost bool) {
	l.mu.Lock()
	if l.held == held {
		l.mu.Unlock()
		return
	}
	l.held = held
	l.since = time.Now()
	if held {
		l.terms++
		l.errMsg = ""
	}
	if lost {
		l.lost++
	}
	close(l.wake)
	l.wake = make(chan struct{})
	l.mu.Unlock()
	if l.o.OnChange != nil {
		l.o.OnChange(held)
	}
}

func (l *Lease) noteError(err error) {
	l.mu.Lock()
	l.errMsg = err.Error()
	l.mu.Unlock()
}

// Run competes for the lease until ctx ends. Each time it takes the lease
// it runs job (when not nil) with a context that is cancelled when the
// lease is lost or ctx ends, and waits for it to return. A job that returns
// while the lease is held gives the lease up: Run competes again after
// RetryInterval (another process may take it meanwhile); its error is
// logged. With a nil job Run only holds the lease, for callers that ask
// Held. Run returns nil when ctx ends, having released the lease.
func (l *Lease) Run(ctx context.Context, job func(ctx context.Context) error) error {
	log := l.o.Logger.With("lease", l.name)
	for ctx.Err() == nil {
		conn, err := l.connect(ctx)
		if err != nil {
			if ctx.Err() == nil {
				l.noteError(err)
				log.Warn("lease: cannot connect; retrying", "err", err)
			}
			l.sleep(ctx, l.o.RetryInterval)
			continue
		}
		l.session(ctx, conn, job, log)
		_ = conn.Close(context.WithoutCancel(ctx))
	}
	return nil
}

func (l *Lease) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := postgres.ParseConnConfig(l.connStr)
	if err != nil {
		return nil, fmt.Errorf("lease %s: parse database url: %w", l.name, err)
	}
	cfg.RuntimeParams["application_name"] = l.o.Identity
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > 5*time.Second {
		cfg.ConnectTimeout = 5 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("lease %s: connect: %w", l.name, err)
	}
	return conn, nil
}

// session competes for, holds and runs the job under the lease on one
// connection, returning when the connection fails or ctx ends.
func (l *Lease) session(ctx context.Context, conn *pgx.Conn, job func(context.Context) error, log *slog.Logger) {
	for ctx.Err() == nil {
		ok, err := l.try(ctx, conn)
		if err != nil {
			if ctx.Err() == nil {
				l.noteError(err)
				log.Warn("lease: connection failed while competing; reconnecting", "err", err)
				l.sleep(ctx, l.o.RetryInterval)
			}
			return
		}
		if !ok {
			l.sleep(ctx, l.o.RetryInterval)
			continue
		}
		log.Info("lease taken", "identity", l.o.Identity)
		lost := l.hold(ctx, conn, job, log)
		if lost {
			l.sleep(ctx, l.o.RejoinDelay) // let a standby take over first
			return                        // the connection is gone: reconnect
		}
		if ctx.Err() == nil { // the job ended: give the lease up, compete again
			l.sleep(ctx, l.o.RetryInterval)
		}
	}
}

func (l *Lease) try(ctx context.Context, conn *pgx.Conn) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, l.checkTimeout())
	defer cancel()
	var ok bool
	if err := conn.QueryRow(cctx, `SELECT pg_try_advisory_lock($1)`, l.key).Scan(&ok); err != nil {
		return false, fmt.Errorf("lease %s: try lock: %w", l.name, err)
	}
	return ok, nil
}

func (l *Lease) checkTimeout() time.Duration { return max(l.o.CheckInterval, time.Second) }

// hold keeps the lease while the job runs; it reports whether the lease was
// lost (the connection failed) rather than given up.
func (l *Lease) hold(ctx context.Context, conn *pgx.Conn, job func(context.Context) error, log *slog.Logger) (lost bool) {
	l.setHeld(true, false)
	jctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	if job != nil {
		go func() { done <- job(jctx) }()
	}
	t := time.NewTicker(l.o.CheckInterval)
	defer t.Stop()
	finish := func(lost bool) {
		l.setHeld(false, lost)
		stop()
		if job != nil {
			<-done // the job has stopped before anyone else is told it may run here again
		}
	}
	for {
		select {
		case <-ctx.Done():
			l.release(conn, log)
			finish(false)
			return false
		case err := <-done:
			job = nil // already returned
			if err != nil && ctx.Err() == nil {
				l.noteError(err)
				log.Warn("lease: job failed; giving the lease up", "err", err)
			}
			l.release(conn, log)
			finish(false)
			return false
		case <-t.C:
			cctx, cancel := context.WithTimeout(ctx, l.checkTimeout())
			_, err := conn.Exec(cctx, `SELECT 1`)
			cancel()
			if err != nil && ctx.Err() == nil {
				l.noteError(err)
				log.Warn("lease lost: its connection failed", "err", err)
				finish(true)
				return true
			}
		}
	}
}

// release unlocks the lease on a connection that is still good, so a
// standby need not wait for the session to end.
func (l *Lease) release(conn *pgx.Conn, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), l.checkTimeout())
	defer cancel()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, l.key); err != nil {
		log.Debug("lease: unlock failed; the session's end releases it", "err", err)
	}
}

func (l *Lease) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Holder returns the application_name and backend pid of the session that
// holds the lease called name on the database of q, or ok=false when nobody
// holds it. Any connection to the same database will do (a pool's too).
func Holder(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, name string) (identity string, pid int32, ok bool, err error) {
	key := uint64(Key(name))
	err = q.QueryRow(ctx, `SELECT coalesce(a.application_name, ''), l.pid FROM pg_locks l
		LEFT JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1`,
		int64(key>>32), int64(key&0xffffffff)).Scan(&identity, &pid)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, fmt.Errorf("lease %s: holder: %w", name, err)
	}
	return identity, pid, true, nil
}
