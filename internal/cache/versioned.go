package cache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// Entry is a cached value with the version of the row it was read from.
type Entry struct {
	Value   []byte
	Version int64
}

// Loader reads a value and its version from the source of truth
// (PostgreSQL). The version must grow with every committed change of the
// row: the row's version column, or the commit LSN.
type Loader func(ctx context.Context) (value []byte, version int64, err error)

// Versioned is a version-guarded cache-aside view of one store.
//
// Each entry is stored as one Redis string: the version as 20 zero-padded
// decimal digits, a kind byte ('V' value, 'T' tombstone) and the value. The
// fixed width makes Lua's string comparison a numeric one, with no float
// precision limit. A write never replaces a newer version (SetIfNewer), and an
// invalidation leaves a tombstone holding the committed version, so a load
// that read the old row before the commit cannot put it back afterwards: the
// stale set-back race is refused by Redis, not merely made unlikely.
// See docs/cache.md for the full argument, including Redis outages.
type Versioned struct {
	store *Store
	g     *guard
	sf    singleflight.Group

	ttlMS, tombstoneMS int64
	loadBudget         time.Duration

	hits, misses, errs atomic.Uint64

	mHit, mMiss, mErr              prometheus.Counter
	lGet, lSet, lInvalidate, lLoad prometheus.Observer
	mInvalidations, mBehind        prometheus.Counter
	joinedFlight                   func() // test hook: called once a caller has joined a load
}

func newVersioned(st *Store, g *guard) *Versioned {
	n := st.name
	return &Versioned{
		store: st, g: g,
		ttlMS: st.ttl.Milliseconds(), tombstoneMS: g.o.TombstoneTTL.Milliseconds(),
		loadBudget:     g.o.TombstoneTTL / 2,
		mHit:           g.o.Metrics.requests.WithLabelValues(n, "hit"),
		mMiss:          g.o.Metrics.requests.WithLabelValues(n, "miss"),
		mErr:           g.o.Metrics.requests.WithLabelValues(n, "error"),
		lGet:           g.o.Metrics.latency.WithLabelValues(n, "get"),
		lSet:           g.o.Metrics.latency.WithLabelValues(n, "set"),
		lInvalidate:    g.o.Metrics.latency.WithLabelValues(n, "invalidate"),
		lLoad:          g.o.Metrics.latency.WithLabelValues(n, "load"),
		mInvalidations: g.o.Metrics.invalidations.WithLabelValues(n),
		mBehind:        g.o.Metrics.behind.WithLabelValues(n),
	}
}

// Store is the store this view writes to.
func (v *Versioned) Store() *Store { return v.store }

// Key builds a key of the store (see Store.Key).
func (v *Versioned) Key(parts ...string) string { return v.store.Key(parts...) }

func (v *Versioned) countError() {
	v.errs.Add(1)
	v.mErr.Inc()
}

// Get reads key. hit is false on a miss, on a tombstone and on error; err is
// ErrUnavailable while degraded, or the Redis error.
func (v *Versioned) Get(ctx context.Context, key string) (e Entry, hit bool, err error) {
	e, hit, _, err = v.get(ctx, key)
	return e, hit, err
}

// get also returns the version of a tombstone found at key (0 if none): a
// load for this caller must return at least that version.
func (v *Versioned) get(ctx context.Context, key string) (Entry, bool, int64, error) {
	if err := v.g.allow(); err != nil {
		v.countError()
		return Entry{}, false, 0, err
	}
	start := time.Now()
	b, err := v.store.client.Get(ctx, key).Bytes()
	v.lGet.Observe(time.Since(start).Seconds())
	v.g.observe(ctx, err)
	if errors.Is(err, redis.Nil) {
		v.misses.Add(1)
		v.mMiss.Inc()
		return Entry{}, false, 0, nil
	}
	if err != nil {
		v.countError()
		return Entry{}, false, 0, err
	}
	version, kind, value, ok := decode(b)
	if !ok || kind != kindValue {
		v.misses.Add(1)
		v.mMiss.Inc()
		return Entry{}, false, version, nil
	}
	v.hits.Add(1)
	v.mHit.Inc()
	return Entry{Value: value, Version: version}, true, 0, nil
}

