package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/httpapi/edgetest"
	"github.com/trackops/trackops/internal/validation"
)

func serve(h http.Handler, method, target, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "/", strings.NewReader(body))
	// Set the raw target by hand: NewRequest would refuse some of the
	// hostile ones the tests send.
	req.URL.Path, req.URL.RawQuery, _ = strings.Cut(target, "?")
	if p, err := unescapePath(req.URL.Path); err == nil {
		req.URL.RawPath, req.URL.Path = req.URL.Path, p
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func unescapePath(p string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			var v byte
			for _, c := range []byte(p[i+1 : i+3]) {
				v <<= 4
				switch {
				case c >= '0' && c <= '9':
					v |= c - '0'
				case c >= 'a' && c <= 'f':
					v |= c - 'a' + 10
				case c >= 'A' && c <= 'F':
					v |= c - 'A' + 10
				}
			}
			b.WriteByte(v)
			i += 2
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String(), nil
}

// TestBadTextAndNumbersAreClientErrors is the table of inputs that used to
// reach PostgreSQL and come back as a 500 (SQLSTATE 22003, 22P05, 22021):
// each is now a 4xx problem detail naming the field, and nothing is written.
func TestBadTextAndNumbersAreClientErrors(t *testing.T) {
	t.Parallel()
	e := edgetest.New(t)
	h := e.Handler
	// An order and a stocked SKU to aim status changes and adjustments at.
	rec := serve(h, "POST", "/api/v1/orders", `{"customer_id":"c-1","items":[{"sku":"SKU-1","quantity":1,"unit_price":"1.00"}]}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	var o struct{ ID string }
	_ = json.Unmarshal(rec.Body.Bytes(), &o)
	if rec := serve(h, "PUT", "/api/v1/inventory/SKU-1", `{"name":"one","on_hand":5}`); rec.Code/100 != 2 {
		t.Fatalf("stock: %d %s", rec.Code, rec.Body)
	}
	ctx := context.Background()
	counts := func() (n [4]int) {
		_ = e.DB.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_status_history),
			(SELECT count(*) FROM system_settings), (SELECT count(*) FROM users) + (SELECT count(*) FROM api_keys)`).Scan(&n[0], &n[1], &n[2], &n[3])
		return n
	}
	before := counts()

	cases := []struct {
		name, method, target, body string
		header                     []string
		field                      string // "" when the answer is a 400 without field list
	}{
		{"line total overflows numeric(14,2)", "POST", "/api/v1/orders",
			`{"customer_id":"c","items":[{"sku":"S-1","quantity":10000,"unit_price":"100000000.00"}]}`, nil, "items[0]"},
		{"order total overflows numeric(14,2)", "POST", "/api/v1/orders",
			`{"customer_id":"c","items":[{"sku":"S-1","quantity":9999,"unit_price":"100000000.00"},{"sku":"S-2","quantity":9999,"unit_price":"100000000.00"}]}`, nil, "items"},
		{"NUL in a string value", "POST", "/api/v1/orders",
			`{"customer_id":"a\u0000b","items":[{"sku":"S-1","quantity":1,"unit_price":"1.00"}]}`, nil, "customer_id"},
		{"NUL in an object key", "POST", "/api/v1/orders",
			`{"customer_id":"c","items":[{"sku":"S-1","quantity":1,"unit_price":"1.00"}],"shipping_address":{"ci\u0000ty":"x"}}`, nil, "shipping_address"},
		{"NUL in a nested value", "POST", "/api/v1/orders",
			`{"customer_id":"c","items":[{"sku":"S-1","quantity":1,"unit_price":"1.00"}],"shipping_address":{"city":["x\u0000"]}}`, nil, "shipping_address"},
		{"lone surrogate in raw JSON", "POST", "/api/v1/orders",
			`{"customer_id":"c","items":[{"sku":"S-1","quantity":1,"unit_price":"1.00"}],"shipping_address":{"city":"\ud800"}}`, nil, "shipping_address"},
		{"NUL in the customer_id filter", "GET", "/api/v1/orders?customer_id=%00", "", nil, "customer_id"},
		{"invalid UTF-8 in the customer_id filter", "GET", "/api/v1/orders?customer_id=%ff", "", nil, "customer_id"},
		{"NUL in a status reason", "PATCH", "/api/v1/orders/" + o.ID + "/status", `{"status":"CANCELLED","reason":"a\u0000"}`, nil, "reason"},
		{"NUL in a cancel reason", "POST", "/api/v1/orders/" + o.ID + "/cancel", `{"reason":"a\u0000"}`, nil, "reason"},
		{"NUL in a flag value", "PUT", "/api/v1/ops/flags/x", `{"value":"a\u0000b"}`, nil, "value"},
		{"NUL in a flag object key", "PUT", "/api/v1/ops/flags/x", `{"value":{"\u0000":true}}`, nil, "value"},
		{"number beyond numeric in a config value", "PUT", "/api/v1/ops/config/x", `{"value":1e400}`, nil, "value"},
		{"NUL in a flag name", "PUT", "/api/v1/ops/flags/x%00", `{"value":true}`, nil, "path"},
		{"invalid UTF-8 in the body", "POST", "/api/v1/orders", "{\"customer_id\":\"\xff\",\"items\":[]}", nil, ""},
		{"invalid UTF-8 in Idempotency-Key", "POST", "/api/v1/orders",
			`{"customer_id":"c","items":[{"sku":"S-1","quantity":1,"unit_price":"1.00"}]}`, []string{"Idempotency-Key", "k\xff"}, "Idempotency-Key"},
		{"NUL in an inventory name", "PUT", "/api/v1/inventory/SKU-2", `{"name":"a\u0000","on_hand":1}`, nil, "name"},
		{"NUL in an adjustment reason", "POST", "/api/v1/inventory/SKU-1/adjust", `{"delta":1,"reason":"a\u0000"}`, nil, "reason"},
		{"NUL in a login username", "POST", "/api/v1/auth/login", `{"username":"a\u0000","password":"p"}`, nil, "username"},
		{"NUL in a new user's password", "POST", "/api/v1/users", `{"username":"bob","password":"secret-pass\u0000word","role":"viewer"}`, nil, "password"},
		{"NUL in an API key name", "POST", "/api/v1/auth/apikeys", `{"name":"k\u0000","role":"viewer"}`, nil, "name"},
		{"NUL in an audit filter", "GET", "/api/v1/ops/audit?actor=%00", "", nil, "actor"},
		{"NUL in a dead-letter filter", "GET", "/api/v1/ops/dlq?topic=%00", "", nil, "topic"},
		{"NUL in a replay request", "POST", "/api/v1/ops/dlq/replay", `{"topic":"ORDER_CREATED\u0000","dry_run":true}`, nil, "topic"},
	}
	for _, c := range cases {
		rec := serve(h, c.method, c.target, c.body, c.header...)
		if rec.Code < 400 || rec.Code >= 500 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/problem+json") {
			t.Errorf("%s: %d %s, want a 4xx problem detail", c.name, rec.Code, rec.Body)
			continue
		}
		var p httpapi.Problem
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Errorf("%s: problem %s: %v", c.name, rec.Body, err)
			continue
		}
		if c.field == "" {
			continue
		}
		named := false
		for _, f := range p.Errors {
			named = named || f.Field == c.field
		}
		if !named {
			t.Errorf("%s: %d %s, want field %q named", c.name, rec.Code, rec.Body, c.field)
		}
	}
	if after := counts(); after != before {
		t.Errorf("rows (orders, history, settings, users+keys) went from %v to %v: bad input was written", before, after)
	}
}

