package httpapi

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark
// measures the router and its middleware rather than a recorder.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkRouterGet is one authenticated GET through every middleware the
// API runs (ids, headers, auth, limiter, metrics, the access log at a level
// that drops it) to a handler that writes a small body.
func BenchmarkRouterGet(b *testing.B) {
	body := []byte(`{"id":"x"}`)
	h := NewRouter(RouterConfig{
		Logger:  slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Auth:    tokenAuth{},
		Limiter: &budget{n: 1 << 62, used: map[string]int{}},
	}, []Route{{Method: http.MethodGet, Pattern: "/api/v1/orders/{id}", Role: RoleViewer, Handler: func(w http.ResponseWriter, r *http.Request) {
		WriteJSONBody(w, http.StatusOK, body)
	}}})
	req := httptest.NewRequest(http.MethodGet, "/api/v1/orders/0b6d3c1e-5a6f-4c3e-9a57-8d2f1c0e7b44", nil)
	req.Header.Set("Authorization", "Bearer viewer")
	b.ReportAllocs()
	for b.Loop() {
		w := &discardWriter{h: make(http.Header, 8)}
		h.ServeHTTP(w, req)
	}
}
