package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/trackops/trackops/internal/cache"
)

// Limits are the request budgets, each a GCRA rate with a burst.
type Limits struct {
	// PerPrincipal limits each authenticated user or API key.
	PerPrincipal redis_rate.Limit
	// PerIP limits each client address on routes without a principal
	// (login, health) and failed authentications.
	PerIP redis_rate.Limit
	// Login limits login attempts per username and client address; a
	// successful login resets it.
	Login redis_rate.Limit
}

// DefaultLimits are the configuration's defaults (config.Limits, from
// TRACKOPS_RATE_LIMIT_*), for tests and tools that build a limiter without
// a configuration: 1,000 requests/s (burst 2,000) per principal — API keys are
// mostly services placing orders in bulk — 20/s (burst 40) per address for
// unauthenticated calls, and 5 login attempts (then one every 12 s) per
// username+address.
func DefaultLimits() Limits {
	return Limits{
		PerPrincipal: redis_rate.Limit{Rate: 1000, Burst: 2000, Period: time.Second},
		PerIP:        redis_rate.Limit{Rate: 20, Burst: 40, Period: time.Second},
		Login:        redis_rate.Limit{Rate: 5, Burst: 5, Period: time.Minute},
	}
}

// Metrics are the rate limiter's series: requests refused, and checks let
// through because Redis did not answer.
type Metrics struct {
	errors     *prometheus.CounterVec
	rejections *prometheus.CounterVec
}

// NewMetrics creates the limiter's metrics and registers them on reg (nil:
// counted, not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "trackops_ratelimit_errors_total",
			Help: "Rate-limit checks that could not reach Redis and were let through (fail open).",
		}, []string{"limiter"}),
		rejections: f.NewCounterVec(prometheus.CounterOpts{
			Name: "trackops_ratelimit_rejections_total",
			Help: "Requests refused with 429 by limiter.",
		}, []string{"limiter"}),
	}
	return m
}

// RateLimiter implements httpapi.RateLimiter with GCRA in Redis (redis_rate),
// so every TrackOps instance shares one budget per principal and address.
// Its keys live in the sessions store (db 0) as rate:<prefix>ratelimit:<key>
// (redis_rate adds "rate:"), and expire on their own.
//
// When Redis does not answer, requests are let through (fail open) and
// trackops_ratelimit_errors_total counts them: an outage of the limiter
// must not become an outage of the API. Logins are still safe then, because
// a session cannot be created without Redis either.
//
// To keep Redis off the hot path, an instance takes a small lease of tokens
// at once (AllowN) and spends them locally for up to a second; a lease is at
// most 1/20 of the burst, so the shared budget stays accurate to a few
// requests per instance.
type RateLimiter struct {
	store    *cache.Store
	limiter  *redis_rate.Limiter
	limits   Limits
	log      *slog.Logger
	metrics  *Metrics
	lastWarn atomic.Int64

	leases     sync.Map // key -> *lease
	leaseCount atomic.Int64
}

// lease is tokens taken from Redis ahead of use.
type lease struct {
	mu      sync.Mutex
	tokens  int
	expires time.Time
}

const (
	maxLeaseTokens = 10
	leaseTTL       = time.Second
	// maxLeases bounds the local lease table; past it, it starts afresh.
	maxLeases = 100_000
)

// leaseSize is how many tokens one Redis call takes for limit (1 = no lease).
func leaseSize(limit redis_rate.Limit) int {
	return max(1, min(maxLeaseTokens, limit.Burst/20))
}

