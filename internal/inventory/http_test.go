package inventory_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/trackops/trackops/internal/app/apptest"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/inventory"
	"github.com/trackops/trackops/internal/order"
)

func newRequest(t *testing.T, method, path, body string) *http.Request {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

func serve(p *apptest.Platform, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	p.Handler.ServeHTTP(rec, req)
	return rec
}

func do(t *testing.T, p *apptest.Platform, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	return serve(p, newRequest(t, method, path, body))
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
	return v
}

func TestInventoryAPI(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t, apptest.Options{NoConsumers: true, NoRelay: true})

	rec := do(t, p, "PUT", "/api/v1/inventory/WIDGET-1", `{"name":"Widget","on_hand":100}`)
	if rec.Code != http.StatusCreated || rec.Header().Get("Location") != "/api/v1/inventory/WIDGET-1" {
		t.Fatalf("create: %d %s %v", rec.Code, rec.Body, rec.Header())
	}
	it := decode[inventory.ItemJSON](t, rec)
	if it.SKU != "WIDGET-1" || it.Name != "Widget" || it.OnHand != 100 || it.Reserved != 0 || it.Available != 100 || it.Version != 1 || it.UpdatedAt.IsZero() {
		t.Fatalf("created %+v", it)
	}
	rec = do(t, p, "PUT", "/api/v1/inventory/WIDGET-1", `{"on_hand":80}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("set: %d %s", rec.Code, rec.Body)
	}
	if it = decode[inventory.ItemJSON](t, rec); it.OnHand != 80 || it.Name != "Widget" || it.Version != 2 {
		t.Fatalf("after set %+v", it)
	}
	rec = do(t, p, "POST", "/api/v1/inventory/WIDGET-1/adjust", `{"delta":-5,"reason":"damaged in transit"}`)
	if it = decode[inventory.ItemJSON](t, rec); rec.Code != 200 || it.OnHand != 75 || it.Available != 75 || it.Version != 3 {
		t.Fatalf("adjust: %d %+v", rec.Code, it)
	}
	rec = do(t, p, "GET", "/api/v1/inventory/WIDGET-1", "")
	if it = decode[inventory.ItemJSON](t, rec); rec.Code != 200 || it.OnHand != 75 || rec.Header().Get("ETag") != `"3"` {
		t.Fatalf("get: %d %+v %v", rec.Code, it, rec.Header())
	}
	var ledger []string
	rows, err := p.DB.Pool.Query(context.Background(), `SELECT delta || ' ' || reason || ' ' || resulting_on_hand FROM inventory_adjustments WHERE sku = 'WIDGET-1' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		ledger = append(ledger, s)
	}
	if strings.Join(ledger, "|") != "100 item created 100|-20 on_hand set 80|-5 damaged in transit 75" {
		t.Fatalf("ledger %q", ledger)
	}

	problems := []struct {
		name, method, path, body string
		status                   int
		detail                   string
	}{
		{"unknown sku", "GET", "/api/v1/inventory/NOPE", "", 404, "not found"},
		{"adjust unknown sku", "POST", "/api/v1/inventory/NOPE/adjust", `{"delta":1,"reason":"x"}`, 404, "not found"},
		{"reservations of unknown sku", "GET", "/api/v1/inventory/NOPE/reservations", "", 404, "not found"},
		{"invalid sku", "GET", "/api/v1/inventory/-bad", "", 400, "not valid"},
		{"unknown field", "PUT", "/api/v1/inventory/W2", `{"name":"x","on_hand":1,"price":3}`, 400, "unknown field"},
		{"on_hand as string", "PUT", "/api/v1/inventory/W2", `{"name":"x","on_hand":"1"}`, 400, "on_hand"},
		{"fractional on_hand", "PUT", "/api/v1/inventory/W2", `{"name":"x","on_hand":1.5}`, 400, "on_hand"},
		{"missing on_hand", "PUT", "/api/v1/inventory/W2", `{"name":"x"}`, 422, "invalid fields"},
		{"create without name", "PUT", "/api/v1/inventory/W2", `{"on_hand":3}`, 422, "invalid fields"},
		{"negative on_hand", "PUT", "/api/v1/inventory/W2", `{"name":"x","on_hand":-3}`, 422, "invalid fields"},
		{"zero delta", "POST", "/api/v1/inventory/WIDGET-1/adjust", `{"delta":0,"reason":"x"}`, 422, "invalid fields"},
		{"missing reason", "POST", "/api/v1/inventory/WIDGET-1/adjust", `{"delta":2}`, 422, "invalid fields"},
		{"missing delta", "POST", "/api/v1/inventory/WIDGET-1/adjust", `{"reason":"x"}`, 422, "invalid fields"},
		{"below zero", "POST", "/api/v1/inventory/WIDGET-1/adjust", `{"delta":-76,"reason":"x"}`, 409, "below zero"},
		{"bad limit", "GET", "/api/v1/inventory?limit=0", "", 422, "invalid fields"},
		{"bad cursor", "GET", "/api/v1/inventory?cursor=zzz", "", 400, "cursor"},
		{"bad status filter", "GET", "/api/v1/inventory/WIDGET-1/reservations?status=lost", "", 422, "invalid fields"},
	}
	for _, pr := range problems {
		rec := do(t, p, pr.method, pr.path, pr.body)
		if rec.Code != pr.status || rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s, want %d problem", pr.name, rec.Code, rec.Body, pr.status)
			continue
		}
		prob := decode[httpapi.Problem](t, rec)
		if !strings.Contains(prob.Detail, pr.detail) {
			t.Errorf("%s: detail %q, want it to mention %q", pr.name, prob.Detail, pr.detail)
		}
	}
	if it, _ := p.Inventory.Get(context.Background(), "WIDGET-1"); it.OnHand != 75 || it.Version != 3 {
		t.Fatalf("refused requests changed the item: %+v", it)
	}
}

