package inventory_test

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/app/apptest"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/inventory"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/order"
)

// stockRow reads a SKU's stock and the units its reservations hold, in one
// snapshot.
type stockRow struct {
	OnHand, Reserved, Held int64
}

func readStock(ctx context.Context, p *apptest.Platform, sku string) (stockRow, error) {
	var s stockRow
	err := p.DB.Pool.QueryRow(ctx, `SELECT on_hand, reserved,
		(SELECT coalesce(sum(quantity), 0) FROM reservations WHERE sku = $1 AND status = 'reserved')::bigint
		FROM inventory_items WHERE sku = $1`, sku).Scan(&s.OnHand, &s.Reserved, &s.Held)
	return s, err
}

func mustStock(t *testing.T, p *apptest.Platform, sku string) stockRow {
	t.Helper()
	s, err := readStock(context.Background(), p, sku)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sampler reads the stock of skus in a loop until stopped and records every
// moment the invariant 0 <= reserved <= on_hand (and reserved = units held)
// did not hold.
type sampler struct {
	samples    atomic.Int64
	violations []string
	mu         sync.Mutex
	stop       chan struct{}
	done       chan struct{}
}

func startSampler(p *apptest.Platform, skus ...string) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		ctx := context.Background()
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			for _, sku := range skus {
				st, err := readStock(ctx, p, sku)
				if err != nil {
					continue // the item may not exist yet
				}
				s.samples.Add(1)
				if st.Reserved < 0 || st.Reserved > st.OnHand || st.Reserved != st.Held {
					s.mu.Lock()
					s.violations = append(s.violations, fmt.Sprintf("%s: %+v", sku, st))
					s.mu.Unlock()
				}
			}
		}
	}()
	return s
}

func (s *sampler) finish(t *testing.T) {
	t.Helper()
	close(s.stop)
	<-s.done
	if s.samples.Load() == 0 {
		t.Fatal("the sampler took no sample")
	}
	if len(s.violations) > 0 {
		t.Fatalf("stock invariant broken in %d of %d samples, first: %s", len(s.violations), s.samples.Load(), s.violations[0])
	}
	t.Logf("stock invariant held in all %d samples", s.samples.Load())
}

