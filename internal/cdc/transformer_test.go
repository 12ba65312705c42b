package cdc

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestOrderTransformer drives the order service under the cdc strategy (no
// outbox rows), feeds the change events of TrackOps' connector and of a
// Debezium-style one (schemas enabled, precise decimals, raw topic names)
// through the transformer, and compares the application events with the
// outbox strategy's.
func TestOrderTransformer(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ctx := context.Background()

	builtin := parse(t, rawConfig(t, db, map[string]string{"snapshot.mode": "no_data", "decimal.handling.mode": DecimalString}))
	c1, _ := runConnector(t, builtin, b, nil)
	external := parse(t, rawConfig(t, db, map[string]string{
		"snapshot.mode": "no_data", "topic.prefix": "ext", "database.server.name": "", "transforms": "",
		"transforms.route.type": "", "transforms.route.regex": "", "transforms.route.replacement": "",
		"publication.name": "ext_publication", "key.converter.schemas.enable": "true", "value.converter.schemas.enable": "true",
	}))
	c2, _ := runConnector(t, external, b, nil)
	waitStreaming(t, c1)
	waitStreaming(t, c2)

	svc := order.NewService(db.Pool, order.WithoutOutboxEvents())
	res, err := svc.Create(ctx, order.CreateRequest{Actor: "tester", Order: order.NewOrder{CustomerID: "cust-1", Currency: "USD",
		Items: []order.NewItem{{SKU: "SKU-1", Quantity: 2, UnitPrice: 1999}, {SKU: "SKU-2", Quantity: 1, UnitPrice: 500}}}})
	if err != nil {
		t.Fatal(err)
	}
	o := res.Order
	if _, err := svc.Update(ctx, o.ID, func(o *order.Order) error { // the saga's move
		_, err := o.Transition(order.StatusConfirmed, "reserved", "saga", svc.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Cancel(ctx, o.ID, "customer asked", "tester"); err != nil {
		t.Fatal(err)
	}
	var outboxRows int
	_ = db.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox_events`).Scan(&outboxRows)
	if outboxRows != 0 {
		t.Fatalf("cdc strategy wrote %d outbox rows", outboxRows)
	}

	producer, err := kafka.NewProducer(kafkatest.Options(b))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	if err := kafka.EnsureTopics(ctx, producer, 1, events.AllTypes...); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var changes []int
	tr := NewOrderTransformer(db.Pool, producer, TransformerOptions{Logger: testLogger(), OnOrderChange: func(_ context.Context, id string, v int) {
		mu.Lock()
		defer mu.Unlock()
		if id == o.ID.String() {
			changes = append(changes, v)
		}
	}})
	handleAll := func(topic string) {
		recs := kafkatest.Read(t, b, topic, 3, 20*time.Second)
		if len(recs) != 3 {
			t.Fatalf("%s: %d change records, want 3", topic, len(recs))
		}
		for _, r := range recs {
			if err := tr.Handle(ctx, r); err != nil {
				t.Fatalf("handle %s: %v", r.Value, err)
			}
		}
	}
	handleAll(OrdersChangeTopic)
	handleAll("ext.public.orders")
	if len(changes) != 6 || changes[0] != 1 || changes[2] != 3 {
		t.Errorf("OnOrderChange versions %v, want 1,2,3 twice", changes)
	}

	// The outbox strategy's events for the same order, from the order
	// service's own constructors.
	created, _ := order.CreatedEvent(ctx, o)
	hist, _ := svc.History(ctx, o.ID)
	final, _ := svc.Get(ctx, o.ID)
	confirmed, _ := order.TransitionEvent(ctx, final, hist[1])
	cancelled, _ := order.TransitionEvent(ctx, final, hist[2])

	for _, want := range []events.Event{created, confirmed, cancelled} {
		recs := kafkatest.Read(t, b, want.Type, 2, 20*time.Second)
		if len(recs) != 2 {
			t.Fatalf("%s: %d events, want 2 (one per change source)", want.Type, len(recs))
		}
		var ids []string
		for _, r := range recs {
			env, err := events.Decode(r.Value)
			if err != nil {
				t.Fatalf("%s: %v", want.Type, err)
			}
			if string(r.Key) != o.ID.String() || env.Subject != o.ID.String() || kafka.Header(r, events.HeaderEventType) != want.Type ||
				kafka.Header(r, events.HeaderEventID) != env.ID {
				t.Errorf("%s: key %s subject %s headers %v", want.Type, r.Key, env.Subject, r.Headers)
			}
			if !jsonEqual(t, env.Data, want.Data) {
				t.Errorf("%s data\n got %s\nwant %s", want.Type, env.Data, want.Data)
			}
			ids = append(ids, env.ID)
		}
		if ids[0] != ids[1] {
			t.Errorf("%s: the same change got event ids %s and %s; ids must be deterministic", want.Type, ids[0], ids[1])
		}
	}
	// A tombstone and a change of another table are ignored.
	if err := tr.Handle(ctx, &kgo.Record{Key: []byte(`{"id":"x"}`)}); err != nil {
		t.Errorf("tombstone: %v", err)
	}
	if err := tr.Handle(ctx, &kgo.Record{Value: []byte(`{"op":"c","after":{"id":"x"},"source":{"table":"order_items"}}`)}); err != nil {
		t.Errorf("order_items change: %v", err)
	}
	if err := tr.Handle(ctx, &kgo.Record{Value: []byte(`not json`)}); !kafka.IsPermanent(err) {
		t.Errorf("malformed record: %v, want a permanent error", err)
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}
