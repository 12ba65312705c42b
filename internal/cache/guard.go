package cache

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrUnavailable is returned by cache calls while the cache is degraded:
// Redis failed recently and has not been reconciled since. Callers read from
// PostgreSQL instead.
var ErrUnavailable = errors.New("cache: redis unavailable (degraded)")

// errRestarted fails a fresh connection to a Redis whose run_id differs from
// the one the cache last reconciled with: that server restarted, perhaps from
// an old snapshot, and must be purged before anything it holds is served.
var errRestarted = errors.New("cache: redis restarted since last reconcile")

const (
	stateUp int32 = iota
	stateDegraded
)

// Status values as the health endpoint spells them.
const (
	StatusUp       = "UP"
	StatusDegraded = "DEGRADED"
)

// setScript is one generation of the set-if-newer script. Its text carries a
// per-process nonce and the generation number, so its SHA is unique: a set
// sent with an older generation's SHA fails with NOSCRIPT once Redis's script
// cache has been flushed (by a restart or by a purge), and so can never land
// on top of a purge. See docs/cache.md, "Fencing".
type setScript struct {
	gen uint64
	src string
	sha string
}

// guard is the cache's circuit breaker and recovery procedure, shared by the
// versioned stores of one Stores. Invariant: while the state is up, no
// invalidation of this process is pending; a failed invalidation is recorded
// and degrades the cache in one step under mu.
type guard struct {
	stores *Stores
	o      Options
	log    *slog.Logger
	nonce  string

	state    atomic.Int32
	failures atomic.Int32
	script   atomic.Pointer[setScript]
	knownRun atomic.Pointer[string]

	mu            sync.Mutex
	pending       map[*Store]map[string]int64
	overflow      map[*Store]int // overflow events since the last purge
	lastErr       string
	degradedSince time.Time
	everUp        bool

	reconcileMu sync.Mutex
	wake        chan struct{}
	done        chan struct{}
	wg          sync.WaitGroup
	stopOnce    sync.Once
}

func newGuard(s *Stores, o Options) *guard {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	g := &guard{
		stores: s, o: o, log: o.Logger, nonce: hex.EncodeToString(b),
		pending:  map[*Store]map[string]int64{},
		overflow: map[*Store]int{},
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	g.state.Store(stateDegraded)
	g.degradedSince = time.Now()
	g.lastErr = "not yet connected"
	g.script.Store(&setScript{}) // generation 0 is never loaded: no set before the first reconcile
	empty := ""
	g.knownRun.Store(&empty)
	return g
}

// start reconciles once synchronously, so a process whose Redis is up starts
// with a working cache, then runs the recovery probe in the background.
func (g *guard) start() {
	ctx, cancel := context.WithTimeout(context.Background(), g.reconcileTimeout())
	if err := g.reconcile(ctx); err != nil {
		g.noteError(err)
		g.log.Warn("cache degraded at start; PostgreSQL serves reads until Redis answers", "err", err)
	}
	cancel()
	g.wg.Add(1)
	go g.loop()
}

func (g *guard) stop() {
	g.stopOnce.Do(func() { close(g.done) })
	g.wg.Wait()
}

func (g *guard) reconcileTimeout() time.Duration {
	return max(10*g.o.OpTimeout, 2*time.Second)
}

func (g *guard) loop() {
	defer g.wg.Done()
	t := time.NewTicker(g.o.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-g.done:
			return
		case <-g.wake:
		case <-t.C:
		}
		if g.state.Load() != stateDegraded {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), g.reconcileTimeout())
		if err := g.reconcile(ctx); err != nil {
			g.noteError(err)
		}
		cancel()
	}
}

func (g *guard) up() bool { return g.state.Load() == stateUp }

// allow fails fast while degraded.
func (g *guard) allow() error {
	if g.state.Load() != stateUp {
		return ErrUnavailable
	}
	return nil
}