func statusCounts(t *testing.T, p *apptest.Platform) map[string]int {
	t.Helper()
	rows, err := p.DB.Pool.Query(context.Background(), `SELECT status || coalesce('/' || cancel_reason, ''), count(*) FROM orders GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		out[k] = n
	}
	return out
}

func outboxCount(t *testing.T, p *apptest.Platform, typ string) int {
	t.Helper()
	var n int
	if err := p.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_events WHERE event_type = $1`, typ).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func placeConcurrently(t *testing.T, p *apptest.Platform, n int, lines func(i int) []order.NewItem) {
	t.Helper()
	start := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			if _, err := p.PlaceOrderErr(context.Background(), lines(i)...); err != nil {
				errs <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("place order: %v", err)
	}
}

// The contract's headline: 200 buyers of 50 units.
func TestConcurrentSingleUnitOrdersNeverOversell(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t)
	const sku, stock, buyers = "HOT-1", 50, 200
	p.SetStock(t, sku, stock)
	smp := startSampler(p, sku)

	placeConcurrently(t, p, buyers, func(int) []order.NewItem {
		return []order.NewItem{{SKU: sku, Quantity: 1, UnitPrice: 999}}
	})
	p.WaitSettled(t)
	smp.finish(t)

	counts := statusCounts(t, p)
	want := map[string]int{"CONFIRMED": stock, "CANCELLED/" + order.ReasonOutOfStock: buyers - stock}
	if !reflect.DeepEqual(counts, want) {
		t.Fatalf("orders by status %v, want %v", counts, want)
	}
	it, err := p.Inventory.Get(context.Background(), sku)
	if err != nil {
		t.Fatal(err)
	}
	if it.OnHand != stock || it.Reserved != stock || it.Available() != 0 {
		t.Fatalf("item %+v: want on_hand %d, reserved %d, available 0", it, stock, stock)
	}
	// Each confirmed order holds exactly one unit; no cancelled order holds any.
	var mismatched int
	if err := p.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM orders o
		LEFT JOIN reservations r ON r.order_id = o.id AND r.status = 'reserved'
		WHERE (o.status = 'CONFIRMED') <> (r.quantity IS NOT NULL AND r.quantity = 1)`).Scan(&mismatched); err != nil {
		t.Fatal(err)
	}
	if mismatched != 0 {
		t.Fatalf("%d orders whose status disagrees with their reservation", mismatched)
	}
	if n := outboxCount(t, p, events.InventoryReserved); n != stock {
		t.Fatalf("%d INVENTORY_RESERVED events, want %d", n, stock)
	}
	if n := outboxCount(t, p, events.InventoryReservationFailed); n != buyers-stock {
		t.Fatalf("%d INVENTORY_RESERVATION_FAILED events, want %d", n, buyers-stock)
	}
}

// Orders naming the same SKUs in opposite orders lock them in one (sorted)
// order: no deadlock, and each order gets all its lines or none.
func TestOppositeOrderMultiSKUReservationsAreAllOrNothingWithoutDeadlocks(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t)
	p.SetStock(t, "PAIR-A", 40)
	p.SetStock(t, "PAIR-B", 40)
	smp := startSampler(p, "PAIR-A", "PAIR-B")

	const n = 120
	placeConcurrently(t, p, n, func(i int) []order.NewItem {
		if i%2 == 0 {
			return []order.NewItem{{SKU: "PAIR-A", Quantity: 1, UnitPrice: 100}, {SKU: "PAIR-B", Quantity: 2, UnitPrice: 100}}
		}
		return []order.NewItem{{SKU: "PAIR-B", Quantity: 1, UnitPrice: 100}, {SKU: "PAIR-A", Quantity: 2, UnitPrice: 100}}
	})
	p.WaitSettled(t)
	smp.finish(t)

	if r := p.Inventory.TxRetries(); r != 0 {
		t.Fatalf("%d inventory transactions hit a deadlock or serialization failure", r)
	}
	ctx := context.Background()
	rows, err := p.DB.Pool.Query(ctx, `SELECT o.id, o.status,
		(SELECT count(*) FROM reservations r WHERE r.order_id = o.id AND r.status = 'reserved'),
		(SELECT coalesce(sum(r.quantity), 0) FROM reservations r WHERE r.order_id = o.id AND r.status = 'reserved')
		FROM orders o`)
	if err != nil {
		t.Fatal(err)
	}
	confirmed, cancelled := 0, 0
	for rows.Next() {
		var id uuid.UUID
		var status string
		var lines, units int64
		if err := rows.Scan(&id, &status, &lines, &units); err != nil {
			t.Fatal(err)
		}
		switch {
		case status == "CONFIRMED" && lines == 2 && units == 3:
			confirmed++
		case status == "CANCELLED" && lines == 0:
			cancelled++
		default:
			t.Errorf("order %s is %s holding %d lines (%d units): not all-or-nothing", id, status, lines, units)
		}
	}
	if confirmed+cancelled != n || confirmed == 0 || cancelled == 0 {
		t.Fatalf("%d confirmed, %d cancelled of %d: the test did not exercise both outcomes", confirmed, cancelled, n)
	}
	for _, sku := range []string{"PAIR-A", "PAIR-B"} {
		st := mustStock(t, p, sku)
		if st.Reserved != st.Held || st.Reserved > st.OnHand {
			t.Fatalf("%s: %+v", sku, st)
		}
	}
	a, b := mustStock(t, p, "PAIR-A"), mustStock(t, p, "PAIR-B")
	if a.Reserved+b.Reserved != int64(3*confirmed) {
		t.Fatalf("reserved %d+%d, want %d for %d confirmed orders", a.Reserved, b.Reserved, 3*confirmed, confirmed)
	}
	t.Logf("%d confirmed, %d cancelled; reserved A=%d B=%d", confirmed, cancelled, a.Reserved, b.Reserved)
}

// snapshot is everything the reactions could change.
type snapshot struct {
	Items, Reservations, InventoryOrders, Orders, Ledger, Outbox, Inbox string
}

func takeSnapshot(t *testing.T, p *apptest.Platform) snapshot {
	t.Helper()
	q := func(sql string) string {
		var s string
		if err := p.DB.Pool.QueryRow(context.Background(), `SELECT coalesce(json_agg(t ORDER BY t)::text, '') FROM (`+sql+`) t`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	return snapshot{
		Items:           q(`SELECT sku, on_hand, reserved, version, updated_at FROM inventory_items`),
		Reservations:    q(`SELECT order_id, sku, quantity, status, updated_at FROM reservations`),
		InventoryOrders: q(`SELECT order_id, state, updated_at FROM inventory_orders`),
		Orders:          q(`SELECT id, status, version, updated_at FROM orders`),
		Ledger:          q(`SELECT id, sku, delta FROM inventory_adjustments`),
		Outbox:          q(`SELECT id FROM outbox_events`),
		Inbox:           q(`SELECT consumer, event_id FROM processed_events`),
	}
}

func waitQuiet(t *testing.T, p *apptest.Platform, inventoryGroup, sagaGroup string) {
	t.Helper()
	p.WaitSettled(t)
	p.WaitCaughtUp(t, inventoryGroup, inventory.ConsumedTopics...)
	p.WaitCaughtUp(t, sagaGroup, order.SagaTopics...)
	p.WaitSettled(t)
}

// Consuming every record a second time — the inventory group's offsets
// reset to the start, and a second saga group claiming under the same inbox
// name — changes nothing.
func TestReconsumingEveryEventChangesNothing(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t, apptest.Options{NoConsumers: true})
	stopInventory := p.StartInventory(t, inventory.ConsumerGroup, inventory.ConsumerGroup)
	p.StartSaga(t, order.SagaGroup, order.SagaGroup)
	ctx := context.Background()

	p.SetStock(t, "RE-A", 3)
	p.SetStock(t, "RE-B", 10)
	var placed []*order.Order
	for range 5 {
		placed = append(placed, p.PlaceOrder(t, order.NewItem{SKU: "RE-A", Quantity: 1, UnitPrice: 100}, order.NewItem{SKU: "RE-B", Quantity: 2, UnitPrice: 50}))
	}
	placed = append(placed, p.PlaceOrder(t, order.NewItem{SKU: "NO-SUCH-SKU", Quantity: 1, UnitPrice: 1}))
	waitQuiet(t, p, inventory.ConsumerGroup, order.SagaGroup)
	var confirmed []*order.Order
	for _, o := range placed {
		got, err := p.Orders.Get(ctx, o.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status == order.StatusConfirmed {
			confirmed = append(confirmed, got)
		}
	}
	if len(confirmed) != 3 {
		t.Fatalf("%d orders confirmed, want 3", len(confirmed))
	}
	// One cancelled after confirmation (release), one shipped (commit).
	if _, err := p.Orders.Cancel(ctx, confirmed[0].ID, "customer changed their mind", "test"); err != nil {
		t.Fatal(err)
	}
	for _, st := range []order.Status{order.StatusProcessing, order.StatusShipped} {
		if _, err := p.Orders.ChangeStatus(ctx, confirmed[1].ID, st, "", "test", nil); err != nil {
			t.Fatal(err)
		}
	}
	waitQuiet(t, p, inventory.ConsumerGroup, order.SagaGroup)
	before := takeSnapshot(t, p)
	if a := mustStock(t, p, "RE-A"); a.OnHand != 2 || a.Reserved != 1 {
		t.Fatalf("RE-A before the replay: %+v, want on_hand 2 and reserved 1", a)
	}

	// Inventory: same group, offsets back to the start of every partition.
	stopInventory()
	adm := kadm.NewClient(p.Producer)
	ends, err := adm.ListEndOffsets(ctx, inventory.ConsumedTopics...)
	if err != nil {
		t.Fatal(err)
	}
	reset := kadm.Offsets{}
	ends.Each(func(o kadm.ListedOffset) {
		reset.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: 0, LeaderEpoch: -1})
	})
	if err := adm.CommitAllOffsets(ctx, inventory.ConsumerGroup, reset); err != nil {
		t.Fatal(err)
	}
	p.StartInventory(t, inventory.ConsumerGroup, inventory.ConsumerGroup)
	// Saga: a new group reading from the start, same inbox name.
	p.StartSaga(t, order.SagaGroup+"-replay", order.SagaGroup)
	waitQuiet(t, p, inventory.ConsumerGroup, order.SagaGroup+"-replay")

	after := takeSnapshot(t, p)
	if before != after {
		t.Fatalf("re-consuming changed the state:\nbefore %+v\nafter  %+v", before, after)
	}
}

func readReleased(t *testing.T, p *apptest.Platform, orderID uuid.UUID) events.InventoryReleasedData {
	t.Helper()
	for _, rec := range kafkatest.Read(t, p.Broker, events.InventoryReleased, 1, p.WaitTimeout()) {
		if string(rec.Key) != orderID.String() {
			continue
		}
		env, err := events.Decode(rec.Value)
		if err != nil {
			t.Fatal(err)
		}
		if kafka.Header(rec, events.HeaderCorrelationID) == "" {
			t.Fatal("INVENTORY_RELEASED has no correlation id header")
		}
		var d events.InventoryReleasedData
		if err := env.DecodeData(&d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	t.Fatalf("no INVENTORY_RELEASED for order %s", orderID)
	return events.InventoryReleasedData{}
}

func TestCancelReleasesExactlyWhatWasReserved(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t)
	ctx := context.Background()
	p.SetStock(t, "REL-A", 10)
	p.SetStock(t, "REL-B", 7)
	other := p.PlaceOrder(t, order.NewItem{SKU: "REL-A", Quantity: 2, UnitPrice: 100})
	mine := p.PlaceOrder(t,
		order.NewItem{SKU: "REL-A", Quantity: 3, UnitPrice: 100},
		order.NewItem{SKU: "REL-B", Quantity: 2, UnitPrice: 100},
		order.NewItem{SKU: "REL-A", Quantity: 1, UnitPrice: 100})
	p.WaitForStatus(t, other.ID, order.StatusConfirmed)
	p.WaitForStatus(t, mine.ID, order.StatusConfirmed)
	if a, b := mustStock(t, p, "REL-A"), mustStock(t, p, "REL-B"); a.Reserved != 6 || b.Reserved != 2 {
		t.Fatalf("reserved A=%d B=%d, want 6 and 2", a.Reserved, b.Reserved)
	}
	// An order that never got stock: its cancellation releases nothing.
	ghost := p.PlaceOrder(t, order.NewItem{SKU: "REL-GHOST", Quantity: 1, UnitPrice: 1})
	if got := p.WaitForStatus(t, ghost.ID, order.StatusCancelled); got.CancelReason != order.ReasonOutOfStock {
		t.Fatalf("ghost order cancelled with %q", got.CancelReason)
	}

	req := newRequest(t, "POST", "/api/v1/orders/"+mine.ID.String()+"/cancel", `{"reason":"changed my mind"}`)
	if rec := serve(p, req); rec.Code != 200 {
		t.Fatalf("cancel: %d %s", rec.Code, rec.Body)
	}
	d := readReleased(t, p, mine.ID)
	want := events.InventoryReleasedData{OrderID: mine.ID.String(), Reason: "changed my mind",
		Lines: []events.ReservedLine{{SKU: "REL-A", Quantity: 4}, {SKU: "REL-B", Quantity: 2}}}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("INVENTORY_RELEASED %+v, want %+v", d, want)
	}
	waitQuiet(t, p, inventory.ConsumerGroup, order.SagaGroup)
	a, b := mustStock(t, p, "REL-A"), mustStock(t, p, "REL-B")
	if a != (stockRow{OnHand: 10, Reserved: 2, Held: 2}) || b != (stockRow{OnHand: 7, Reserved: 0, Held: 0}) {
		t.Fatalf("after release A=%+v B=%+v", a, b)
	}
	var released int
	if err := p.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM reservations WHERE order_id = $1 AND status = 'released'`, mine.ID).Scan(&released); err != nil {
		t.Fatal(err)
	}
	if released != 2 {
		t.Fatalf("%d released reservations, want 2", released)
	}
	if n := outboxCount(t, p, events.InventoryReleased); n != 1 {
		t.Fatalf("%d INVENTORY_RELEASED events, want 1 (the ghost order held nothing)", n)
	}
}

