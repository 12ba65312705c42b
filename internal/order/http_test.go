package order_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/inventory"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

type apiFixture struct {
	db  *postgrestest.Database
	svc *order.Service
	srv *httptest.Server
}

func newAPI(t *testing.T) *apiFixture {
	t.Helper()
	db := postgrestest.New(t)
	svc := order.NewService(db.Pool)
	h := httpapi.NewRouter(httpapi.RouterConfig{MaxBodyBytes: 64 << 10, Logger: slog.New(slog.DiscardHandler)}, order.NewHandlers(svc).Routes())
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &apiFixture{db: db, svc: svc, srv: srv}
}

func (f *apiFixture) do(t *testing.T, method, path, body string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

const validOrder = `{"customer_id":"cust-1","items":[{"sku":"SKU-1","quantity":2,"unit_price":"19.99"},{"sku":"SKU-2","quantity":1,"unit_price":500}],"shipping_address":{"city":"Lisbon"}}`

func decodeOrder(t *testing.T, b []byte) order.JSON {
	t.Helper()
	var o order.JSON
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatalf("decode order %s: %v", b, err)
	}
	return o
}

func TestCreateAndGetOrder(t *testing.T) {
	t.Parallel()
	f := newAPI(t)
	resp, body := f.do(t, "POST", "/api/v1/orders", validOrder)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	o := decodeOrder(t, body)
	if o.Status != order.StatusPending || o.TotalAmount != 4498 || o.Currency != "USD" || o.Version != 1 || len(o.Items) != 2 {
		t.Fatalf("created order: %s", body)
	}
	if loc := resp.Header.Get("Location"); loc != "/api/v1/orders/"+o.ID.String() {
		t.Fatalf("Location = %q", loc)
	}
	if !strings.Contains(string(body), `"total_amount":"44.98"`) || !strings.Contains(string(body), `"unit_price":"5.00"`) {
		t.Fatalf("money is not rendered as decimal strings: %s", body)
	}

	resp, body = f.do(t, "GET", "/api/v1/orders/"+o.ID.String(), "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("get: %d %s", resp.StatusCode, body)
	}
	got := decodeOrder(t, body)
	if got.ID != o.ID || got.TotalAmount != o.TotalAmount || len(got.Items) != 2 || string(got.ShippingAddress) == "" {
		t.Fatalf("get returned %s", body)
	}

	// The ORDER_CREATED event is in the outbox, written with the order.
	var n int
	if err := f.db.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM outbox_status WHERE aggregate_id = $1 AND event_type = 'ORDER_CREATED' AND NOT processed`, o.ID.String()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("outbox rows for the order = %d, want 1", n)
	}
}

func TestCreateOrderRejectsBadInput(t *testing.T) {
	t.Parallel()
	f := newAPI(t)
	huge := `{"customer_id":"` + strings.Repeat("x", 70<<10) + `","items":[]}`
	tests := []struct {
		name   string
		body   string
		ctype  string
		status int
		field  string
	}{
		{"malformed JSON", `{"customer_id": "a",`, "", 400, ""},
		{"not an object", `[1,2]`, "", 400, ""},
		{"empty body", ``, "application/json", 400, ""},
		{"trailing data", validOrder + `{}`, "", 400, ""},
		{"unknown field", `{"customer_id":"a","items":[],"discount":5}`, "", 400, ""},
		{"wrong type", `{"customer_id":7,"items":[]}`, "", 400, ""},
		{"quantity as string", `{"customer_id":"a","items":[{"sku":"S","quantity":"2","unit_price":"1.00"}]}`, "", 400, ""},
		{"fractional quantity", `{"customer_id":"a","items":[{"sku":"S","quantity":1.5,"unit_price":"1.00"}]}`, "", 400, ""},
		{"zero quantity", `{"customer_id":"a","items":[{"sku":"S","quantity":0,"unit_price":"1.00"}]}`, "", 422, "items[0].quantity"},
		{"negative quantity", `{"customer_id":"a","items":[{"sku":"S","quantity":-2,"unit_price":"1.00"}]}`, "", 422, "items[0].quantity"},
		{"float price", `{"customer_id":"a","items":[{"sku":"S","quantity":1,"unit_price":19.99}]}`, "", 422, "items[0].unit_price"},
		{"price with 3 decimals", `{"customer_id":"a","items":[{"sku":"S","quantity":1,"unit_price":"1.999"}]}`, "", 422, "items[0].unit_price"},
		{"missing price", `{"customer_id":"a","items":[{"sku":"S","quantity":1}]}`, "", 422, "items[0].unit_price"},
		{"negative price", `{"customer_id":"a","items":[{"sku":"S","quantity":1,"unit_price":"-1.00"}]}`, "", 422, "items[0].unit_price"},
		{"bad sku", `{"customer_id":"a","items":[{"sku":"has space","quantity":1,"unit_price":"1"}]}`, "", 422, "items[0].sku"},
		{"no items", `{"customer_id":"a","items":[]}`, "", 422, "items"},
		{"no customer", `{"items":[{"sku":"S","quantity":1,"unit_price":"1"}]}`, "", 422, "customer_id"},
		{"huge body", huge, "", 413, ""},
		{"wrong content type", validOrder, "text/plain", 415, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", f.srv.URL+"/api/v1/orders", strings.NewReader(tt.body))
			ct := tt.ctype
			if ct == "" {
				ct = "application/json"
			}
			req.Header.Set("Content-Type", ct)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var p httpapi.Problem
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
				t.Fatalf("response is not problem details: %v", err)
			}
			if resp.StatusCode != tt.status || p.Status != tt.status {
				t.Fatalf("status %d (problem %d: %s), want %d", resp.StatusCode, p.Status, p.Detail, tt.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type = %q", ct)
			}
			if p.Detail == "" || p.Title == "" {
				t.Fatalf("problem without detail or title: %+v", p)
			}
			if tt.field != "" {
				found := false
				for _, fe := range p.Errors {
					found = found || fe.Field == tt.field
				}
				if !found {
					t.Fatalf("no field error for %q: %+v", tt.field, p.Errors)
				}
			}
		})
	}
	var n int
	_ = f.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM orders`).Scan(&n)
	if n != 0 {
		t.Fatalf("bad requests created %d orders", n)
	}
}

