package app

import (
	"context"

	"github.com/go-redis/redis_rate/v10"

	"github.com/trackops/trackops/internal/audit"
	"github.com/trackops/trackops/internal/auth"
	"github.com/trackops/trackops/internal/config"
)

// security holds the HTTP edge's guards: who is calling, how often, and the
// record of what they changed.
type security struct {
	auth    *auth.Service
	limiter *auth.RateLimiter
	audit   *audit.Writer
}

func (a *App) buildSecurity() (*security, error) {
	log := a.log.With("component", "auth")
	s := &security{limiter: auth.NewRateLimiter(a.stores.Sessions, rateLimits(a.cfg.Limits), log, a.metrics.auth)}
	s.auth = auth.NewService(a.pool, a.stores.Sessions, auth.Options{Logger: log, Limiter: s.limiter})
	s.audit = audit.NewWriter(a.pool, audit.WriterOptions{Logger: log, Metrics: a.metrics.audit})
	a.routes = append(a.routes, s.auth.Routes()...)
	a.routes = append(a.routes, audit.NewReader(a.readQuerier()).Routes()...)
	return s, nil
}

// rateLimits are the configured budgets in the limiter's terms.
func rateLimits(l config.Limits) auth.Limits {
	limit := func(r config.Rate) redis_rate.Limit {
		return redis_rate.Limit{Rate: r.Count, Burst: r.Burst, Period: r.Period}
	}
	return auth.Limits{PerPrincipal: limit(l.Principal), PerIP: limit(l.IP), Login: limit(l.Login)}
}

// close writes queued audit rows and waits for background key updates; it
// runs after the HTTP server stopped taking requests.
func (s *security) close(ctx context.Context) {
	if s == nil {
		return
	}
	_ = s.audit.Close(ctx)
	s.auth.Close()
}
