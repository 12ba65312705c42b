package order_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/trackops/trackops/internal/app/apptest"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/order"
)

// TestSagaRetriesAnOrderItCannotSeeYet: inventory's answer may arrive
// before the order's transaction is visible (under the cdc strategy the
// stream carries a transaction from its commit record on), so an outcome
// naming an order the database does not show is a failure to retry, not a
// dead letter at the first attempt; once the order is there, the same
// event confirms it.
func TestSagaRetriesAnOrderItCannotSeeYet(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t, apptest.Options{NoConsumers: true})
	ctx := context.Background()
	saga := order.NewSaga(p.Orders).Handler(order.SagaGroup)
	reserved := func(id uuid.UUID) events.Envelope {
		t.Helper()
		ev, err := events.New(events.InventoryReserved, events.AggregateOrder, id.String(),
			events.InventoryReservedData{OrderID: id.String()}, "")
		if err != nil {
			t.Fatal(err)
		}
		return ev.Envelope
	}

	err := saga(ctx, reserved(uuid.New()))
	if err == nil || events.IsPermanent(err) || !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("outcome for an order not there: %v, want a retryable not-found failure", err)
	}

	p.SetStock(t, "SAGA-LATE", 3)
	o := p.PlaceOrder(t, order.NewItem{SKU: "SAGA-LATE", Quantity: 1, UnitPrice: 100})
	if err := saga(ctx, reserved(o.ID)); err != nil {
		t.Fatalf("outcome once the order is there: %v", err)
	}
	got, err := p.Orders.Load(ctx, o.ID)
	if err != nil || got.Status != order.StatusConfirmed {
		t.Fatalf("order after the saga: %+v %v, want CONFIRMED", got, err)
	}
}

// TestSagaAppliesAnOutcomeOnceHoweverOftenItArrives: the inbox claim is
// pipelined with the order's read, and an outcome delivered many times at
// once still changes the order once — one CONFIRMED entry, one version
// step, one event — whichever delivery wins the claim.
func TestSagaAppliesAnOutcomeOnceHoweverOftenItArrives(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t, apptest.Options{NoConsumers: true, NoRelay: true})
	ctx := context.Background()
	saga := order.NewSaga(p.Orders).Handler(order.SagaGroup)
	p.SetStock(t, "SAGA-ONCE", 3)
	o := p.PlaceOrder(t, order.NewItem{SKU: "SAGA-ONCE", Quantity: 1, UnitPrice: 100})
	ev, err := events.New(events.InventoryReserved, events.AggregateOrder, o.ID.String(),
		events.InventoryReservedData{OrderID: o.ID.String()}, "")
	if err != nil {
		t.Fatal(err)
	}
	const deliveries = 8
	errs := make(chan error, deliveries)
	var wg sync.WaitGroup
	for range deliveries {
		wg.Go(func() { errs <- saga(ctx, ev.Envelope) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("delivery: %v", err)
		}
	}
	got, err := p.Orders.Load(ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != order.StatusConfirmed || got.Version != o.Version+1 {
		t.Fatalf("order after %d deliveries: %s at version %d, want CONFIRMED at %d", deliveries, got.Status, got.Version, o.Version+1)
	}
	var confirmed, evs int
	if err := p.DB.Pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM order_status_history WHERE order_id = $1 AND to_status = 'CONFIRMED'),
		(SELECT count(*) FROM outbox_events WHERE aggregate_id = $2 AND event_type <> 'ORDER_CREATED')`,
		o.ID, o.ID.String()).Scan(&confirmed, &evs); err != nil {
		t.Fatal(err)
	}
	if confirmed != 1 || evs != 1 {
		t.Fatalf("after %d deliveries: %d CONFIRMED entries and %d status events, want 1 and 1", deliveries, confirmed, evs)
	}
}