func TestInventoryListPagesBySKU(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t, apptest.Options{NoConsumers: true, NoRelay: true})
	want := []string{"A-1", "A-2", "B-1", "C-1", "C-2"}
	for i := len(want) - 1; i >= 0; i-- {
		p.SetStock(t, want[i], int64(i))
	}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("pagination does not end")
		}
		rec := do(t, p, "GET", "/api/v1/inventory?limit=2&cursor="+cursor, "")
		if rec.Code != 200 {
			t.Fatalf("list: %d %s", rec.Code, rec.Body)
		}
		page := decode[inventory.ListJSON](t, rec)
		for _, it := range page.Items {
			got = append(got, it.SKU)
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("listed %v, want %v", got, want)
	}
}

// An operator cannot take away stock promised to open orders.
func TestAdjustBelowReservedIsRefused(t *testing.T) {
	t.Parallel()
	p := apptest.Start(t)
	p.SetStock(t, "HELD-1", 5)
	o := p.PlaceOrder(t, order.NewItem{SKU: "HELD-1", Quantity: 4, UnitPrice: 100})
	p.WaitForStatus(t, o.ID, order.StatusConfirmed)

	for _, c := range []struct{ method, path, body string }{
		{"POST", "/api/v1/inventory/HELD-1/adjust", `{"delta":-2,"reason":"stocktake"}`},
		{"PUT", "/api/v1/inventory/HELD-1", `{"on_hand":3}`},
	} {
		rec := do(t, p, c.method, c.path, c.body)
		if rec.Code != http.StatusConflict {
			t.Fatalf("%s %s: %d %s, want 409", c.method, c.path, rec.Code, rec.Body)
		}
		prob := decode[httpapi.Problem](t, rec)
		if !strings.Contains(prob.Detail, "below the 4 units reserved") {
			t.Fatalf("409 detail %q does not say why", prob.Detail)
		}
	}
	rec := do(t, p, "POST", "/api/v1/inventory/HELD-1/adjust", `{"delta":-1,"reason":"stocktake"}`)
	if it := decode[inventory.ItemJSON](t, rec); rec.Code != 200 || it.OnHand != 4 || it.Reserved != 4 || it.Available != 0 {
		t.Fatalf("adjust down to reserved: %d %+v", rec.Code, it)
	}
	rec = do(t, p, "GET", "/api/v1/inventory/HELD-1/reservations?status=reserved", "")
	res := decode[inventory.ReservationsJSON](t, rec)
	if rec.Code != 200 || len(res.Reservations) != 1 || res.Reservations[0].OrderID != o.ID.String() || res.Reservations[0].Quantity != 4 {
		t.Fatalf("reservations: %d %+v", rec.Code, res)
	}
}
