package order

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/inbox"
	"github.com/trackops/trackops/internal/postgres"
)

// Cache is the read-through cache the service consults; a nil Cache means
// every read goes to PostgreSQL. Implementations must never let an older
// version replace a newer one.
type Cache interface {
	// Order returns the order from the cache, or load's result on a miss
	// (which it caches). A broken cache falls back to load.
	Order(ctx context.Context, id uuid.UUID, load func(context.Context) (*Order, error)) (*Order, error)
	// InvalidateOrder drops the cached order, refusing later sets of
	// versions older than version.
	InvalidateOrder(ctx context.Context, id uuid.UUID, version int)
}

// Service is the Order service: every change is written with its event in
// one transaction (outbox strategy), or with the rows its event is built
// from (cdc strategy, see ChangeStream).
type Service struct {
	pool  *pgxpool.Pool
	store Store
	cache Cache
	// reads routes read-only queries to a replica (nil: the primary).
	reads *postgres.Reads
	// changeStream is set under the cdc strategy: the change stream, not
	// the outbox, carries the order events.
	changeStream bool
	// relayWake is called after a commit that wrote outbox events (nil:
	// the relay finds them by its notification or poll).
	relayWake func()
	// recent are the orders this process changed whose cache refresh
	// (RefreshCached, once the change's event is in Kafka) has not run
	// yet: reads of them go to PostgreSQL, so a read that follows a write
	// here never returns an older version.
	recent  recentWrites
	now     func() time.Time
	metrics *Metrics
}

// Option configures a Service.
type Option func(*Service)

// WithCache puts a read-through cache in front of order reads.
func WithCache(c Cache) Option { return func(s *Service) { s.cache = c } }

// WithReads sends the service's read-only queries — order reads on a cache
// miss, lists, history — where reads routes them (a streaming replica
// while it keeps up). Writes, reads inside transactions, the idempotency
// replay and the reads of orders this process just changed stay on the
// primary; see loadForRead for the cache.
func WithReads(reads *postgres.Reads) Option { return func(s *Service) { s.reads = reads } }

// WithChangeStream is the cdc strategy: the service writes no order events
// to the outbox — ChangeStream builds them from the committed rows and
// refreshes the cache once per change through RefreshCached.
func WithChangeStream() Option { return func(s *Service) { s.changeStream = true } }

// WithRelayWake sets what the service calls after a transaction that wrote
// outbox events committed: the relay of this process (Relay.Wake) then
// reads them at once instead of at its next poll.
func WithRelayWake(wake func()) Option { return func(s *Service) { s.relayWake = wake } }

// NewService returns the Order service over pool.
func NewService(pool *pgxpool.Pool, opts ...Option) *Service {
	s := &Service{pool: pool, now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }}
	for _, o := range opts {
		o(s)
	}
	if s.metrics == nil {
		s.metrics = NewMetrics(nil)
	}
	return s
}

// CreateRequest is a request to place an order, possibly retried under an
// idempotency key.
type CreateRequest struct {
	Order NewOrder
	// IdempotencyKey, when set, makes retries of the same request return
	// the first response.
	IdempotencyKey string
	// Scope namespaces idempotency keys, normally the calling principal.
	Scope string
	// Fingerprint identifies the request body for idempotency checks.
	Fingerprint []byte
	Actor       string
	// Render builds the response body stored for idempotent replays.
	Render func(*Order) ([]byte, error)
}

// CreateResult is the outcome of Create.
type CreateResult struct {
	Order *Order
	// Replayed is true when an earlier request with the same idempotency
	// key created the order; Body is then that request's response.
	Replayed bool
	Body     []byte
}

// Create places an order, writing it, its history and its ORDER_CREATED
// event in one transaction.
func (s *Service) Create(ctx context.Context, req CreateRequest) (CreateResult, error) {
	o, err := Place(req.Order, s.now())
	if err != nil {
		return CreateResult{}, err
	}
	var body []byte
	if req.Render != nil {
		if body, err = req.Render(o); err != nil {
			return CreateResult{}, err
		}
	}
	hash := ""
	if req.IdempotencyKey != "" {
		sum := sha256.Sum256(req.Fingerprint)
		hash = hex.EncodeToString(sum[:])
	}
	conflict := false
	err = postgres.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		conflict = false
		if req.IdempotencyKey != "" {
			// A concurrent request with the same key waits here on the
			// unique index until the first commits, then sees a conflict.
			tag, err := tx.Exec(ctx, `INSERT INTO idempotency_keys (scope, key, request_hash, order_id, response_status, response_body)
				VALUES ($1, $2, $3, $4, 201, $5) ON CONFLICT DO NOTHING`, req.Scope, req.IdempotencyKey, hash, o.ID, jsonOrNull(body))
			if err != nil {
				return fmt.Errorf("record idempotency key: %w", err)
			}
			if tag.RowsAffected() == 0 {
				conflict = true
				return nil
			}
		}
		if s.changeStream {
			return s.store.Insert(ctx, tx, o, req.Actor)
		}
		ev, err := CreatedEvent(ctx, o)
		if err != nil {
			return err
		}
		return s.store.Insert(ctx, tx, o, req.Actor, ev)
	})
	if err != nil {
		return CreateResult{}, err
	}
	if conflict {
		return s.replay(ctx, req.Scope, req.IdempotencyKey, hash)
	}
	if !s.changeStream {
		s.wakeRelay()
	}
	return CreateResult{Order: o, Body: body}, nil
}

