package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"

	"github.com/trackops/trackops/internal/cache/cachetest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestRedisStoppedDuringReadsAndWrites runs the real binary against a
// private redis-server and keeps a loop of order creates, status changes,
// reads and lists going while Redis is killed and later restarted — from a
// snapshot that still holds an order as it was before the outage. It shows:
//   - not one 5xx (or transport error) at any point: every answer is 2xx or
//     an expected 4xx (409 for a status change racing the saga);
//   - /health is DEGRADED with 200 while Redis is down;
//   - an order changed during the outage reads with its new status after
//     recovery, never the stale one the snapshot brought back;
//   - reads become cache hits again: order:{id} reappears in db 2 with a TTL
//     of at most 3,600 s, and trackops_cache_requests_total{result="hit"|"near_hit"}
//     of the orders store grows.
func TestRedisStoppedDuringReadsAndWrites(t *testing.T) {
	endToEnd(t)
	p, srv, orders := startOnPrivateRedis(t)
	ctx := context.Background()

	// The watched order: confirmed, read twice (a hit), in the snapshot.
	watched := createConfirmed(t, p)
	readStatus(t, p, watched)
	readStatus(t, p, watched)
	wantCached(t, p, orders, watched, "CONFIRMED")
	if ttl := keyTTL(t, orders, watched); ttl <= 0 || ttl > time.Hour {
		t.Fatalf("order:%s TTL %v, want (0, 1h]", watched, ttl)
	}
	if err := orders.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	loop := startLoop(t, p, watched)
	after := loop.after
	stopLoop := loop.stop
	after(30, "30 requests with Redis up")
	srv.Kill()
	health := waitDegraded(t, p)
	if health.code != http.StatusOK || health.Components["redis"].Status != "DOWN" {
		stopLoop()
		t.Fatalf("with Redis down: /health %d, status %s, redis %s; want 200, DEGRADED, DOWN",
			health.code, health.Status, health.Components["redis"].Status)
	}
	after(60, "60 requests with Redis down")
	// The change the snapshot does not know.
	mustCall(t, p, http.MethodPatch, "/api/v1/orders/"+watched+"/status", `{"status":"PROCESSING"}`, http.StatusOK, nil)
	if got := readStatus(t, p, watched); got != "PROCESSING" {
		t.Fatalf("during the outage the watched order reads %s, want PROCESSING", got)
	}
	after(30, "30 more requests with Redis down")

	srv.Start() // loads the snapshot: the watched order cached as CONFIRMED
	waitCacheRecovered(t, p)
	after(60, "60 requests after recovery")
	stopLoop()

	loop.report()

	// No stale value after recovery, and reads are hits again.
	checkFreshHits(t, p, orders, watched)
	if ttl := keyTTL(t, orders, watched); ttl <= 0 || ttl > time.Hour {
		t.Errorf("order:%s TTL %v after recovery, want (0, 1h]", watched, ttl)
	}
	if strings.Contains(p.Log.String(), p.Token) {
		t.Errorf("the process's logs contain its API key")
	}
}