func TestBadOrderIDs(t *testing.T) {
	t.Parallel()
	f := newAPI(t)
	for _, path := range []string{"/api/v1/orders/not-a-uuid", "/api/v1/orders/123/history", "/api/v1/orders/%27%3B%20drop"} {
		resp, body := f.do(t, "GET", path, "")
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: %d %s, want 400", path, resp.StatusCode, body)
		}
	}
	resp, _ := f.do(t, "GET", "/api/v1/orders/7c9e6679-7425-40de-944b-e07fc1f90ae7", "")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown order: %d, want 404", resp.StatusCode)
	}
}

func TestStatusLifecycle(t *testing.T) {
	t.Parallel()
	f := newAPI(t)
	_, body := f.do(t, "POST", "/api/v1/orders", validOrder)
	id := decodeOrder(t, body).ID.String()
	patch := func(status string, headers ...string) (*http.Response, []byte) {
		return f.do(t, "PATCH", "/api/v1/orders/"+id+"/status", fmt.Sprintf(`{"status":%q,"reason":"test"}`, status), headers...)
	}
	if resp, b := patch("SHIPPED"); resp.StatusCode != http.StatusConflict {
		t.Fatalf("PENDING -> SHIPPED: %d %s, want 409", resp.StatusCode, b)
	}
	if resp, b := patch("CONFIRMED", "If-Match", `"5"`); resp.StatusCode != http.StatusPreconditionFailed {
		t.Fatalf("stale If-Match: %d %s, want 412", resp.StatusCode, b)
	}
	if resp, b := patch("BOGUS"); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("unknown status: %d %s, want 422", resp.StatusCode, b)
	}
	// Only the platform confirms, once inventory reserved the stock.
	if resp, b := patch("CONFIRMED"); resp.StatusCode != http.StatusConflict || !strings.Contains(string(b), "inventory has reserved") {
		t.Fatalf("client PENDING -> CONFIRMED: %d %s, want 409 saying why", resp.StatusCode, b)
	}
	reserveAndConfirm(t, f, id)
	for i, st := range []string{"PROCESSING", "SHIPPED", "DELIVERED"} {
		resp, b := patch(st, "If-Match", fmt.Sprintf(`"%d"`, i+2))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("-> %s: %d %s", st, resp.StatusCode, b)
		}
		if o := decodeOrder(t, b); string(o.Status) != st || o.Version != i+3 {
			t.Fatalf("-> %s: %s", st, b)
		}
	}
	if resp, _ := f.do(t, "POST", "/api/v1/orders/"+id+"/cancel", `{"reason":"late"}`); resp.StatusCode != http.StatusConflict {
		t.Fatalf("cancel delivered order: %d, want 409", resp.StatusCode)
	}
	resp, b := f.do(t, "GET", "/api/v1/orders/"+id+"/history", "")
	if resp.StatusCode != 200 {
		t.Fatalf("history: %d", resp.StatusCode)
	}
	var hist order.HistoryJSON
	_ = json.Unmarshal(b, &hist)
	want := []order.Status{order.StatusPending, order.StatusConfirmed, order.StatusProcessing, order.StatusShipped, order.StatusDelivered}
	if len(hist.History) != len(want) {
		t.Fatalf("history: %s", b)
	}
	for i, h := range hist.History {
		if h.ToStatus != want[i] || h.Version != i+1 || h.Actor == "" {
			t.Fatalf("history[%d] = %+v", i, h)
		}
	}
	// One outbox event per change: created + 4 status updates, and
	// inventory's INVENTORY_RESERVED.
	var n int
	_ = f.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_events WHERE aggregate_id = $1`, id).Scan(&n)
	if n != 6 {
		t.Fatalf("outbox events = %d, want 5", n)
	}
}

func TestCancelEmitsOrderCancelled(t *testing.T) {
	t.Parallel()
	f := newAPI(t)
	_, body := f.do(t, "POST", "/api/v1/orders", validOrder)
	id := decodeOrder(t, body).ID.String()
	resp, b := f.do(t, "POST", "/api/v1/orders/"+id+"/cancel", `{"reason":"changed my mind"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("cancel: %d %s", resp.StatusCode, b)
	}
	if o := decodeOrder(t, b); o.Status != order.StatusCancelled || o.CancelReason != "changed my mind" {
		t.Fatalf("cancelled order: %s", b)
	}
	var typ, data string
	if err := f.db.Pool.QueryRow(context.Background(),
		`SELECT event_type, event_data FROM outbox_events WHERE aggregate_id = $1 ORDER BY seq DESC LIMIT 1`, id).Scan(&typ, &data); err != nil {
		t.Fatal(err)
	}
	if typ != "ORDER_CANCELLED" || !strings.Contains(data, `"reason":"changed my mind"`) || !strings.Contains(data, `"previous_status":"PENDING"`) {
		t.Fatalf("last event %s %s", typ, data)
	}
}

