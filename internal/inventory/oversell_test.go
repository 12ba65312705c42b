package inventory_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/trackops/trackops/internal/app/apptest"
	"github.com/trackops/trackops/internal/order"
)

// TestClientCannotConfirmAnOrderInventoryRefused reproduces the oversell
// through the status API: one unit in stock, an order for five, and the
// client asking at once for CONFIRMED. The request is refused with a 409
// saying why, the saga cancels the order OUT_OF_STOCK, nothing is reserved,
// and the order can go nowhere else.
func TestClientCannotConfirmAnOrderInventoryRefused(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t)
	if rec := do(t, p, "PUT", "/api/v1/inventory/SCARCE-1", `{"name":"scarce","on_hand":1}`); rec.Code/100 != 2 {
		t.Fatalf("PUT inventory: %d %s", rec.Code, rec.Body)
	}
	rec := do(t, p, "POST", "/api/v1/orders", `{"customer_id":"c-1","items":[{"sku":"SCARCE-1","quantity":5,"unit_price":"1.00"}]}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	o := decode[order.JSON](t, rec)
	rec = do(t, p, "PATCH", "/api/v1/orders/"+o.ID.String()+"/status", `{"status":"CONFIRMED"}`)
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "confirmed only by the platform") ||
		!strings.HasPrefix(rec.Header().Get("Content-Type"), "application/problem+json") {
		t.Fatalf("client PENDING -> CONFIRMED: %d %s, want a 409 problem detail saying why", rec.Code, rec.Body)
	}
	got := p.WaitForStatus(t, o.ID, order.StatusCancelled)
	if got.CancelReason != order.ReasonOutOfStock {
		t.Fatalf("order cancelled with reason %q, want %s", got.CancelReason, order.ReasonOutOfStock)
	}
	p.WaitSettled(t)
	if s := mustStock(t, p, "SCARCE-1"); s.OnHand != 1 || s.Reserved != 0 {
		t.Fatalf("SCARCE-1 = %+v, want on_hand 1, reserved 0", s)
	}
	var held int
	if err := p.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM reservations WHERE order_id = $1`, o.ID).Scan(&held); err != nil || held != 0 {
		t.Fatalf("order holds %d reservations (%v), want 0", held, err)
	}
	for _, st := range []string{"PROCESSING", "SHIPPED", "DELIVERED", "CONFIRMED"} {
		if rec := do(t, p, "PATCH", "/api/v1/orders/"+o.ID.String()+"/status", fmt.Sprintf(`{"status":%q}`, st)); rec.Code != http.StatusConflict {
			t.Fatalf("cancelled order -> %s: %d %s, want 409", st, rec.Code, rec.Body)
		}
	}
}

// TestStatusChangesRacingTheSagaNeverOutrunTheReservation hammers every
// status change a client can ask for at orders over scarce stock while the
// saga decides them. Sampled afterwards and throughout: no order past
// PENDING (and not cancelled) lacks its reservation, and no SKU is ever
// oversold.
func TestStatusChangesRacingTheSagaNeverOutrunTheReservation(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t)
	const (
		orders  = 40
		onHand  = 12
		workers = 6
	)
	skus := []string{"RACE-A", "RACE-B"}
	for _, sku := range skus {
		p.SetStock(t, sku, onHand)
	}
	s := startSampler(p, skus...)
	ctx := context.Background()
	ids := make(chan string, orders)
	var wg sync.WaitGroup
	// Orders are placed while the workers already hammer them, so many
	// requests meet an order the saga has not decided yet.
	wg.Go(func() {
		defer close(ids)
		for i := range orders {
			o, err := p.PlaceOrderErr(ctx, order.NewItem{SKU: skus[i%2], Quantity: 1 + i%2, UnitPrice: 100})
			if err != nil {
				t.Error(err)
				return
			}
			ids <- o.ID.String()
		}
	})
	statuses := []string{"CONFIRMED", "PROCESSING", "SHIPPED", "DELIVERED", "CANCELLED"}
	var mu sync.Mutex
	codes := map[int]int{}
	for range workers {
		wg.Go(func() {
			for id := range ids {
				// Every order gets a burst of requests in a random order,
				// many of them while it is still PENDING.
				for range 12 {
					st := statuses[rand.IntN(len(statuses)-1)]
					if rand.IntN(10) == 0 {
						st = "CANCELLED"
					}
					rec := serve(p, newRequest(t, "PATCH", "/api/v1/orders/"+id+"/status", fmt.Sprintf(`{"status":%q}`, st)))
					mu.Lock()
					codes[rec.Code]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	p.WaitSettled(t)
	waitQuiet(t, p, "trackops-inventory", order.SagaGroup)
	s.finish(t)
	for code := range codes {
		if code != http.StatusOK && code != http.StatusConflict {
			t.Errorf("status changes answered %d (%d times); want only 200 and 409", code, codes[code])
		}
	}
	// Every order beyond PENDING that is not cancelled holds its stock:
	// reserved, or committed once it shipped.
	rows, err := p.DB.Pool.Query(ctx, `SELECT o.id, o.status, coalesce(io.state, 'none'),
			(SELECT count(*) FROM reservations r WHERE r.order_id = o.id AND r.status IN ('reserved', 'committed'))
		FROM orders o LEFT JOIN inventory_orders io ON io.order_id = o.id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	moved := 0
	for rows.Next() {
		var id, status, state string
		var held int
		if err := rows.Scan(&id, &status, &state, &held); err != nil {
			t.Fatal(err)
		}
		switch status {
		case "PENDING":
			t.Errorf("order %s still PENDING after the loop settled", id)
		case "CANCELLED":
			if held != 0 || state == "reserved" {
				t.Errorf("cancelled order %s still holds stock (state %s, %d reservations)", id, state, held)
			}
		default:
			moved++
			want := map[string]bool{"reserved": true}
			if status == "SHIPPED" || status == "DELIVERED" {
				want["committed"] = true
			}
			if !want[state] || held == 0 {
				t.Errorf("order %s is %s but holds no reservation (inventory state %s, %d reservations)", id, status, state, held)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if moved == 0 {
		t.Fatal("no order moved past PENDING: the race was not exercised")
	}
	for _, sku := range skus {
		st := mustStock(t, p, sku)
		if st.Reserved < 0 || st.Reserved > st.OnHand {
			t.Errorf("%s oversold: %+v", sku, st)
		}
	}
}
