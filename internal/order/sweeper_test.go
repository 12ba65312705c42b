package order_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/trackops/trackops/internal/app/apptest"
	"github.com/trackops/trackops/internal/inventory"
	"github.com/trackops/trackops/internal/order"
)

func newSweeper(p *apptest.Platform) *order.Sweeper {
	// A timeout of a nanosecond makes every PENDING order stuck.
	return order.NewSweeper(p.Orders, p.Inventory, order.SweeperConfig{Timeout: time.Nanosecond, Logger: slog.New(slog.DiscardHandler)})
}

func stock(t *testing.T, p *apptest.Platform, sku string) (onHand, reserved int64) {
	t.Helper()
	if err := p.DB.Pool.QueryRow(context.Background(), `SELECT on_hand, reserved FROM inventory_items WHERE sku = $1`, sku).Scan(&onHand, &reserved); err != nil {
		t.Fatal(err)
	}
	return onHand, reserved
}

// waitConsumed waits until consumer has applied every event of the given
// types in the outbox (its inbox holds their ids).
func waitConsumed(t *testing.T, p *apptest.Platform, consumer string, types ...string) {
	t.Helper()
	p.WaitFor(t, consumer+" applied every outbox event it consumes", func(ctx context.Context) (bool, error) {
		var left int
		err := p.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox_events o WHERE o.event_type = ANY($2)
			AND NOT EXISTS (SELECT 1 FROM processed_events e WHERE e.consumer = $1 AND e.event_id = o.id::text)`,
			consumer, types).Scan(&left)
		return left == 0, err
	})
}

// TestSweeperRedrivesAStuckOrder: an order whose ORDER_CREATED nobody
// consumed is re-driven by the sweeper — inventory reserves it — and
// confirmed. When the consumers come back, the original event reserves
// nothing more and the saga leaves the order as it is.
func TestSweeperRedrivesAStuckOrder(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t, apptest.Options{NoConsumers: true})
	p.SetStock(t, "SWEEP-A", 5)
	o := p.PlaceOrder(t, order.NewItem{SKU: "SWEEP-A", Quantity: 2, UnitPrice: 100})

	res, err := newSweeper(p).SweepOnce(context.Background())
	if err != nil || res[order.SweepConfirmed] != 1 {
		t.Fatalf("sweep: %v %v, want one order confirmed", res, err)
	}
	got, err := p.Orders.Load(context.Background(), o.ID)
	if err != nil || got.Status != order.StatusConfirmed {
		t.Fatalf("order after the sweep: %+v %v, want CONFIRMED", got, err)
	}
	if _, reserved := stock(t, p, "SWEEP-A"); reserved != 2 {
		t.Fatalf("reserved %d after the re-drive, want 2", reserved)
	}
	// The consumers come back and handle the original events.
	p.StartInventory(t, inventory.ConsumerGroup, inventory.ConsumerGroup)
	p.StartSaga(t, order.SagaGroup, order.SagaGroup)
	p.WaitSettled(t)
	waitConsumed(t, p, inventory.ConsumerGroup, "ORDER_CREATED", "ORDER_CANCELLED")
	waitConsumed(t, p, order.SagaGroup, order.SagaTopics...)
	if _, reserved := stock(t, p, "SWEEP-A"); reserved != 2 {
		t.Fatalf("reserved %d once the original ORDER_CREATED was consumed, want still 2", reserved)
	}
	if got, _ := p.Orders.Load(context.Background(), o.ID); got.Status != order.StatusConfirmed || got.Version != 2 {
		t.Fatalf("order after the saga caught up: %s v%d, want CONFIRMED v2", got.Status, got.Version)
	}
}

// TestSweeperCancelsWhatRedriveCannotHelp: stuck orders inventory cannot
// reserve (one SKU short of an all-or-nothing pair, an unknown SKU) end
// CANCELLED with reason TIMEOUT, holding nothing, and inventory will not
// reserve them later either.
func TestSweeperCancelsWhatRedriveCannotHelp(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t, apptest.Options{NoConsumers: true})
	p.SetStock(t, "SWEEP-B", 10)
	p.SetStock(t, "SWEEP-C", 1)
	short := p.PlaceOrder(t, order.NewItem{SKU: "SWEEP-B", Quantity: 3, UnitPrice: 100}, order.NewItem{SKU: "SWEEP-C", Quantity: 2, UnitPrice: 100})
	unknown := p.PlaceOrder(t, order.NewItem{SKU: "NO-SUCH-SKU", Quantity: 1, UnitPrice: 100})

	res, err := newSweeper(p).SweepOnce(context.Background())
	if err != nil || res[order.SweepCancelled] != 2 {
		t.Fatalf("sweep: %v %v, want two orders cancelled", res, err)
	}
	for _, id := range []uuid.UUID{short.ID, unknown.ID} {
		got, err := p.Orders.Load(context.Background(), id)
		if err != nil || got.Status != order.StatusCancelled || got.CancelReason != order.ReasonTimeout {
			t.Fatalf("order %s after the sweep: %+v %v, want CANCELLED/TIMEOUT", id, got, err)
		}
		if hold, err := p.Orders.Hold(context.Background(), id); err != nil || hold != order.HoldNone {
			t.Fatalf("order %s holds %q (%v) after its cancellation", id, hold, err)
		}
	}
	for _, sku := range []string{"SWEEP-B", "SWEEP-C"} {
		if _, reserved := stock(t, p, sku); reserved != 0 {
			t.Fatalf("%s: %d units still reserved", sku, reserved)
		}
	}
	// The original events, consumed late, change nothing.
	p.StartInventory(t, inventory.ConsumerGroup, inventory.ConsumerGroup)
	p.StartSaga(t, order.SagaGroup, order.SagaGroup)
	p.WaitSettled(t)
	waitConsumed(t, p, inventory.ConsumerGroup, "ORDER_CREATED", "ORDER_CANCELLED")
	for _, sku := range []string{"SWEEP-B", "SWEEP-C"} {
		if _, reserved := stock(t, p, sku); reserved != 0 {
			t.Fatalf("%s: %d units reserved after the late events", sku, reserved)
		}
	}
}

// TestTwoSweepersNeverDoubleCancelOrRelease runs two sweepers over the same
// stuck orders at once (as two processes would if the lease overlapped):
// every order is decided exactly once, stock is reserved exactly for the
// confirmed ones, and nothing is released twice.
func TestTwoSweepersNeverDoubleCancelOrRelease(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t, apptest.Options{NoConsumers: true})
	p.SetStock(t, "SWEEP-D", 6)
	var ids []uuid.UUID
	for range 12 { // 6 fit, 6 do not
		ids = append(ids, p.PlaceOrder(t, order.NewItem{SKU: "SWEEP-D", Quantity: 1, UnitPrice: 100}).ID)
	}
	// Three already reserved by inventory, their answer never consumed.
	for _, id := range ids[:3] {
		o, err := p.Orders.Load(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		created, err := order.CreatedEvent(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Inventory.Redrive(context.Background(), created.Envelope); err != nil {
			t.Fatal(err)
		}
	}
	a, b := newSweeper(p), newSweeper(p)
	var wg sync.WaitGroup
	results := make([]order.SweepResult, 2)
	for i, s := range []*order.Sweeper{a, b} {
		wg.Go(func() {
			res, err := s.SweepOnce(context.Background())
			if err != nil {
				t.Error(err)
			}
			results[i] = res
		})
	}
	wg.Wait()
	ctx := context.Background()
	decided := results[0][order.SweepConfirmed] + results[1][order.SweepConfirmed] +
		results[0][order.SweepCancelled] + results[1][order.SweepCancelled]
	if decided != len(ids) {
		t.Fatalf("the two sweepers decided %d orders (%v, %v), want %d: each exactly once", decided, results[0], results[1], len(ids))
	}
	var confirmed, cancelled, sweeperMoves, cancelEvents, released int
	if err := p.DB.Pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM orders WHERE status = 'CONFIRMED'),
			(SELECT count(*) FROM orders WHERE status = 'CANCELLED' AND cancel_reason = 'TIMEOUT'),
			(SELECT count(*) FROM order_status_history WHERE actor = $1),
			(SELECT count(*) FROM outbox_events WHERE event_type = 'ORDER_CANCELLED'),
			(SELECT count(*) FROM outbox_events WHERE event_type = 'INVENTORY_RELEASED')`, order.SweeperActor).
		Scan(&confirmed, &cancelled, &sweeperMoves, &cancelEvents, &released); err != nil {
		t.Fatal(err)
	}
	if confirmed != 6 || cancelled != 6 || sweeperMoves != 12 || cancelEvents != 6 || released != 0 {
		t.Fatalf("confirmed %d, cancelled %d, sweeper moves %d, ORDER_CANCELLED %d, INVENTORY_RELEASED %d; want 6, 6, 12, 6, 0",
			confirmed, cancelled, sweeperMoves, cancelEvents, released)
	}
	if onHand, reserved := stock(t, p, "SWEEP-D"); onHand != 6 || reserved != 6 {
		t.Fatalf("SWEEP-D on_hand %d reserved %d, want 6 and 6", onHand, reserved)
	}
	for _, id := range ids[:3] {
		if got, _ := p.Orders.Load(ctx, id); got.Status != order.StatusConfirmed {
			t.Fatalf("order %s, reserved before the sweep, is %s", id, got.Status)
		}
	}
	if n := a.Status().Totals[order.SweepConfirmed] + b.Status().Totals[order.SweepConfirmed]; n != 6 {
		t.Fatalf("status totals count %d confirmations, want 6", n)
	}
}