func jsonOrNull(b []byte) []byte {
	if len(b) == 0 {
		return []byte("null")
	}
	return b
}

func (s *Service) replay(ctx context.Context, scope, key, hash string) (CreateResult, error) {
	var storedHash string
	var orderID uuid.UUID
	var body []byte
	err := s.pool.QueryRow(ctx, `SELECT request_hash, order_id, response_body FROM idempotency_keys WHERE scope = $1 AND key = $2`,
		scope, key).Scan(&storedHash, &orderID, &body)
	if err != nil {
		return CreateResult{}, fmt.Errorf("read idempotency key: %w", err)
	}
	if storedHash != hash {
		return CreateResult{}, ErrIdempotencyConflict
	}
	o, err := s.store.Get(ctx, s.pool, orderID, false)
	if err != nil {
		return CreateResult{}, err
	}
	return CreateResult{Order: o, Replayed: true, Body: body}, nil
}

// Get returns an order, from the cache when it holds it.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (*Order, error) {
	if s.cache == nil {
		return s.loadForRead(ctx, id)
	}
	if s.recent.pending(id) {
		// Written here moments ago and the change stream has not refreshed
		// the cache yet: the cache (or a load already in flight for it)
		// may still hold the older version.
		return s.Load(ctx, id)
	}
	return s.cache.Order(ctx, id, s.loadForReadFunc(id))
}

// readDB is where the read-only queries of ctx go.
func (s *Service) readDB(ctx context.Context) postgres.Querier {
	if s.reads == nil {
		return s.pool
	}
	return s.reads.Pool(ctx)
}

func (s *Service) loadForReadFunc(id uuid.UUID) func(context.Context) (*Order, error) {
	return func(ctx context.Context) (*Order, error) { return s.loadForRead(ctx, id) }
}

// loadForRead reads an order for a client's read, from the replica when
// one is in use. It reads the primary instead when the replica does not
// hold the order yet (created moments ago), holds a version older than one
// the cache knows is committed (cache.MinVersion: the miss found that
// version's invalidation tombstone, which also refuses to store the older
// one), or cannot be reached.
func (s *Service) loadForRead(ctx context.Context, id uuid.UUID) (*Order, error) {
	db := s.readDB(ctx)
	o, err := s.store.Get(ctx, db, id, false)
	if !s.reads.IsReplica(db) {
		return o, err
	}
	if errors.Is(err, ErrNotFound) || postgres.IsUnavailable(err) || (err == nil && int64(o.Version) < cache.MinVersion(ctx)) {
		return s.store.Get(ctx, s.pool, id, false)
	}
	return o, err
}

// CacheGroup is the Kafka consumer group that refreshes the order cache
// under the outbox strategy: it runs RefreshFromEvent on CacheTopics, in
// every process with the orders role. (Under the cdc strategy the change
// stream refreshes the cache instead.)
const CacheGroup = "trackops-cache"

// CacheTopics are the events whose order the cache refresh reloads: every
// change of an existing order. A new order has nothing cached to refresh.
var CacheTopics = []string{events.OrderStatusUpdated, events.OrderCancelled}

// RefreshFromEvent is the order cache's events.Handler under the outbox
// strategy: it refreshes the cached order an order event is about, at the
// event's version (RefreshCached) — the one refresh of that change, which
// also covers a writer that died right after its commit. An event that
// names no order is malformed.
func (s *Service) RefreshFromEvent(ctx context.Context, env events.Envelope) error {
	var data struct {
		OrderID string `json:"order_id"`
		Version int    `json:"version"`
	}
	if err := env.DecodeData(&data); err != nil {
		return err
	}
	id, err := uuid.Parse(data.OrderID)
	if err != nil {
		return fmt.Errorf("%w: %s %s: order_id %q is not a UUID", events.ErrMalformed, env.Type, env.ID, data.OrderID)
	}
	s.RefreshCached(ctx, id, data.Version)
	return nil
}

