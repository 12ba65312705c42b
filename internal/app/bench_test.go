package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/logging"
	"github.com/trackops/trackops/internal/order"
)

// benchOrders is how many distinct orders the read benchmarks spread over.
const benchOrders = 2000

// BenchmarkCachedOrderReads measures GET /api/v1/orders/{id} over HTTP on
// the full app (every role, JSON access logs formatted and discarded, API
// key authentication, the per-principal rate limiter's Redis call on every
// request, tracing middleware), with 16 (and 2) client goroutines per core
// reading benchOrders distinct orders from a warmed cache, beside raw
// go-redis GETs of the same order:{id} keys as the ceiling. Reported per sub-benchmark:
// reads/s, p50 and p99 latency of one read, and the orders store's hit
// ratio over the run (from the cache's Stats).
//
//	go test ./internal/app -run '^$' -bench CachedOrderReads -benchtime 20000x
func BenchmarkCachedOrderReads(b *testing.B) {
	// The default per-principal budget (1,000/s) would measure the limiter,
	// not the read path; a budget no run reaches keeps its Redis call. Set
	// TRACKOPS_RATE_LIMIT_PRINCIPAL=off to measure without that call.
	budget := config.Rate{Count: 10_000_000, Burst: 10_000_000, Period: time.Second}
	if v := os.Getenv("TRACKOPS_RATE_LIMIT_PRINCIPAL"); v != "" {
		var err error
		if budget, err = config.ParseRate(v); err != nil {
			b.Fatalf("TRACKOPS_RATE_LIMIT_PRINCIPAL=%q: %v", v, err)
		}
	}
	fa := startFullApp(b, logging.New(io.Discard, "json", "info"), func(c *config.Config) { c.Limits.Principal = budget })
	ctx := context.Background()
	token := fa.key(b, "bench-reader", operator)

	for _, sku := range []string{"SKU-BENCH", "SKU-OTHER"} {
		fa.mustDo(b, http.StatusCreated, token, http.MethodPut, "/api/v1/inventory/"+sku, `{"name":"bench","on_hand":100000000}`, nil)
	}
	ids := make([]string, benchOrders)
	for i := range ids {
		res, err := fa.orders.Create(ctx, order.CreateRequest{Actor: "bench", Order: order.NewOrder{
			CustomerID: fmt.Sprintf("bench-customer-%d", i%100),
			Items:      []order.NewItem{{SKU: "SKU-BENCH", Quantity: 2, UnitPrice: 1999}, {SKU: "SKU-OTHER", Quantity: 1, UnitPrice: 500}},
		}})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = res.Order.ID.String()
	}
	// Let the saga confirm every order first, so nothing but the benchmark
	// changes them while it runs.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var unconfirmed int
		if err := fa.db.Pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE status <> 'CONFIRMED'`).Scan(&unconfirmed); err != nil {
			b.Fatal(err)
		}
		if unconfirmed == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d orders still not confirmed", unconfirmed)
		}
		time.Sleep(100 * time.Millisecond)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, DisableCompression: true}}
	get := func(id string) error {
		req, _ := http.NewRequest(http.MethodGet, fa.base+"/api/v1/orders/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET order %s: %d", id, resp.StatusCode)
		}
		return nil
	}
	for _, id := range ids { // warm: every order cached once
		if err := get(id); err != nil {
			b.Fatal(err)
		}
	}

	raw := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", fa.redis.Port), DB: 2})
	b.Cleanup(func() { raw.Close() })
	if n, err := raw.Exists(ctx, "order:"+ids[0], "order:"+ids[len(ids)-1]).Result(); err != nil || n != 2 {
		b.Fatalf("orders not cached after warming: %d %v", n, err)
	}

	b.Run("raw-go-redis-GET/32-clients", func(b *testing.B) {
		runReads(b, fa.stores, 16, nil, func(i int) error {
			return raw.Get(ctx, "order:"+ids[i%len(ids)]).Err()
		})
	})
	b.Run("http-GET-order/32-clients", func(b *testing.B) {
		runReads(b, fa.stores, 16, nil, func(i int) error { return get(ids[i%len(ids)]) })
	})
	// Fewer clients in flight: latency with less queueing in front of the
	// two cores.
	b.Run("raw-go-redis-GET/4-clients", func(b *testing.B) {
		runReads(b, fa.stores, 2, nil, func(i int) error {
			return raw.Get(ctx, "order:"+ids[i%len(ids)]).Err()
		})
	})
	b.Run("http-GET-order/4-clients", func(b *testing.B) {
		runReads(b, fa.stores, 2, nil, func(i int) error { return get(ids[i%len(ids)]) })
	})
	// Read-heavy rather than read-only: one request in a hundred moves an
	// order one status on over HTTP, invalidating its entry.
	// The write count outlives each run: -count and the benchmark's own
	// rounds run this sub-benchmark again on the same orders.
	var writes atomic.Int64
	b.Run("http-GET-order-99r1w/32-clients", func(b *testing.B) {
		next := []string{"PROCESSING", "SHIPPED", "DELIVERED"}
		write := func() error {
			w := int(writes.Add(1) - 1)
			if w >= len(ids)*len(next) {
				return nil // every order delivered; nothing left to change
			}
			id, status := ids[w%len(ids)], next[w/len(ids)]
			req, _ := http.NewRequest(http.MethodPatch, fa.base+"/api/v1/orders/"+id+"/status",
				strings.NewReader(`{"status":"`+status+`"}`))
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("PATCH order %s to %s: %d", id, status, resp.StatusCode)
			}
			return nil
		}
		runReads(b, fa.stores, 16, write, func(i int) error { return get(ids[i%len(ids)]) })
	})
}

// runReads runs read from perCore goroutines per core, each starting at its
// own offset into the orders; with write set, every hundredth operation is
// a write instead, not counted as a read. It reports reads/s, p50-µs,
// p99-µs and the orders store's hit ratio over the run.
func runReads(b *testing.B, stores *cache.Stores, perCore int, write func() error, read func(i int) error) {
	var (
		mu      sync.Mutex
		all     []time.Duration
		workers atomic.Int64
	)
	before := ordersStats(stores)
	b.SetParallelism(perCore)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		w := int(workers.Add(1))
		lat := make([]time.Duration, 0, 4096)
		for i := w * 7919; pb.Next(); i++ {
			if write != nil && i%100 == 0 {
				if err := write(); err != nil {
					b.Error(err)
					return
				}
				continue
			}
			t0 := time.Now()
			if err := read(i); err != nil {
				b.Error(err)
				return
			}
			lat = append(lat, time.Since(t0))
		}
		mu.Lock()
		all = append(all, lat...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	after := ordersStats(stores)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "reads/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	if hits, misses := after.Hits-before.Hits, after.Misses-before.Misses; hits+misses > 0 {
		b.ReportMetric(float64(hits)/float64(hits+misses), "hit-ratio")
	}
}

func ordersStats(stores *cache.Stores) cache.StoreStats {
	for _, s := range stores.Stats(context.Background()).Stores {
		if s.Name == "orders" {
			return s
		}
	}
	return cache.StoreStats{}
}
