package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestSagaUnderBothStrategies runs the inventory saga on the real binary
// under each event strategy; downstream consumers must not be able to tell
// which one publishes the order events. 200 concurrent single-unit orders
// of a SKU with on_hand 50 end as exactly 50 CONFIRMED and 150 CANCELLED
// (OUT_OF_STOCK), reserved 50, available 0, with the item's reserved count
// equal to the units its reservations hold at every sampled moment (what no
// constraint enforces; 0 <= reserved <= on_hand is a CHECK and cannot fail
// here); then a cancel releases its unit and a shipment commits its unit.
func TestSagaUnderBothStrategies(t *testing.T) {
	endToEnd(t)
	const (
		orders = 200
		onHand = 50
	)
	for _, strategy := range strategies {
		t.Run(strategy, func(t *testing.T) {
			t.Parallel()
			db := postgrestest.New(t)
			cfg, slot := strategyConfig(t, db, strategy)
			p := Start(t, cfg)
			ctx := context.Background()
			sku := "SAGA-" + uniqueSuffix()

			mustCall(t, p, http.MethodPut, "/api/v1/inventory/"+sku, fmt.Sprintf(`{"name":"last units","on_hand":%d}`, onHand), http.StatusCreated, nil)

			sampler := startStockSampler(db, sku)

			// All buyers start together.
			start := make(chan struct{})
			ids := make([]string, orders)
			var wg sync.WaitGroup
			for i := range orders {
				wg.Go(func() {
					<-start
					o, code, err := placeOrder(p, sku, 1)
					if code != http.StatusCreated {
						t.Errorf("order %d: %d %v", i, code, err)
						return
					}
					ids[i] = o.ID
				})
			}
			close(start)
			wg.Wait()
			if t.Failed() {
				t.FailNow()
			}

			waitUntil(t, "every order decided", 60*time.Second, func(ctx context.Context) (bool, error) {
				var pending int
				err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE status = 'PENDING'`).Scan(&pending)
				return err == nil && pending == 0, err
			})
			samples, violations := sampler.stop()
			if samples == 0 {
				t.Fatal("the stock sampler took no sample")
			}
			if len(violations) > 0 {
				t.Fatalf("reserved differs from the units held by reservations at %d of %d samples, e.g. %s", len(violations), samples, violations[0])
			}

			counts := map[string]int{}
			for _, id := range ids {
				var o struct {
					apiOrder
					CancelReason string `json:"cancel_reason"`
				}
				mustCall(t, p, http.MethodGet, "/api/v1/orders/"+id, "", http.StatusOK, &o)
				switch {
				case o.Status == "CONFIRMED":
					counts["CONFIRMED"]++
				case o.Status == "CANCELLED" && o.CancelReason == "OUT_OF_STOCK":
					counts["CANCELLED OUT_OF_STOCK"]++
				default:
					t.Errorf("order %s ended %s (reason %q)", id, o.Status, o.CancelReason)
				}
			}
			if counts["CONFIRMED"] != onHand || counts["CANCELLED OUT_OF_STOCK"] != orders-onHand {
				t.Fatalf("outcomes %v, want %d CONFIRMED and %d CANCELLED OUT_OF_STOCK", counts, onHand, orders-onHand)
			}
			wantStock(t, p, db, sku, apiItem{OnHand: onHand, Reserved: onHand, Available: 0})

			var confirmed []string
			rows, err := db.Pool.Query(ctx, `SELECT id::text FROM orders WHERE status = 'CONFIRMED' ORDER BY id LIMIT 2`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					t.Fatal(err)
				}
				confirmed = append(confirmed, id)
			}
			rows.Close()

			// Cancelling a confirmed order gives its unit back.
			cancelled, shipped := confirmed[0], confirmed[1]
			mustCall(t, p, http.MethodPost, "/api/v1/orders/"+cancelled+"/cancel", `{"reason":"customer changed mind"}`, http.StatusOK, nil)
			waitReservation(t, db, cancelled, "released")
			wantStock(t, p, db, sku, apiItem{OnHand: onHand, Reserved: onHand - 1, Available: 1})

			// Shipping one commits its unit: it leaves on_hand and reserved.
			for _, status := range []string{"PROCESSING", "SHIPPED"} {
				mustCall(t, p, http.MethodPatch, "/api/v1/orders/"+shipped+"/status", fmt.Sprintf(`{"status":%q}`, status), http.StatusOK, nil)
			}
			waitReservation(t, db, shipped, "committed")
			wantStock(t, p, db, sku, apiItem{OnHand: onHand - 1, Reserved: onHand - 2, Available: 1})

			// Every reservation row accounts for exactly one order's unit.
			var reserved, released, committed int
			if err := db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'reserved'), count(*) FILTER (WHERE status = 'released'),
				count(*) FILTER (WHERE status = 'committed') FROM reservations WHERE sku = $1`, sku).Scan(&reserved, &released, &committed); err != nil {
				t.Fatal(err)
			}
			if reserved != onHand-2 || released != 1 || committed != 1 {
				t.Fatalf("reservations: %d reserved, %d released, %d committed; want %d, 1, 1", reserved, released, committed, onHand-2)
			}
			wantOrderEventsFrom(t, db, strategy, slot)
			if strategy == "cdc" {
				// The connector counts on the process's registry.
				var changes float64
				for _, m := range metricFamily(t, p, "trackops_cdc_events_total").GetMetric() {
					changes += m.GetCounter().GetValue()
				}
				if changes < orders {
					t.Fatalf("trackops_cdc_events_total sums to %v on /metrics, want at least the %d orders' inserts", changes, orders)
				}
			}
			wantJourney(t, p, shipped, strategy)
		})
	}
}

// wantOrderEventsFrom proves which path carried the order events: the
// outbox wrote ORDER_* rows under the outbox strategy and none under cdc,
// where the built-in connector's slot streamed them instead.
func wantOrderEventsFrom(t *testing.T, db *postgrestest.Database, strategy, slot string) {
	t.Helper()
	var outboxRows, slots int
	if err := db.Pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM outbox_events WHERE event_type LIKE 'ORDER\_%'),
		(SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database())`, slot).Scan(&outboxRows, &slots); err != nil {
		t.Fatal(err)
	}
	switch {
	case strategy == "outbox" && (outboxRows == 0 || slots != 0):
		t.Fatalf("outbox strategy: %d ORDER_* outbox rows, %d slots %s", outboxRows, slots, slot)
	case strategy == "cdc" && (outboxRows != 0 || slots != 1):
		t.Fatalf("cdc strategy: %d ORDER_* outbox rows (want none), %d slots %s (want 1)", outboxRows, slots, slot)
	}
}

// wantStock checks a SKU's stock in PostgreSQL and through the API (which
// may read the Redis inventory store, kept correct after every change).
func wantStock(t *testing.T, p *Process, db *postgrestest.Database, sku string, want apiItem) {
	t.Helper()
	var got apiItem
	if err := db.Pool.QueryRow(context.Background(), `SELECT on_hand, reserved, on_hand - reserved FROM inventory_items WHERE sku = $1`, sku).
		Scan(&got.OnHand, &got.Reserved, &got.Available); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("stock of %s in PostgreSQL: %+v, want %+v", sku, got, want)
	}
	// The consumer drops the cached item right after its commit, so a read
	// between the two may still see the old version: the API must agree
	// within moments, not at the same instant.
	waitUntil(t, "GET /api/v1/inventory/"+sku+" agrees with PostgreSQL", 10*time.Second, func(context.Context) (bool, error) {
		got = apiItem{}
		mustCall(t, p, http.MethodGet, "/api/v1/inventory/"+sku, "", http.StatusOK, &got)
		got.SKU = ""
		if got != want {
			return false, fmt.Errorf("got %+v, want %+v", got, want)
		}
		return true, nil
	})
}

// waitReservation waits until the order's reservation reaches status.
func waitReservation(t *testing.T, db *postgrestest.Database, orderID, status string) {
	t.Helper()
	waitUntil(t, "reservation of "+orderID+" "+status, 60*time.Second, func(ctx context.Context) (bool, error) {
		var n int
		err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM reservations WHERE order_id = $1 AND status = $2`, orderID, status).Scan(&n)
		return err == nil && n == 1, err
	})
}

// stockSampler reads a SKU's stock in a loop and keeps every sample where
// the item's reserved count was not the sum of its held reservations. One
// statement reads both, so each sample is one snapshot: a reservation and
// its stock change commit together or not at all.
type stockSampler struct {
	samples    atomic.Int64
	violations []string
	quit, done chan struct{}
}

func startStockSampler(db *postgrestest.Database, sku string) *stockSampler {
	s := &stockSampler{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.quit:
				return
			case <-time.After(2 * time.Millisecond):
			}
			var onHand, reserved, held int64
			if err := db.Pool.QueryRow(context.Background(), `SELECT on_hand, reserved,
				(SELECT coalesce(sum(quantity), 0) FROM reservations WHERE sku = $1 AND status = 'reserved')::bigint
				FROM inventory_items WHERE sku = $1`, sku).Scan(&onHand, &reserved, &held); err != nil {
				continue
			}
			s.samples.Add(1)
			if reserved != held {
				s.violations = append(s.violations, fmt.Sprintf("on_hand %d reserved %d held by reservations %d", onHand, reserved, held))
			}
		}
	}()
	return s
}

func (s *stockSampler) stop() (int64, []string) {
	close(s.quit)
	<-s.done
	return s.samples.Load(), s.violations
}
