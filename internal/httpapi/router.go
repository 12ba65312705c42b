package httpapi

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/trackops/trackops/internal/logging"
)

// Role is what a principal may do. Roles are ordered: each includes the
// rights of those below it.
type Role string

// Roles, from least to most privileged. RolePublic marks routes that need no
// token (health, metrics, login).
const (
	RolePublic   Role = ""
	RoleViewer   Role = "viewer"
	RoleOperator Role = "operator"
	RoleAdmin    Role = "admin"
)

// Rank orders roles; an unknown role ranks below viewer.
func (r Role) Rank() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Allows reports whether a principal holding r may call a route needing need.
func (r Role) Allows(need Role) bool { return need == RolePublic || r.Rank() >= need.Rank() }

// ParseRole validates a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(strings.ToLower(s)); r {
	case RoleViewer, RoleOperator, RoleAdmin:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q: want viewer, operator or admin", s)
}

// Principal is who made a request.
type Principal struct {
	// ID identifies the user or API key.
	ID string
	// Name is the username or key name, for audit and logs.
	Name string
	// Kind is "user", "apikey" or "system".
	Kind string
	// Role is what the principal may do.
	Role Role
}

// Actor is how the principal appears in status histories and audit rows.
func (p Principal) Actor() string {
	if p.Name == "" {
		return "anonymous"
	}
	return p.Kind + ":" + p.Name
}

// Route is one endpoint: a net/http pattern, the least role that may call it
// and its handler.
type Route struct {
	Method  string
	Pattern string // path pattern as net/http.ServeMux reads it, e.g. /api/v1/orders/{id}
	Role    Role
	Handler http.HandlerFunc
	// IdentifyCaller, on a public route, still authenticates a caller who
	// presents credentials, so the handler can show a signed-in caller
	// more (GET /health's details); a missing or invalid token leaves the
	// caller anonymous instead of failing the request.
	IdentifyCaller bool
}

// ErrUnauthenticated means the request carries no valid credentials.
var ErrUnauthenticated = errors.New("missing or invalid bearer token")

// Authenticator resolves a request's credentials to a principal; it returns
// ErrUnauthenticated when there are none or they are not valid.
type Authenticator interface {
	Authenticate(r *http.Request) (Principal, error)
}

// RateLimiter admits or refuses one request of a principal or client address.
type RateLimiter interface {
	// Allow reports whether the request under key may proceed; if not,
	// retryAfter says when to try again.
	Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error)
}

// AuditEntry is one mutation as the audit log records it.
type AuditEntry struct {
	Principal Principal
	Method    string
	Path      string
	Route     string
	Status    int
	RequestID string
	ClientIP  string
	Duration  time.Duration
}

// Auditor records mutations.
type Auditor interface {
	Record(ctx context.Context, e AuditEntry)
}

// RouterConfig wires the router's cross-cutting concerns. Nil hooks are off;
// with no Authenticator every request runs as an anonymous admin, which only
// tests use.
type RouterConfig struct {
	Logger       *slog.Logger
	Auth         Authenticator
	Limiter      RateLimiter
	Auditor      Auditor
	MaxBodyBytes int64
	// Fallback serves paths no route matches (e.g. the ops console).
	Fallback http.Handler
	// Errors writes the router's own error responses (401, 403, 404, 429,
	// 500); nil writes RFC 9457 problem details. The Kafka Connect port
	// sets it to Connect's {"error_code","message"} shape.
	Errors func(w http.ResponseWriter, r *http.Request, status int, detail string)
	// Challenges are the WWW-Authenticate values of a 401; nil sends the
	// Bearer challenge.
	Challenges []string
	// Metrics count requests by route; nil counts without exporting.
	Metrics *Metrics
}

// writeError writes one of the router's own errors in the configured shape.
func (cfg RouterConfig) writeError(w http.ResponseWriter, r *http.Request, status int, detail string) {
	if cfg.Errors != nil {
		cfg.Errors(w, r, status, detail)
		return
	}
	WriteProblem(w, r, status, detail)
}

