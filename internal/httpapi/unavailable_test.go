package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/health"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestUnreachableDatabaseIs503 puts a TCP proxy between the API and its
// database and cuts it while requests run, as a PostgreSQL restart does:
// every request is answered, successfully or with 503 and Retry-After, never
// a bare 500; /health reports db DOWN while cut; once restored, requests
// succeed again.
func TestUnreachableDatabaseIs503(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	proxy := postgrestest.NewProxy(t, postgrestest.TargetOf(t, db.URL))
	ctx := context.Background()
	url := proxy.ProxyURL(t, db.URL)
	if strings.Contains(url, "?") {
		url += "&connect_timeout=2"
	} else {
		url += "?connect_timeout=2"
	}
	pool, err := postgres.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	checker := health.NewChecker(health.Database(pool))
	checker.CacheFor = -1
	checker.Timeout = 3 * time.Second
	svc := order.NewService(pool)
	routes := append(order.NewHandlers(svc).Routes(), checker.Routes()...)
	h := httpapi.NewRouter(httpapi.RouterConfig{Logger: slog.New(slog.DiscardHandler)}, routes)

	var (
		mu       sync.Mutex
		codes    = map[int]int{}
		bad      []string
		ok, down atomic.Int64
	)
	record := func(rec *httptest.ResponseRecorder, what string) {
		mu.Lock()
		defer mu.Unlock()
		codes[rec.Code]++
		switch {
		case rec.Code/100 == 2:
			ok.Add(1)
		case rec.Code == http.StatusServiceUnavailable:
			down.Add(1)
			if rec.Header().Get("Retry-After") == "" || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/problem+json") {
				bad = append(bad, what+": 503 without Retry-After or problem detail")
			}
		default:
			bad = append(bad, fmt.Sprintf("%s: %d %s", what, rec.Code, rec.Body))
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			var last string
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var rec *httptest.ResponseRecorder
				switch {
				case i%3 == 0 || last == "":
					rec = serve(h, "POST", "/api/v1/orders", fmt.Sprintf(`{"customer_id":"w%d","items":[{"sku":"S-1","quantity":1,"unit_price":"1.00"}]}`, w))
					var o struct{ ID string }
					if rec.Code == http.StatusCreated && json.Unmarshal(rec.Body.Bytes(), &o) == nil {
						last = o.ID
					}
				case i%3 == 1:
					rec = serve(h, "GET", "/api/v1/orders/"+last, "")
				default:
					rec = serve(h, "POST", "/api/v1/orders/"+last+"/cancel", `{"reason":"r"}`)
					if rec.Code == http.StatusConflict { // already cancelled
						rec.Code = http.StatusOK
					}
				}
				record(rec, fmt.Sprintf("worker %d request %d", w, i))
			}
		})
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("%s did not happen within 60 s (codes so far %v)", what, codes)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("first successes", func() bool { return ok.Load() >= 20 })

	proxy.Cut()
	waitFor("503s while cut", func() bool { return down.Load() >= 10 })
	var rep health.Report
	waitFor("db DOWN in /health", func() bool {
		rec := serve(h, "GET", "/health", "")
		_ = json.Unmarshal(rec.Body.Bytes(), &rep)
		return rec.Code == http.StatusServiceUnavailable && rep.Components["db"].Status == health.Down
	})

	proxy.Restore()
	okAfter := ok.Load()
	waitFor("successes after restore", func() bool { return ok.Load() >= okAfter+20 })
	waitFor("db UP in /health", func() bool {
		rec := serve(h, "GET", "/health", "")
		_ = json.Unmarshal(rec.Body.Bytes(), &rep)
		return rec.Code == http.StatusOK && rep.Components["db"].Status == health.Up
	})
	close(stop)
	wg.Wait()
	t.Logf("responses by status: %v", codes)
	for _, b := range bad[:min(len(bad), 10)] {
		t.Error(b)
	}
}
