package cache_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/cache/cachetest"
)

// partitionable is a private Redis a test can cut off and bring back: a
// cachetest.Server or a whole cachetest.Cluster.
type partitionable interface {
	URL() string
	Pause()
	Resume()
}

// openPrivate opens stores on a private redis-server with short timeouts and
// no background probe in practice (recovery happens when the test calls
// Probe, or when a trip wakes the probe — the assertions hold either way).
func openPrivate(t *testing.T, srv interface{ URL() string }, maxPending int) *cache.Stores {
	t.Helper()
	s, err := cache.Open(srv.URL(), cache.Options{
		OpTimeout: 100 * time.Millisecond, DialTimeout: 200 * time.Millisecond,
		FailureThreshold: 1, ProbeInterval: time.Hour, MaxPending: maxPending,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// mustProbe probes until the cache is up, for 5 s at most: a store's
// client whose dials failed while Redis was down answers with that error
// until its own redial (once a second) gets through, as the guard's probe
// loop would find.
func mustProbe(t *testing.T, s *cache.Stores) {
	t.Helper()
	untilNoError(t, "probe after recovery", func() error { return s.Probe(context.Background()) })
	if s.Status() != cache.StatusUp {
		t.Fatalf("status %s after a successful probe", s.Status())
	}
}

func constLoad(v string, ver int64) cache.Loader {
	return func(context.Context) ([]byte, int64, error) { return []byte(v), ver, nil }
}

// Redis unreachable without a restart (paused): calls fail fast, reads fall
// back to the loader, invalidations are remembered and replayed on recovery,
// so the old entry still sitting in Redis is never served.
func TestPartitionRemembersInvalidationsAndReplaysThem(t *testing.T) {
	t.Parallel()
	testPartitionRemembersInvalidationsAndReplaysThem(t, cachetest.StartServer(t))
}

func testPartitionRemembersInvalidationsAndReplaysThem(t *testing.T, srv partitionable) {
	s := openPrivate(t, srv, 100)
	c := s.Orders.Versioned()
	ctx := context.Background()
	key := s.OrderKey("p1")
	if ok, err := c.SetIfNewer(ctx, key, 1, []byte("old")); !ok || err != nil {
		t.Fatalf("set: %v %v", ok, err)
	}

	srv.Pause()
	if _, _, err := c.Get(ctx, key); err == nil {
		t.Fatal("Get on a paused Redis succeeded")
	}
	if s.Status() != cache.StatusDegraded {
		t.Fatalf("status %s after a failure", s.Status())
	}
	if _, _, err := c.Get(ctx, key); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("degraded Get = %v, want ErrUnavailable without touching Redis", err)
	}
	e, err := c.GetOrLoad(ctx, key, constLoad("new", 2))
	if err != nil || string(e.Value) != "new" {
		t.Fatalf("degraded GetOrLoad = %q, %v; want the loader's value", e.Value, err)
	}
	if err := c.Invalidate(ctx, key, 2); err == nil {
		t.Fatal("Invalidate on a paused Redis reported success")
	}
	if st := s.Stats(ctx); st.PendingInvalidations != 1 || st.Status != cache.StatusDegraded || st.Redis != nil {
		t.Fatalf("stats while degraded: %+v", st)
	}
	if err := s.Probe(ctx); err == nil {
		t.Fatal("probe succeeded while Redis is paused")
	}

	srv.Resume()
	mustProbe(t, s)
	if e, hit, err := c.Get(ctx, key); hit || err != nil {
		t.Fatalf("after recovery Get = %q@%d hit=%v err=%v; the old value must not be served", e.Value, e.Version, hit, err)
	}
	if kind, ver, _ := raw(t, s.Orders, key); kind != 'T' || ver != 2 {
		t.Fatalf("redis holds %c@%d, want the replayed tombstone T@2", kind, ver)
	}
	if e, err := c.GetOrLoad(ctx, key, constLoad("new", 2)); err != nil || e.Version != 2 {
		t.Fatal(e, err)
	}
	if _, hit, _ := c.Get(ctx, key); !hit {
		t.Fatal("hits do not return after recovery")
	}
	if st := s.Stats(ctx); st.PendingInvalidations != 0 || st.Generation < 2 {
		t.Fatalf("stats after recovery: %+v", st)
	}
}

// Redis restarts from a snapshot older than the last write: the restored
// entry is never served; the restart is detected by run_id and purged.
func TestRestartFromOldSnapshotIsPurged(t *testing.T) {
	t.Parallel()
	srv := cachetest.StartServer(t)
	s := openPrivate(t, srv, 100)
	c := s.Orders.Versioned()
	ctx := context.Background()
	key := s.OrderKey("r1")
	if _, err := c.SetIfNewer(ctx, key, 1, []byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := s.Orders.Client().Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.SetCommitted(ctx, key, 2, []byte("new")); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	srv.Start() // loads the snapshot holding version 1

	for range 5 {
		e, hit, _ := c.Get(ctx, key)
		if hit && e.Version == 1 {
			t.Fatal("served the entry restored from the old snapshot")
		}
	}
	mustProbe(t, s)
	if kind, ver, val := raw(t, s.Orders, key); kind != 0 {
		t.Fatalf("redis holds %c@%d %q after the restart; want it purged", kind, ver, val)
	}
	if e, err := c.GetOrLoad(ctx, key, constLoad("new", 2)); err != nil || string(e.Value) != "new" {
		t.Fatal(e, err)
	}
	if _, hit, _ := c.Get(ctx, key); !hit {
		t.Fatal("hits do not return after the restart")
	}
}

// More invalidations than MaxPending while unreachable: the store is purged
// on recovery; other stores keep their entries.
func TestOverflowPurgesTheStore(t *testing.T) {
	t.Parallel()
	testOverflowPurgesTheStore(t, cachetest.StartServer(t))
}

func testOverflowPurgesTheStore(t *testing.T, srv partitionable) {
	s := openPrivate(t, srv, 2)
	c := s.Orders.Versioned()
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c", "untouched"} {
		if _, err := c.SetIfNewer(ctx, s.OrderKey(id), 1, []byte("old")); err != nil {
			t.Fatal(err)
		}
	}
	inv := s.Inventory.Versioned()
	if _, err := inv.SetIfNewer(ctx, s.InventoryKey("SKU"), 1, []byte("stock")); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	for _, id := range []string{"a", "b", "c"} {
		_ = c.Invalidate(ctx, s.OrderKey(id), 2)
	}
	srv.Resume()
	mustProbe(t, s)
	for _, id := range []string{"a", "b", "c", "untouched"} {
		if _, hit, _ := c.Get(ctx, s.OrderKey(id)); hit {
			t.Fatalf("order %s served after an overflow; want the store purged", id)
		}
	}
	if _, hit, _ := inv.Get(ctx, s.InventoryKey("SKU")); !hit {
		t.Fatal("inventory store purged although nothing overflowed there")
	}
}

// Two processes: B's load read the old row before A's commit; A, cut off,
// overflowed and purged on recovery. B's late set must not land on the
// purged store — the purge flushed the script cache, so B's set script of
// the old generation no longer exists.
func TestPurgeFencesOtherProcessesLateSets(t *testing.T) {
	t.Parallel()
	srv := cachetest.StartServer(t)
	a := openPrivate(t, srv, 1)
	b := openPrivate(t, srv, 100)
	ctx := context.Background()
	key := a.OrderKey("fence")

	readDone, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = b.Orders.Versioned().GetOrLoad(ctx, key, func(context.Context) ([]byte, int64, error) {
			close(readDone)
			<-release
			return []byte("old"), 1, nil
		})
	}()
	<-readDone
	srv.Pause()
	ac := a.Orders.Versioned()
	_ = ac.Invalidate(ctx, key, 2)
	_ = ac.Invalidate(ctx, a.OrderKey("other"), 2) // overflows MaxPending = 1
	srv.Resume()
	mustProbe(t, a)
	close(release)
	wg.Wait()
	if kind, ver, val := raw(t, a.Orders, key); kind == 'V' && ver < 2 {
		t.Fatalf("B's late set of %q@%d landed after A's purge", val, ver)
	}
	mustProbe(t, b) // B saw NOSCRIPT, degraded, and recovers with a new generation
	if e, err := b.Orders.Versioned().GetOrLoad(ctx, key, constLoad("new", 2)); err != nil || e.Version != 2 {
		t.Fatal(e, err)
	}
	if _, hit, _ := b.Orders.Versioned().Get(ctx, key); !hit {
		t.Fatal("B does not cache again after recovering")
	}
}

// Redis down when the process starts: reads come from the loader with no
// error, invalidations wait, and the cache comes up when Redis does.
func TestStartsDegradedAndRecovers(t *testing.T) {
	t.Parallel()
	srv := cachetest.StartServer(t)
	srv.Kill()
	s := openPrivate(t, srv, 100)
	ctx := context.Background()
	if s.Status() != cache.StatusDegraded {
		t.Fatalf("status %s with Redis down", s.Status())
	}
	c := s.Inventory.Versioned()
	key := s.InventoryKey("SKU-1")
	if e, err := c.GetOrLoad(ctx, key, constLoad("db", 3)); err != nil || string(e.Value) != "db" {
		t.Fatal(e, err)
	}
	if err := s.InvalidateInventory(ctx, "SKU-1", 3, nil); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("invalidate while down = %v, want ErrUnavailable", err)
	}
	srv.Start()
	mustProbe(t, s)
	if kind, ver, _ := raw(t, s.Inventory, key); kind != 'T' || ver != 3 {
		t.Fatalf("redis holds %c@%d, want the replayed tombstone T@3", kind, ver)
	}
}
