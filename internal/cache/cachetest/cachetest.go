// Package cachetest opens the four Redis stores for a test under a key
// prefix of its own on the machine's Redis, and removes its keys afterwards.
package cachetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"testing"

	"github.com/trackops/trackops/internal/cache"
)

// URL is the Redis used by tests; override with TRACKOPS_TEST_REDIS_URL.
func URL() string {
	if u := os.Getenv("TRACKOPS_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379"
}

// New opens stores whose keys all start with a prefix unique to t.
func New(t testing.TB) *cache.Stores {
	t.Helper()
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	prefix := "t" + hex.EncodeToString(b) + ":"
	s, err := cache.Open(URL(), cache.Options{KeyPrefix: prefix, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("cachetest: %v", err)
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("cachetest: Redis at %s: %v", URL(), err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for _, st := range s.All() {
			iter := st.Client().Scan(ctx, 0, prefix+"*", 500).Iterator()
			for iter.Next(ctx) {
				st.Client().Del(ctx, iter.Val())
			}
		}
		s.Close()
	})
	return s
}
