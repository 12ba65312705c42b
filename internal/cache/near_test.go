package cache_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/cache/cachetest"
)

// doc is what the near cache tests cache: a value and its row version.
type doc struct {
	Version int64
	Body    string
}

// source is the tests' source of truth: one row whose version a writer
// bumps, counting the loads that read it.
type source struct {
	version atomic.Int64
	loads   atomic.Int64
}

func (s *source) load(context.Context) (*doc, error) {
	s.loads.Add(1)
	v := s.version.Load()
	return &doc{Version: v, Body: "row"}, nil
}

// nearProcess opens stores with a near cache on the test Redis, sharing the
// keys of like when it is given (a second process of one deployment), and
// waits until the near cache serves.
func nearProcess(t *testing.T, like *cache.Stores) (*cache.Stores, *cache.JSONCache[doc]) {
	t.Helper()
	o := cache.Options{NearEntries: 1000, NearTTL: time.Minute}
	if like != nil {
		o.KeyPrefix = like.Orders.Prefix()
	}
	s := cachetest.Open(t, cachetest.URL(), o)
	waitFor(t, "the near cache to serve", func() bool { return s.Orders.Near().Live() })
	return s, cache.NewJSONCache(s.Orders, func(d *doc) int64 { return d.Version })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// untilNoError calls f until it succeeds, for 5 s at most, and fails the
// test with f's last error after that.
func untilNoError(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func nearHits(s *cache.Stores) uint64 {
	for _, st := range s.Stats(context.Background()).Stores {
		if st.Near != nil {
			return st.Near.Hits
		}
	}
	return 0
}

func get(t *testing.T, c *cache.JSONCache[doc], key string, src *source) int64 {
	t.Helper()
	d, err := c.Get(context.Background(), key, src.load)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return d.Version
}

// servedFromMemory reads key until 20 reads in a row are near cache hits:
// the report of the first read's own write to Redis may still arrive and
// drop the key once.
func servedFromMemory(t *testing.T, s *cache.Stores, c *cache.JSONCache[doc], key string, src *source, want int64) {
	t.Helper()
	streak := 0
	waitFor(t, "reads served from memory", func() bool {
		before := nearHits(s)
		if v := get(t, c, key, src); v != want {
			t.Fatalf("version %d, want %d", v, want)
		}
		if nearHits(s) > before {
			streak++
		} else {
			streak = 0
		}
		return streak == 20
	})
}

// servingProcess opens one process with a near cache whose key name, at
// version 1 in the returned source, it already serves from memory.
func servingProcess(t *testing.T, name string) (a *cache.Stores, c *cache.JSONCache[doc], key string, src *source) {
	t.Helper()
	a, c = nearProcess(t, nil)
	key, src = a.OrderKey(name), &source{}
	src.version.Store(1)
	servedFromMemory(t, a, c, key, src, 1)
	return a, c, key, src
}

func TestNearServesRepeatReadsFromMemory(t *testing.T) {
	t.Parallel()
	a, c, key, src := servingProcess(t, "repeat")

	redisReads := func() uint64 {
		st := a.Stats(context.Background()).Stores[2]
		return st.Hits + st.Misses - st.Near.Hits
	}
	before, hitsBefore := redisReads(), nearHits(a)
	for range 100 {
		if v := get(t, c, key, src); v != 1 {
			t.Fatalf("version %d, want 1", v)
		}
	}
	if n := src.loads.Load(); n != 1 {
		t.Errorf("%d loads, want 1", n)
	}
	if hits, reads := nearHits(a)-hitsBefore, redisReads()-before; hits != 100 || reads != 0 {
		t.Errorf("100 reads: %d near hits and %d Redis reads; want 100 and 0", hits, reads)
	}
}

func TestNearDropsThisProcessesInvalidationAtOnce(t *testing.T) {
	t.Parallel()
	_, c, key, src := servingProcess(t, "own")

	src.version.Store(2)
	if err := c.Invalidate(context.Background(), 2, key); err != nil {
		t.Fatal(err)
	}
	// No waiting: the invalidation's own call dropped the key here.
	if v := get(t, c, key, src); v != 2 {
		t.Fatalf("read after this process's invalidation: version %d, want 2", v)
	}
}

// twoProcesses opens two processes of one deployment with near caches over
// the same keys, and a source at version 1 for key name.
func twoProcesses(t *testing.T, name string) (a *cache.Stores, ca, cb *cache.JSONCache[doc], key string, src *source) {
	t.Helper()
	a, ca = nearProcess(t, nil)
	_, cb = nearProcess(t, a)
	src = &source{}
	src.version.Store(1)
	return a, ca, cb, a.OrderKey(name), src
}

func TestNearDropsAnotherProcessesChange(t *testing.T) {
	t.Parallel()
	a, ca, cb, key, src := twoProcesses(t, "shared")
	servedFromMemory(t, a, ca, key, src, 1)

	// Process b commits version 2 and invalidates: Redis reports the
	// change to a, which must stop serving version 1.
	src.version.Store(2)
	if err := cb.Invalidate(context.Background(), 2, key); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "process a to read version 2", func() bool { return get(t, ca, key, src) == 2 })
}

// A lost subscription may have missed reports: the near cache serves
// nothing until it is subscribed again, and then starts empty.
func TestNearForgetsEverythingAfterALostSubscription(t *testing.T) {
	t.Parallel()
	a, ca, cb, key, src := twoProcesses(t, "lost")
	servedFromMemory(t, a, ca, key, src, 1)

	id := cache.NearListenerID(a)
	if id == 0 {
		t.Fatal("no listener connection id")
	}
	if err := a.System.Client().Do(context.Background(), "CLIENT", "KILL", "ID", id).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the near cache to stop serving", func() bool { return !a.Orders.Near().Live() })

	// The change made while a cannot hear about it.
	src.version.Store(2)
	if err := cb.Invalidate(context.Background(), 2, key); err != nil {
		t.Fatal(err)
	}
	if v := get(t, ca, key, src); v != 2 {
		t.Fatalf("read while unsubscribed: version %d, want 2 (from Redis)", v)
	}
	waitFor(t, "the near cache to serve again", func() bool { return a.Orders.Near().Live() })
	if cache.NearListenerID(a) == id {
		t.Error("serving again on the killed connection's id")
	}
	if v := get(t, ca, key, src); v != 2 {
		t.Fatalf("read after resubscribing: version %d, want 2", v)
	}
}

// Readers in one process never see an order's version go back, while
// another process keeps changing it, and all of them end on the last one.
func TestNearReadsNeverGoBackUnderConcurrentChanges(t *testing.T) {
	t.Parallel()
	a, ca, cb, key, src := twoProcesses(t, "race")
	const last = 300

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Go(func() {
			var seen int64
			for ctx.Err() == nil {
				d, err := ca.Get(context.Background(), key, src.load)
				if err != nil {
					errs <- err.Error()
					return
				}
				if d.Version < seen {
					errs <- fmt.Sprintf("a reader saw version %d after %d", d.Version, seen)
					return
				}
				seen = d.Version
			}
		})
	}
	for v := int64(2); v <= last; v++ {
		src.version.Store(v)
		if err := cb.Invalidate(context.Background(), v, key); err != nil {
			t.Fatal(err)
		}
		if v%10 == 0 {
			time.Sleep(time.Millisecond) // let reads interleave with reports
		}
	}
	waitFor(t, "process a to read the last version", func() bool { return get(t, ca, key, src) == last })
	cancel()
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if nearHits(a) == 0 {
		t.Error("no read was served by the near cache: the test did not exercise it")
	}
}

