package order_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/trackops/trackops/internal/cache/cachetest"
	"github.com/trackops/trackops/internal/cdc"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/logging"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startConnector runs the built-in connector's configuration (a slot of its
// own, no snapshot) with the order change stream over db, writing to b,
// until the test ends; it returns its slot once changes are streamed.
func startConnector(t *testing.T, db *postgrestest.Database, b *kafka.Embedded, stream *order.ChangeStream) (slot string) {
	t.Helper()
	raw, err := order.ConnectorConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	raw["slot.name"] = "ordertest_" + hex.EncodeToString(suffix)
	raw["snapshot.mode"] = "no_data"
	raw["status.update.interval.ms"] = "50"
	cfg, warnings, err := cdc.ParseConfig(order.ConnectorName, raw)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("built-in connector configuration: %v %v", err, warnings)
	}
	c := cdc.NewConnector(cfg, cdc.Options{Kafka: kafkatest.Options(b), Logger: quiet, TopicPartitions: 1, Transform: stream})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("connector: %v", err)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for c.Status(context.Background()).Phase != "streaming" {
		if time.Now().After(deadline) {
			t.Fatalf("connector not streaming: %+v", c.Status(context.Background()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cfg.SlotName
}

// waitConfirmed waits until the slot has confirmed everything committed so
// far: every transaction's events are on Kafka and its after-ack work
// (the cache refresh) has returned.
func waitConfirmed(t *testing.T, db *postgrestest.Database, slot string) {
	t.Helper()
	var upTo string
	if err := db.Pool.QueryRow(context.Background(), `SELECT pg_current_wal_insert_lsn()::text`).Scan(&upTo); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "slot confirmed past "+upTo, func() bool {
		var done bool
		err := db.Pool.QueryRow(context.Background(), `SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1`, slot, upTo).Scan(&done)
		return err == nil && done
	})
}

func ensureEventTopics(t *testing.T, bs ...*kafka.Embedded) {
	t.Helper()
	for _, b := range bs {
		p, err := kafka.NewProducer(kafkatest.Options(b))
		if err != nil {
			t.Fatal(err)
		}
		err = kafka.EnsureTopics(context.Background(), p, 1, events.AllTypes...)
		p.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestSameOrderEventsUnderBothStrategies runs the two strategies side by
// side on one order: the order service writes its outbox rows, published by
// the real relay to one broker, while the built-in connector with the order
// change stream turns the same commits into events on another. The records
// of ORDER_CREATED, ORDER_STATUS_UPDATED and ORDER_CANCELLED must be the
// same on both — key, headers, and the CloudEvents value field by field,
// id and time included: ids are derived from (order, type, version) and the
// time is the change's own, under both strategies. Only the Kafka record
// timestamps and offsets differ. A status change written by hand in SQL,
// which the outbox cannot see, comes from the change stream alone.
func TestSameOrderEventsUnderBothStrategies(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	outboxBroker, cdcBroker := kafkatest.New(t), kafkatest.New(t)
	ensureEventTopics(t, outboxBroker, cdcBroker)
	ctx := context.Background()

	producer := kafkatest.NewProducer(t, outboxBroker)
	relay := outbox.NewRelay(db.Pool, producer, outbox.RelayConfig{PollInterval: 50 * time.Millisecond, Logger: quiet})
	rctx, stopRelay := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = relay.Run(rctx) })
	t.Cleanup(func() { stopRelay(); wg.Wait() })
	startConnector(t, db, cdcBroker, order.NewChangeStream(nil, quiet))

	svc := order.NewService(db.Pool) // outbox strategy: events in the outbox, rows for the change stream
	request := func(corr string) context.Context {
		c := logging.WithCorrelationID(ctx, corr)
		// The request's trace context, as the HTTP middleware leaves it.
		return trace.ContextWithSpanContext(c, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
			SpanID:  trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}, TraceFlags: trace.FlagsSampled, Remote: true}))
	}
	res, err := svc.Create(request("corr-create"), order.CreateRequest{Actor: "api:alice", Order: order.NewOrder{CustomerID: "cust-1", Currency: "EUR",
		Items: []order.NewItem{{SKU: "SKU-1", Quantity: 2, UnitPrice: 1999}, {SKU: "SKU-2", Quantity: 1, UnitPrice: 500}}}})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Order.ID
	// The saga's move: clients may not confirm (ChangeStatus refuses it).
	if _, err := svc.Update(request("corr-confirm"), id, func(o *order.Order) error {
		_, err := o.Transition(order.StatusConfirmed, "reserved", order.SagaActor, svc.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Cancel(request("corr-cancel"), id, "customer asked", "api:bob"); err != nil {
		t.Fatal(err)
	}

	for _, typ := range []string{events.OrderCreated, events.OrderStatusUpdated, events.OrderCancelled} {
		viaOutbox := kafkatest.Read(t, outboxBroker, typ, 1, 30*time.Second)
		viaCDC := kafkatest.Read(t, cdcBroker, typ, 1, 30*time.Second)
		if len(viaOutbox) != 1 || len(viaCDC) != 1 {
			t.Fatalf("%s: %d records via the outbox, %d via the change stream; want 1 and 1", typ, len(viaOutbox), len(viaCDC))
		}
		o, c := viaOutbox[0], viaCDC[0]
		if string(o.Key) != id.String() || string(c.Key) != id.String() {
			t.Errorf("%s keys %s / %s, want the order id", typ, o.Key, c.Key)
		}
		if oh, ch := headerMap(o), headerMap(c); !reflect.DeepEqual(oh, ch) {
			t.Errorf("%s headers\n outbox %v\n    cdc %v", typ, oh, ch)
		}
		var ov, cv map[string]any
		if err := json.Unmarshal(o.Value, &ov); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(c.Value, &cv); err != nil {
			t.Fatal(err)
		}
		for field := range union(ov, cv) {
			if !reflect.DeepEqual(ov[field], cv[field]) {
				t.Errorf("%s %q\n outbox %v\n    cdc %v", typ, field, ov[field], cv[field])
			}
		}
		if env, err := events.Decode(c.Value); err != nil || env.Type != typ || env.Subject != id.String() {
			t.Errorf("%s via the change stream: %v %+v", typ, err, env)
		}
	}

	// By hand: no history row, no outbox row; the images tell the change.
	res2, err := svc.Create(ctx, order.CreateRequest{Actor: "api:alice", Order: order.NewOrder{CustomerID: "cust-2",
		Items: []order.NewItem{{SKU: "SKU-1", Quantity: 1, UnitPrice: 100}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE orders SET status = 'CANCELLED', cancel_reason = 'by hand' WHERE id = $1`, res2.Order.ID); err != nil {
		t.Fatal(err)
	}
	recs := kafkatest.Read(t, cdcBroker, events.OrderCancelled, 2, 30*time.Second)
	if len(recs) != 2 {
		t.Fatalf("ORDER_CANCELLED via the change stream: %d records, want 2", len(recs))
	}
	env, err := events.Decode(recs[1].Value)
	if err != nil {
		t.Fatal(err)
	}
	var d events.OrderCancelledData
	if err := env.DecodeData(&d); err != nil {
		t.Fatal(err)
	}
	if d.OrderID != res2.Order.ID.String() || d.PreviousStatus != "PENDING" || d.Reason != "by hand" || d.Version != 2 || d.Actor != "" ||
		env.ID != order.EventID(res2.Order.ID, events.OrderCancelled, 2) {
		t.Errorf("hand-written cancellation: %+v (id %s)", d, env.ID)
	}
}

func headerMap(r *kgo.Record) map[string]string {
	m := map[string]string{}
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}

func union(a, b map[string]any) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// countingCache counts invalidations per order version.
type countingCache struct {
	order.Cache
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingCache) InvalidateOrder(ctx context.Context, id uuid.UUID, version int) {
	c.mu.Lock()
	c.calls[fmt.Sprintf("%s@%d", id, version)]++
	c.mu.Unlock()
	c.Cache.InvalidateOrder(ctx, id, version)
}

func (c *countingCache) count(id uuid.UUID, version int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[fmt.Sprintf("%s@%d", id, version)]
}

// TestChangeStreamRefreshesTheCacheOncePerChange: under the cdc strategy
// the order service does not touch the cache at commit; the change stream
// invalidates and warms it once per change of an existing order, after
// Kafka holds the events (a new order has nothing cached: its creation is
// not refreshed). A read that follows a write in the same process still
// sees the write while the refresh is on its way.
func TestChangeStreamRefreshesTheCacheOncePerChange(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ensureEventTopics(t, b)
	ctx := context.Background()
	counted := &countingCache{Cache: order.NewRedisCache(cachetest.New(t)), calls: map[string]int{}}
	svc := order.NewService(db.Pool, order.WithChangeStream(), order.WithCache(counted))
	slot := startConnector(t, db, b, order.NewChangeStream(svc, quiet))

	res, err := svc.Create(ctx, order.CreateRequest{Actor: "api:alice", Order: order.NewOrder{CustomerID: "cust-1",
		Items: []order.NewItem{{SKU: "SKU-1", Quantity: 1, UnitPrice: 100}}}})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Order.ID
	waitConfirmed(t, db, slot)
	if o, err := svc.Get(ctx, id); err != nil || o.Version != 1 {
		t.Fatalf("cached order: %v %+v", err, o)
	}
	shipReadingBack(t, svc, id)
	// The slot confirms a transaction only after its refresh returned: once
	// it has confirmed them all, every refresh there will be has run, and
	// each version was invalidated exactly once, and the creation never.
	waitConfirmed(t, db, slot)
	if n := counted.count(id, 1); n != 0 {
		t.Errorf("the new order (version 1) invalidated %d times, want never", n)
	}
	for v := 2; v <= 4; v++ {
		if n := counted.count(id, v); n != 1 {
			t.Errorf("version %d invalidated %d times, want once", v, n)
		}
	}
	if o, err := svc.Get(ctx, id); err != nil || o.Version != 4 {
		t.Fatalf("final read: %v %+v", err, o)
	}
}

// shipReadingBack moves order id (version 1, PENDING) through CONFIRMED
// and PROCESSING to SHIPPED, reading it after each change while its cache
// refresh is on the way, and returns the number of changes.
func shipReadingBack(t *testing.T, svc *order.Service, id uuid.UUID) int {
	t.Helper()
	ctx := context.Background()
	steps := []struct {
		to      order.Status
		version int
	}{{order.StatusConfirmed, 2}, {order.StatusProcessing, 3}, {order.StatusShipped, 4}}
	for _, step := range steps {
		// The platform's path: no inventory runs here, and a client's
		// ChangeStatus would need the order's stock held.
		if _, err := svc.Update(ctx, id, func(o *order.Order) error {
			_, err := o.Transition(step.to, "", "api:ops", svc.Now())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		// Read-your-writes while the refresh is on its way.
		if o, err := svc.Get(ctx, id); err != nil || o.Version != step.version || o.Status != step.to {
			t.Fatalf("read after writing version %d: %v %+v", step.version, err, o)
		}
	}
	return len(steps)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
