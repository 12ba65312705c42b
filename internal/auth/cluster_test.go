package auth_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"

	"github.com/trackops/trackops/internal/auth"
	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/cache/cachetest"
	"github.com/trackops/trackops/internal/httpapi"
)

// TestOnRedisCluster runs sessions and the rate limiters on a real Redis
// Cluster. Every command they send names one key (the GCRA script of
// redis_rate included), so nothing needs a hash tag; this proves it.
func TestOnRedisCluster(t *testing.T) {
	t.Parallel()
	cl := cachetest.StartCluster(t)
	open := func(t *testing.T) *cache.Stores { return cachetest.NewAt(t, cl.URL()) }

	t.Run("sliding session, logout", func(t *testing.T) {
		t.Parallel()
		e := newEnvOn(t, noLimits, open(t))
		ctx := context.Background()
		e.user("alice", httpapi.RoleOperator)
		token, _ := e.login("alice")
		c := e.stores.Sessions.Client()
		key := e.svc.SessionKey(token)
		if err := c.Expire(ctx, key, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		if r := e.do("GET", "/api/v1/auth/me", token, nil); r.code != http.StatusOK {
			t.Fatalf("me: %d %s", r.code, r.body)
		}
		if ttl := c.TTL(ctx, key).Val(); ttl <= time.Minute || ttl > 30*time.Minute {
			t.Fatalf("TTL after use = %v, want slid back to (1 min, 30 min]", ttl)
		}
		if r := e.do("POST", "/api/v1/auth/logout", token, nil); r.code != http.StatusNoContent {
			t.Fatalf("logout: %d %s", r.code, r.body)
		}
		if r := e.do("GET", "/api/v1/auth/me", token, nil); r.code != http.StatusUnauthorized {
			t.Fatalf("me after logout: %d, want 401", r.code)
		}
	})

	t.Run("per-principal limit", func(t *testing.T) {
		t.Parallel()
		e := newEnvOn(t, auth.Limits{PerPrincipal: redis_rate.Limit{Rate: 3, Burst: 3, Period: time.Minute}}, open(t))
		key := e.apiKey(httpapi.RoleViewer)
		for i := range 3 {
			if r := e.do("GET", "/api/v1/auth/me", key, nil); r.code != http.StatusOK {
				t.Fatalf("request %d: %d", i+1, r.code)
			}
		}
		if r := e.do("GET", "/api/v1/auth/me", key, nil); r.code != http.StatusTooManyRequests {
			t.Fatalf("4th request: %d, want 429", r.code)
		}
	})

	t.Run("login limiter and its reset", func(t *testing.T) {
		t.Parallel()
		e := newEnvOn(t, auth.Limits{Login: redis_rate.Limit{Rate: 3, Burst: 3, Period: time.Minute}}, open(t))
		e.user("frank", httpapi.RoleViewer)
		bad := map[string]string{"username": "frank", "password": "guess guess"}
		good := map[string]string{"username": "frank", "password": password}
		for i, body := range []any{bad, bad, good, bad, bad, bad} {
			want := http.StatusUnauthorized
			if i == 2 {
				want = http.StatusOK // and resets the count
			}
			if r := e.doFrom("203.0.113.9:1", "POST", "/api/v1/auth/login", "", body); r.code != want {
				t.Fatalf("attempt %d: %d, want %d", i+1, r.code, want)
			}
		}
		if r := e.doFrom("203.0.113.9:1", "POST", "/api/v1/auth/login", "", good); r.code != http.StatusTooManyRequests {
			t.Fatalf("4th attempt after 3 failures: %d, want 429", r.code)
		}
	})

	t.Run("leased tokens keep the shared budget", func(t *testing.T) {
		t.Parallel()
		testLeasedTokensKeepTheSharedBudget(t, open(t))
	})
}
