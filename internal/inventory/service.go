package inventory

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/postgres"
)

// Cache is the read-through cache the service consults; a nil Cache means
// every read goes to PostgreSQL. Implementations must never let an older
// version replace a newer one.
type Cache interface {
	// Item returns the item from the cache, or load's result on a miss
	// (which it caches). A broken cache falls back to load.
	Item(ctx context.Context, sku string, load func(context.Context) (*Item, error)) (*Item, error)
	// InvalidateItem drops the cached item, refusing later sets of versions
	// older than version.
	InvalidateItem(ctx context.Context, sku string, version int64)
}

// Service is the Inventory service. Every change to stock happens in one
// PostgreSQL transaction with its ledger rows, its events (outbox) and, for
// event reactions, the inbox claim of the event that caused it.
type Service struct {
	pool  *pgxpool.Pool
	store store
	cache Cache
	// reads routes read-only queries to a replica (nil: the primary).
	reads *postgres.Reads
	now   func() time.Time
	// retries counts transactions rerun after a serialization failure or
	// deadlock; with rows locked in SKU order it should stay zero.
	retries atomic.Int64
	metrics *Metrics
	// relayWake is called after a commit that wrote outbox events (nil:
	// the relay finds them by its notification or poll).
	relayWake func()
}

// Option configures a Service.
type Option func(*Service)

// WithCache puts a read-through cache in front of item reads.
func WithCache(c Cache) Option { return func(s *Service) { s.cache = c } }

// WithReads sends the service's read-only queries — item reads on a cache
// miss, lists, reservations — where reads routes them (a streaming replica
// while it keeps up); changes and the reads inside them stay on the
// primary. See loadForRead for the cache.
func WithReads(reads *postgres.Reads) Option { return func(s *Service) { s.reads = reads } }

// WithRelayWake sets what the service calls after a transaction that wrote
// outbox events committed: the relay of this process (Relay.Wake) then
// reads them at once instead of at its next poll.
func WithRelayWake(wake func()) Option { return func(s *Service) { s.relayWake = wake } }

// NewService returns the Inventory service over pool.
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

// TxRetries is how many of the service's transactions were rerun after a
// deadlock or serialization failure since it started.
func (s *Service) TxRetries() int64 { return s.retries.Load() }

// withTx is postgres.WithTx counting the retryable failures it absorbs.
func (s *Service) withTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return postgres.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		err := fn(tx)
		if postgres.IsRetryable(err) {
			s.retries.Add(1)
			s.metrics.txRetries.Inc()
		}
		return err
	})
}

// wakeRelay tells the relay of this process that outbox events committed.
func (s *Service) wakeRelay() {
	if s.relayWake != nil {
		s.relayWake()
	}
}

// invalidate tells the cache that items changed, after their commit.
func (s *Service) invalidate(ctx context.Context, versions map[string]int64) {
	if s.cache == nil {
		return
	}
	for sku, v := range versions {
		s.cache.InvalidateItem(ctx, sku, v)
	}
}

// Get returns an item, from the cache when it holds it.
func (s *Service) Get(ctx context.Context, sku string) (*Item, error) {
	load := func(ctx context.Context) (*Item, error) { return s.loadForRead(ctx, sku) }
	if s.cache == nil {
		return load(ctx)
	}
	return s.cache.Item(ctx, sku, load)
}

// readDB is where the read-only queries of ctx go.
func (s *Service) readDB(ctx context.Context) postgres.Querier {
	if s.reads == nil {
		return s.pool
	}
	return s.reads.Pool(ctx)
}

// loadForRead reads an item for a client's read, from the replica when one
// is in use; it reads the primary instead when the replica does not hold
// the item yet, holds a version older than one the cache knows is
// committed (cache.MinVersion), or cannot be reached.
func (s *Service) loadForRead(ctx context.Context, sku string) (*Item, error) {
	db := s.readDB(ctx)
	it, err := s.store.get(ctx, db, sku, false)
	if !s.reads.IsReplica(db) {
		return it, err
	}
	if errors.Is(err, ErrNotFound) || postgres.IsUnavailable(err) || (err == nil && it.Version < cache.MinVersion(ctx)) {
		return s.store.get(ctx, s.pool, sku, false)
	}
	return it, err
}