// TestRedisFrozenDuringReadsAndWrites is the partition case: Redis stops
// answering (SIGSTOP) with its connections open, so every cache call and
// rate-limit check waits for its timeout instead of failing at once. The
// loop still sees no 5xx, /health reports DEGRADED with 200 (and answers),
// and after Redis resumes an order changed meanwhile reads new and is
// cached again.
func TestRedisFrozenDuringReadsAndWrites(t *testing.T) {
	endToEnd(t)
	p, srv, orders := startOnPrivateRedis(t)
	watched := createConfirmed(t, p)
	readStatus(t, p, watched)
	wantCached(t, p, orders, watched, "CONFIRMED")

	loop := startLoop(t, p, watched)
	loop.after(30, "30 requests with Redis up")
	slowest := loop.watchSlowest()
	srv.Pause()                       // SIGKILL at cleanup ends it even if the test fails frozen
	burst(t, loop, p, watched, 32, 5) // many requests meeting the freeze at once
	health := waitDegraded(t, p)
	if health.code != http.StatusOK {
		t.Fatalf("with Redis frozen: /health %d, want 200", health.code)
	}
	loop.after(60, "60 requests with Redis frozen")
	burst(t, loop, p, watched, 32, 5)
	mustCall(t, p, http.MethodPatch, "/api/v1/orders/"+watched+"/status", `{"status":"PROCESSING"}`, http.StatusOK, nil)
	loop.after(30, "30 more requests with Redis frozen")
	// Every Redis command is bounded by the 250 ms budget and a request
	// stops waiting for Redis after its first lost command: no request may
	// wait for Redis much longer than one budget. 4× the budget is a
	// correctness bound (a request stuck on several commands in turn
	// would cross it), not a speed target.
	if d := slowest(); d > 4*250*time.Millisecond {
		t.Errorf("with Redis frozen the slowest request took %v, want at most 1 s (4 × the 250 ms budget)", d)
	} else {
		t.Logf("with Redis frozen the slowest request took %v", d)
	}
	srv.Resume() // its data is intact: the watched order still cached as CONFIRMED
	waitCacheRecovered(t, p)
	loop.after(60, "60 requests after recovery")
	loop.stop()
	loop.report()

	checkFreshHits(t, p, orders, watched)
}

// startOnPrivateRedis starts TrackOps on a private redis-server, with short
// relay and retry intervals and SKU-REDIS in stock, and returns the process,
// the server and a client on the orders cache (db 2).
func startOnPrivateRedis(t *testing.T) (*Process, *cachetest.Server, *redis.Client) {
	t.Helper()
	db := postgrestest.New(t)
	srv := cachetest.StartServer(t)
	cfg := newConfig(t, db)
	cfg.Extra = []string{"TRACKOPS_REDIS_URL=" + srv.URL(), "TRACKOPS_RELAY_POLL_INTERVAL=50ms",
		"TRACKOPS_CONSUMER_RETRY_BACKOFF=20ms", "TRACKOPS_CONSUMER_RETRY_MAX_BACKOFF=100ms"}
	p := Start(t, cfg)
	orders := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", srv.Port), DB: 2,
		MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { orders.Close() })
	mustCall(t, p, http.MethodPut, "/api/v1/inventory/SKU-REDIS", `{"name":"fault widget","on_hand":1000000}`, http.StatusCreated, nil)
	return p, srv, orders
}

// waitDegraded waits until /health reports DEGRADED and returns that report.
func waitDegraded(t *testing.T, p *Process) healthReport {
	t.Helper()
	var health healthReport
	waitUntil(t, "/health DEGRADED", hangGuard, until(func() bool {
		health = getHealth(t, p)
		return health.Status == "DEGRADED"
	}))
	return health
}

// loop is the load of the Redis fault tests: three workers, each creating
// an order, reading it, moving an earlier one to PROCESSING, listing and
// reading the watched order, over and over, recording every answer that is
// not 2xx or an expected 4xx.
type loop struct {
	t *testing.T
	// slowest is the longest request, in nanoseconds, since watchSlowest.
	slowest  atomic.Int64
	stopped  atomic.Bool
	requests atomic.Int64
	mu       sync.Mutex
	failures []string
	known    []string
	wg       sync.WaitGroup
}

func startLoop(t *testing.T, p *Process, watched string) *loop {
	l := &loop{t: t}
	for w := range 3 {
		l.wg.Go(func() {
			for i := 0; !l.stopped.Load(); i++ {
				id, code, err := createOrder(p, w*100000+i)
				l.record("create", code, err, http.StatusCreated)
				if id == "" {
					continue
				}
				code, err = l.call(p, http.MethodGet, "/api/v1/orders/"+id, "", nil)
				l.record("read new", code, err, http.StatusOK)
				l.mu.Lock()
				l.known = append(l.known, id)
				earlier := l.known[len(l.known)/2]
				l.mu.Unlock()
				// 409 when the saga has not confirmed it yet, or another
				// worker moved it first.
				code, err = l.call(p, http.MethodPatch, "/api/v1/orders/"+earlier+"/status", `{"status":"PROCESSING"}`, nil)
				l.record("status change", code, err, http.StatusOK, http.StatusConflict)
				code, err = l.call(p, http.MethodGet, "/api/v1/orders?limit=20", "", nil)
				l.record("list", code, err, http.StatusOK)
				code, err = l.call(p, http.MethodGet, "/api/v1/orders/"+watched, "", nil)
				l.record("read watched", code, err, http.StatusOK)
			}
		})
	}
	t.Cleanup(l.stop) // before the process is killed, should the test fail early
	return l
}

