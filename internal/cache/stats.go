package cache

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Stats is the cache's state for the health indicator and
// GET /api/v1/ops/cache.
type Stats struct {
	// Status is UP or DEGRADED.
	Status string `json:"status"`
	// DegradedSince is when the cache went degraded (absent while UP).
	DegradedSince *time.Time `json:"degraded_since,omitempty"`
	// LastError is the error that degraded the cache or stopped recovery.
	LastError string `json:"last_error,omitempty"`
	// HitRate is hits / (hits + misses) of this process's reads, 0 with none.
	HitRate float64 `json:"hit_rate"`
	Hits    uint64  `json:"hits"`
	Misses  uint64  `json:"misses"`
	Errors  uint64  `json:"errors"`
	// PendingInvalidations are remembered while Redis is unreachable.
	PendingInvalidations int `json:"pending_invalidations"`
	// Generation counts recoveries of this process (the set-script fence).
	Generation uint64       `json:"generation"`
	Redis      *RedisStats  `json:"redis,omitempty"`
	Stores     []StoreStats `json:"stores"`
}

// RedisStats are read from INFO; absent while degraded.
type RedisStats struct {
	Version         string  `json:"version,omitempty"`
	RunID           string  `json:"run_id,omitempty"`
	UsedMemory      int64   `json:"used_memory"`
	UsedMemoryHuman string  `json:"used_memory_human,omitempty"`
	MaxMemory       int64   `json:"maxmemory"`
	KeyspaceHits    int64   `json:"keyspace_hits"`
	KeyspaceMisses  int64   `json:"keyspace_misses"`
	KeyspaceHitRate float64 `json:"keyspace_hit_rate"`
	Error           string  `json:"error,omitempty"`
}

// StoreStats describe one store.
type StoreStats struct {
	Name       string  `json:"name"`
	DB         int     `json:"db"`
	Prefix     string  `json:"prefix,omitempty"`
	TTLSeconds int64   `json:"ttl_seconds"`
	Keys       int64   `json:"keys"`
	KeysCapped bool    `json:"keys_capped,omitempty"`
	Hits       uint64  `json:"hits"`
	Misses     uint64  `json:"misses"`
	Errors     uint64  `json:"errors"`
	HitRate    float64 `json:"hit_rate"`
	// Near is the store's in-process near cache; absent when it has none.
	Near *NearStats `json:"near,omitempty"`
}

// NearStats describe a store's near cache. Its hits are counted in the
// store's hits as well: a near hit is a read the cache answered.
type NearStats struct {
	// Live is false while its Redis subscription is down: it serves nothing.
	Live    bool   `json:"live"`
	Entries int    `json:"entries"`
	Hits    uint64 `json:"hits"`
}

// maxCountedKeys bounds a SCAN count by prefix, so Stats stays cheap.
const maxCountedKeys = 100_000

// Status is UP or DEGRADED.
func (s *Stores) Status() string {
	if s.guard.up() {
		return StatusUp
	}
	return StatusDegraded
}

// Probe tries to recover now instead of waiting for the background probe;
// it is a no-op while UP. Tests and the ops console use it.
func (s *Stores) Probe(ctx context.Context) error {
	if s.guard.up() {
		return nil
	}
	return s.guard.reconcile(ctx)
}

// Stats gathers the cache's state. It never fails: while degraded, it does
// not touch Redis; a Redis error is reported inside.
func (s *Stores) Stats(ctx context.Context) Stats {
	g := s.guard
	g.mu.Lock()
	st := Stats{
		Status: s.Status(), LastError: g.lastErr,
		PendingInvalidations: g.pendingCountLocked(),
		Generation:           g.generation().gen,
	}
	if !g.up() && !g.degradedSince.IsZero() {
		t := g.degradedSince
		st.DegradedSince = &t
	}
	g.mu.Unlock()

	up := g.up()
	for _, store := range s.All() {
		ss := StoreStats{Name: store.name, DB: store.db, Prefix: store.prefix, TTLSeconds: int64(store.ttl.Seconds())}
		if v := store.versioned; v != nil {
			ss.Hits, ss.Misses, ss.Errors = store.hits(), v.misses.Load(), v.errs.Load()
			if n := store.near; n != nil {
				ss.Near = &NearStats{Live: n.Live(), Entries: n.Len(), Hits: n.hits.Load()}
			}
			ss.HitRate = ratio(ss.Hits, ss.Misses)
			st.Hits += ss.Hits
			st.Misses += ss.Misses
			st.Errors += ss.Errors
		}
		if up {
			ss.Keys, ss.KeysCapped = s.countKeys(ctx, store)
		}
		st.Stores = append(st.Stores, ss)
	}
	st.HitRate = ratio(st.Hits, st.Misses)
	if up {
		st.Redis = s.redisStats(ctx)
	}
	return st
}

// Counters are this process's read outcomes across the versioned stores,
// from memory: no Redis call, so health checks can read them cheaply.
func (s *Stores) Counters() (hits, misses, errs uint64) {
	for _, store := range s.All() {
		if v := store.versioned; v != nil {
			hits += store.hits()
			misses += v.misses.Load()
			errs += v.errs.Load()
		}
	}
	return hits, misses, errs
}

// hits are the reads of a versioned store the cache answered: from Redis
// or from its near cache.
func (s *Store) hits() uint64 {
	n := s.versioned.hits.Load()
	if s.near != nil {
		n += s.near.hits.Load()
	}
	return n
}

func ratio(hits, misses uint64) float64 {
	if hits+misses == 0 {
		return 0
	}
	return float64(hits) / float64(hits+misses)
}

func (s *Stores) countKeys(ctx context.Context, st *Store) (int64, bool) {
	if !s.cluster && st.prefix == "" {
		n, err := st.client.DBSize(ctx).Result()
		if err != nil {
			return -1, false
		}
		return n, false
	}
	var n int64
	capped := false
	errStop := redis.Nil // any sentinel ends the scan early
	err := scanPrefix(ctx, st, s.cluster, func(_ context.Context, _ redis.UniversalClient, keys []string) error {
		n += int64(len(keys))
		if n >= maxCountedKeys {
			capped = true
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		return -1, false
	}
	return n, capped
}

func (s *Stores) redisStats(ctx context.Context) *RedisStats {
	rs := &RedisStats{}
	var info string
	err := forEachServer(ctx, s, func(ctx context.Context, c redis.UniversalClient) error {
		out, err := c.Info(ctx, "server", "memory", "stats").Result()
		info += out
		return err
	})
	if err != nil {
		rs.Error = err.Error()
		return rs
	}
	str := func(name string) string { v, _ := infoField(info, name); return v }
	num := func(name string) int64 { n, _ := strconv.ParseInt(str(name), 10, 64); return n }
	rs.Version, rs.RunID = str("redis_version"), str("run_id")
	rs.UsedMemory, rs.UsedMemoryHuman, rs.MaxMemory = num("used_memory"), str("used_memory_human"), num("maxmemory")
	rs.KeyspaceHits, rs.KeyspaceMisses = num("keyspace_hits"), num("keyspace_misses")
	rs.KeyspaceHitRate = ratio(uint64(rs.KeyspaceHits), uint64(rs.KeyspaceMisses))
	return rs
}
