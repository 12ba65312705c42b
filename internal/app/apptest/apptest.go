// Package apptest runs TrackOps' event-driven core for one test: a private
// PostgreSQL database (postgrestest), a private Kafka-protocol broker
// (kafkatest), the stores on Redis under a key prefix of the test's own
// (cachetest), the real outbox relay, the real inventory consumer and the
// real order saga, each on the real kafka.Consumer runner with short
// back-offs. The parts are built with the constructors and options
// internal/app uses — the order and inventory services with their Redis
// caches, as in production, and metrics on a registry of the platform's
// own — so what a test sees is what a process runs. Orders placed through Platform.Orders travel the whole loop:
// outbox → relay → ORDER_CREATED → inventory → outbox → relay →
// INVENTORY_RESERVED / _FAILED → saga → CONFIRMED / CANCELLED.
//
//	p := apptest.Start(t)
//	p.SetStock(t, "SKU-1", 10)
//	o := p.PlaceOrder(t, order.NewItem{SKU: "SKU-1", Quantity: 2, UnitPrice: 100})
//	p.WaitForStatus(t, o.ID, order.StatusConfirmed)
//
// Everything stops, and the database and broker are dropped, when the test
// ends.
package apptest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/cache/cachetest"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/inventory"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// Retry is the consumers' back-off in tests: the seed's three attempts, in
// milliseconds instead of seconds.
var Retry = kafka.RetryPolicy{Attempts: 3, Initial: 10 * time.Millisecond, Multiplier: 2, Max: 50 * time.Millisecond}

// DefaultWaitTimeout bounds how long the Wait helpers wait for the loop to
// settle unless Options.WaitTimeout says otherwise; it is a deadlock guard,
// not a speed assertion.
const DefaultWaitTimeout = 60 * time.Second

// Platform is the running core of one test.
type Platform struct {
	DB     *postgrestest.Database
	Broker *kafka.Embedded
	// Kafka are client options for the broker.
	Kafka     kafka.Options
	Orders    *order.Service
	Inventory *inventory.Service
	// Producer publishes straight to the broker (e.g. poison records).
	Producer *kgo.Client
	// Handler serves the order and inventory routes without authentication
	// (every request runs as an anonymous admin).
	Handler http.Handler
	// Log receives the components' logs (warnings and up, on stderr).
	Log *slog.Logger
	// Stores are the Redis stores the services cache in.
	Stores *cache.Stores
	// Registry holds the components' metrics.
	Registry *prometheus.Registry

	waitTimeout time.Duration
	kafkaM      *kafka.Metrics
	outboxM     *outbox.Metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Options choose what Start runs.
type Options struct {
	// NoConsumers starts the relay only; call StartInventory and StartSaga
	// yourself (e.g. to build a backlog first).
	NoConsumers bool
	// NoRelay leaves the outbox unpublished until StartRelay.
	NoRelay bool
	// WaitTimeout bounds the Wait helpers (default DefaultWaitTimeout):
	// benchmarks that queue on a slow machine give it more.
	WaitTimeout time.Duration
}

// Start brings up the platform for t.
func Start(t testing.TB, opts ...Options) *Platform {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.WaitTimeout <= 0 {
		o.WaitTimeout = DefaultWaitTimeout
	}
	db := postgrestest.New(t)
	broker := kafkatest.New(t)
	stores := cachetest.New(t)
	reg := prometheus.NewRegistry()
	p := &Platform{
		DB:     db,
		Broker: broker,
		Kafka:  kafkatest.Options(broker),
		Orders: order.NewService(db.Pool, order.WithCache(order.NewRedisCache(stores)),
			order.WithMetrics(order.NewMetrics(reg))),
		Inventory: inventory.NewService(db.Pool, inventory.WithCache(inventory.NewRedisCache(stores)),
			inventory.WithMetrics(inventory.NewMetrics(reg))),
		Log:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Stores:      stores,
		Registry:    reg,
		waitTimeout: o.WaitTimeout,
		kafkaM:      kafka.NewMetrics(reg),
		outboxM:     outbox.NewMetrics(reg),
	}
	p.Kafka.Metrics = p.kafkaM
	var err error
	if p.Producer, err = kafka.NewProducer(p.Kafka); err != nil {
		t.Fatalf("apptest: %v", err)
	}
	t.Cleanup(p.Producer.Close)
	topics := append([]string{}, events.AllTypes...)
	for _, tp := range events.AllTypes {
		topics = append(topics, tp+events.DLQSuffix)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, p.Producer, 3, topics...); err != nil {
		t.Fatalf("apptest: %v", err)
	}
	routes := append(order.NewHandlers(p.Orders).Routes(), inventory.NewHandlers(p.Inventory).Routes()...)
	p.Handler = httpapi.NewRouter(httpapi.RouterConfig{Logger: p.Log, Metrics: httpapi.NewMetrics(reg)}, routes)

	p.ctx, p.cancel = context.WithCancel(context.Background())
	// Registered after the database's and broker's cleanups, so it runs
	// first: every worker has stopped before they go.
	t.Cleanup(func() { p.cancel(); p.wg.Wait() })
	if !o.NoRelay {
		p.StartRelay(t)
	}
	if !o.NoConsumers {
		p.StartInventory(t, inventory.ConsumerGroup, inventory.ConsumerGroup)
		p.StartSaga(t, order.SagaGroup, order.SagaGroup)
	}
	return p
}

// StartRelay runs the outbox relay until the test ends.
func (p *Platform) StartRelay(t testing.TB) {
	t.Helper()
	relay := outbox.NewRelay(p.DB.Pool, p.Producer, outbox.RelayConfig{
		PollInterval: 50 * time.Millisecond, RetryInitial: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		Workers: 2, Metrics: p.outboxM, Logger: p.Log,
	})
	p.run(func(ctx context.Context) error { return relay.Run(ctx) })
}

// StartInventory runs an inventory consumer in group, claiming events in
// the inbox under inboxName, until the test ends or the returned stop is
// called.
func (p *Platform) StartInventory(t testing.TB, group, inboxName string) (stop func()) {
	t.Helper()
	return p.StartConsumer(t, group, inventory.ConsumedTopics, p.Inventory.Handler(inboxName))
}

// StartSaga runs an order saga consumer in group, claiming events in the
// inbox under inboxName.
func (p *Platform) StartSaga(t testing.TB, group, inboxName string) (stop func()) {
	t.Helper()
	return p.StartConsumer(t, group, order.SagaTopics, order.NewSaga(p.Orders).Handler(inboxName))
}

// StartConsumer runs handler over the events of topics in group on the
// real consumer runner with the test back-off. stop ends it and waits until
// it left.
func (p *Platform) StartConsumer(t testing.TB, group string, topics []string, handler events.Handler) (stop func()) {
	t.Helper()
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Options: p.Kafka, Group: group, Topics: topics, Events: handler, Retry: Retry, Logger: p.Log,
	})
	if err != nil {
		t.Fatalf("apptest: %v", err)
	}
	ctx, cancel := context.WithCancel(p.ctx)
	done := make(chan struct{})
	p.wg.Go(func() {
		defer close(done)
		if err := c.Run(ctx); err != nil {
			p.Log.Error("consumer stopped", "group", group, "err", err)
		}
	})
	return func() { cancel(); <-done }
}

