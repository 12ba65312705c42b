package cache_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/cache/cachetest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// raw reads what Redis holds at key: kind 'V', 'T' or 0 for nothing.
// A failed read is retried for up to 5 s and fails the test if it
// persists: the test stores' clients time out after 100 ms, which a busy
// machine can exceed, and a client whose dials failed while its server was
// down answers with the last dial error for a while after it is back. Only
// a missing key is "nothing".
func raw(t *testing.T, st *cache.Store, key string) (kind byte, version int64, value string) {
	t.Helper()
	var b []byte
	found := true
	untilNoError(t, "read "+key+" from redis", func() error {
		var err error
		b, err = st.Client().Get(context.Background(), key).Bytes()
		if errors.Is(err, redis.Nil) {
			found = false
			return nil
		}
		return err
	})
	if !found {
		return 0, 0, ""
	}
	var v int64
	if _, err := fmt.Sscanf(string(b[:20]), "%d", &v); err != nil {
		t.Fatalf("entry %q: %v", b, err)
	}
	return b[20], v, string(b[21:])
}

func TestSetIfNewerAndInvalidateRules(t *testing.T) {
	t.Parallel()
	testSetIfNewerAndInvalidateRules(t, cachetest.New(t))
}

func testSetIfNewerAndInvalidateRules(t *testing.T, stores *cache.Stores) {
	type op struct {
		invalidate bool
		version    int64
	}
	tests := []struct {
		name      string
		setup     []op // applied first; set ops store "v<version>"
		then      op
		wantApply bool // for a set: stored
		wantKind  byte
		wantVer   int64
	}{
		{"set on empty", nil, op{false, 1}, true, 'V', 1},
		{"newer set replaces value", []op{{false, 1}}, op{false, 2}, true, 'V', 2},
		{"older set refused", []op{{false, 2}}, op{false, 1}, false, 'V', 2},
		{"equal set refused (no-op)", []op{{false, 2}}, op{false, 2}, false, 'V', 2},
		{"set older than tombstone refused", []op{{true, 3}}, op{false, 2}, false, 'T', 3},
		{"set at tombstone's version stored", []op{{true, 3}}, op{false, 3}, true, 'V', 3},
		{"set newer than tombstone stored", []op{{true, 3}}, op{false, 4}, true, 'V', 4},
		{"invalidate on empty leaves tombstone", nil, op{true, 5}, true, 'T', 5},
		{"invalidate newer replaces value", []op{{false, 1}}, op{true, 2}, true, 'T', 2},
		{"invalidate at value's version keeps value", []op{{false, 2}}, op{true, 2}, true, 'V', 2},
		{"invalidate older keeps newer value", []op{{false, 3}}, op{true, 2}, true, 'V', 3},
		{"invalidate older keeps newer tombstone", []op{{true, 4}}, op{true, 2}, true, 'T', 4},
		{"huge versions compare exactly", []op{{false, 1<<62 + 1}}, op{false, 1 << 62}, false, 'V', 1<<62 + 1},
	}
	c := stores.Orders.Versioned()
	ctx := context.Background()
	for i, tc := range tests {
		key := stores.OrderKey(fmt.Sprintf("rule-%d", i))
		apply := func(o op) bool {
			if o.invalidate {
				if err := c.Invalidate(ctx, key, o.version); err != nil {
					t.Fatalf("%s: invalidate: %v", tc.name, err)
				}
				return true
			}
			ok, err := c.SetIfNewer(ctx, key, o.version, []byte(fmt.Sprintf("v%d", o.version)))
			if err != nil {
				t.Fatalf("%s: set: %v", tc.name, err)
			}
			return ok
		}
		for _, o := range tc.setup {
			apply(o)
		}
		if got := apply(tc.then); !tc.then.invalidate && got != tc.wantApply {
			t.Errorf("%s: stored = %v, want %v", tc.name, got, tc.wantApply)
		}
		kind, ver, val := raw(t, stores.Orders, key)
		if kind != tc.wantKind || ver != tc.wantVer {
			t.Errorf("%s: redis holds %c@%d, want %c@%d", tc.name, kind, ver, tc.wantKind, tc.wantVer)
		}
		if kind == 'V' && val != fmt.Sprintf("v%d", ver) {
			t.Errorf("%s: value %q at version %d", tc.name, val, ver)
		}
		e, hit, err := c.Get(ctx, key)
		if err != nil || hit != (kind == 'V') || (hit && e.Version != ver) {
			t.Errorf("%s: Get = %+v, %v, %v", tc.name, e, hit, err)
		}
	}
}

// The stale set-back race, step by step, against the real orders table: A
// misses and reads version 1; B commits version 2 and invalidates; A's late
// set of version 1 must leave the new value or nothing, never the old one.
func TestStaleSetBackRaceIsRefused(t *testing.T) {
	t.Parallel()
	testStaleSetBackRaceIsRefused(t, cachetest.New(t))
}