// burst sends clients × n reads of the watched order at once, timed and
// recorded like the loop's own requests: concurrency is what made a frozen
// Redis cost seconds (every request queued for the pool, then waited for
// each of its commands in turn).
func burst(t *testing.T, l *loop, p *Process, watched string, clients, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for range n {
				code, err := l.call(p, http.MethodGet, "/api/v1/orders/"+watched, "", nil)
				l.record("burst read", code, err, http.StatusOK)
			}
		})
	}
	wg.Wait()
}

// call is the package's call, timed for slowest.
func (l *loop) call(p *Process, method, path, body string, out any) (int, error) {
	start := time.Now()
	code, err := call(p, method, path, body, out)
	if d := int64(time.Since(start)); d > l.slowest.Load() {
		l.slowest.Store(d) // racy max: close enough for a bound check
	}
	return code, err
}

// watchSlowest starts timing afresh and returns how to read the slowest
// request since.
func (l *loop) watchSlowest() func() time.Duration {
	l.slowest.Store(0)
	return func() time.Duration { return time.Duration(l.slowest.Load()) }
}

// record counts one answer; code 0 is a request that got no answer at all.
func (l *loop) record(op string, code int, err error, allowed ...int) {
	l.requests.Add(1)
	ok := false
	for _, a := range allowed {
		ok = ok || code == a
	}
	if !ok {
		l.mu.Lock()
		l.failures = append(l.failures, fmt.Sprintf("%s: %d %v", op, code, err))
		l.mu.Unlock()
	}
}

// after waits until the loop has sent n more requests.
func (l *loop) after(n int64, what string) {
	l.t.Helper()
	target := l.requests.Load() + n
	waitUntil(l.t, what, hangGuard, until(func() bool { return l.requests.Load() >= target }))
}

func (l *loop) stop() {
	l.stopped.Store(true)
	l.wg.Wait()
}

// report fails the test for every request that was not answered as
// expected.
func (l *loop) report() {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Logf("%d requests in the loop, %d orders created", l.requests.Load(), len(l.known))
	for i, f := range l.failures {
		if i == 20 {
			l.t.Errorf("… %d failures in all", len(l.failures))
			break
		}
		l.t.Errorf("loop request failed: %s", f)
	}
}

type healthReport struct {
	code       int
	Status     string
	Components map[string]struct{ Status string }
}

func getHealth(t *testing.T, p *Process) healthReport {
	t.Helper()
	// Signed in: anonymous callers get the status without components.
	resp, err := p.Do(http.MethodGet, "/health", "")
	if err != nil {
		t.Fatalf("/health: %v", err)
	}
	defer resp.Body.Close()
	h := healthReport{code: resp.StatusCode}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatalf("/health body: %v", err)
	}
	return h
}

// createConfirmed creates an order and waits until the saga confirmed it.
func createConfirmed(t *testing.T, p *Process) string {
	t.Helper()
	var o struct{ ID string }
	mustCall(t, p, http.MethodPost, "/api/v1/orders",
		`{"customer_id":"watched","items":[{"sku":"SKU-REDIS","quantity":1,"unit_price":"1.00"}]}`, http.StatusCreated, &o)
	waitUntil(t, "order "+o.ID+" confirmed", hangGuard, until(func() bool { return readStatus(t, p, o.ID) == "CONFIRMED" }))
	return o.ID
}

func readStatus(t *testing.T, p *Process, id string) string {
	t.Helper()
	var o struct{ Status string }
	mustCall(t, p, http.MethodGet, "/api/v1/orders/"+id, "", http.StatusOK, &o)
	return o.Status
}

