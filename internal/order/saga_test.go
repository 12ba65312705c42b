package order_test

import (
	"context"
	"errors"
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
