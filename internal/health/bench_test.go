package health_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkHealth measures GET /health over real PostgreSQL, Redis and the
// embedded broker: "fresh" runs all six checks each time, "cached" is what a
// load balancer polling many times a second pays.
func BenchmarkHealth(b *testing.B) {
	p := newPlatformB(b)
	for _, bc := range []struct {
		name     string
		cacheFor int
	}{{"fresh", -1}, {"cached", 0}} { // 0: the default, one second
		b.Run(bc.name, func(b *testing.B) {
			c := p.checker("outbox")
			c.CacheFor = time.Duration(bc.cacheFor)
			h := router(c)
			c.Check(context.Background())
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
					if rec.Code != http.StatusOK {
						b.Errorf("status %d: %s", rec.Code, rec.Body)
					}
				}
			})
		})
	}
}