// RefreshCached invalidates the cached order at version and warms it with
// the committed row, so the next read is a hit on fresh data. It is the
// only place the order cache is invalidated: the change stream (cdc
// strategy) or the cache consumer (outbox strategy, RefreshFromEvent) calls
// it once per change, after Kafka holds the events. The change stream can
// report a commit a moment before PostgreSQL shows it: a warming read that
// finds the older row then reads again (cache.Versioned.GetOrLoad), and no
// reader is handed the older row.
func (s *Service) RefreshCached(ctx context.Context, id uuid.UUID, version int) {
	if s.cache == nil {
		s.recent.settled(id, version)
		return
	}
	s.cache.InvalidateOrder(ctx, id, version)
	// Only now may reads of this version trust the cache again (a failed
	// invalidation keeps the cache degraded until it is replayed).
	s.recent.settled(id, version)
	_, _ = s.Get(ctx, id)
}

// Load reads an order from the primary, bypassing the cache.
func (s *Service) Load(ctx context.Context, id uuid.UUID) (*Order, error) {
	return s.store.Get(ctx, s.pool, id, false)
}

// List returns a page of orders (from the replica when one is in use).
func (s *Service) List(ctx context.Context, f ListFilter) ([]*Order, string, error) {
	return s.store.List(ctx, s.readDB(ctx), f)
}

// History returns an order's status changes (from the replica when one is
// in use and holds the order; else from the primary).
func (s *Service) History(ctx context.Context, id uuid.UUID) ([]HistoryEntry, error) {
	db := s.readDB(ctx)
	if _, err := s.store.Get(ctx, db, id, false); err != nil {
		if !s.reads.IsReplica(db) || !(errors.Is(err, ErrNotFound) || postgres.IsUnavailable(err)) {
			return nil, err
		}
		db = s.pool
		if _, err := s.store.Get(ctx, db, id, false); err != nil {
			return nil, err
		}
	}
	return s.store.History(ctx, db, id)
}

// ChangeStatus moves an order to status to as a client asked
// (ClientMayRequest): PENDING → CONFIRMED is refused (ErrSagaOnly), and a
// move past CONFIRMED needs the order's stock held (ErrNoReservation). When
// expectVersion is not nil the order must be at that version (optimistic
// concurrency, If-Match).
func (s *Service) ChangeStatus(ctx context.Context, id uuid.UUID, to Status, reason, actor string, expectVersion *int) (*Order, error) {
	return s.update(ctx, id, nil, func(ctx context.Context, tx pgx.Tx, o *Order) error {
		if expectVersion != nil && o.Version != *expectVersion {
			return fmt.Errorf("%w: order is at version %d, If-Match says %d", ErrVersionMismatch, o.Version, *expectVersion)
		}
		if !CanTransition(o.Status, to) {
			return fmt.Errorf("%w: %s -> %s", ErrIllegalTransition, o.Status, to)
		}
		hold := HoldNone
		if to != StatusCancelled && to != StatusConfirmed {
			// Read in the order's transaction, under its row lock: a hold
			// is only ever given up by cancelling, which needs that lock.
			var err error
			if hold, err = s.store.Hold(ctx, tx, id); err != nil {
				return err
			}
		}
		_, err := o.ClientTransition(to, hold, reason, actor, s.now())
		return err
	})
}

// Hold reports the stock an order holds, as inventory decided it.
func (s *Service) Hold(ctx context.Context, id uuid.UUID) (Hold, error) {
	return s.store.Hold(ctx, s.pool, id)
}

// Cancel cancels an order.
func (s *Service) Cancel(ctx context.Context, id uuid.UUID, reason, actor string) (*Order, error) {
	return s.ChangeStatus(ctx, id, StatusCancelled, reason, actor, nil)
}

// Now is the service's clock, for callers that make transitions in Update.
func (s *Service) Now() time.Time { return s.now() }

// Update runs fn on the order, locked, inside a transaction. The transitions
// fn makes (Order.Transition) are saved with their history rows and events
// in the same transaction; fn may also leave the order unchanged.
func (s *Service) Update(ctx context.Context, id uuid.UUID, fn func(o *Order) error) (*Order, error) {
	return s.UpdateAfter(ctx, id, nil, fn)
}

// Claim names an event a consumer acts on at most once (the inbox,
// processed_events): an update made for it claims the event in the same
// transaction, so the claim commits or rolls back with the order's change.
type Claim struct {
	Consumer string
	EventID  string
}