// edgeRoutes are the routes FuzzEdge aims at; {x} is replaced by fuzzed text.
var edgeRoutes = []struct{ method, path string }{
	{"POST", "/api/v1/orders"},
	{"GET", "/api/v1/orders"},
	{"GET", "/api/v1/orders/{x}"},
	{"PATCH", "/api/v1/orders/{x}/status"},
	{"POST", "/api/v1/orders/{x}/cancel"},
	{"GET", "/api/v1/orders/{x}/history"},
	{"PUT", "/api/v1/inventory/{x}"},
	{"POST", "/api/v1/inventory/{x}/adjust"},
	{"GET", "/api/v1/inventory"},
	{"GET", "/api/v1/inventory/{x}/reservations"},
	{"PUT", "/api/v1/ops/flags/{x}"},
	{"PUT", "/api/v1/ops/config/{x}"},
	{"GET", "/api/v1/ops/flags/{x}"},
	{"POST", "/api/v1/auth/login"},
	{"POST", "/api/v1/users"},
	{"POST", "/api/v1/auth/apikeys"},
	{"DELETE", "/api/v1/auth/apikeys/{x}"},
	{"GET", "/api/v1/ops/audit"},
	{"GET", "/api/v1/ops/dlq"},
	{"POST", "/api/v1/ops/dlq/replay"},
	{"POST", "/api/v1/ops/dlq/{x}/discard"},
	{"GET", "/api/v1/ops/outbox"},
}