func testStaleSetBackRaceIsRefused(t *testing.T, stores *cache.Stores) {
	db := postgrestest.New(t)
	c := stores.Orders.Versioned()
	ctx := context.Background()
	id := uuid.NewString()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO orders (id, customer_id, status, total_amount) VALUES ($1, 'c1', 'PENDING', 10)`, id); err != nil {
		t.Fatal(err)
	}
	key := stores.OrderStatusKey(id)
	readStatus := func(ctx context.Context) ([]byte, int64, error) {
		var status string
		var version int64
		err := db.Pool.QueryRow(ctx, `SELECT status, version FROM orders WHERE id = $1`, id).Scan(&status, &version)
		return []byte(status), version, err
	}

	readDone, proceed := make(chan struct{}), make(chan struct{})
	var aGot cache.Entry
	var aErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // A
		defer wg.Done()
		aGot, aErr = c.GetOrLoad(ctx, key, func(ctx context.Context) ([]byte, int64, error) {
			v, ver, err := readStatus(ctx) // miss-read-old
			close(readDone)
			<-proceed
			return v, ver, err
		})
	}()
	<-readDone
	// B: commit the new version, then invalidate after the commit.
	if _, err := db.Pool.Exec(ctx, `UPDATE orders SET status = 'CONFIRMED', version = version + 1 WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if err := stores.InvalidateOrder(ctx, id, 2, nil); err != nil {
		t.Fatal(err)
	}
	close(proceed) // A's late set of the old version
	wg.Wait()
	if aErr != nil || string(aGot.Value) != "PENDING" || aGot.Version != 1 {
		t.Fatalf("A's own read = %q@%d, %v; want PENDING@1", aGot.Value, aGot.Version, aErr)
	}
	if kind, ver, val := raw(t, stores.Orders, key); kind == 'V' && (ver != 2 || val != "CONFIRMED") {
		t.Fatalf("redis holds %q@%d after the race; want CONFIRMED@2 or nothing", val, ver)
	}
	e, err := c.GetOrLoad(ctx, key, readStatus)
	if err != nil || string(e.Value) != "CONFIRMED" || e.Version != 2 {
		t.Fatalf("next read = %q@%d, %v; want CONFIRMED@2", e.Value, e.Version, err)
	}
	if e, hit, _ := c.Get(ctx, key); !hit || string(e.Value) != "CONFIRMED" {
		t.Fatalf("after reload: hit=%v %q, want a hit on CONFIRMED", hit, e.Value)
	}

	// The same with the bare primitives.
	k2 := stores.OrderKey(id)
	if err := c.Invalidate(ctx, k2, 2); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.SetIfNewer(ctx, k2, 1, []byte("old")); ok || err != nil {
		t.Fatalf("late SetIfNewer of version 1 after Invalidate(2) = %v, %v; want refused", ok, err)
	}
	if _, hit, _ := c.Get(ctx, k2); hit {
		t.Fatal("old value served after invalidation")
	}
}

func TestConcurrentMissesShareOneLoad(t *testing.T) {
	t.Parallel()
	testConcurrentMissesShareOneLoad(t, cachetest.New(t))
}

func testConcurrentMissesShareOneLoad(t *testing.T, stores *cache.Stores) {
	c := stores.Inventory.Versioned()
	const n = 50
	release := make(chan struct{})
	var loads atomic.Int32
	load := func(ctx context.Context) ([]byte, int64, error) {
		loads.Add(1)
		<-release
		return []byte(`{"on_hand":7}`), 4, nil
	}
	key := stores.InventoryKey("SKU-1")
	results := readTogether(t, c, key, n, load, release)
	if got := loads.Load(); got != 1 {
		t.Fatalf("%d loads for %d concurrent misses, want 1", got, n)
	}
	for i, e := range results {
		if e.Version != 4 || string(e.Value) != `{"on_hand":7}` {
			t.Fatalf("caller %d got %q@%d", i, e.Value, e.Version)
		}
	}
	if e, hit, _ := c.Get(context.Background(), key); !hit || e.Version != 4 {
		t.Fatalf("after the load: hit=%v version=%d", hit, e.Version)
	}
}

// A reader that arrives after an invalidation must not be handed the result
// of a load that began before the commit (read-your-writes).
func TestReaderAfterInvalidationDoesNotJoinOlderLoad(t *testing.T) {
	t.Parallel()
	testReaderAfterInvalidationDoesNotJoinOlderLoad(t, cachetest.New(t))
}