// Metrics are the router's series: requests by route pattern, method and
// status code, and their latency.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics creates the router's metrics and registers them on reg (nil:
// counted, not exported). Every router of a process shares one.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "trackops_http_requests_total",
			Help: "HTTP requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "trackops_http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern and method.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route", "method"}),
	}
	return m
}

// routeMetrics are one route's series, resolved once when the router is
// built: resolving them by label values on every request hashed the labels
// and took the vector's lock twice per request.
type routeMetrics struct {
	pattern, method string
	requests        *prometheus.CounterVec
	duration        prometheus.Observer
	mu              sync.Mutex                                 // serialises additions to codes
	codes           atomic.Pointer[map[int]prometheus.Counter] // copied on write: a route sees few codes
}

// forRoute resolves the series of the route method pattern.
func (m *Metrics) forRoute(pattern, method string) *routeMetrics {
	rm := &routeMetrics{pattern: pattern, method: method, requests: m.requests, duration: m.duration.WithLabelValues(pattern, method)}
	rm.codes.Store(&map[int]prometheus.Counter{})
	return rm
}

// observe counts one request answered with status in d.
func (rm *routeMetrics) observe(status int, d time.Duration) {
	rm.duration.Observe(d.Seconds())
	if c, ok := (*rm.codes.Load())[status]; ok {
		c.Inc()
		return
	}
	rm.mu.Lock()
	codes := *rm.codes.Load()
	c, ok := codes[status]
	if !ok {
		c = rm.requests.WithLabelValues(rm.pattern, rm.method, strconv.Itoa(status))
		next := make(map[int]prometheus.Counter, len(codes)+1)
		maps.Copy(next, codes)
		next[status] = c
		rm.codes.Store(&next)
	}
	rm.mu.Unlock()
	c.Inc()
}

// NewRouter builds the handler serving routes with TrackOps' middleware.
func NewRouter(cfg RouterConfig, routes []Route) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.Handle(rt.Method+" "+rt.Pattern, guard(cfg, rt, cfg.Metrics.forRoute(rt.Pattern, rt.Method)))
	}
	if cfg.Fallback != nil {
		mux.Handle("/", cfg.Fallback)
	} else {
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			cfg.writeError(w, r, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
		})
	}
	return withBasics(cfg, mux)
}

type ctxKey int

const (
	keyPrincipal ctxKey = iota
	keyLogger
)

// PrincipalFrom returns the authenticated principal of the request.
func PrincipalFrom(ctx context.Context) Principal {
	p, ok := ctx.Value(keyPrincipal).(Principal)
	if !ok {
		return Principal{Kind: "system", Name: "anonymous"}
	}
	return p
}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, keyPrincipal, p)
}