// observe feeds the breaker with the outcome of a read or set.
func (g *guard) observe(ctx context.Context, err error) {
	if err == nil || errors.Is(err, redis.Nil) {
		if g.failures.Load() != 0 { // no store on the hot path: one shared cache line
			g.failures.Store(0)
		}
		return
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return // the caller gave up; says nothing about Redis
	}
	if int(g.failures.Add(1)) >= g.o.FailureThreshold {
		g.trip(err)
	}
}

// trip puts the cache in the degraded state and wakes the probe.
func (g *guard) trip(cause error) {
	g.mu.Lock()
	g.tripLocked(cause)
	g.mu.Unlock()
}

func (g *guard) tripLocked(cause error) {
	g.lastErr = cause.Error()
	if g.state.Swap(stateDegraded) == stateUp {
		g.degradedSince = time.Now()
		g.o.Metrics.degraded.Set(1)
		g.log.Warn("cache degraded; reads fall back to PostgreSQL", "err", cause)
	}
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

func (g *guard) noteError(err error) {
	g.mu.Lock()
	g.lastErr = err.Error()
	g.mu.Unlock()
}

// recordPending remembers that key must be invalidated at version when Redis
// is back, and degrades the cache in the same step (the invariant above).
// It reports false when the cache was up and nothing was recorded: the
// caller must then send the invalidation itself.
func (g *guard) recordPending(st *Store, version int64, cause error, keys ...string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cause == nil && g.state.Load() == stateUp {
		return false // recovered meanwhile: send it instead
	}
	m := g.pending[st]
	if m == nil {
		m = map[string]int64{}
		g.pending[st] = m
	}
	for _, k := range keys {
		if old, ok := m[k]; ok {
			m[k] = max(old, version)
		} else if len(m) >= g.o.MaxPending {
			g.overflow[st]++
		} else {
			m[k] = version
		}
	}
	g.o.Metrics.pending.Set(float64(g.pendingCountLocked()))
	if cause != nil {
		g.tripLocked(cause)
	}
	return true
}

func (g *guard) pendingCountLocked() int {
	n := 0
	for _, m := range g.pending {
		n += len(m)
	}
	return n
}

// generation is the current set script; loads capture it when they start.
func (g *guard) generation() *setScript { return g.script.Load() }

// onConnect checks each new standalone connection against the run_id of the
// last reconcile, so a restarted Redis (possibly restored from an old
// snapshot) is never read before it has been purged.
func (g *guard) onConnect(ctx context.Context, cn *redis.Conn) error {
	if ctx.Value(reconcilingKey{}) != nil {
		return nil
	}
	known := *g.knownRun.Load()
	if known == "" {
		return nil // never reconciled: the cache is degraded anyway
	}
	id, err := runIDOf(ctx, cn)
	if err != nil {
		return err
	}
	if id != known {
		g.trip(errRestarted)
		return errRestarted
	}
	return nil
}

type reconcilingKey struct{}

type infoer interface {
	Info(ctx context.Context, section ...string) *redis.StringCmd
}

func runIDOf(ctx context.Context, c infoer) (string, error) {
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "", err
	}
	if v, ok := infoField(info, "run_id"); ok {
		return v, nil
	}
	return "", errors.New("cache: INFO server has no run_id")
}

func infoField(info, name string) (string, bool) {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v, true
		}
	}
	return "", false
}

// versionedStores are the stores holding copies of database rows, which a
// restart or an overflow must purge.
func (g *guard) versionedStores() []*Store {
	return []*Store{g.stores.Inventory, g.stores.Orders, g.stores.System}
}