func keyTTL(t *testing.T, orders *redis.Client, id string) time.Duration {
	t.Helper()
	ttl, err := orders.TTL(context.Background(), "order:"+id).Result()
	if err != nil {
		t.Fatalf("TTL order:%s: %v", id, err)
	}
	return ttl
}

// hangGuard bounds every wait of the Redis fault tests; it fails a test
// only when the platform never gets there, it asserts nothing about speed.
const hangGuard = 90 * time.Second

// until adapts a plain condition to waitUntil.
func until(cond func() bool) func(context.Context) (bool, error) {
	return func(context.Context) (bool, error) { return cond(), nil }
}

// wantCached waits until order:{id} caches the order with status want (the
// entry is the version, "V", then the order's JSON). The saga's change is
// cached a moment after a read can see it — the cache is refreshed once
// Kafka holds the change, first invalidated ("<version>T"), then filled by
// a read — so each try reads the order through the API first.
func wantCached(t *testing.T, p *Process, orders *redis.Client, id, want string) {
	t.Helper()
	waitUntil(t, "order:"+id+" cached as "+want, 10*time.Second, func(ctx context.Context) (bool, error) {
		readStatus(t, p, id)
		raw, err := orders.Get(ctx, "order:"+id).Bytes()
		if err != nil {
			return false, fmt.Errorf("order:%s not in db 2: %w", id, err)
		}
		var o struct{ Status string }
		if i := bytes.IndexByte(raw, '{'); i < 0 || json.Unmarshal(raw[i:], &o) != nil {
			return false, fmt.Errorf("order:%s holds %q, not a cached order", id, raw)
		}
		if o.Status != want {
			return false, fmt.Errorf("order:%s holds status %s", id, o.Status)
		}
		return true, nil
	})
}

// cacheHits is trackops_cache_requests_total{store="orders"} with result hit or near_hit
// from the process's /metrics.
func cacheHits(t *testing.T, p *Process) float64 {
	t.Helper()
	hits := 0.0
	for _, m := range metricFamily(t, p, "trackops_cache_requests_total").GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		// A read answered by the near cache is a hit as much as one from Redis.
		if r := labels["result"]; labels["store"] == "orders" && (r == "hit" || r == "near_hit") {
			hits += m.GetCounter().GetValue()
		}
	}
	return hits
}

// waitCacheRecovered waits until /health is UP and the cache reports UP.
func waitCacheRecovered(t *testing.T, p *Process) {
	t.Helper()
	waitUntil(t, "/health UP and the cache recovered", hangGuard, until(func() bool {
		h := getHealth(t, p)
		var c struct{ Status string }
		code, _ := call(p, http.MethodGet, "/api/v1/ops/cache", "", &c)
		return h.code == http.StatusOK && h.Status == "UP" && code == http.StatusOK && c.Status == "UP"
	}))
}

// checkFreshHits: after recovery the watched order reads PROCESSING (the
// status it got while Redis was away, never the stale cached one), repeated
// reads are cache hits, and order:{id} holds the new status.
func checkFreshHits(t *testing.T, p *Process, orders *redis.Client, watched string) {
	t.Helper()
	hitsBefore := cacheHits(t, p)
	for range 3 {
		if got := readStatus(t, p, watched); got != "PROCESSING" {
			t.Fatalf("after recovery the watched order reads %s, want PROCESSING (stale cache)", got)
		}
	}
	if hits := cacheHits(t, p); hits < hitsBefore+2 {
		t.Errorf("orders cache hits went from %v to %v over 3 reads of one order, want at least 2 more", hitsBefore, hits)
	}
	wantCached(t, p, orders, watched, "PROCESSING")
}

// metricFamily is one family from the process's /metrics; the test fails
// when the process does not serve it.
func metricFamily(t *testing.T, p *Process, name string) *dto.MetricFamily {
	t.Helper()
	resp, err := httpClient.Get(p.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("/metrics lacks %s", name)
	}
	return mf
}