// LoggerFrom returns the request-scoped logger.
func LoggerFrom(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(keyLogger).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

// guard authenticates, authorises, rate-limits and audits one route.
func guard(cfg RouterConfig, rt Route, metrics *routeMetrics) http.Handler {
	mutation := rt.Method != http.MethodGet && rt.Method != http.MethodHead
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := w.(*statusRecorder)
		rec.metrics = metrics
		p := Principal{ID: "anonymous", Name: "anonymous", Kind: "system", Role: RoleAdmin}
		if cfg.Auth != nil {
			// With authentication on, a public route's caller is nobody: a
			// handler asking PrincipalFrom must not see an admin.
			p = Principal{Kind: "anonymous", Role: RolePublic}
		}
		rec.principal = p
		// Every mutation attempt is audited, refused ones (401, 403, 429) too.
		if mutation && cfg.Auditor != nil {
			defer func() {
				status := rec.status
				v := recover()
				if v != nil {
					status = http.StatusInternalServerError // what withBasics will answer
				}
				cfg.Auditor.Record(context.WithoutCancel(r.Context()), AuditEntry{
					Principal: rec.principal, Method: r.Method, Path: r.URL.Path, Route: rt.Pattern, Status: status,
					RequestID: logging.RequestID(r.Context()), ClientIP: ClientIP(r), Duration: time.Since(start),
				})
				if v != nil {
					panic(v)
				}
			}()
		}
		if cfg.Auth != nil && rt.Role == RolePublic && rt.IdentifyCaller {
			if known, err := cfg.Auth.Authenticate(r); err == nil {
				p = known
				rec.principal = p
			}
		}
		if cfg.Auth != nil && rt.Role != RolePublic {
			var err error
			p, err = cfg.Auth.Authenticate(r)
			if err != nil {
				p = rec.principal
				if errors.Is(err, ErrUnauthenticated) {
					// Failed attempts spend the address's budget, so token
					// guessing is slowed down like any other flood.
					if tooMany(cfg, w, r, "ip:"+ClientIP(r)) {
						return
					}
					challenges := cfg.Challenges
					if challenges == nil {
						challenges = []string{`Bearer realm="trackops", error="invalid_token"`}
					}
					for _, c := range challenges {
						w.Header().Add("WWW-Authenticate", c)
					}
					cfg.writeError(w, r, http.StatusUnauthorized, err.Error())
				} else if bad := (*BadRequestError)(nil); cfg.Errors != nil && errors.As(err, &bad) {
					cfg.writeError(w, r, bad.Status, bad.Message)
				} else if cfg.Errors != nil {
					LoggerFrom(r.Context()).ErrorContext(r.Context(), "authentication failed", "err", err)
					cfg.writeError(w, r, http.StatusInternalServerError, "internal error")
				} else {
					WriteError(w, r, err)
				}
				return
			}
			rec.principal = p
			if !p.Role.Allows(rt.Role) {
				cfg.writeError(w, r, http.StatusForbidden, fmt.Sprintf("role %q may not %s %s; it needs %q", p.Role, rt.Method, rt.Pattern, rt.Role))
				return
			}
		}
		key := "ip:" + ClientIP(r)
		if rt.Role != RolePublic && p.ID != "" {
			key = "principal:" + p.ID
		}
		if tooMany(cfg, w, r, key) {
			return
		}
		if errs := CheckRequestText(r); len(errs) > 0 {
			WriteProblem(w, r, http.StatusBadRequest, "the request's path or query holds text that cannot be used", errs...)
			return
		}
		ctx := WithPrincipal(r.Context(), p)
		r = r.WithContext(ctx)
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, cfg.MaxBodyBytes)
		}
		rt.Handler(w, r)
	})
}