// reconcile brings the cache from degraded to up: it detects a restart (and
// purges), replays the invalidations remembered while Redis was unreachable
// (or purges a store whose list overflowed), loads a new generation of the
// set script and only then lets reads through again.
func (g *guard) reconcile(ctx context.Context) error {
	g.reconcileMu.Lock()
	defer g.reconcileMu.Unlock()
	ctx = context.WithValue(ctx, reconcilingKey{}, true)
	sys := g.stores.System

	var runID string
	purgeAll := false
	if g.stores.cluster {
		if err := sys.client.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("cache: ping: %w", err)
		}
	} else {
		var err error
		if runID, err = runIDOf(ctx, sys.client); err != nil {
			return fmt.Errorf("cache: identify redis: %w", err)
		}
		meta, err := sys.client.HGet(ctx, g.stores.MetaKey(), "run_id").Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("cache: read %s: %w", g.stores.MetaKey(), err)
		}
		known := *g.knownRun.Load()
		// Another process that already purged after the restart has written
		// the new run_id into cache:meta; an absent cache:meta is a fresh or
		// flushed Redis with nothing stale in it.
		purgeAll = (meta != "" && meta != runID) || (meta == "" && known != "" && known != runID)
	}

	for round := 0; ; round++ {
		g.mu.Lock()
		pending := make(map[*Store]map[string]int64, len(g.pending))
		for st, m := range g.pending {
			c := make(map[string]int64, len(m))
			for k, v := range m {
				c[k] = v
			}
			pending[st] = c
		}
		purge := map[*Store]bool{}
		overflowSeen := make(map[*Store]int, len(g.overflow))
		for st, n := range g.overflow {
			purge[st] = true
			overflowSeen[st] = n
		}
		if purgeAll {
			for _, st := range g.versionedStores() {
				purge[st] = true
			}
		}
		g.mu.Unlock()

		if len(purge) > 0 {
			if err := g.purge(ctx, purge); err != nil {
				return err
			}
			purgeAll = false
		}
		for st, m := range pending {
			if purge[st] {
				continue
			}
			if err := replay(ctx, st, g.o.TombstoneTTL, m, g.o.Metrics); err != nil {
				return err
			}
		}

		g.mu.Lock()
		for st, m := range pending {
			for k, v := range m {
				if g.pending[st][k] == v {
					delete(g.pending[st], k)
				}
			}
		}
		for st, n := range overflowSeen {
			if g.overflow[st] == n {
				delete(g.overflow, st)
			}
		}
		if g.pendingCountLocked() > 0 || len(g.overflow) > 0 {
			g.mu.Unlock()
			if round >= 4 {
				return errors.New("cache: invalidations keep arriving faster than they replay")
			}
			continue
		}
		g.mu.Unlock()
		break
	}

	// A new generation on every recovery: a load that began before the cache
	// went degraded never stores its result (see Versioned.loadAndSet).
	old := g.script.Load()
	next := newSetScript(g.nonce, old.gen+1)
	if err := loadScripts(ctx, g.stores, next.src, invalidateSrc); err != nil {
		return fmt.Errorf("cache: load scripts: %w", err)
	}
	if !g.stores.cluster {
		if err := sys.client.HSet(ctx, g.stores.MetaKey(), "run_id", runID,
			"reconciled_at", time.Now().UTC().Format(time.RFC3339Nano)).Err(); err != nil {
			return fmt.Errorf("cache: write %s: %w", g.stores.MetaKey(), err)
		}
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pendingCountLocked() > 0 || len(g.overflow) > 0 {
		return errors.New("cache: invalidations arrived during recovery; retrying")
	}
	g.script.Store(next)
	g.knownRun.Store(&runID)
	g.failures.Store(0)
	g.o.Metrics.pending.Set(0)
	if g.state.Swap(stateUp) == stateDegraded {
		g.o.Metrics.degraded.Set(0)
		if g.everUp {
			g.log.Info("cache recovered", "degraded_for", time.Since(g.degradedSince).Round(time.Millisecond))
		}
	}
	g.lastErr = ""
	g.degradedSince = time.Time{}
	g.everUp = true
	return nil
}

