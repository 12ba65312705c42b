package app

import (
	"testing"

	"github.com/trackops/trackops/internal/auth"
	"github.com/trackops/trackops/internal/config"
)

// The configuration's default budgets are the ones auth documents, so a
// limiter built without a configuration (tests, tools) behaves as a
// default deployment does.
func TestDefaultRateLimitsAreAuths(t *testing.T) {
	t.Parallel()
	cfg, err := config.LoadFrom(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rateLimits(cfg.Limits), auth.DefaultLimits(); got != want {
		t.Fatalf("configured defaults %+v, auth.DefaultLimits %+v", got, want)
	}
	cfg.Limits.IP = config.Rate{}
	if !rateLimits(cfg.Limits).PerIP.IsZero() {
		t.Fatal("an off rate is not redis_rate's zero limit (no limit)")
	}
}