func TestShippingCommitsTheReservation(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t)
	ctx := context.Background()
	p.SetStock(t, "SHIP-A", 10)
	o := p.PlaceOrder(t, order.NewItem{SKU: "SHIP-A", Quantity: 3, UnitPrice: 100})
	p.WaitForStatus(t, o.ID, order.StatusConfirmed)
	for _, st := range []order.Status{order.StatusProcessing, order.StatusShipped} {
		if _, err := p.Orders.ChangeStatus(ctx, o.ID, st, "", "test", nil); err != nil {
			t.Fatal(err)
		}
	}
	p.WaitFor(t, "reservation committed", func(ctx context.Context) (bool, error) {
		var st string
		err := p.DB.Pool.QueryRow(ctx, `SELECT status FROM reservations WHERE order_id = $1`, o.ID).Scan(&st)
		return st == string(inventory.StatusCommitted), err
	})
	if got := mustStock(t, p, "SHIP-A"); got != (stockRow{OnHand: 7, Reserved: 0, Held: 0}) {
		t.Fatalf("after shipping: %+v, want on_hand 7, reserved 0", got)
	}
	var delta, resulting int64
	var reason string
	if err := p.DB.Pool.QueryRow(ctx, `SELECT delta, resulting_on_hand, reason FROM inventory_adjustments
		WHERE sku = 'SHIP-A' AND order_id = $1`, o.ID).Scan(&delta, &resulting, &reason); err != nil {
		t.Fatalf("ledger row of the shipment: %v", err)
	}
	if delta != -3 || resulting != 7 {
		t.Fatalf("ledger delta %d resulting %d (%s)", delta, resulting, reason)
	}
}

