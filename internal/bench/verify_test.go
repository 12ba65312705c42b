package bench_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/trackops/trackops/internal/bench"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

var verifyOpts = bench.VerifyOptions{OutboxBound: time.Minute, PendingBound: time.Hour}

// placeOrders creates n orders through the Order service, as the API would.
func placeOrders(t *testing.T, db *postgrestest.Database, n int) []uuid.UUID {
	t.Helper()
	svc := order.NewService(db.Pool)
	ids := make([]uuid.UUID, n)
	for i := range ids {
		res, err := svc.Create(context.Background(), order.CreateRequest{Actor: "test", Order: order.NewOrder{
			CustomerID: "c1", Items: []order.NewItem{{SKU: "SKU-1", Quantity: 1, UnitPrice: 999}}}})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = res.Order.ID
	}
	return ids
}

func check(t *testing.T, rep bench.Report, name string) bench.CheckResult {
	t.Helper()
	for _, c := range rep.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, rep.Checks)
	return bench.CheckResult{}
}

func hasTable(t *testing.T, db *postgrestest.Database, name string) bool {
	var ok bool
	if err := db.Pool.QueryRow(context.Background(), `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestVerifyPassesOnConsistentData(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ids := placeOrders(t, db, 3)
	ctx := context.Background()
	svc := order.NewService(db.Pool)
	// A legal path with several steps, and a cancellation.
	for _, st := range []order.Status{order.StatusConfirmed, order.StatusProcessing, order.StatusShipped} {
		// The platform's own moves (no inventory runs here to hold stock).
		if _, err := svc.Update(ctx, ids[0], func(o *order.Order) error {
			_, err := o.Transition(st, "test", "test", svc.Now())
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.Cancel(ctx, ids[1], "changed my mind", "test"); err != nil {
		t.Fatal(err)
	}
	rep, err := bench.Verify(ctx, db.Pool, verifyOpts)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		var b strings.Builder
		rep.Write(&b)
		t.Fatalf("verify failed on consistent data:\n%s", b.String())
	}
	if !hasTable(t, db, "inventory_items") {
		for _, name := range []string{"stock-bounds", "reservation-sums", "pending-orders"} {
			if c := check(t, rep, name); c.Status != bench.CheckSkipped {
				t.Errorf("%s: status %s without inventory tables, want skipped", name, c.Status)
			}
		}
	}
	if c := check(t, rep, "order-histories"); c.Status != bench.CheckPass {
		t.Errorf("order-histories: %s", c.Status)
	}
}

func TestVerifyFindsBrokenInvariants(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		check string
		opts  *bench.VerifyOptions
		// breakIt breaks an invariant around the first order and returns
		// text the offending row must mention.
		breakIt   func(t *testing.T, db *postgrestest.Database, id uuid.UUID) string
		inventory bool
	}{
		{name: "status changed without history", check: "order-histories", breakIt: func(t *testing.T, db *postgrestest.Database, id uuid.UUID) string {
			execSQL(t, db, `UPDATE orders SET status = 'SHIPPED' WHERE id = $1`, id)
			return id.String()
		}},
		{name: "illegal transition recorded", check: "order-histories", breakIt: func(t *testing.T, db *postgrestest.Database, id uuid.UUID) string {
			execSQL(t, db, `UPDATE orders SET status = 'DELIVERED', version = 2 WHERE id = $1`, id)
			execSQL(t, db, `INSERT INTO order_status_history (order_id, from_status, to_status, actor, version) VALUES ($1, 'PENDING', 'DELIVERED', 'hand', 2)`, id)
			return "illegal transition PENDING -> DELIVERED"
		}},
		{name: "version ahead of history", check: "order-histories", breakIt: func(t *testing.T, db *postgrestest.Database, id uuid.UUID) string {
			execSQL(t, db, `UPDATE orders SET version = 7 WHERE id = $1`, id)
			return "version 7 but history ends at version 1"
		}},
		{name: "order without history", check: "order-histories", breakIt: func(t *testing.T, db *postgrestest.Database, id uuid.UUID) string {
			execSQL(t, db, `DELETE FROM order_status_history WHERE order_id = $1`, id)
			return "with no history"
		}},
		{name: "old unpublished outbox row", check: "outbox-drained", breakIt: func(t *testing.T, db *postgrestest.Database, id uuid.UUID) string {
			execSQL(t, db, `UPDATE outbox_events SET created_at = now() - interval '1 hour' WHERE aggregate_id = $1`, id.String())
			return id.String()
		}},
		{name: "outbox row given up", check: "outbox-failed", breakIt: func(t *testing.T, db *postgrestest.Database, id uuid.UUID) string {
			execSQL(t, db, `UPDATE outbox_events SET failed = true, last_error = 'broker gone' WHERE aggregate_id = $1`, id.String())
			return "broker gone"
		}},
		{name: "reserved above on_hand", check: "stock-bounds", inventory: true, breakIt: func(t *testing.T, db *postgrestest.Database, id uuid.UUID) string {
			execSQL(t, db, `ALTER TABLE inventory_items DROP CONSTRAINT IF EXISTS inventory_items_stock_check`)
			execSQL(t, db, `INSERT INTO inventory_items (sku, name, on_hand, reserved) VALUES ('OVERSOLD', 'x', 1, 2)`)
			// The reservation matches, so only the bound is broken.
			execSQL(t, db, `INSERT INTO reservations (order_id, sku, quantity, status) VALUES ($1, 'OVERSOLD', 2, 'reserved')`, id)
			return "sku=OVERSOLD"
		}},
		{name: "reserved without reservations", check: "reservation-sums", inventory: true, breakIt: func(t *testing.T, db *postgrestest.Database, id uuid.UUID) string {
			execSQL(t, db, `INSERT INTO inventory_items (sku, name, on_hand, reserved) VALUES ('GHOST', 'x', 10, 3)`)
			return "sku=GHOST reserved=3 held_reservations=0"
		}},
		{name: "order stuck in PENDING", check: "pending-orders", inventory: true, breakIt: func(t *testing.T, db *postgrestest.Database, id uuid.UUID) string {
			// Backdate without the row-version trigger, which would (rightly)
			// count the hand-made change as a new version without history.
			execSQL(t, db, `ALTER TABLE orders DISABLE TRIGGER orders_row_version`)
			execSQL(t, db, `UPDATE orders SET created_at = now() - interval '2 hours' WHERE id = $1`, id)
			execSQL(t, db, `ALTER TABLE orders ENABLE TRIGGER orders_row_version`)
			return id.String()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := postgrestest.New(t)
			if tc.inventory && !hasTable(t, db, "inventory_items") {
				t.Fatal("the migrated schema has no inventory_items table: the inventory invariants would go unchecked")
			}
			ids := placeOrders(t, db, 2)
			want := tc.breakIt(t, db, ids[0])
			rep, err := bench.Verify(context.Background(), db.Pool, verifyOpts)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() {
				t.Fatal("verify passed on a broken database")
			}
			if n := rep.Failed(); n != 1 {
				t.Errorf("%d checks failed, want the one broken (%s)", n, tc.check)
			}
			c := check(t, rep, tc.check)
			if c.Status != bench.CheckFail || c.Violations != 1 || len(c.Offenders) != 1 || !strings.Contains(c.Offenders[0], want) {
				t.Fatalf("%s: status %s, %d violations %q; want one offender mentioning %q", tc.check, c.Status, c.Violations, c.Offenders, want)
			}
			for _, other := range rep.Checks {
				if other.Name != tc.check && other.Status == bench.CheckFail {
					t.Errorf("check %s also failed: %v", other.Name, other.Offenders)
				}
			}
		})
	}
}

func TestVerifyAllowFailed(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ids := placeOrders(t, db, 1)
	execSQL(t, db, `UPDATE outbox_events SET failed = true WHERE aggregate_id = $1`, ids[0].String())
	opts := verifyOpts
	opts.AllowFailed = true
	rep, err := bench.Verify(context.Background(), db.Pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || check(t, rep, "outbox-failed").Status != bench.CheckSkipped {
		t.Fatalf("--allow-failed: %+v", rep.Checks)
	}
}

func execSQL(t *testing.T, db *postgrestest.Database, sql string, args ...any) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