// NewRateLimiter builds the limiter on the sessions store, counting in m
// (nil: counted, not exported).
func NewRateLimiter(sessions *cache.Store, limits Limits, logger *slog.Logger, m *Metrics) *RateLimiter {
	if logger == nil {
		logger = slog.Default()
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	return &RateLimiter{store: sessions, limiter: redis_rate.NewLimiter(sessions.Client()), limits: limits, log: logger, metrics: m}
}

// Allow implements httpapi.RateLimiter. The router passes "principal:<id>"
// or "ip:<address>"; addresses are limited per IPv4 address or IPv6 /64,
// since one IPv6 client usually owns a whole /64.
func (l *RateLimiter) Allow(ctx context.Context, key string) (bool, time.Duration, error) {
	limit := l.limits.PerPrincipal
	if ip, ok := strings.CutPrefix(key, "ip:"); ok {
		limit, key = l.limits.PerIP, "ip:"+addressBucket(ip)
	}
	if limit.IsZero() {
		return true, 0, nil
	}
	return l.allowLeased(ctx, l.store.Key("ratelimit", key), limit)
}

// allowLeased spends a locally leased token when one is left, and otherwise
// takes a new lease from Redis (or a single token when a lease does not fit).
func (l *RateLimiter) allowLeased(ctx context.Context, key string, limit redis_rate.Limit) (bool, time.Duration, error) {
	n := leaseSize(limit)
	if n == 1 {
		return l.allow(ctx, "api", key, limit)
	}
	v, loaded := l.leases.Load(key)
	if !loaded {
		if l.leaseCount.Add(1) > maxLeases {
			l.leases.Clear()
			l.leaseCount.Store(1)
		}
		v, _ = l.leases.LoadOrStore(key, &lease{})
	}
	ls := v.(*lease)
	now := time.Now()
	ls.mu.Lock()
	if ls.tokens > 0 && now.Before(ls.expires) {
		ls.tokens--
		ls.mu.Unlock()
		return true, 0, nil
	}
	ls.mu.Unlock()
	res, err := l.limiter.AllowN(ctx, key, limit, n)
	if err != nil || res.Allowed == 0 {
		// Redis down (fail open, counted) or not n tokens left: one token.
		return l.allow(ctx, "api", key, limit)
	}
	ls.mu.Lock()
	ls.tokens, ls.expires = n-1, now.Add(leaseTTL)
	ls.mu.Unlock()
	return true, 0, nil
}

func (l *RateLimiter) allow(ctx context.Context, name, key string, limit redis_rate.Limit) (bool, time.Duration, error) {
	res, err := l.limiter.Allow(ctx, key, limit)
	if err != nil {
		l.metrics.errors.WithLabelValues(name).Inc()
		// One warning per 10 s is enough to notice; the metric counts all.
		if now := time.Now().UnixNano(); now-l.lastWarn.Load() > int64(10*time.Second) {
			l.lastWarn.Store(now)
			l.log.WarnContext(ctx, "rate limiter cannot reach Redis; letting requests through", "limiter", name, "err", err)
		}
		return true, 0, nil
	}
	if res.Allowed == 0 {
		l.metrics.rejections.WithLabelValues(name).Inc()
		return false, res.RetryAfter, nil
	}
	return true, 0, nil
}

func (l *RateLimiter) loginKey(username, clientIP string) string {
	// The username is hashed so Redis keys carry no account names.
	h := sha256.Sum256([]byte(strings.ToLower(username)))
	return l.store.Key("ratelimit", "login", hex.EncodeToString(h[:12]), addressBucket(clientIP))
}

// allowLogin spends one login attempt of username from clientIP.
func (l *RateLimiter) allowLogin(ctx context.Context, username, clientIP string) (bool, time.Duration) {
	if l.limits.Login.IsZero() {
		return true, 0
	}
	ok, retry, _ := l.allow(ctx, "login", l.loginKey(username, clientIP), l.limits.Login)
	return ok, retry
}

func (l *RateLimiter) resetLogin(ctx context.Context, username, clientIP string) {
	if l.limits.Login.IsZero() {
		return
	}
	_ = l.limiter.Reset(ctx, l.loginKey(username, clientIP))
}

// addressBucket is an IPv4 address itself, an IPv6 address's /64, or the
// input unchanged when it does not parse.
func addressBucket(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}