func (p *Platform) run(fn func(ctx context.Context) error) {
	p.wg.Go(func() {
		if err := fn(p.ctx); err != nil && p.ctx.Err() == nil {
			p.Log.Error("worker stopped", "err", err)
		}
	})
}

// SetStock creates or sets a SKU's on_hand.
func (p *Platform) SetStock(t testing.TB, sku string, onHand int64) *inventory.Item {
	t.Helper()
	name := "item " + sku
	it, _, err := p.Inventory.Set(context.Background(), inventory.SetRequest{SKU: sku, Name: &name, OnHand: onHand, Actor: "test"})
	if err != nil {
		t.Fatalf("apptest: set stock of %s: %v", sku, err)
	}
	return it
}

// PlaceOrder creates an order with the given lines.
func (p *Platform) PlaceOrder(t testing.TB, items ...order.NewItem) *order.Order {
	t.Helper()
	o, err := p.PlaceOrderErr(context.Background(), items...)
	if err != nil {
		t.Fatalf("apptest: place order: %v", err)
	}
	return o
}

// PlaceOrderErr is PlaceOrder for goroutines, which must not call t.Fatal.
func (p *Platform) PlaceOrderErr(ctx context.Context, items ...order.NewItem) (*order.Order, error) {
	res, err := p.Orders.Create(ctx, order.CreateRequest{
		Order: order.NewOrder{CustomerID: "customer-" + uuid.NewString()[:8], Items: items}, Actor: "test",
	})
	if err != nil {
		return nil, err
	}
	return res.Order, nil
}

// WaitTimeout is how long the Wait helpers wait (Options.WaitTimeout).
func (p *Platform) WaitTimeout() time.Duration { return p.waitTimeout }

// WaitFor polls cond until it holds, failing the test after WaitTimeout.
func (p *Platform) WaitFor(t testing.TB, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), p.waitTimeout)
	defer cancel()
	for {
		ok, err := cond(ctx)
		if err != nil && ctx.Err() == nil {
			t.Fatalf("apptest: waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("apptest: %s did not happen within %s", what, p.waitTimeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// WaitForStatus waits until the order reaches status and returns it.
func (p *Platform) WaitForStatus(t testing.TB, id uuid.UUID, status order.Status) *order.Order {
	t.Helper()
	var got *order.Order
	p.WaitFor(t, fmt.Sprintf("order %s %s", id, status), func(ctx context.Context) (bool, error) {
		o, err := p.Orders.Get(ctx, id)
		got = o
		return err == nil && o.Status == status, err
	})
	return got
}

// WaitSettled waits until no order is PENDING and the outbox is drained.
func (p *Platform) WaitSettled(t testing.TB) {
	t.Helper()
	p.WaitFor(t, "every order decided and the outbox drained", func(ctx context.Context) (bool, error) {
		var pending, unpublished int
		err := p.DB.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM orders WHERE status = 'PENDING'),
			(SELECT count(*) FROM outbox_status WHERE NOT processed)`).Scan(&pending, &unpublished)
		return pending == 0 && unpublished == 0, err
	})
}

// WaitCaughtUp waits until group has committed offsets at the end of every
// partition of topics, i.e. it has handled everything published so far.
func (p *Platform) WaitCaughtUp(t testing.TB, group string, topics ...string) {
	t.Helper()
	adm := kadm.NewClient(p.Producer)
	p.WaitFor(t, "group "+group+" caught up", func(ctx context.Context) (bool, error) {
		ends, err := adm.ListEndOffsets(ctx, topics...)
		if err != nil {
			return false, err
		}
		committed, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			return false, err
		}
		caughtUp := true
		ends.Each(func(o kadm.ListedOffset) {
			if o.Offset == 0 {
				return
			}
			c, ok := committed.Lookup(o.Topic, o.Partition)
			if !ok || c.At < o.Offset {
				caughtUp = false
			}
		})
		return caughtUp, nil
	})
}