// FuzzEdge drives the real router over a real database with fuzzed paths,
// query strings, headers and bodies, and fails on any 5xx: bad input is
// always the client's error.
func FuzzEdge(f *testing.F) {
	e := edgetest.New(f)
	seeds := []struct {
		route        uint8
		seg, q, body string
		key          string
	}{
		{0, "", "", `{"customer_id":"c","items":[{"sku":"S-1","quantity":10000,"unit_price":"100000000.00"}]}`, ""},
		{0, "", "", `{"customer_id":"c\u0000","items":[{"sku":"S-1","quantity":1,"unit_price":"1"}],"shipping_address":{"a":1e999}}`, "k\xff"},
		{1, "", "customer_id=%00&status=pending&limit=x&cursor=%ff", "", ""},
		{3, "7c9e6679-7425-40de-944b-e07fc1f90ae7", "", `{"status":"CONFIRMED","reason":"\u0000"}`, ""},
		{6, "SKU-1", "", `{"name":"n","on_hand":1}`, ""},
		{7, "SKU-1", "", `{"delta":-1,"reason":"r"}`, ""},
		{10, "x", "", `{"value":"a\u0000b"}`, ""},
		{11, "x", "", `{"value":{"k":[1,"\ud83d\ude00",null]}}`, ""},
		{13, "", "", `{"username":"u","password":"p"}`, ""},
		{17, "", "actor=%00&since=bad", "", ""},
		{19, "", "", `{"topic":"ORDER_CREATED","dry_run":true}`, ""},
	}
	for _, s := range seeds {
		f.Add(s.route, s.seg, s.q, []byte(s.body), s.key)
	}
	f.Fuzz(func(t *testing.T, route uint8, seg, query string, body []byte, key string) {
		rt := edgeRoutes[int(route)%len(edgeRoutes)]
		path := strings.ReplaceAll(rt.path, "{x}", escapeSegment(seg))
		req := httptest.NewRequest(rt.method, "/", bytes.NewReader(body))
		req.URL.Path, req.URL.RawPath = strings.ReplaceAll(rt.path, "{x}", seg), path
		req.URL.RawQuery = query
		req.Header.Set("Content-Type", "application/json")
		if key != "" && !strings.ContainsAny(key, "\r\n\x00") {
			req.Header.Set("Idempotency-Key", key)
		}
		rec := httptest.NewRecorder()
		e.Handler.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s?%s body %q: %d %s", rt.method, path, query, body, rec.Code, rec.Body)
		}
	})
}

// escapeSegment percent-encodes every byte outside unreserved characters,
// so a fuzzed segment stays one path segment.
func escapeSegment(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// FuzzDecodeJSON: DecodeJSON either refuses a body with a 4xx, or yields a
// value every string and raw document of which PostgreSQL can store.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"s":"x","m":{"k":"v"},"raw":{"a":[1,"b"]},"list":["a"]}`, `{"s":"\u0000"}`,
		`{"m":{"\u0000":"v"}}`, `{"raw":"\udc00"}`, `{"raw":1e400}`, `{"any":{"k":["\u0000"]}}`, "{\"s\":\"\xff\"}", `{"x":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var v struct {
			S    string            `json:"s"`
			M    map[string]string `json:"m"`
			Raw  json.RawMessage   `json:"raw"`
			List []string          `json:"list"`
			Any  any               `json:"any"`
		}
		req := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		err := httpapi.DecodeJSON(req, &v)
		if err != nil {
			rec := httptest.NewRecorder()
			httpapi.WriteError(rec, req, err)
			if rec.Code < 400 || rec.Code > 499 {
				t.Fatalf("%q: %d", body, rec.Code)
			}
			return
		}
		all, _ := json.Marshal(v)
		if validation.RawJSONProblem(all) != "" || validation.RawJSONProblem(v.Raw) != "" {
			t.Fatalf("%q accepted, holds %s", body, all)
		}
	})
}

// FuzzCheckRequestText: a query the check accepts holds only storable text.
func FuzzCheckRequestText(f *testing.F) {
	for _, s := range []string{"a=b", "customer_id=%00", "%ff=1", "a=%", "a=%zz&b", "x=1+2&x=%E2%82%AC"} {
		f.Add("/api/v1/orders", s)
	}
	f.Fuzz(func(t *testing.T, path, query string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.URL.Path, req.URL.RawQuery = path, query
		if errs := httpapi.CheckRequestText(req); len(errs) > 0 {
			return
		}
		if validation.TextProblem(path) != "" {
			t.Fatalf("path %q accepted", path)
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			return // the router's own parser is the stricter one; handlers see no value then
		}
		for k, vs := range q {
			for _, v := range append(vs, k) {
				if validation.TextProblem(v) != "" {
					t.Fatalf("query %q accepted, holds %q", query, v)
				}
			}
		}
	})
}
