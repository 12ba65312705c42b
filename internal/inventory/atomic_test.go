package inventory_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/inventory"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestReservationAndItsEventCommitTogether: a reservation's stock, rows and
// INVENTORY_RESERVED event go to PostgreSQL in one round trip, and still in
// one transaction: when the event cannot be written nothing is reserved and
// the event can be consumed again; when it can, the stock, the reservation
// and exactly one event are there.
func TestReservationAndItsEventCommitTogether(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := postgrestest.New(t)
	svc := inventory.NewService(db.Pool)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO inventory_items (sku, name, on_hand) VALUES ('ATOM-1', 'atom', 10)`); err != nil {
		t.Fatal(err)
	}
	refuse := db.RefuseInserts(t, "outbox_events")
	refuse(true)
	id := uuid.New()
	created := envelope(t, events.OrderCreated, id.String(), events.OrderCreatedData{OrderID: id.String(),
		Items: []events.OrderItem{{SKU: "ATOM-1", Quantity: 3, UnitPrice: "1.00"}}})
	state := func() (reserved, reservations, evs int) {
		t.Helper()
		if err := db.Pool.QueryRow(ctx, `SELECT
			(SELECT reserved FROM inventory_items WHERE sku = 'ATOM-1'),
			(SELECT count(*) FROM reservations WHERE order_id = $1),
			(SELECT count(*) FROM outbox_events WHERE aggregate_id = $2 AND event_type = 'INVENTORY_RESERVED')`,
			id, id.String()).Scan(&reserved, &reservations, &evs); err != nil {
			t.Fatal(err)
		}
		return reserved, reservations, evs
	}

	if err := svc.Reserve(ctx, "test-inbox", created); err == nil {
		t.Fatal("reservation with its event refused: no error")
	}
	if r, n, e := state(); r != 0 || n != 0 || e != 0 {
		t.Fatalf("reservation with its event refused left %d reserved, %d reservations, %d events; want none", r, n, e)
	}

	refuse(false)
	// The same event again: the refused attempt did not claim it.
	if err := svc.Reserve(ctx, "test-inbox", created); err != nil {
		t.Fatal(err)
	}
	if r, n, e := state(); r != 3 || n != 1 || e != 1 {
		t.Fatalf("reservation: %d reserved, %d reservations, %d events; want 3, 1, 1", r, n, e)
	}
}
