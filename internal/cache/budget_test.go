package cache_test

import (
	"context"
	"errors"
	"testing"

	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/cache/cachetest"
)

// TestRequestBudgetIsSpentOnce: against a frozen Redis, the first command
// of a request fails on its own timeout (even though the caller's context
// has no deadline), and every later command of that request fails at once
// with ErrBudgetSpent, on any client and in a pipeline alike; another
// request starts with a fresh budget.
func TestRequestBudgetIsSpentOnce(t *testing.T) {
	t.Parallel()
	srv := cachetest.StartServer(t)
	s := openPrivate(t, srv, 100)
	srv.Pause()
	t.Cleanup(srv.Resume)

	ctx := cache.WithBudget(context.Background())
	err := s.Sessions.Client().Get(ctx, "k").Err()
	if err == nil || errors.Is(err, cache.ErrBudgetSpent) {
		t.Fatalf("first command against a frozen Redis: %v, want its own timeout", err)
	}
	if !cache.BudgetSpent(ctx) {
		t.Fatal("the budget is not spent after a command lost to a frozen Redis")
	}
	if err := s.Sessions.Client().Get(ctx, "k").Err(); !errors.Is(err, cache.ErrBudgetSpent) || !errors.Is(err, cache.ErrUnavailable) {
		t.Errorf("second command of the request: %v, want ErrBudgetSpent (an ErrUnavailable)", err)
	}
	if err := s.Orders.Client().Set(ctx, "k", "v", 0).Err(); !errors.Is(err, cache.ErrBudgetSpent) {
		t.Errorf("command on another store: %v, want ErrBudgetSpent", err)
	}
	pipe := s.Inventory.Client().Pipeline()
	pipe.Get(ctx, "a")
	pipe.Get(ctx, "b")
	if _, err := pipe.Exec(ctx); !errors.Is(err, cache.ErrBudgetSpent) {
		t.Errorf("pipeline: %v, want ErrBudgetSpent", err)
	}
	other := cache.WithBudget(context.Background())
	if err := s.Sessions.Client().Get(other, "k").Err(); err == nil || errors.Is(err, cache.ErrBudgetSpent) {
		t.Errorf("a fresh request's first command: %v, want its own timeout", err)
	}
	// Without a budget (background work) every command is still bounded.
	if err := s.Sessions.Client().Get(context.Background(), "k").Err(); err == nil {
		t.Error("a command against a frozen Redis succeeded")
	}
}
