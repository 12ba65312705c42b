package cache_test

import (
	"context"
	"errors"
	"testing"

	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/cache/cachetest"
)

// TestEvictRemovesValuesButKeepsTombstones: evicting a cached row copy
// makes the next read load it again, while an invalidation's tombstone (the
// guard against the stale set-back race) is never removed.
func TestEvictRemovesValuesButKeepsTombstones(t *testing.T) {
	t.Parallel()
	s := cachetest.New(t)
	ctx := context.Background()
	if err := s.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	v := s.Orders.Versioned()
	if ok, err := v.SetIfNewer(ctx, s.OrderKey("o1"), 3, []byte(`{"id":"o1"}`)); err != nil || !ok {
		t.Fatalf("set: %v %v", ok, err)
	}
	if err := v.Invalidate(ctx, s.OrderKey("o2"), 5); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ key, want string }{
		{"order:o1", cache.EvictEvicted},
		{"order:o1", cache.EvictMissing},
		{"order:o2", cache.EvictTombstone},
		{"order:o3", cache.EvictMissing},
	} {
		got, err := s.Evict(ctx, "orders", tc.key)
		if err != nil || got != tc.want {
			t.Errorf("Evict(orders, %s) = %q, %v; want %q", tc.key, got, err, tc.want)
		}
	}
	if kind, ver, _ := raw(t, s.Orders, s.OrderKey("o2")); kind != 'T' || ver != 5 {
		t.Errorf("tombstone after evict: kind %q version %d", kind, ver)
	}
	if _, err := s.Evict(ctx, "sessions", "session:x"); !errors.Is(err, cache.ErrUnknownStore) {
		t.Errorf("evict from sessions: %v, want ErrUnknownStore", err)
	}
}
