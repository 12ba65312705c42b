package bench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/bench"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// kafkaRig is a database with orders and a broker the relay published them to.
type kafkaRig struct {
	db       *postgrestest.Database
	broker   *kafka.Embedded
	producer *kgo.Client
	ids      []uuid.UUID
}

func newKafkaRig(t *testing.T, broker *kafka.Embedded) *kafkaRig {
	t.Helper()
	db := postgrestest.New(t)
	p := kafkatest.NewProducer(t, broker)
	kafkatest.CreateTopics(t, p, 3, append(append([]string{}, events.AllTypes...), "orders.orders", "orders.order_items")...)
	r := &kafkaRig{db: db, broker: broker, producer: p, ids: placeOrders(t, db, 3)}
	ctx := context.Background()
	svc := order.NewService(db.Pool)
	if _, err := svc.Cancel(ctx, r.ids[1], "changed my mind", "test"); err != nil {
		t.Fatal(err)
	}
	return r
}

// publish runs the relay over everything in the outbox.
func (r *kafkaRig) publish(t *testing.T) {
	t.Helper()
	relay := outbox.NewRelay(r.db.Pool, r.producer, outbox.RelayConfig{})
	for {
		n, err := relay.PublishBatch(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

// dropUnpublished records the outbox rows matching where published without
// sending them: the events a broken relay or a torn broker log lost. Their
// transaction id becomes 1, visible in every snapshot, so the relay's
// cursor has passed them; the ledger says they went out.
func (r *kafkaRig) dropUnpublished(t *testing.T, where string, args ...any) {
	t.Helper()
	tag, err := r.db.Pool.Exec(context.Background(), `WITH d AS (UPDATE outbox_events SET xid = '1' WHERE `+where+` RETURNING seq)
		INSERT INTO outbox_published (seq) SELECT seq FROM d`, args...)
	if err != nil || tag.RowsAffected() == 0 {
		t.Fatalf("drop outbox rows: %v (%d rows)", err, tag.RowsAffected())
	}
}

// publishCDC plays the cdc strategy: change records of every order and
// item (but those in skip) and the order events under derived ids.
func (r *kafkaRig) publishCDC(t *testing.T, skip map[uuid.UUID]bool) {
	t.Helper()
	ctx := context.Background()
	var recs []*kgo.Record
	rows, err := r.db.Pool.Query(ctx, `SELECT id, version FROM orders`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id uuid.UUID
		var v int
		if err := rows.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		if skip[id] {
			continue
		}
		val, _ := json.Marshal(map[string]any{"before": nil, "after": map[string]any{"id": id, "version": v}, "op": "u"})
		recs = append(recs, &kgo.Record{Topic: "orders.orders", Key: []byte(id.String()), Value: val})
	}
	rows.Close()
	rows, err = r.db.Pool.Query(ctx, `SELECT id, order_id FROM order_items`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, oid uuid.UUID
		if err := rows.Scan(&id, &oid); err != nil {
			t.Fatal(err)
		}
		val, _ := json.Marshal(map[string]any{"after": map[string]any{"id": id, "order_id": oid}, "op": "c"})
		recs = append(recs, &kgo.Record{Topic: "orders.order_items", Key: []byte(id.String()), Value: val})
	}
	rows.Close()
	rows, err = r.db.Pool.Query(ctx, `SELECT order_id, version, to_status FROM order_status_history`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var oid uuid.UUID
		var v int
		var to string
		if err := rows.Scan(&oid, &v, &to); err != nil {
			t.Fatal(err)
		}
		typ := map[string]string{"PENDING": events.OrderCreated, "CANCELLED": events.OrderCancelled}[to]
		if typ == "" {
			typ = events.OrderStatusUpdated
		}
		ev, err := events.New(typ, events.AggregateOrder, oid.String(), map[string]any{"order_id": oid, "version": v}, "")
		if err != nil {
			t.Fatal(err)
		}
		ev.ID = bench.DerivedEventID(oid.String(), typ, v)
		val, err := ev.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: typ, Key: []byte(oid.String()), Value: val})
	}
	rows.Close()
	if err := r.producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func (r *kafkaRig) verify(t *testing.T, strategy string, pendingBound time.Duration) bench.Report {
	t.Helper()
	rep, err := bench.Verify(context.Background(), r.db.Pool, bench.VerifyOptions{
		OutboxBound: time.Minute, PendingBound: pendingBound,
		Kafka: &bench.KafkaVerify{Brokers: []string{r.broker.Addr()}, Strategy: strategy, Grace: time.Nanosecond}})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestVerifyKafkaPassesWhenEverythingIsThere(t *testing.T) {
	t.Parallel()
	broker := kafkatest.New(t)
	for _, strategy := range []string{"outbox", "cdc"} {
		r := newKafkaRig(t, broker)
		if strategy == "outbox" {
			r.publish(t)
		} else {
			r.publishCDC(t, nil)
		}
		rep := r.verify(t, strategy, time.Hour)
		if !rep.OK() {
			var b strings.Builder
			rep.Write(&b)
			t.Fatalf("%s: verify --kafka failed on complete topics:\n%s", strategy, b.String())
		}
		if c := check(t, rep, "kafka-order-events"); c.Status != bench.CheckPass {
			t.Fatalf("%s: kafka-order-events %s", strategy, c.Status)
		}
		want := bench.CheckPass
		if strategy == "outbox" {
			want = bench.CheckSkipped
		}
		if c := check(t, rep, "kafka-change-records"); c.Status != want {
			t.Fatalf("%s: kafka-change-records %s, want %s", strategy, c.Status, want)
		}
	}
}

func TestVerifyKafkaFindsWhatIsMissing(t *testing.T) {
	t.Parallel()
	broker := kafkatest.New(t)
	cases := []struct {
		name     string
		strategy string
		check    string
		// breakIt loses something around the rig's first order and
		// returns text the offender must mention.
		breakIt      func(t *testing.T, r *kafkaRig) string
		pendingBound time.Duration
	}{
		{name: "missing ORDER_CREATED", strategy: "outbox", check: "kafka-order-events", breakIt: func(t *testing.T, r *kafkaRig) string {
			r.dropUnpublished(t, `aggregate_id = $1 AND event_type = $2`, r.ids[0].String(), events.OrderCreated)
			r.publish(t)
			return fmt.Sprintf("order=%s missing ORDER_CREATED version=1 event_id=", r.ids[0])
		}},
		{name: "missing status event", strategy: "outbox", check: "kafka-order-events", breakIt: func(t *testing.T, r *kafkaRig) string {
			r.dropUnpublished(t, `aggregate_id = $1 AND event_type = $2`, r.ids[1].String(), events.OrderCancelled)
			r.publish(t)
			return fmt.Sprintf("order=%s missing ORDER_CANCELLED version=2", r.ids[1])
		}},
		{name: "event published under another id", strategy: "outbox", check: "kafka-order-events", breakIt: func(t *testing.T, r *kafkaRig) string {
			r.publish(t)
			// The outbox row now names an id Kafka never saw.
			if _, err := r.db.Pool.Exec(context.Background(), `UPDATE outbox_events SET id = gen_random_uuid() WHERE aggregate_id = $1 AND event_type = $2`,
				r.ids[2].String(), events.OrderCreated); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("order=%s missing ORDER_CREATED", r.ids[2])
		}},
		{name: "stuck PENDING", strategy: "outbox", check: "pending-orders", pendingBound: time.Minute, breakIt: func(t *testing.T, r *kafkaRig) string {
			r.publish(t)
			if _, err := r.db.Pool.Exec(context.Background(), `UPDATE orders SET created_at = now() - interval '2 hours' WHERE id = $1`, r.ids[0]); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("order=%s PENDING", r.ids[0])
		}},
		{name: "missing derived event", strategy: "cdc", check: "kafka-order-events", breakIt: func(t *testing.T, r *kafkaRig) string {
			// Everything so far is published; then a cancellation whose
			// derived event never reaches Kafka.
			r.publishCDC(t, nil)
			if _, err := order.NewService(r.db.Pool).Cancel(context.Background(), r.ids[2], "lost", "test"); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("order=%s missing ORDER_CANCELLED version=2 event_id=%s", r.ids[2],
				bench.DerivedEventID(r.ids[2].String(), events.OrderCancelled, 2))
		}},
		{name: "missing change record", strategy: "cdc", check: "kafka-change-records", breakIt: func(t *testing.T, r *kafkaRig) string {
			r.publishCDC(t, map[uuid.UUID]bool{r.ids[0]: true})
			return fmt.Sprintf("order=%s has no change record on orders.orders", r.ids[0])
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newKafkaRig(t, broker)
			want := tc.breakIt(t, r)
			bound := tc.pendingBound
			if bound == 0 {
				bound = time.Hour
			}
			rep := r.verify(t, tc.strategy, bound)
			if rep.OK() {
				t.Fatal("verify passed with something missing")
			}
			c := check(t, rep, tc.check)
			if c.Status != bench.CheckFail {
				t.Fatalf("%s: %s, want fail", tc.check, c.Status)
			}
			found := false
			for _, o := range c.Offenders {
				found = found || strings.Contains(o, want)
			}
			if !found {
				t.Fatalf("%s offenders %q do not name %q", tc.check, c.Offenders, want)
			}
		})
	}
}