// FLUSHDB drops every key without a per-key report: the near cache must not
// keep serving what Redis no longer holds.
func TestNearForgetsEverythingOnAFlush(t *testing.T) {
	t.Parallel()
	srv := cachetest.StartServer(t)
	s := cachetest.Open(t, srv.URL(), cache.Options{NearEntries: 1000, NearTTL: time.Minute})
	waitFor(t, "the near cache to serve", func() bool { return s.Orders.Near().Live() })
	c := cache.NewJSONCache(s.Orders, func(d *doc) int64 { return d.Version })
	key := s.OrderKey("flushed")
	src := &source{}
	src.version.Store(1)
	servedFromMemory(t, s, c, key, src, 1)

	// A change whose invalidation is lost with the flush.
	src.version.Store(2)
	if err := s.Orders.Client().FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a read of version 2 after the flush", func() bool { return get(t, c, key, src) == 2 })
}

// BenchmarkJSONCacheRead reads 1,000 warm keys as decoded values, from Redis
// (GET and JSON decoding) and from the near cache in front of it.
//
//	go test ./internal/cache -run '^$' -bench JSONCacheRead
func BenchmarkJSONCacheRead(b *testing.B) {
	const keys = 1000
	body := strings.Repeat("line ", 100)
	for _, near := range []int{0, 10_000} {
		name := "redis"
		if near > 0 {
			name = "near"
		}
		b.Run(name, func(b *testing.B) {
			s := cachetest.Open(b, cachetest.URL(), cache.Options{NearEntries: near})
			if near > 0 {
				deadline := time.Now().Add(10 * time.Second)
				for !s.Orders.Near().Live() {
					if time.Now().After(deadline) {
						b.Fatal("the near cache does not serve")
					}
					time.Sleep(time.Millisecond)
				}
			}
			c := cache.NewJSONCache(s.Orders, func(d *doc) int64 { return d.Version })
			load := func(context.Context) (*doc, error) { return &doc{Version: 1, Body: body}, nil }
			ctx := context.Background()
			names := make([]string, keys)
			for i := range names {
				names[i] = s.OrderKey(fmt.Sprintf("bench-%d", i))
				for range 3 { // load and store, then settle the own write's report
					if _, err := c.Get(ctx, names[i], load); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := c.Get(ctx, names[i%keys], load); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}
