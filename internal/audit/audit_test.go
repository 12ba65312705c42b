package audit_test

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/audit"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

func count(t *testing.T, db *postgrestest.Database) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func entry(i int) httpapi.AuditEntry {
	return httpapi.AuditEntry{
		Principal: httpapi.Principal{ID: fmt.Sprint(i % 7), Name: fmt.Sprintf("u%d", i%7), Kind: "user", Role: httpapi.RoleOperator},
		Method:    "POST", Path: fmt.Sprintf("/api/v1/orders/%d/cancel", i), Route: "/api/v1/orders/{id}/cancel",
		Status: 200 + (i%3)*100, RequestID: fmt.Sprint("req", i), ClientIP: "192.0.2.1", Duration: time.Millisecond,
	}
}

// TestCloseLosesNothing records from many goroutines with a small buffer
// (so Record blocks) and closes: every row is in the table afterwards, and a
// row recorded after Close is written synchronously.
func TestCloseLosesNothing(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	w := audit.NewWriter(db.Pool, audit.WriterOptions{BatchSize: 16, Buffer: 8, FlushInterval: time.Hour})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 125; i++ {
				w.Record(context.Background(), entry(g*1000+i))
			}
		}()
	}
	wg.Wait()
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db); n != 1000 {
		t.Fatalf("rows after Close = %d, want 1000", n)
	}
	w.Record(context.Background(), entry(5000))
	if n := count(t, db); n != 1001 {
		t.Fatalf("rows after a late Record = %d, want 1001", n)
	}
}

func TestFlushWritesWhatWasRecorded(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	w := audit.NewWriter(db.Pool, audit.WriterOptions{FlushInterval: time.Hour})
	defer w.Close(context.Background())
	for i := 0; i < 3; i++ {
		w.Record(context.Background(), entry(i))
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db); n != 3 {
		t.Fatalf("rows after Flush = %d, want 3", n)
	}
	rd := audit.NewReader(db.Pool)
	p, err := rd.List(context.Background(), audit.Filter{Outcome: audit.OutcomeRejected})
	if err != nil || len(p.Items) != 1 || p.Items[0].Status != 300+100 || p.Items[0].Action != "POST /api/v1/orders/{id}/cancel" {
		t.Fatalf("rejected rows: %+v %v", p, err)
	}
	p, err = rd.List(context.Background(), audit.Filter{Actor: "user:u1", Since: time.Now().Add(-time.Hour)})
	if err != nil || len(p.Items) != 1 || p.Items[0].Target != "/api/v1/orders/1/cancel" {
		t.Fatalf("rows of user:u1: %+v %v", p, err)
	}
}

func TestOutcomeOf(t *testing.T) {
	for status, want := range map[int]string{200: "success", 201: "success", 204: "success", 304: "success",
		400: "rejected", 401: "denied", 403: "denied", 404: "rejected", 409: "rejected", 429: "rejected", 500: "error", 503: "error"} {
		if got := audit.OutcomeOf(status); got != want {
			t.Errorf("OutcomeOf(%d) = %s, want %s", status, got, want)
		}
	}
}

func FuzzParseFilter(f *testing.F) {
	f.Add("actor", "user:a", "limit", "10")
	f.Add("cursor", "YTE", "since", "2026-01-01T00:00:00Z")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		flt, err := audit.ParseFilter(map[string][]string{k1: {v1}, k2: {v2}})
		if err == nil && (flt.Limit < 0 || flt.Limit > 500) {
			t.Fatalf("accepted limit %d", flt.Limit)
		}
	})
}

// TestListFiltersByActionAndResource: the console filters the log by action
// (method and route) and by a prefix of the resource path.
func TestListFiltersByActionAndResource(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	w := audit.NewWriter(db.Pool, audit.WriterOptions{})
	for i := range 20 {
		w.Record(context.Background(), entry(i))
	}
	other := entry(99)
	other.Method, other.Route, other.Path = "PUT", "/api/v1/inventory/{sku}", "/api/v1/inventory/SKU-1"
	w.Record(context.Background(), other)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rd := audit.NewReader(db.Pool)
	for q, want := range map[string]int{
		"action=PUT+%2Fapi%2Fv1%2Finventory%2F%7Bsku%7D":       1,
		"action=POST+%2Fapi%2Fv1%2Forders%2F%7Bid%7D%2Fcancel": 20,
		"target=%2Fapi%2Fv1%2Forders%2F1":                      11, // 1 and 10–19
		"target=%2Fapi%2Fv1%2F&actor=user%3Au3":                3,  // 3, 10, 17
	} {
		vals, _ := url.ParseQuery(q)
		f, err := audit.ParseFilter(vals)
		if err != nil {
			t.Fatal(err)
		}
		f.Limit = 100
		page, err := rd.List(context.Background(), f)
		if err != nil || len(page.Items) != want {
			t.Errorf("%s: %d rows (%v), want %d", q, len(page.Items), err, want)
		}
	}
}