func TestUnknownSKUFailsTheReservationNotTheConsumer(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t)
	p.SetStock(t, "REAL-1", 5)
	o := p.PlaceOrder(t, order.NewItem{SKU: "REAL-1", Quantity: 1, UnitPrice: 1}, order.NewItem{SKU: "GHOST-1", Quantity: 2, UnitPrice: 1})
	got := p.WaitForStatus(t, o.ID, order.StatusCancelled)
	if got.CancelReason != order.ReasonOutOfStock {
		t.Fatalf("cancel reason %q", got.CancelReason)
	}
	if st := mustStock(t, p, "REAL-1"); st.Reserved != 0 {
		t.Fatalf("REAL-1 reserved %d: a failed order must reserve nothing", st.Reserved)
	}
	var raw string
	if err := p.DB.Pool.QueryRow(context.Background(), `SELECT event_data FROM outbox_events WHERE event_type = $1`,
		events.InventoryReservationFailed).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	env, err := events.Decode([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	var d events.InventoryReservationFailedData
	if err := env.DecodeData(&d); err != nil {
		t.Fatal(err)
	}
	want := []events.ShortLine{{SKU: "GHOST-1", Requested: 2, Available: 0, Reason: inventory.ShortUnknownSKU}}
	if d.Reason != order.ReasonOutOfStock || !reflect.DeepEqual(d.Short, want) {
		t.Fatalf("failure event %+v", d)
	}
}

func TestMalformedOrderEventIsDeadLetteredAndTheConsumerGoesOn(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t)
	p.SetStock(t, "OK-1", 5)
	ctx := context.Background()
	poison := []*kgo.Record{
		{Topic: events.OrderCreated, Key: []byte("x"), Value: []byte(`{not json`)},
		{Topic: events.OrderCreated, Key: []byte("y"), Value: mustEnvelope(t, events.OrderCreated, "not-a-uuid", events.OrderCreatedData{
			OrderID: "not-a-uuid", Items: []events.OrderItem{{SKU: "OK-1", Quantity: 1}}})},
		{Topic: events.OrderCreated, Key: []byte("z"), Value: mustEnvelope(t, events.OrderCreated, uuid.NewString(), map[string]any{
			"order_id": uuid.NewString(), "items": []map[string]any{{"sku": "OK-1", "quantity": -4}}})},
	}
	if err := p.Producer.ProduceSync(ctx, poison...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	o := p.PlaceOrder(t, order.NewItem{SKU: "OK-1", Quantity: 1, UnitPrice: 1})
	p.WaitForStatus(t, o.ID, order.StatusConfirmed)
	dead := kafkatest.Read(t, p.Broker, events.OrderCreated+events.DLQSuffix, len(poison), p.WaitTimeout())
	if len(dead) != len(poison) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(poison))
	}
	for _, rec := range dead {
		if g := kafka.Header(rec, kafka.HeaderDLTOriginalGroup); g != inventory.ConsumerGroup {
			t.Fatalf("dead letter group header %q", g)
		}
	}
	if st := mustStock(t, p, "OK-1"); st.Reserved != 1 {
		t.Fatalf("reserved %d, want 1 (only the valid order)", st.Reserved)
	}
}