// setOutcome says what became of a set.
type setOutcome int

const (
	setStored  setOutcome = iota // written
	setRefused                   // Redis holds this version or a newer one (value or tombstone)
	setDropped                   // not sent or fenced off: state unknown
)

// SetIfNewer stores value at version unless key holds a newer version, or
// the same version as a value. A tombstone of the same version is replaced:
// it was left by the commit that produced this version. It reports whether
// the value was stored. value must have been read from PostgreSQL less than
// half the tombstone TTL ago; GetOrLoad and Refresh guarantee that.
func (v *Versioned) SetIfNewer(ctx context.Context, key string, version int64, value []byte) (bool, error) {
	out, err := v.setIfNewer(ctx, key, version, value, v.g.generation())
	return out == setStored, err
}

func (v *Versioned) setIfNewer(ctx context.Context, key string, version int64, value []byte, gen *setScript) (setOutcome, error) {
	if version < 0 {
		return setDropped, fmt.Errorf("cache: negative version %d", version)
	}
	if err := v.g.allow(); err != nil {
		v.countError()
		return setDropped, err
	}
	if gen.gen == 0 || gen != v.g.generation() {
		// The cache was degraded since this value was read: whatever it
		// missed may be newer. Skip, the next read loads again.
		return setDropped, nil
	}
	start := time.Now()
	n, err := v.store.client.EvalSha(ctx, gen.sha, []string{key}, encodeVersion(version), value, v.ttlMS).Int()
	v.lSet.Observe(time.Since(start).Seconds())
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		// Redis's script cache was flushed: restart or purge. This value
		// may predate it, so it is dropped; a new generation is loaded.
		v.countError()
		v.g.trip(errors.New("cache: set script missing (redis restarted or purged)"))
		return setDropped, nil
	}
	v.g.observe(ctx, err)
	if err != nil {
		v.countError()
		return setDropped, err
	}
	if n == 1 {
		return setStored, nil
	}
	return setRefused, nil
}

// SetCommitted writes a value just committed at version (write-through). If
// it cannot be written, the key is invalidated at version instead — and if
// Redis is unreachable that invalidation is remembered and replayed on
// recovery, so the old entry is never served again.
func (v *Versioned) SetCommitted(ctx context.Context, key string, version int64, value []byte) error {
	out, err := v.setIfNewer(ctx, key, version, value, v.g.generation())
	if out != setDropped {
		return err
	}
	return v.Invalidate(ctx, key, version)
}

// Invalidate records that version of key's row is committed: an older
// entry is replaced by a tombstone holding version, which lives for the
// tombstone TTL and refuses any later set of an older version. An entry
// already at version or newer is kept. Call it after the commit. When Redis
// is unreachable the invalidation is remembered, the cache degrades and the
// invalidation is replayed before the cache serves reads again; the error
// is then informational.
func (v *Versioned) Invalidate(ctx context.Context, key string, version int64) error {
	return v.InvalidateMany(ctx, version, key)
}

// InvalidateMany invalidates several keys of one row version in one round
// trip (see Invalidate).
func (v *Versioned) InvalidateMany(ctx context.Context, version int64, keys ...string) error {
	if version < 0 {
		return fmt.Errorf("cache: negative version %d", version)
	}
	if len(keys) == 0 {
		return nil
	}
	if v.store.near != nil {
		// At once, so this process never serves the old version again,
		// whether Redis takes the tombstone now, later or never.
		v.store.near.invalidate(keys...)
	}
	v.mInvalidations.Add(float64(len(keys)))
	for range 2 {
		if !v.g.up() {
			if v.g.recordPending(v.store, version, nil, keys...) {
				v.countError()
				return ErrUnavailable
			}
			continue // recovered between the two checks: send it
		}
		err := v.sendInvalidations(ctx, version, keys)
		if err == nil {
			return nil
		}
		v.countError()
		v.g.recordPending(v.store, version, err, keys...)
		return fmt.Errorf("cache: invalidate (remembered for replay): %w", err)
	}
	return ErrUnavailable
}

