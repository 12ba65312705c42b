package httpapi

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// TestRequestsCountedByRouteMethodAndCode: each request lands in its
// route's series under the code it was answered with, from many goroutines
// at once (the route's codes are added while others count); requests no
// route matched under "unmatched", and HEAD served by a GET route under HEAD.
func TestRequestsCountedByRouteMethodAndCode(t *testing.T) {
	t.Parallel()
	m := NewMetrics(prometheus.NewRegistry())
	h := NewRouter(RouterConfig{
		Logger:  slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Metrics: m,
	}, []Route{{Method: http.MethodGet, Pattern: "/things/{code}", Role: RolePublic, Handler: func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.PathValue("code"))
		w.WriteHeader(code)
	}}})
	codes := []int{200, 201, 404, 409, 503}
	const perCode = 200
	var wg sync.WaitGroup
	for _, code := range codes {
		for range 4 {
			wg.Go(func() {
				for range perCode / 4 {
					h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/things/"+strconv.Itoa(code), nil))
				}
			})
		}
	}
	wg.Go(func() { h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/nowhere", nil)) })
	wg.Go(func() { h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodHead, "/things/200", nil)) })
	wg.Wait()

	for _, code := range codes {
		if got := testutil.ToFloat64(m.requests.WithLabelValues("/things/{code}", "GET", strconv.Itoa(code))); got != perCode {
			t.Errorf("code %d: %v requests counted, want %d", code, got, perCode)
		}
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("unmatched", "GET", "404")); got != 1 {
		t.Errorf("unmatched: %v requests counted, want 1", got)
	}
	// A GET route answers HEAD too, counted under the method asked.
	if got := testutil.ToFloat64(m.requests.WithLabelValues("/things/{code}", "HEAD", "200")); got != 1 {
		t.Errorf("HEAD: %v requests counted, want 1", got)
	}
	if got := testutil.CollectAndCount(m.requests); got != len(codes)+2 {
		t.Errorf("%d request series, want %d", got, len(codes)+2)
	}
	var out prometheus.Metric = m.duration.WithLabelValues("/things/{code}", "GET").(prometheus.Histogram)
	if n := histogramCount(t, out); n != uint64(perCode*len(codes)) {
		t.Errorf("route latency observed %d times, want %d", n, perCode*len(codes))
	}
}

func histogramCount(t *testing.T, m prometheus.Metric) uint64 {
	t.Helper()
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetHistogram().GetSampleCount()
}
