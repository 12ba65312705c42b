package order_test

import (
	"context"
	"testing"

	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestOrderChangesAndTheirEventsCommitTogether: an order's rows and its
// outbox event go to PostgreSQL in one round trip, and still in one
// transaction: when the event cannot be written, neither the new order nor
// the status change is kept; when it can, each write leaves exactly one
// event for the order.
func TestOrderChangesAndTheirEventsCommitTogether(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := postgrestest.New(t)
	svc := order.NewService(db.Pool)
	newOrder := order.NewOrder{CustomerID: "cust-1", Items: []order.NewItem{{SKU: "SKU-1", Quantity: 2, UnitPrice: 150}, {SKU: "SKU-2", Quantity: 1, UnitPrice: 99}}}
	count := func(sql string, args ...any) int {
		t.Helper()
		var n int
		if err := db.Pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	refuse := db.RefuseInserts(t, "outbox_events")

	refuse(true)
	if _, err := svc.Create(ctx, order.CreateRequest{Actor: "api:alice", Order: newOrder}); err == nil {
		t.Fatal("create with its event refused: no error")
	}
	if n := count(`SELECT count(*) FROM orders`) + count(`SELECT count(*) FROM order_items`) + count(`SELECT count(*) FROM order_status_history`); n != 0 {
		t.Fatalf("create with its event refused left %d rows of orders, items and history", n)
	}

	refuse(false)
	res, err := svc.Create(ctx, order.CreateRequest{Actor: "api:alice", Order: newOrder})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Order.ID
	if n := count(`SELECT count(*) FROM order_items WHERE order_id = $1`, id); n != 2 {
		t.Fatalf("%d items, want 2", n)
	}
	if n := count(`SELECT count(*) FROM outbox_events WHERE aggregate_id = $1 AND event_type = 'ORDER_CREATED'`, id.String()); n != 1 {
		t.Fatalf("%d ORDER_CREATED events, want 1", n)
	}

	confirm := func(o *order.Order) error {
		_, err := o.Transition(order.StatusConfirmed, "", "api:ops", svc.Now())
		return err
	}
	refuse(true)
	if _, err := svc.Update(ctx, id, confirm); err == nil {
		t.Fatal("status change with its event refused: no error")
	}
	o, err := svc.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if o.Status != order.StatusPending || o.Version != 1 {
		t.Fatalf("status change with its event refused left the order %s at version %d, want PENDING at 1", o.Status, o.Version)
	}
	if n := count(`SELECT count(*) FROM order_status_history WHERE order_id = $1`, id); n != 1 {
		t.Fatalf("status change with its event refused: %d history entries, want 1", n)
	}

	refuse(false)
	if _, err := svc.Update(ctx, id, confirm); err != nil {
		t.Fatal(err)
	}
	if n := count(`SELECT count(*) FROM outbox_events WHERE aggregate_id = $1`, id.String()); n != 2 {
		t.Fatalf("%d events for the order after create and confirm, want 2", n)
	}
	if n := count(`SELECT count(*) FROM order_status_history WHERE order_id = $1 AND to_status = 'CONFIRMED'`, id); n != 1 {
		t.Fatalf("%d CONFIRMED history entries, want 1", n)
	}
}