func (v *Versioned) sendInvalidations(ctx context.Context, version int64, keys []string) error {
	start := time.Now()
	defer func() { v.lInvalidate.Observe(time.Since(start).Seconds()) }()
	ver := encodeVersion(version)
	if len(keys) == 1 {
		return invalidateScript.Run(ctx, v.store.client, keys, ver, v.tombstoneMS).Err()
	}
	cmds, err := v.store.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.EvalSha(ctx, invalidateScript.Hash(), []string{k}, ver, v.tombstoneMS)
		}
		return nil
	})
	if err == nil {
		return nil
	}
	// The script cache may have been flushed: run the ones that failed so
	// with EVAL, which is always safe for an invalidation.
	for i, c := range cmds {
		if cerr := c.Err(); cerr != nil {
			if !redis.HasErrorPrefix(cerr, "NOSCRIPT") {
				return cerr
			}
			if err := v.store.client.Eval(ctx, invalidateSrc, keys[i:i+1], ver, v.tombstoneMS).Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// GetOrLoad returns the cached entry for key, or loads it with load, stores
// it with SetIfNewer and returns it. Concurrent misses of one key share one
// load (singleflight); a caller that found a tombstone of version N does not
// share a load started before N was committed. While the cache is degraded
// it calls load directly. Only load's error is returned: Redis errors are
// counted and fall back to load.
func (v *Versioned) GetOrLoad(ctx context.Context, key string, load Loader) (Entry, error) {
	e, hit, floor, err := v.get(ctx, key)
	if hit {
		return e, nil
	}
	if err != nil {
		value, version, err := load(ctx)
		return Entry{Value: value, Version: version}, err
	}
	flight := key
	if floor > 0 {
		flight = key + "@" + strconv.FormatInt(floor, 10)
	}
	// The loader learns the version the cache knows committed (MinVersion),
	// so one reading a lagging replica can read the primary instead.
	lctx := withMinVersion(ctx, floor)
	ch := v.sf.DoChan(flight, func() (any, error) { return v.loadAndSet(lctx, key, load) })
	if v.joinedFlight != nil {
		v.joinedFlight()
	}
	select {
	case r := <-ch:
		if r.Err != nil {
			return Entry{}, r.Err
		}
		e := r.Val.(Entry)
		if e.Version < floor {
			return v.loadUpTo(ctx, lctx, key, load, floor, e)
		}
		return e, nil
	case <-ctx.Done():
		return Entry{}, ctx.Err()
	}
}

// behindRetries bounds how often loadUpTo reads again, waiting 1, 2, 4 ms
// between reads: a commit shows in new snapshots microseconds after its
// record is in the WAL.
const behindRetries = 3

// loadUpTo handles a load that returned a version older than the tombstone
// the caller found (floor). The tombstone says version floor is committed,
// so the load ran before that commit was visible: a change stream can
// report a commit (and its refresh invalidate the key) a moment before
// PostgreSQL shows it to new snapshots. Such a load is never handed to a
// caller that came after the commit: this caller reads again on its own,
// briefly, and gets the stale entry only if the row still does not show
// the version.
func (v *Versioned) loadUpTo(ctx, lctx context.Context, key string, load Loader, floor int64, e Entry) (Entry, error) {
	v.mBehind.Inc()
	wait := time.Millisecond
	for range behindRetries {
		select {
		case <-ctx.Done():
			return Entry{}, ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
		next, err := v.loadAndSet(lctx, key, load)
		if err != nil {
			return Entry{}, err
		}
		if e = next; e.Version >= floor {
			return e, nil
		}
	}
	return e, nil
}

// loadAndSet runs load and stores its result unless the cache was degraded
// in between or the load took more than half the tombstone TTL: then a
// tombstone written by a commit after the read could already have expired.
func (v *Versioned) loadAndSet(ctx context.Context, key string, load Loader) (Entry, error) {
	gen := v.g.generation()
	start := time.Now()
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.loadBudget)
	defer cancel()
	value, version, err := load(lctx)
	took := time.Since(start)
	v.lLoad.Observe(took.Seconds())
	if err != nil {
		return Entry{}, err
	}
	if took < v.loadBudget {
		_, _ = v.setIfNewer(lctx, key, version, value, gen)
	}
	return Entry{Value: value, Version: version}, nil
}

// Refresh invalidates keys at version and then, if load is given, warms
// each key with what load returns for it (nil values are skipped). Use it
// from event handlers: after a commit, on an outbox or change event.
func (v *Versioned) Refresh(ctx context.Context, version int64, keys []string, load func(ctx context.Context) (values [][]byte, version int64, err error)) error {
	if err := v.InvalidateMany(ctx, version, keys...); err != nil {
		return err
	}
	if load == nil {
		return nil
	}
	gen := v.g.generation()
	start := time.Now()
	lctx, cancel := context.WithTimeout(ctx, v.loadBudget)
	defer cancel()
	values, loaded, err := load(lctx)
	v.lLoad.Observe(time.Since(start).Seconds())
	if err != nil {
		return fmt.Errorf("cache: warm: %w", err)
	}
	if time.Since(start) >= v.loadBudget {
		return nil
	}
	for i, k := range keys {
		if i < len(values) && values[i] != nil {
			if _, err := v.setIfNewer(lctx, k, loaded, values[i], gen); err != nil {
				return err
			}
		}
	}
	return nil
}

const (
	versionWidth = 20 // digits of the largest int64, zero-padded
	kindValue    = 'V'
	kindTomb     = 'T'
)

func encodeVersion(v int64) string {
	var buf [versionWidth]byte
	s := strconv.AppendInt(buf[:0], v, 10)
	out := make([]byte, versionWidth)
	pad := versionWidth - len(s)
	for i := range pad {
		out[i] = '0'
	}
	copy(out[pad:], s)
	return string(out)
}

func decode(b []byte) (version int64, kind byte, value []byte, ok bool) {
	if len(b) < versionWidth+1 {
		return 0, 0, nil, false
	}
	for _, c := range b[:versionWidth] {
		if c < '0' || c > '9' {
			return 0, 0, nil, false
		}
		version = version*10 + int64(c-'0')
	}
	kind = b[versionWidth]
	if kind != kindValue && kind != kindTomb {
		return 0, 0, nil, false
	}
	return version, kind, b[versionWidth+1:], true
}

// The comparison shared by both scripts: the stored entry wins if its
// version is higher, or equal and a value (a value at the committed version
// is exactly what a reader wants). Malformed entries always lose.
const storedWins = `
local cur = redis.call('GET', KEYS[1])
if cur and #cur >= 21 then
  local v = string.sub(cur, 1, 20)
  if string.find(v, '^%d+$') and (v > ARGV[1] or (v == ARGV[1] and string.sub(cur, 21, 21) == 'V')) then
    return 0
  end
end
`

// setIfNewerBody: KEYS[1] key; ARGV[1] version (20 digits), ARGV[2] value,
// ARGV[3] TTL in ms. Returns 1 if stored.
const setIfNewerBody = storedWins + `redis.call('SET', KEYS[1], ARGV[1] .. 'V' .. ARGV[2], 'PX', ARGV[3])
return 1
`

// invalidateSrc: KEYS[1] key; ARGV[1] committed version (20 digits), ARGV[2]
// tombstone TTL in ms. Returns 1 if a tombstone was written.
const invalidateSrc = "-- trackops invalidate\n" + storedWins + `redis.call('SET', KEYS[1], ARGV[1] .. 'T', 'PX', ARGV[2])
return 1
`

var invalidateScript = redis.NewScript(invalidateSrc)

var redisNil = redis.Nil