// List returns a page of items in SKU order and the next page's cursor
// (from the replica when one is in use).
func (s *Service) List(ctx context.Context, limit int, cursor string) ([]*Item, string, error) {
	return s.store.list(ctx, s.readDB(ctx), limit, cursor)
}

// Reservations returns a page of a SKU's reservations, newest first; an
// unknown SKU is ErrNotFound. They are read from the replica when one is in
// use and holds the SKU, else from the primary.
func (s *Service) Reservations(ctx context.Context, f ReservationFilter) ([]Reservation, string, error) {
	db := s.readDB(ctx)
	if _, err := s.store.get(ctx, db, f.SKU, false); err != nil {
		if !s.reads.IsReplica(db) || !(errors.Is(err, ErrNotFound) || postgres.IsUnavailable(err)) {
			return nil, "", err
		}
		db = s.pool
		if _, err := s.store.get(ctx, db, f.SKU, false); err != nil {
			return nil, "", err
		}
	}
	return s.store.reservations(ctx, db, f)
}

// Set creates the item, or sets its name and on_hand. It reports whether the
// item was created. On_hand below what is reserved is a StockConflictError.
func (s *Service) Set(ctx context.Context, req SetRequest) (*Item, bool, error) {
	if err := req.Validate(); err != nil {
		return nil, false, err
	}
	var (
		out     *Item
		created bool
	)
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		now := s.now()
		it, err := s.store.get(ctx, tx, req.SKU, true)
		if err == ErrNotFound {
			if req.Name == nil {
				return fieldError("name", "is required when creating an item")
			}
			it = &Item{SKU: req.SKU, Name: strings.TrimSpace(*req.Name), OnHand: req.OnHand, Version: 1, CreatedAt: now, UpdatedAt: now}
			ok, err := s.store.insert(ctx, tx, it)
			if err != nil {
				return err
			}
			if !ok { // created meanwhile: rerun as an update
				return errCreatedConcurrently
			}
			out, created = it, true
			return s.store.addLedger(ctx, tx, ledgerEntry{SKU: it.SKU, Delta: it.OnHand, Reason: "item created",
				Actor: req.Actor, ResultingOnHand: it.OnHand, At: now})
		}
		if err != nil {
			return err
		}
		before := it.OnHand
		changed := false
		if req.Name != nil && strings.TrimSpace(*req.Name) != it.Name {
			it.Name, changed = strings.TrimSpace(*req.Name), true
		}
		if req.OnHand != it.OnHand {
			if err := it.SetOnHand(req.OnHand); err != nil {
				return err
			}
			changed = true
		}
		out = it
		if !changed {
			return nil
		}
		it.Version++
		it.UpdatedAt = now
		if err := s.store.save(ctx, tx, it); err != nil {
			return err
		}
		if it.OnHand == before {
			return nil
		}
		return s.store.addLedger(ctx, tx, ledgerEntry{SKU: it.SKU, Delta: it.OnHand - before, Reason: "on_hand set",
			Actor: req.Actor, ResultingOnHand: it.OnHand, At: now})
	})
	if err == errCreatedConcurrently {
		return s.Set(ctx, req)
	}
	if err != nil {
		return nil, false, err
	}
	s.invalidate(ctx, map[string]int64{out.SKU: out.Version})
	return out, created, nil
}

var errCreatedConcurrently = fmt.Errorf("inventory item created concurrently")

// Adjust changes on_hand by req.Delta and records why in the ledger. A
// result below what is reserved is a StockConflictError.
func (s *Service) Adjust(ctx context.Context, req AdjustRequest) (*Item, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var out *Item
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		it, err := s.store.get(ctx, tx, req.SKU, true)
		if err != nil {
			return err
		}
		if err := it.Adjust(req.Delta); err != nil {
			return err
		}
		it.Version++
		it.UpdatedAt = s.now()
		if err := s.store.save(ctx, tx, it); err != nil {
			return err
		}
		out = it
		return s.store.addLedger(ctx, tx, ledgerEntry{SKU: it.SKU, Delta: req.Delta, Reason: strings.TrimSpace(req.Reason),
			Actor: req.Actor, ResultingOnHand: it.OnHand, At: it.UpdatedAt})
	})
	if err != nil {
		return nil, err
	}
	s.invalidate(ctx, map[string]int64{out.SKU: out.Version})
	return out, nil
}