func testReaderAfterInvalidationDoesNotJoinOlderLoad(t *testing.T, stores *cache.Stores) {
	c := stores.Orders.Versioned()
	ctx := context.Background()
	key := stores.OrderKey("ryw")
	var mu sync.Mutex
	row := struct {
		v   string
		ver int64
	}{"old", 1}
	read := func() ([]byte, int64) { mu.Lock(); defer mu.Unlock(); return []byte(row.v), row.ver }

	started, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = c.GetOrLoad(ctx, key, func(ctx context.Context) ([]byte, int64, error) {
			v, ver := read()
			close(started)
			<-release
			return v, ver, nil
		})
	}()
	<-started
	mu.Lock()
	row.v, row.ver = "new", 2
	mu.Unlock()
	if err := c.Invalidate(ctx, key, 2); err != nil {
		t.Fatal(err)
	}
	e, err := c.GetOrLoad(ctx, key, func(ctx context.Context) ([]byte, int64, error) {
		v, ver := read()
		return v, ver, nil
	})
	close(release)
	wg.Wait()
	if err != nil || string(e.Value) != "new" || e.Version != 2 {
		t.Fatalf("reader after the write got %q@%d, %v; want new@2", e.Value, e.Version, err)
	}
}

// Writers commit increasing versions and invalidate; readers load through
// the cache. No read returns a version older than one invalidated before
// the read began, and the cache ends with the last version or nothing.
func TestConcurrentReadsNeverGoBackInTime(t *testing.T) {
	t.Parallel()
	testConcurrentReadsNeverGoBackInTime(t, cachetest.New(t))
}

func testConcurrentReadsNeverGoBackInTime(t *testing.T, stores *cache.Stores) {
	c := stores.Orders.Versioned()
	ctx := context.Background()
	key := stores.OrderKey("concurrent")
	var mu sync.Mutex
	var committed int64 = 1
	var invalidated atomic.Int64
	invalidated.Store(1)
	load := func(ctx context.Context) ([]byte, int64, error) {
		mu.Lock()
		v := committed
		mu.Unlock()
		if rand.IntN(2) == 0 {
			time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond) // widen the window
		}
		return []byte(fmt.Sprint(v)), v, nil
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 150 {
				mu.Lock()
				committed++
				v := committed
				mu.Unlock()
				if err := c.Invalidate(ctx, key, v); err != nil {
					t.Error(err)
					return
				}
				for { // invalidated = max
					cur := invalidated.Load()
					if v <= cur || invalidated.CompareAndSwap(cur, v) {
						break
					}
				}
			}
		}()
	}
	var readers sync.WaitGroup
	var reads atomic.Int64
	for range 6 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				floor := invalidated.Load()
				e, err := c.GetOrLoad(ctx, key, load)
				if err != nil {
					t.Error(err)
					return
				}
				reads.Add(1)
				if e.Version < floor {
					t.Errorf("read version %d after version %d was invalidated", e.Version, floor)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	if kind, ver, _ := raw(t, stores.Orders, key); kind == 'V' && ver != committed {
		t.Fatalf("cache holds version %d, last committed %d", ver, committed)
	}
	if reads.Load() == 0 {
		t.Fatal("no reads ran")
	}
}

func TestSecondReadIsHitWithStoreTTL(t *testing.T) {
	t.Parallel()
	testSecondReadIsHitWithStoreTTL(t, cachetest.New(t))
}

func testSecondReadIsHitWithStoreTTL(t *testing.T, stores *cache.Stores) {
	c := stores.Orders.Versioned()
	ctx := context.Background()
	key := stores.OrderKey("hit")
	loads := 0
	load := func(ctx context.Context) ([]byte, int64, error) { loads++; return []byte(`{"id":"hit"}`), 1, nil }
	for range 2 {
		if _, err := c.GetOrLoad(ctx, key, load); err != nil {
			t.Fatal(err)
		}
	}
	if loads != 1 {
		t.Fatalf("%d loads for two reads", loads)
	}
	st := stores.Stats(ctx)
	var orders cache.StoreStats
	for _, s := range st.Stores {
		if s.Name == "orders" {
			orders = s
		}
	}
	if orders.Hits != 1 || orders.Misses != 1 || orders.DB != stores.Orders.DB() || orders.Keys != 1 {
		t.Fatalf("orders stats %+v; want 1 hit, 1 miss, db %d, 1 key", orders, stores.Orders.DB())
	}
	ttl, err := stores.Orders.Client().PTTL(ctx, key).Result()
	if err != nil || ttl <= 0 || ttl > time.Hour {
		t.Fatalf("TTL %v, %v; want (0, 1h]", ttl, err)
	}
	if st.Status != cache.StatusUp || st.Redis == nil || st.Redis.UsedMemory <= 0 || st.HitRate != 0.5 {
		t.Fatalf("stats %+v, redis %+v", st, st.Redis)
	}
}

