// Package cachetest opens the four Redis stores for a test under a key
// prefix of its own — on the machine's Redis, or on a private redis-server
// or Redis Cluster it starts (server.go, over internal/testfix) — and
// removes its keys afterwards.
package cachetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/trackops/trackops/internal/cache"
)

// URL is the Redis used by tests; override with TRACKOPS_TEST_REDIS_URL.
func URL() string {
	if u := os.Getenv("TRACKOPS_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379"
}

// New opens stores on the test Redis (URL) whose keys all start with a
// prefix unique to t.
func New(t testing.TB) *cache.Stores { return NewAt(t, URL()) }

// NewAt opens stores on the Redis at url — standalone or a cluster, in
// TRACKOPS_REDIS_URL form — whose keys all start with a prefix unique to t,
// and deletes them when t ends.
func NewAt(t testing.TB, url string) *cache.Stores {
	t.Helper()
	return Open(t, url, cache.Options{})
}

// Open is NewAt with options: a KeyPrefix given there is used as is (to open
// a second "process" on the keys of another), else a prefix unique to t.
func Open(t testing.TB, url string, o cache.Options) *cache.Stores {
	t.Helper()
	prefix := o.KeyPrefix
	if prefix == "" {
		b := make([]byte, 5)
		_, _ = rand.Read(b)
		prefix = "t" + hex.EncodeToString(b) + ":"
	}
	o.KeyPrefix = prefix
	if o.OpTimeout == 0 {
		// Tests share one Redis with a busy machine: a command held past
		// the production budget (250 ms) would degrade the cache, which
		// only the fault tests are about, and they set their own budget.
		o.OpTimeout = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := cache.Open(url, o)
	if err != nil {
		t.Fatalf("cachetest: %v", err)
	}
	// A busy machine can hold one command past the stores' budget; a Redis
	// that is not there keeps failing for the whole wait.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err = s.Ping(context.Background()); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("cachetest: Redis at %s: %v", url, err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		del := func(ctx context.Context, c redis.UniversalClient) error {
			iter := c.Scan(ctx, 0, prefix+"*", 500).Iterator()
			for iter.Next(ctx) {
				c.Del(ctx, iter.Val()) // one key per DEL: keys of a cluster node span slots
			}
			return iter.Err()
		}
		for _, st := range s.All() {
			// SCAN covers one server: on a cluster, every master.
			if cc, ok := st.Client().(*redis.ClusterClient); ok {
				_ = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return del(ctx, c) })
			} else {
				_ = del(ctx, st.Client())
			}
		}
		s.Close()
	})
	return s
}