func TestListOrdersKeysetPagination(t *testing.T) {
	t.Parallel()
	f := newAPI(t)
	ids := map[string]bool{}
	for i := range 7 {
		cust := "alice"
		if i%2 == 1 {
			cust = "bob"
		}
		_, b := f.do(t, "POST", "/api/v1/orders", fmt.Sprintf(`{"customer_id":%q,"items":[{"sku":"S","quantity":1,"unit_price":"1"}]}`, cust))
		if cust == "alice" {
			ids[decodeOrder(t, b).ID.String()] = true
		}
	}
	seen := map[string]bool{}
	cursor := ""
	pages := 0
	for {
		path := "/api/v1/orders?customer_id=alice&limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		resp, b := f.do(t, "GET", path, "")
		if resp.StatusCode != 200 {
			t.Fatalf("list: %d %s", resp.StatusCode, b)
		}
		var page order.ListJSON
		_ = json.Unmarshal(b, &page)
		pages++
		for _, o := range page.Orders {
			if seen[o.ID.String()] || o.CustomerID != "alice" {
				t.Fatalf("duplicate or foreign order on page %d: %s", pages, b)
			}
			seen[o.ID.String()] = true
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if len(seen) != len(ids) || pages != 2 {
		t.Fatalf("paged through %d orders in %d pages, want %d in 2", len(seen), pages, len(ids))
	}
	for _, bad := range []string{"?limit=0", "?limit=1000", "?limit=x", "?status=LOST", "?cursor=bm90LWEtY3Vyc29y"} {
		if resp, b := f.do(t, "GET", "/api/v1/orders"+bad, ""); resp.StatusCode/100 != 4 {
			t.Errorf("list%s: %d %s, want 4xx", bad, resp.StatusCode, b)
		}
	}
}

func TestIdempotencyKeyReplaysRacingEachOther(t *testing.T) {
	t.Parallel()
	f := newAPI(t)
	const racers = 16
	var wg sync.WaitGroup
	bodies := make([][]byte, racers)
	codes := make([]int, racers)
	for i := range racers {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", f.srv.URL+"/api/v1/orders", bytes.NewBufferString(validOrder))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "key-123")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			codes[i] = resp.StatusCode
			bodies[i], _ = io.ReadAll(resp.Body)
		})
	}
	wg.Wait()
	for i := range racers {
		if codes[i] != http.StatusCreated {
			t.Fatalf("racer %d: %d %s", i, codes[i], bodies[i])
		}
		if !bytes.Equal(bytes.TrimSpace(bodies[i]), bytes.TrimSpace(bodies[0])) {
			t.Fatalf("racer %d got a different response:\n%s\n%s", i, bodies[i], bodies[0])
		}
	}
	var orders, evs int
	_ = f.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM orders`).Scan(&orders)
	_ = f.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_events`).Scan(&evs)
	if orders != 1 || evs != 1 {
		t.Fatalf("orders = %d, events = %d; want 1 and 1", orders, evs)
	}
	// Same body with other whitespace is the same request.
	spaced := strings.ReplaceAll(validOrder, ",", ", ")
	if resp, b := f.do(t, "POST", "/api/v1/orders", spaced, "Idempotency-Key", "key-123"); resp.StatusCode != 201 || decodeOrder(t, b).ID != decodeOrder(t, bodies[0]).ID {
		t.Fatalf("replay with other whitespace: %d %s", resp.StatusCode, b)
	}
	// Same key, different body: 422.
	other := strings.Replace(validOrder, `"quantity":2`, `"quantity":3`, 1)
	if resp, b := f.do(t, "POST", "/api/v1/orders", other, "Idempotency-Key", "key-123"); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("key reuse with another body: %d %s, want 422", resp.StatusCode, b)
	}
}

