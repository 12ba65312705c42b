package order_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trackops/trackops/internal/cache/cachetest"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestCacheConsumerRefreshesTheCacheOncePerChange: under the outbox
// strategy, as under the cdc one, the order service does not touch the
// cache at commit; the cache consumer (order.CacheGroup running
// RefreshFromEvent) invalidates and warms it once per change, when the
// change's event arrives from Kafka. A read that follows a write in the
// same process still sees the write while the refresh is on its way.
func TestCacheConsumerRefreshesTheCacheOncePerChange(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ensureEventTopics(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	counted := &countingCache{Cache: order.NewRedisCache(cachetest.New(t)), calls: map[string]int{}}
	svc := order.NewService(db.Pool, order.WithCache(counted))

	producer := kafkatest.NewProducer(t, b)
	relay := outbox.NewRelay(db.Pool, producer, outbox.RelayConfig{PollInterval: 50 * time.Millisecond, Logger: quiet})
	refreshed := make(chan events.Envelope, 16)
	consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{Options: kafkatest.Options(b), Group: order.CacheGroup,
		Topics: order.CacheTopics, Logger: quiet,
		Events: func(ctx context.Context, ev events.Envelope) error {
			err := svc.RefreshFromEvent(ctx, ev)
			refreshed <- ev
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { _ = relay.Run(ctx); done <- struct{}{} }()
	go func() { _ = consumer.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })

	res, err := svc.Create(ctx, order.CreateRequest{Actor: "api:alice", Order: order.NewOrder{CustomerID: "cust-1",
		Items: []order.NewItem{{SKU: "SKU-1", Quantity: 1, UnitPrice: 100}}}})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Order.ID
	if o, err := svc.Get(ctx, id); err != nil || o.Version != 1 {
		t.Fatalf("cached order: %v %+v", err, o)
	}
	changes := shipReadingBack(t, svc, id)
	// Every change's event has been handled by the cache consumer once
	// these arrive; each version was then invalidated exactly once.
	deadline := time.After(30 * time.Second) // a deadlock guard, not a speed assertion
	for range changes {
		select {
		case <-refreshed:
		case <-deadline:
			t.Fatal("the cache consumer did not receive every change's event")
		}
	}
	for v := 2; v <= 4; v++ {
		if n := counted.count(id, v); n != 1 {
			t.Errorf("version %d invalidated %d times, want once", v, n)
		}
	}
	if o, err := svc.Get(ctx, id); err != nil || o.Version != 4 || o.Status != order.StatusShipped {
		t.Fatalf("final read: %v %+v", err, o)
	}
}

// TestARefreshRightAfterTheCommitSettlesTheWrite: a change's refresh can
// run as soon as its commit is visible, before the writer's goroutine has
// returned from the update (on a busy machine it may not run again for
// milliseconds). The writer must not then wait for a refresh that already
// happened: its next read of the order is a cache read again, not a read
// of PostgreSQL for as long as a pending write is remembered.
func TestARefreshRightAfterTheCommitSettlesTheWrite(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	hook := &commitHook{}
	cfg.ConnConfig.Tracer = hook
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	reads := &cacheReads{Cache: order.NewRedisCache(cachetest.New(t))}
	svc := order.NewService(pool, order.WithCache(reads))

	res, err := svc.Create(ctx, order.CreateRequest{Actor: "api:alice", Order: order.NewOrder{CustomerID: "cust-1",
		Items: []order.NewItem{{SKU: "SKU-1", Quantity: 1, UnitPrice: 100}}}})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Order.ID
	refreshed := false
	hook.afterCommit.Store(new(func() {
		svc.RefreshCached(ctx, id, 2) // what the cache consumer does on the change's event
		refreshed = true
	}))
	if _, err := svc.Update(ctx, id, func(o *order.Order) error {
		_, err := o.Transition(order.StatusConfirmed, "", "api:ops", svc.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	hook.afterCommit.Store(nil)
	if !refreshed {
		t.Fatal("the refresh did not run between the commit and the update's return")
	}
	before := reads.count.Load()
	if o, err := svc.Get(ctx, id); err != nil || o.Version != 2 || o.Status != order.StatusConfirmed {
		t.Fatalf("read after the refresh: %v %+v", err, o)
	}
	if reads.count.Load() != before+1 {
		t.Fatal("the order is read from PostgreSQL, bypassing the cache, although its write was refreshed")
	}
}

// commitHook runs afterCommit, when set, once a COMMIT has succeeded and
// before the transaction's Commit returns to its caller.
type commitHook struct {
	afterCommit atomic.Pointer[func()]
}

func (h *commitHook) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (h *commitHook) TraceQueryEnd(_ context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	if f := h.afterCommit.Load(); f != nil && data.Err == nil && data.CommandTag.String() == "COMMIT" {
		(*f)()
	}
}

// cacheReads counts the reads that go through the order cache.
type cacheReads struct {
	order.Cache
	count atomic.Int64
}

func (c *cacheReads) Order(ctx context.Context, id uuid.UUID, load func(context.Context) (*order.Order, error)) (*order.Order, error) {
	c.count.Add(1)
	return c.Cache.Order(ctx, id, load)
}
