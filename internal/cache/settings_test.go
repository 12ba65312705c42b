package cache_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/cache/cachetest"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

func TestSettingsReadThroughCacheAndWriteThrough(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	stores := cachetest.New(t)
	s := cache.NewSettings(db.Pool, stores)
	ctx := context.Background()

	if _, err := s.Get(ctx, cache.KindFlag, "new-checkout"); !errors.Is(err, cache.ErrSettingNotFound) {
		t.Fatalf("unknown flag: %v", err)
	}
	if s.FlagEnabled(ctx, "new-checkout") {
		t.Fatal("unknown flag reads as enabled")
	}
	st, err := s.Set(ctx, cache.KindFlag, "new-checkout", json.RawMessage(`true`), "alice", 0)
	if err != nil || st.Version != 1 || st.UpdatedBy != "alice" {
		t.Fatalf("set: %+v %v", st, err)
	}
	// The cached "not found" (version 0) was replaced by the write.
	if !s.FlagEnabled(ctx, "new-checkout") {
		t.Fatal("flag set to true reads as disabled")
	}
	if _, err := s.Set(ctx, cache.KindFlag, "new-checkout", json.RawMessage(`{"enabled":false}`), "bob", 1); err != nil {
		t.Fatal(err)
	}
	if s.FlagEnabled(ctx, "new-checkout") {
		t.Fatal("flag set to {enabled:false} reads as enabled")
	}
	if _, err := s.Set(ctx, cache.KindFlag, "new-checkout", json.RawMessage(`true`), "bob", 1); !errors.Is(err, cache.ErrVersionMismatch) {
		t.Fatalf("stale If-Match: %v", err)
	}
	if _, err := s.Set(ctx, cache.KindFlag, "nope", json.RawMessage(`true`), "bob", 3); !errors.Is(err, cache.ErrSettingNotFound) {
		t.Fatalf("If-Match on a missing flag: %v", err)
	}
	for _, bad := range []struct{ name, value string }{{"Bad Name", "1"}, {"ok", "{"}, {"", "1"}} {
		if _, err := s.Set(ctx, cache.KindConfig, bad.name, json.RawMessage(bad.value), "x", 0); !errors.Is(err, cache.ErrInvalidSetting) {
			t.Errorf("Set(%q, %q) = %v, want ErrInvalidSetting", bad.name, bad.value, err)
		}
	}
	if _, err := s.Set(ctx, cache.KindConfig, "relay.batch", json.RawMessage(`{"size":500}`), "", 0); err != nil {
		t.Fatal(err)
	}
	flags, err := s.List(ctx, cache.KindFlag)
	if err != nil || len(flags) != 1 || flags[0].Version != 2 {
		t.Fatalf("flags: %+v %v", flags, err)
	}
	// Reads are served from the system store: its key holds version 2.
	e, hit, err := stores.System.Versioned().Get(ctx, stores.FlagKey("new-checkout"))
	if err != nil || !hit || e.Version != 2 {
		t.Fatalf("flag:new-checkout in the system store: hit=%v version=%d %v", hit, e.Version, err)
	}
	if err := stores.SaveHealthSnapshot(ctx, map[string]string{"status": "UP"}); err != nil {
		t.Fatal(err)
	}
	if snap, err := stores.LastHealthSnapshot(ctx); err != nil || !strings.Contains(string(snap), `"status":"UP"`) {
		t.Fatalf("health:last = %s, %v", snap, err)
	}
	if meta, err := stores.Meta(ctx); err != nil || meta["run_id"] == "" {
		t.Fatalf("cache:meta = %v, %v", meta, err)
	}
}

func TestOpsHandlers(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	stores := cachetest.New(t)
	h := cache.NewHandlers(cache.NewSettings(db.Pool, stores), stores)
	mux := http.NewServeMux()
	for _, rt := range h.Routes() {
		mux.HandleFunc(rt.Method+" "+rt.Pattern, func(w http.ResponseWriter, r *http.Request) {
			p := httpapi.Principal{Kind: "apikey", Name: "ops", Role: httpapi.RoleAdmin}
			rt.Handler(w, r.WithContext(httpapi.WithPrincipal(r.Context(), p)))
		})
	}

	do := func(method, path, body string, hdr ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec
	}
	tests := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		ctype, contains          string
	}{
		{"missing flag", "GET", "/api/v1/ops/flags/dark-mode", "", nil, 404, "application/problem+json", `"status":404`},
		{"create", "PUT", "/api/v1/ops/flags/dark-mode", `{"value": true}`, nil, 200, "application/json", `"updated_by":"apikey:ops"`},
		{"read back", "GET", "/api/v1/ops/flags/dark-mode", "", nil, 200, "application/json", `"value":true`},
		{"stale If-Match", "PUT", "/api/v1/ops/flags/dark-mode", `{"value": false}`, []string{"If-Match", `"7"`}, 412, "application/problem+json", "changed since"},
		{"matching If-Match", "PUT", "/api/v1/ops/flags/dark-mode", `{"value": false}`, []string{"If-Match", `"1"`}, 200, "application/json", `"version":2`},
		{"bad If-Match", "PUT", "/api/v1/ops/flags/dark-mode", `{"value": false}`, []string{"If-Match", "abc"}, 400, "application/problem+json", "If-Match"},
		{"no value", "PUT", "/api/v1/ops/flags/dark-mode", `{}`, nil, 422, "application/problem+json", `"field":"value"`},
		{"unknown field", "PUT", "/api/v1/ops/flags/dark-mode", `{"valu": 1}`, nil, 400, "application/problem+json", "unknown field"},
		{"malformed", "PUT", "/api/v1/ops/flags/dark-mode", `{`, nil, 400, "application/problem+json", "malformed"},
		{"bad name", "PUT", "/api/v1/ops/flags/Dark%20Mode", `{"value": 1}`, nil, 422, "application/problem+json", `"field":"name"`},
		{"null is a value", "PUT", "/api/v1/ops/config/limits", `{"value": null}`, nil, 200, "application/json", `"value":null`},
		{"list", "GET", "/api/v1/ops/flags", "", nil, 200, "application/json", `"name":"dark-mode"`},
		{"cache stats", "GET", "/api/v1/ops/cache", "", nil, 200, "application/json", `"status":"UP"`},
	}
	for _, tc := range tests {
		rec := do(tc.method, tc.path, tc.body, tc.hdr...)
		if rec.Code != tc.status || rec.Header().Get("Content-Type") != tc.ctype || !strings.Contains(rec.Body.String(), tc.contains) {
			t.Errorf("%s: %d %s %s; want %d %s containing %s", tc.name, rec.Code, rec.Header().Get("Content-Type"), rec.Body, tc.status, tc.ctype, tc.contains)
		}
	}
	if etag := do("GET", "/api/v1/ops/flags/dark-mode", "").Header().Get("ETag"); etag != `"2"` {
		t.Errorf("ETag %s, want \"2\"", etag)
	}
}
