package cache_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/cache/cachetest"
)

// TestOnRedisCluster runs the cache on a real Redis Cluster (six
// redis-server processes, three masters with a replica each): the version
// guard's rules and races, the invalidation pipeline and warming, and the
// recovery paths — replaying remembered invalidations and purging a store
// whose keys span every slot of every master. Any multi-key command across
// slots would fail here with CROSSSLOT.
func TestOnRedisCluster(t *testing.T) {
	t.Parallel()
	cl := cachetest.StartCluster(t)
	open := func(t *testing.T) *cache.Stores { return cachetest.NewAt(t, cl.URL()) }

	t.Run("an order's keys share one slot", func(t *testing.T) {
		s := open(t)
		if s.Orders.DB() != -1 {
			t.Fatalf("orders store is db %d on a cluster, want -1", s.Orders.DB())
		}
		cc := s.Orders.Client().(*redis.ClusterClient)
		ctx := context.Background()
		slotsSeen := map[int64]bool{}
		for range 20 {
			id := uuid.NewString()
			var slot int64 = -1
			for _, k := range s.OrderKeys(id) {
				if !strings.Contains(k, "{"+id+"}") {
					t.Fatalf("key %s does not carry the hash tag {%s}", k, id)
				}
				got, err := cc.ClusterKeySlot(ctx, k).Result()
				if err != nil {
					t.Fatal(err)
				}
				if slot >= 0 && got != slot {
					t.Fatalf("keys of order %s in slots %d and %d: %v", id, slot, got, s.OrderKeys(id))
				}
				slot = got
			}
			slotsSeen[slot] = true
		}
		if len(slotsSeen) < 2 {
			t.Fatalf("20 orders all hashed to slot(s) %v: the tag is not the order id", slotsSeen)
		}
	})

	// These pause the whole cluster, so they run before the parallel
	// subtests below start (Go runs a test's parallel subtests only once its
	// function has returned).
	t.Run("partition: invalidations remembered and replayed", func(t *testing.T) {
		testPartitionRemembersInvalidationsAndReplaysThem(t, cl)
	})
	t.Run("overflow: the store is purged on every master", func(t *testing.T) {
		testOverflowPurgesTheStore(t, cl)
	})

	for name, body := range map[string]func(*testing.T, *cache.Stores){
		"set and invalidate rules":        testSetIfNewerAndInvalidateRules,
		"stale set-back race refused":     testStaleSetBackRaceIsRefused,
		"concurrent misses share a load":  testConcurrentMissesShareOneLoad,
		"reader after invalidation":       testReaderAfterInvalidationDoesNotJoinOlderLoad,
		"reads never go back in time":     testConcurrentReadsNeverGoBackInTime,
		"second read is a hit with a TTL": testSecondReadIsHitWithStoreTTL,
		"warm after invalidation":         testWarmAfterInvalidation,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			body(t, open(t))
		})
	}
}