// reserveAndConfirm runs the platform's side of an order: inventory stocks
// its SKUs and reacts to its ORDER_CREATED (from the outbox), and the saga
// reacts to the INVENTORY_RESERVED that wrote, confirming the order.
func reserveAndConfirm(t *testing.T, f *apiFixture, id string) {
	t.Helper()
	ctx := context.Background()
	inv := inventory.NewService(f.db.Pool)
	read := func(typ string) events.Envelope {
		var raw []byte
		if err := f.db.Pool.QueryRow(ctx, `SELECT event_data FROM outbox_events WHERE aggregate_id = $1 AND event_type = $2`,
			id, typ).Scan(&raw); err != nil {
			t.Fatalf("read %s of %s: %v", typ, id, err)
		}
		env, err := events.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	created := read(events.OrderCreated)
	var d events.OrderCreatedData
	if err := created.DecodeData(&d); err != nil {
		t.Fatal(err)
	}
	for _, it := range d.Items {
		name := "item " + it.SKU
		if _, _, err := inv.Set(ctx, inventory.SetRequest{SKU: it.SKU, Name: &name, OnHand: 1000, Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := inv.Reserve(ctx, inventory.ConsumerGroup, created); err != nil {
		t.Fatal(err)
	}
	if err := order.NewSaga(f.svc).Apply(ctx, order.SagaGroup, read(events.InventoryReserved)); err != nil {
		t.Fatal(err)
	}
}