func mustEnvelope(t *testing.T, typ, subject string, data any) []byte {
	t.Helper()
	ev, err := events.New(typ, events.AggregateOrder, subject, data, "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func envelope(t *testing.T, typ, orderID string, data any) events.Envelope {
	t.Helper()
	env, err := events.Decode(mustEnvelope(t, typ, orderID, data))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// The reactions called directly, in the orders a broker may deliver them.
func TestReactionsAreIdempotentAndOrderSafe(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t, apptest.Options{NoConsumers: true, NoRelay: true})
	ctx := context.Background()
	// The app's own service, but counting how often it wakes the relay:
	// once after each commit that wrote an event.
	var wakes atomic.Int64
	svc := inventory.NewService(p.DB.Pool, inventory.WithRelayWake(func() { wakes.Add(1) }))
	p.SetStock(t, "IDEM-1", 10)
	created := func(id uuid.UUID, q int) events.Envelope {
		return envelope(t, events.OrderCreated, id.String(), events.OrderCreatedData{OrderID: id.String(),
			Items: []events.OrderItem{{SKU: "IDEM-1", Quantity: q, UnitPrice: "1.00"}}})
	}
	cancelled := func(id uuid.UUID) events.Envelope {
		return envelope(t, events.OrderCancelled, id.String(), events.OrderCancelledData{OrderID: id.String(), Reason: "x"})
	}
	shipped := func(id uuid.UUID) events.Envelope {
		return envelope(t, events.OrderStatusUpdated, id.String(), events.OrderStatusUpdatedData{OrderID: id.String(),
			OldStatus: "PROCESSING", NewStatus: "SHIPPED"})
	}
	const inbox = "test-inbox"
	type step struct {
		name  string
		do    func() error
		want  stockRow
		wakes int64 // in all so far
	}
	var steps []step
	a, b, c := uuid.New(), uuid.New(), uuid.New()
	createdA, cancelA := created(a, 3), cancelled(a)
	shipB := shipped(b)
	steps = append(steps,
		step{"reserve A", func() error { return svc.Reserve(ctx, inbox, createdA) }, stockRow{10, 3, 3}, 1},
		step{"same ORDER_CREATED again", func() error { return svc.Reserve(ctx, inbox, createdA) }, stockRow{10, 3, 3}, 1},
		step{"ORDER_CREATED of A under a new event id", func() error { return svc.Reserve(ctx, inbox, created(a, 3)) }, stockRow{10, 3, 3}, 1},
		step{"cancel A", func() error { return svc.Release(ctx, inbox, cancelA) }, stockRow{10, 0, 0}, 2},
		step{"cancel A again", func() error { return svc.Release(ctx, inbox, cancelA) }, stockRow{10, 0, 0}, 2},
		step{"reserve B", func() error { return svc.Reserve(ctx, inbox, created(b, 4)) }, stockRow{10, 4, 4}, 3},
		step{"ship B", func() error { return svc.Commit(ctx, inbox, shipB) }, stockRow{6, 0, 0}, 3},
		step{"ship B again", func() error { return svc.Commit(ctx, inbox, shipB) }, stockRow{6, 0, 0}, 3},
		step{"cancel C before its ORDER_CREATED", func() error { return svc.Release(ctx, inbox, cancelled(c)) }, stockRow{6, 0, 0}, 3},
		step{"late ORDER_CREATED of C reserves nothing", func() error { return svc.Reserve(ctx, inbox, created(c, 1)) }, stockRow{6, 0, 0}, 3},
	)
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := mustStock(t, p, "IDEM-1"); got != st.want {
			t.Fatalf("after %s: %+v, want %+v", st.name, got, st.want)
		}
		if got := wakes.Load(); got != st.wakes {
			t.Fatalf("after %s: relay woken %d times in all, want %d", st.name, got, st.wakes)
		}
	}
	for typ, want := range map[string]int{events.InventoryReserved: 2, events.InventoryReleased: 1, events.InventoryReservationFailed: 0} {
		if n := outboxCount(t, p, typ); n != want {
			t.Errorf("%d %s events, want %d", n, typ, want)
		}
	}
}

