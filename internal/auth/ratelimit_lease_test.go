package auth_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"

	"github.com/trackops/trackops/internal/auth"
	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/cache/cachetest"
)

// TestLeasedTokensKeepTheSharedBudget: with token leases, two instances
// sharing one Redis budget still admit about the burst — never more than
// the burst, and lose at most a lease per instance.
func TestLeasedTokensKeepTheSharedBudget(t *testing.T) {
	t.Parallel()
	testLeasedTokensKeepTheSharedBudget(t, cachetest.New(t))
}

func testLeasedTokensKeepTheSharedBudget(t *testing.T, stores *cache.Stores) {
	// A slow refill (1/min) so the test sees the burst alone.
	limits := auth.Limits{PerPrincipal: redis_rate.Limit{Rate: 1, Burst: 200, Period: time.Minute}}
	quiet := slog.New(slog.DiscardHandler)
	instances := []*auth.RateLimiter{
		auth.NewRateLimiter(stores.Sessions, limits, quiet, nil),
		auth.NewRateLimiter(stores.Sessions, limits, quiet, nil),
	}
	var mu sync.Mutex
	allowed := 0
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			l := instances[w%2]
			for range 50 {
				ok, retry, err := l.Allow(context.Background(), "principal:key-1")
				if err != nil {
					t.Error(err)
					return
				}
				if !ok && retry <= 0 {
					t.Error("refused without Retry-After")
				}
				if ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	// 400 attempts against a burst of 200: each instance may hold back at
	// most one unspent lease (10 tokens).
	if allowed > 200 || allowed < 200-2*10 {
		t.Fatalf("allowed %d of 400 attempts; want between 180 and 200", allowed)
	}
}