// purge empties the given stores. It flushes Redis's script cache first: that
// is the fence that turns any set-if-newer still in flight from before the
// purge into a NOSCRIPT error instead of a stale entry with no tombstone to
// stop it.
func (g *guard) purge(ctx context.Context, stores map[*Store]bool) error {
	if err := forEachServer(ctx, g.stores, func(ctx context.Context, c redis.UniversalClient) error {
		return c.ScriptFlush(ctx).Err()
	}); err != nil {
		return fmt.Errorf("cache: script flush: %w", err)
	}
	for st := range stores {
		if err := purgeStore(ctx, st, g.stores.cluster); err != nil {
			return fmt.Errorf("cache: purge %s: %w", st.name, err)
		}
		g.o.Metrics.purges.WithLabelValues(st.name).Inc()
		g.log.Warn("cache store purged", "store", st.name)
	}
	return nil
}

func purgeStore(ctx context.Context, st *Store, cluster bool) error {
	if !cluster && st.prefix == "" {
		return st.client.FlushDBAsync(ctx).Err()
	}
	return scanPrefix(ctx, st, cluster, func(ctx context.Context, c redis.UniversalClient, keys []string) error {
		if !cluster {
			return c.Unlink(ctx, keys...).Err()
		}
		// On Redis Cluster a multi-key UNLINK must name keys of one slot
		// (CROSSSLOT otherwise), and one node's keys span many slots: one
		// UNLINK per key, pipelined to the node that holds them.
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.Unlink(ctx, k)
			}
			return nil
		})
		return err
	})
}

// scanPrefix calls fn with batches of the store's keys, on every master.
func scanPrefix(ctx context.Context, st *Store, cluster bool, fn func(context.Context, redis.UniversalClient, []string) error) error {
	match := escapeGlob(st.prefix) + "*"
	each := func(ctx context.Context, c redis.UniversalClient) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, match, 1000).Result()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				if err := fn(ctx, c, keys); err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := st.client.(*redis.ClusterClient); ok && cluster {
		return eachMaster(ctx, cc, each)
	}
	return each(ctx, st.client)
}

// forEachServer runs fn once per Redis server (every master on Cluster).
func forEachServer(ctx context.Context, s *Stores, fn func(context.Context, redis.UniversalClient) error) error {
	if cc, ok := s.System.client.(*redis.ClusterClient); ok {
		return eachMaster(ctx, cc, fn)
	}
	return fn(ctx, s.System.client)
}

// eachMaster runs fn on every master of a cluster, one at a time: go-redis
// calls ForEachMaster's function concurrently, and the callers accumulate
// into shared counters and strings. These are rare, whole-store operations
// (purge, stats), where a few sequential round trips cost nothing.
func eachMaster(ctx context.Context, cc *redis.ClusterClient, fn func(context.Context, redis.UniversalClient) error) error {
	var mu sync.Mutex
	return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		return fn(ctx, c)
	})
}

func loadScripts(ctx context.Context, s *Stores, srcs ...string) error {
	return forEachServer(ctx, s, func(ctx context.Context, c redis.UniversalClient) error {
		for _, src := range srcs {
			if err := c.ScriptLoad(ctx, src).Err(); err != nil {
				return err
			}
		}
		return nil
	})
}

// replay writes the remembered invalidations as version tombstones.
func replay(ctx context.Context, st *Store, ttl time.Duration, keys map[string]int64, metrics *Metrics) error {
	const batch = 500
	list := make([]string, 0, len(keys))
	for k := range keys {
		list = append(list, k)
	}
	for i := 0; i < len(list); i += batch {
		part := list[i:min(i+batch, len(list))]
		pipe := st.client.Pipeline()
		for _, k := range part {
			pipe.Eval(ctx, invalidateSrc, []string{k}, encodeVersion(keys[k]), ttl.Milliseconds())
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("cache: replay invalidations on %s: %w", st.name, err)
		}
		metrics.invalidations.WithLabelValues(st.name).Add(float64(len(part)))
	}
	return nil
}

func newSetScript(nonce string, gen uint64) *setScript {
	src := fmt.Sprintf("-- trackops set-if-newer, process %s, generation %d\n%s", nonce, gen, setIfNewerBody)
	sum := sha1.Sum([]byte(src))
	return &setScript{gen: gen, src: src, sha: hex.EncodeToString(sum[:])}
}

func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
