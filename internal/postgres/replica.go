package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Reads routes read-only queries to a streaming replica while it keeps up,
// and to the primary otherwise. It samples the replica every
// SampleInterval (Run): the replica is used only while it answers, is in
// recovery with its WAL receiver streaming (a replica cut off from its
// primary cannot tell how far behind it is), and has replayed what it
// received or is less than MaxLag behind its last replayed commit. Until
// the first good sample, and whenever a sample fails, reads go to the
// primary: a replica being down or lagging costs the primary load, never
// errors or stale answers beyond MaxLag.
//
// A request marked with WithPrimaryReads (a client that has just written,
// see cache.RecentWriters) reads from the primary, so it sees its own
// writes. Reads is a Querier itself, picking the pool per call, for
// read-only code that takes a Querier.
type Reads struct {
	primary, replica *pgxpool.Pool
	maxLag           time.Duration
	interval         time.Duration
	log              *slog.Logger

	usable atomic.Bool
	mu     sync.Mutex
	status ReadsStatus
}

// ReadsStatus is the replica as the last sample saw it.
type ReadsStatus struct {
	// Usable is true while reads go to the replica.
	Usable bool `json:"usable"`
	// LagSeconds is the replica's replay lag (0 when it has replayed all
	// it received).
	LagSeconds float64 `json:"lagSeconds"`
	// MaxLagSeconds is the configured bound.
	MaxLagSeconds float64 `json:"maxLagSeconds"`
	// InRecovery and Streaming describe the replica's replication.
	InRecovery bool `json:"inRecovery"`
	Streaming  bool `json:"streaming"`
	// SampledAt is when the last sample was taken; Error its failure.
	SampledAt time.Time `json:"sampledAt,omitzero"`
	Error     string    `json:"error,omitempty"`
}

// ConnectReplica opens a pool to a read replica without waiting for it to
// answer: a replica that is down at start must not stop the process (Reads
// sends reads to the primary until it answers).
func ConnectReplica(url string, opts ...Option) (*pgxpool.Pool, error) {
	cfg, err := poolConfig(url, opts)
	if err != nil {
		return nil, fmt.Errorf("TRACKOPS_DATABASE_READ_URL is not a PostgreSQL URL: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("open read replica pool: %w", err)
	}
	return pool, nil
}

// SampleInterval is how often Run samples the replica's lag.
const SampleInterval = time.Second

// NewReads routes reads to replica within maxLag, else to primary.
func NewReads(primary, replica *pgxpool.Pool, maxLag time.Duration, log *slog.Logger) *Reads {
	if log == nil {
		log = slog.Default()
	}
	r := &Reads{primary: primary, replica: replica, maxLag: maxLag, interval: SampleInterval, log: log}
	r.status.MaxLagSeconds = maxLag.Seconds()
	return r
}

type primaryReadsKey struct{}

// WithPrimaryReads marks ctx so that Reads sends its reads to the primary.
func WithPrimaryReads(ctx context.Context) context.Context {
	return context.WithValue(ctx, primaryReadsKey{}, true)
}

// PrimaryReads reports whether ctx was marked with WithPrimaryReads.
func PrimaryReads(ctx context.Context) bool {
	v, _ := ctx.Value(primaryReadsKey{}).(bool)
	return v
}

// Pool is where a read-only query for ctx goes now.
func (r *Reads) Pool(ctx context.Context) *pgxpool.Pool {
	if r == nil || r.replica == nil || !r.usable.Load() || PrimaryReads(ctx) {
		if r == nil {
			return nil
		}
		return r.primary
	}
	return r.replica
}

// Primary is the primary's pool.
func (r *Reads) Primary() *pgxpool.Pool { return r.primary }

// IsReplica reports whether q is the replica's pool.
func (r *Reads) IsReplica(q Querier) bool {
	p, ok := q.(*pgxpool.Pool)
	return r != nil && ok && p != nil && p == r.replica
}

// Status is the replica as the last sample saw it.
func (r *Reads) Status() ReadsStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Run samples the replica until ctx ends.
func (r *Reads) Run(ctx context.Context) error {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		r.Sample(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sample reads the replica's state once and decides where reads go.
func (r *Reads) Sample(ctx context.Context) {
	st := ReadsStatus{MaxLagSeconds: r.maxLag.Seconds(), SampledAt: time.Now().UTC()}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var lagSecs float64
	err := r.replica.QueryRow(sctx, `SELECT pg_is_in_recovery(),
		coalesce((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false),
		CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
		     ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)::float8 END`).
		Scan(&st.InRecovery, &st.Streaming, &lagSecs)
	usable := false
	switch {
	case err != nil:
		st.Error = fmt.Sprintf("sample the replica: %v", err)
	case !st.InRecovery:
		// Not a replica at all (a primary, or one promoted): its data is
		// current, so reads may go there.
		usable = true
	case !st.Streaming:
		st.Error = "the replica's WAL receiver is not streaming: how far behind it is cannot be known"
	case time.Duration(lagSecs*float64(time.Second)) > r.maxLag:
		st.Error = fmt.Sprintf("the replica is %.1fs behind, more than %s", lagSecs, r.maxLag)
	default:
		usable = true
	}
	st.LagSeconds, st.Usable = lagSecs, usable
	if was := r.usable.Swap(usable); was != usable {
		if usable {
			r.log.Info("read replica in use", "lag_seconds", lagSecs)
		} else {
			r.log.Warn("read replica not used; reads go to the primary", "reason", st.Error)
		}
	}
	r.mu.Lock()
	r.status = st
	r.mu.Unlock()
}

// Exec implements Querier on the pool Pool picks (use Reads for reads only).
func (r *Reads) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return r.Pool(ctx).Exec(ctx, sql, args...)
}

// Query implements Querier on the pool Pool picks.
func (r *Reads) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return r.Pool(ctx).Query(ctx, sql, args...)
}

// QueryRow implements Querier on the pool Pool picks.
func (r *Reads) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return r.Pool(ctx).QueryRow(ctx, sql, args...)
}

// SendBatch implements Querier on the pool Pool picks.
func (r *Reads) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return r.Pool(ctx).SendBatch(ctx, b)
}

// CopyFrom implements Querier on the pool Pool picks.
func (r *Reads) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	return r.Pool(ctx).CopyFrom(ctx, table, columns, src)
}