func TestWarmAfterInvalidation(t *testing.T) {
	t.Parallel()
	testWarmAfterInvalidation(t, cachetest.New(t))
}

func testWarmAfterInvalidation(t *testing.T, stores *cache.Stores) {
	ctx := context.Background()
	c := stores.Orders.Versioned()
	id := "warm"
	if _, err := c.SetIfNewer(ctx, stores.OrderKey(id), 1, []byte("o1")); err != nil {
		t.Fatal(err)
	}
	err := stores.InvalidateOrder(ctx, id, 2, func(ctx context.Context) (cache.OrderViews, int64, error) {
		return cache.OrderViews{Order: []byte("o2"), Status: []byte("CONFIRMED")}, 2, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{stores.OrderKey(id): "o2", stores.OrderStatusKey(id): "CONFIRMED"} {
		if e, hit, err := c.Get(ctx, key); !hit || err != nil || string(e.Value) != want || e.Version != 2 {
			t.Errorf("%s: %q@%d hit=%v err=%v; want %s@2", key, e.Value, e.Version, hit, err, want)
		}
	}
	if kind, ver, _ := raw(t, stores.Orders, stores.OrderItemsKey(id)); kind != 'T' || ver != 2 {
		t.Errorf("items key %c@%d, want a tombstone at 2", kind, ver)
	}
	// A warm loader returning an older version (a lagging read) is refused.
	err = stores.InvalidateInventory(ctx, "SKU-9", 5, func(ctx context.Context) ([]byte, int64, error) { return []byte("x"), 4, nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, hit, _ := stores.Inventory.Versioned().Get(ctx, stores.InventoryKey("SKU-9")); hit {
		t.Fatal("older warm value stored over a newer tombstone")
	}
	if err := stores.InvalidateOrder(ctx, id, -1, nil); err == nil || errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("negative version accepted: %v", err)
	}
}

// A change stream can report a commit, and its refresh invalidate the key,
// a moment before PostgreSQL shows the commit to new snapshots. A load that
// ran in that moment returns the older version: a reader that found the new
// version's tombstone reads again instead of being handed it.
func TestLoadBehindTheTombstoneIsReadAgain(t *testing.T) {
	t.Parallel()
	stores := cachetest.New(t)
	c := stores.Orders.Versioned()
	ctx := context.Background()
	key := stores.OrderKey("behind")
	if err := c.Invalidate(ctx, key, 4); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var loads atomic.Int32
	load := func(ctx context.Context) ([]byte, int64, error) {
		if loads.Add(1) == 1 {
			<-release // the shared load, run before the commit showed
			return []byte("PROCESSING"), 3, nil
		}
		return []byte("SHIPPED"), 4, nil
	}
	for i, e := range readTogether(t, c, key, 2, load, release) {
		if e.Version != 4 || string(e.Value) != "SHIPPED" {
			t.Errorf("reader %d got %q@%d after finding the tombstone of version 4", i, e.Value, e.Version)
		}
	}
	if e, hit, _ := c.Get(ctx, key); !hit || e.Version != 4 {
		t.Errorf("cache after the reads: hit=%v version %d, want version 4", hit, e.Version)
	}

	// A row that never shows the version: the reader gets what there is
	// after a bounded number of reads.
	key2 := stores.OrderKey("never")
	if err := c.Invalidate(ctx, key2, 9); err != nil {
		t.Fatal(err)
	}
	cache.SetJoinedFlightHook(c, nil)
	loads.Store(0)
	e, err := c.GetOrLoad(ctx, key2, func(context.Context) ([]byte, int64, error) {
		loads.Add(1)
		return []byte("old"), 8, nil
	})
	if err != nil || e.Version != 8 {
		t.Errorf("row behind for good: %q@%d, %v; want old@8", e.Value, e.Version, err)
	}
	if n := loads.Load(); n != 4 {
		t.Errorf("%d loads of a row that stays behind, want 4 (one shared, three again)", n)
	}
}

// readTogether has n readers call GetOrLoad on key at once, waits until
// every one of them has joined the single load in flight, then closes
// release (which load waits on) and returns what each reader got.
func readTogether(t *testing.T, c *cache.Versioned, key string, n int,
	load func(ctx context.Context) ([]byte, int64, error), release chan struct{}) []cache.Entry {
	t.Helper()
	joined := make(chan struct{}, n)
	cache.SetJoinedFlightHook(c, func() { joined <- struct{}{} })
	var wg sync.WaitGroup
	got := make([]cache.Entry, n)
	for i := range n {
		wg.Go(func() {
			e, err := c.GetOrLoad(context.Background(), key, load)
			if err != nil {
				t.Error(err)
			}
			got[i] = e
		})
	}
	for range n {
		<-joined
	}
	close(release)
	wg.Wait()
	return got
}