// tooMany spends one request of key's budget and, when it is exhausted,
// answers 429 with Retry-After and reports true. Limiter errors let the
// request through: the limiter fails open.
func tooMany(cfg RouterConfig, w http.ResponseWriter, r *http.Request, key string) bool {
	if cfg.Limiter == nil {
		return false
	}
	ok, retry, err := cfg.Limiter.Allow(r.Context(), key)
	if err != nil || ok {
		return false
	}
	secs := int(math.Ceil(retry.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	cfg.writeError(w, r, http.StatusTooManyRequests, fmt.Sprintf("rate limit exceeded; retry in %d s", secs))
	return true
}

// SetPrincipal names who a request acted for in its access log line and
// audit row, for handlers that learn it themselves (login names the account
// it was tried on). It is a no-op on writers the router did not make.
func SetPrincipal(w http.ResponseWriter, p Principal) {
	for {
		switch v := w.(type) {
		case *statusRecorder:
			v.principal = p
			return
		case interface{ Unwrap() http.ResponseWriter }:
			w = v.Unwrap()
		default:
			return
		}
	}
}

// withBasics adds a request id, a request-scoped logger, panic recovery,
// security headers, access logs and metrics to every request.
func withBasics(cfg RouterConfig, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// Both ids go into logs, audit rows and Kafka headers: take only
		// printable ASCII from the client.
		reqID := r.Header.Get("X-Request-Id")
		if !validID(reqID) {
			reqID = newRequestID()
		}
		corrID := r.Header.Get("X-Correlation-Id")
		if !validID(corrID) {
			corrID = reqID
		}
		ctx := logging.WithRequestID(r.Context(), reqID)
		ctx = logging.WithCorrelationID(ctx, corrID)
		ctx = context.WithValue(ctx, keyLogger, cfg.Logger)
		h := w.Header()
		reqIDs := []string{reqID}
		h["X-Request-Id"] = reqIDs
		if corrID == reqID {
			h["X-Correlation-Id"] = reqIDs // one slice for both, as securityHeaders
		} else {
			h["X-Correlation-Id"] = []string{corrID}
		}
		for k, v := range securityHeaders {
			h[k] = v
		}
		if r.TLS != nil {
			h["Strict-Transport-Security"] = hstsHeader
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				cfg.Logger.ErrorContext(ctx, "handler panic", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if !rec.wrote {
					cfg.writeError(rec, r, http.StatusInternalServerError, "internal error")
				}
			}
			route := "unmatched"
			if rec.metrics != nil {
				route = rec.metrics.pattern
			}
			d := time.Since(start)
			if rec.metrics != nil && rec.metrics.method == r.Method {
				rec.metrics.observe(rec.status, d)
			} else { // not a route's series: the fallback, or HEAD served by a GET route
				cfg.Metrics.requests.WithLabelValues(route, r.Method, strconv.Itoa(rec.status)).Inc()
				cfg.Metrics.duration.WithLabelValues(route, r.Method).Observe(d.Seconds())
			}
			level := slog.LevelInfo
			if rec.status >= 500 {
				level = slog.LevelError
			} else if strings.HasPrefix(r.URL.Path, "/health") || r.URL.Path == "/metrics" {
				level = slog.LevelDebug
			}
			if !cfg.Logger.Enabled(ctx, level) {
				return // the line's attributes would be built only to be dropped
			}
			cfg.Logger.Log(ctx, level, "http request", "method", r.Method, "path", r.URL.Path, "route", route,
				"status", rec.status, "duration_ms", float64(d.Microseconds())/1000, "principal", rec.principal.Actor())
		}()
		next.ServeHTTP(rec, r.WithContext(ctx))
	})
}

// securityHeaders go on every response. Their values are shared slices,
// assigned rather than Set, which would allocate each one per request;
// Header.Set and Add replace or outgrow them, never write into them.
var securityHeaders = http.Header{
	"X-Content-Type-Options": {"nosniff"},
	"X-Frame-Options":        {"DENY"},
	"Referrer-Policy":        {"no-referrer"},
	"Cache-Control":          {"no-store"},
}

// hstsHeader is Strict-Transport-Security's value on TLS connections.
var hstsHeader = []string{"max-age=31536000; includeSubDomains"}

// ClientIP is the request's peer address (proxies' forwarding headers are not
// trusted, so clients cannot dodge per-address limits by forging them).
func ClientIP(r *http.Request) string {
	addr := r.RemoteAddr
	if i := strings.LastIndex(addr, ":"); i > 0 {
		addr = addr[:i]
	}
	return strings.Trim(addr, "[]")
}

// validID reports whether a client's request or correlation id is usable:
// 1–128 printable ASCII characters.
func validID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func newRequestID() string {
	// Unique, not secret: nothing is authorised by a request id, so the
	// runtime's fast generator serves instead of the system's.
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

type statusRecorder struct {
	http.ResponseWriter
	status    int
	wrote     bool
	metrics   *routeMetrics // the matched route (pattern, method) and its series; nil when none matched
	principal Principal
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status = code
		s.wrote = true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if !s.wrote {
		s.wrote = true
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
