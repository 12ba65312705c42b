package cache

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis budget. Every command is bounded by Options.OpTimeout from the
// moment it is issued — waiting for a pooled connection, dialling, the
// connection's set-up (the run_id check) and the round trip all count — by
// a hook on every client, whatever the caller's context says. On top of
// that, a request carries one budget for all its Redis work: once one of
// its commands has failed for want of Redis (a timeout, a refused or reset
// connection), its later commands — the rate limiter's second try, the
// session lookup, cache reads, sets and invalidations — fail at once with
// ErrBudgetSpent instead of waiting again. A frozen Redis therefore costs a
// request about one OpTimeout, not one per command.

// ErrBudgetSpent is returned, without touching the network, for a Redis
// command of a request that already lost one command to an unresponsive
// Redis. It is an ErrUnavailable: callers fall back as they do for a
// degraded cache.
var ErrBudgetSpent = fmt.Errorf("%w: this request's Redis budget is spent", ErrUnavailable)

type budgetKey struct{}

// requestBudget is one request's Redis budget.
type requestBudget struct{ spent atomic.Bool }

// WithBudget returns ctx carrying a fresh Redis budget: after the first
// command under ctx that fails for want of Redis, the others fail at once.
func WithBudget(ctx context.Context) context.Context {
	return context.WithValue(ctx, budgetKey{}, &requestBudget{})
}

// BudgetSpent reports whether ctx's Redis budget is spent.
func BudgetSpent(ctx context.Context) bool {
	b, _ := ctx.Value(budgetKey{}).(*requestBudget)
	return b != nil && b.spent.Load()
}

// RequestBudget gives every HTTP request its own Redis budget (WithBudget).
func RequestBudget(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(WithBudget(r.Context())))
	})
}

// budgetHook enforces the per-command timeout and the request budget on
// one client.
type budgetHook struct{ timeout time.Duration }

// bound gives one command its timeout.
func (h budgetHook) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx.Value(reconcilingKey{}) != nil {
		// Recovery bounds itself as a whole (reconcileTimeout): a purge's
		// SCAN and DEL may need more than one command's budget.
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, h.timeout)
}

// DialHook passes dialling through: the command's context already bounds it.
func (h budgetHook) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook bounds one command.
func (h budgetHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		b, _ := ctx.Value(budgetKey{}).(*requestBudget)
		if b != nil && b.spent.Load() {
			cmd.SetErr(ErrBudgetSpent)
			return ErrBudgetSpent
		}
		cctx, cancel := h.bound(ctx)
		defer cancel()
		err := next(cctx, cmd)
		if b != nil && ctx.Err() == nil && unresponsive(err) {
			b.spent.Store(true)
		}
		return err
	}
}

// ProcessPipelineHook bounds one pipeline (or transaction) as one command.
func (h budgetHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		b, _ := ctx.Value(budgetKey{}).(*requestBudget)
		if b != nil && b.spent.Load() {
			for _, c := range cmds {
				c.SetErr(ErrBudgetSpent)
			}
			return ErrBudgetSpent
		}
		cctx, cancel := h.bound(ctx)
		defer cancel()
		err := next(cctx, cmds)
		if b != nil && ctx.Err() == nil && unresponsive(err) {
			b.spent.Store(true)
		}
		return err
	}
}

// unresponsive reports whether err says Redis did not answer (a timeout, a
// refused or reset connection), as opposed to answering with a miss or an
// error reply.
func unresponsive(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, ErrBudgetSpent) {
		return false
	}
	var reply redis.Error
	return !errors.As(err, &reply)
}