// UpdateAfter is Update made for an event: claim is claimed in the same
// transaction, pipelined with the order's read in one round trip. When the
// event was claimed before, UpdateAfter changes nothing and returns
// (nil, nil). A nil claim always proceeds.
func (s *Service) UpdateAfter(ctx context.Context, id uuid.UUID, claim *Claim, fn func(o *Order) error) (*Order, error) {
	return s.update(ctx, id, claim, func(_ context.Context, _ pgx.Tx, o *Order) error { return fn(o) })
}

// update is UpdateAfter whose fn also sees the transaction, to read what the
// change depends on under the order's row lock.
func (s *Service) update(ctx context.Context, id uuid.UUID, claim *Claim, fn func(ctx context.Context, tx pgx.Tx, o *Order) error) (*Order, error) {
	var (
		out   *Order
		wrote bool // outbox events
	)
	err := postgres.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		out, wrote = nil, false
		var o *Order
		b := &pgx.Batch{}
		if claim != nil {
			inbox.QueueClaim(ctx, b, claim.Consumer, claim.EventID)
		}
		s.store.queueGet(b, id, true, &o)
		br := tx.SendBatch(ctx, b)
		if claim != nil {
			first, err := inbox.Claimed(br)
			if err != nil || !first {
				// A duplicate: the order's row lock, if taken, goes with
				// the transaction.
				_ = br.Close()
				return err
			}
		}
		if err := br.Close(); err != nil {
			return getError(id, err)
		}
		if err := fn(ctx, tx, o); err != nil {
			return err
		}
		changes := o.Changes()
		if len(changes) > 0 {
			var evs []events.Event
			if !s.changeStream {
				for _, h := range changes {
					ev, err := TransitionEvent(ctx, o, h)
					if err != nil {
						return err
					}
					evs = append(evs, ev)
				}
			}
			if err := s.store.SaveTransitions(ctx, tx, o, changes, evs...); err != nil {
				return err
			}
			wrote = len(evs) > 0
		}
		if s.cache != nil && len(changes) > 0 {
			// The cache is not touched at commit: RefreshCached refreshes
			// it once, when the change's event has reached Kafka, and until
			// then this process reads the order from PostgreSQL. Marked
			// before the commit: the refresh can run as soon as the commit
			// is visible, before this goroutine runs again, and a mark made
			// after it would then wait for a refresh that already happened.
			// A commit that fails leaves the mark: reads of this order go
			// to PostgreSQL until the mark expires, which is only slower.
			s.recent.wrote(id, o.Version)
		}
		o.changes = nil
		out = o
		return nil
	})
	if err != nil || out == nil {
		return nil, err
	}
	if wrote {
		s.wakeRelay()
	}
	return out, nil
}

// wakeRelay tells the relay of this process that outbox events committed.
func (s *Service) wakeRelay() {
	if s.relayWake != nil {
		s.relayWake()
	}
}

// recentWrites remembers, for a short while, the versions this process
// commits until their event-driven refresh (RefreshCached) has run. It is
// bounded: past recentWritesMax entries the expired ones go, and if that is
// not enough, all of them (a later read may then briefly see an older cached
// version, as another process would).
type recentWrites struct {
	mu sync.Mutex
	m  map[uuid.UUID]recentWrite
}

type recentWrite struct {
	version int
	at      time.Time
}

const (
	recentWritesMax = 10_000
	// recentWriteTTL outlasts the change stream's usual delay by far; a
	// stream lagging longer than this serves what the cache holds.
	recentWriteTTL = time.Minute
)

func (r *recentWrites) wrote(id uuid.UUID, version int) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[uuid.UUID]recentWrite{}
	}
	if len(r.m) >= recentWritesMax {
		for k, w := range r.m {
			if now.Sub(w.at) > recentWriteTTL {
				delete(r.m, k)
			}
		}
		if len(r.m) >= recentWritesMax {
			clear(r.m)
		}
	}
	if w, ok := r.m[id]; !ok || w.version < version {
		r.m[id] = recentWrite{version: version, at: now}
	}
}

// pending reports whether a version of id written here awaits its refresh.
func (r *recentWrites) pending(id uuid.UUID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.m[id]
	if ok && time.Since(w.at) > recentWriteTTL {
		delete(r.m, id)
		return false
	}
	return ok
}

// settled forgets id once the cache has been refreshed at version.
func (r *recentWrites) settled(id uuid.UUID, version int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.m[id]; ok && w.version <= version {
		delete(r.m, id)
	}
}