// A cancellation racing the reservation of the same order never leaks
// stock, whichever commits first.
func TestCancelRacingReservationNeverLeaksStock(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t, apptest.Options{NoConsumers: true, NoRelay: true})
	ctx := context.Background()
	p.SetStock(t, "RACE-1", 1000)
	const n = 60
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for range n {
		id := uuid.New()
		cr := envelope(t, events.OrderCreated, id.String(), events.OrderCreatedData{OrderID: id.String(),
			Items: []events.OrderItem{{SKU: "RACE-1", Quantity: 2, UnitPrice: "1"}}})
		ca := envelope(t, events.OrderCancelled, id.String(), events.OrderCancelledData{OrderID: id.String()})
		wg.Go(func() { errs <- p.Inventory.Reserve(ctx, "race", cr) })
		wg.Go(func() { errs <- p.Inventory.Release(ctx, "race", ca) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st := mustStock(t, p, "RACE-1"); st.Reserved != 0 || st.Held != 0 {
		t.Fatalf("after %d cancelled orders: %+v, want nothing reserved", n, st)
	}
	var released, tombstones int
	if err := p.DB.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'released'), count(*) FILTER (WHERE state = 'cancelled')
		FROM inventory_orders`).Scan(&released, &tombstones); err != nil {
		t.Fatal(err)
	}
	if released+tombstones != n {
		t.Fatalf("%d released + %d cancelled-first orders, want %d", released, tombstones, n)
	}
	t.Logf("%d reserved-then-released, %d cancelled-first", released, tombstones)
}
