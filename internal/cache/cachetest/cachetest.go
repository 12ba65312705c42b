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
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	prefix := "t" + hex.EncodeToString(b) + ":"
	s, err := cache.Open(url, cache.Options{KeyPrefix: prefix, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("cachetest: %v", err)
	}
	if err := s.Ping(context.Background()); err != nil {
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
