// Package health aggregates component health in Spring Boot Actuator's
// shape: an overall status and one entry per component with its details.
//
// Checks run concurrently, each bounded by a timeout, and a report is reused
// for a short while (one second by default) so that /health polled by many
// load balancers and dashboards costs the dependencies one round of checks
// per second, not one per request.
package health

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/trackops/trackops/internal/httpapi"
)

// Status of a component or of the whole platform.
type Status string

// Statuses, as Actuator names them; DEGRADED is TrackOps' own for a working
// platform with a failed optional part (the cache).
const (
	Up       Status = "UP"
	Down     Status = "DOWN"
	Degraded Status = "DEGRADED"
	Unknown  Status = "UNKNOWN"
)

// Component is one indicator's result.
type Component struct {
	Status  Status         `json:"status"`
	Details map[string]any `json:"details,omitempty"`
}

// Indicator checks one component.
type Indicator interface {
	// Name is the component's key in the report (db, redis, kafka, ...).
	Name() string
	// Critical reports whether the platform is DOWN when this is DOWN; a
	// non-critical component makes it DEGRADED instead.
	Critical() bool
	// Check inspects the component; it must honour ctx's deadline.
	Check(ctx context.Context) Component
}

// Report is the whole health response.
type Report struct {
	Status     Status               `json:"status"`
	Components map[string]Component `json:"components"`
	// CheckedAt is when the checks behind this report ran.
	CheckedAt time.Time `json:"checkedAt"`
}

// HTTPStatus is the response code for the report: 503 when DOWN, else 200
// (a DEGRADED platform still serves).
func (r Report) HTTPStatus() int {
	if r.Status == Down {
		return http.StatusServiceUnavailable
	}
	return http.StatusOK
}

// Default tuning of a Checker.
const (
	DefaultTimeout  = 2 * time.Second
	DefaultCacheFor = time.Second
)

// Checker runs indicators and aggregates their results.
type Checker struct {
	mu         sync.RWMutex
	indicators []Indicator

	// Timeout bounds each indicator's check; zero means DefaultTimeout.
	Timeout time.Duration
	// CacheFor is how long a report is served again before the checks run
	// anew; zero means DefaultCacheFor, negative disables reuse.
	CacheFor time.Duration
	// OnReport, if set, receives every freshly computed report (e.g. to keep
	// the last one in the system store).
	OnReport func(context.Context, Report)

	flight  singleflight.Group
	last    atomic.Pointer[Report]
	encoded atomic.Pointer[encodedReport]
}

// encodedReport is the JSON of the report checked at a given time, so a
// cached report is encoded once, not once per request.
type encodedReport struct {
	checkedAt time.Time
	body      []byte
}

// NewChecker returns a checker over indicators.
func NewChecker(indicators ...Indicator) *Checker {
	return &Checker{indicators: indicators}
}

// Add registers more indicators.
func (c *Checker) Add(ind ...Indicator) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.indicators = append(c.indicators, ind...)
	c.last.Store(nil)
}

// Check returns the platform's health: the last report if it is fresh
// enough, otherwise a new one. Concurrent callers share one run of the
// checks. The returned report must not be modified.
func (c *Checker) Check(ctx context.Context) Report {
	maxAge := c.CacheFor
	if maxAge == 0 {
		maxAge = DefaultCacheFor
	}
	if r := c.last.Load(); r != nil && maxAge > 0 && time.Since(r.CheckedAt) < maxAge {
		return *r
	}
	// The shared run must not die with the first caller's request; the
	// per-indicator timeout bounds it instead.
	ch := c.flight.DoChan("check", func() (any, error) {
		// A caller that missed the previous run by a hair finds its
		// result here instead of starting another.
		if r := c.last.Load(); r != nil && maxAge > 0 && time.Since(r.CheckedAt) < maxAge {
			return *r, nil
		}
		rep := c.CheckNow(context.WithoutCancel(ctx))
		c.last.Store(&rep)
		return rep, nil
	})
	select {
	case res := <-ch:
		return res.Val.(Report)
	case <-ctx.Done():
		return Report{Status: Unknown, Components: map[string]Component{}, CheckedAt: time.Now()}
	}
}

// CheckNow runs every indicator concurrently, each bounded by the timeout,
// and aggregates: DOWN when a critical component is down, DEGRADED when any
// other is not UP.
func (c *Checker) CheckNow(ctx context.Context) Report {
	c.mu.RLock()
	inds := append([]Indicator(nil), c.indicators...)
	c.mu.RUnlock()
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	rep := Report{Status: Up, Components: make(map[string]Component, len(inds)), CheckedAt: time.Now()}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, ind := range inds {
		wg.Go(func() {
			comp := runBounded(ctx, ind, timeout)
			mu.Lock()
			defer mu.Unlock()
			rep.Components[ind.Name()] = comp
			switch {
			case comp.Status == Down && ind.Critical():
				rep.Status = Down
			case comp.Status != Up && rep.Status == Up:
				rep.Status = Degraded
			}
		})
	}
	wg.Wait()
	if c.OnReport != nil {
		c.OnReport(ctx, rep)
	}
	return rep
}

// runBounded runs one check and gives up at the timeout even if the
// indicator ignores its context, so one stuck dependency cannot hang /health.
func runBounded(ctx context.Context, ind Indicator, timeout time.Duration) Component {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan Component, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				done <- Component{Status: Down, Details: map[string]any{"error": fmt.Sprintf("check panicked: %v", v)}}
			}
		}()
		done <- ind.Check(cctx)
	}()
	select {
	case comp := <-done:
		return comp
	case <-cctx.Done():
		return Component{Status: Down, Details: map[string]any{"error": "check timed out after " + timeout.String()}}
	}
}

// Routes serves /health, /health/live and /health/ready, all without a
// token. /health follows Actuator's show-details: when-authorized: an
// anonymous caller gets the overall status alone; any signed-in role gets
// every component with its details (database name, broker addresses, pool
// statistics, versions), which strangers have no business reading.
func (c *Checker) Routes() []httpapi.Route {
	return []httpapi.Route{
		{Method: http.MethodGet, Pattern: "/health", Role: httpapi.RolePublic, IdentifyCaller: true, Handler: c.serveHealth},
		{Method: http.MethodGet, Pattern: "/health/live", Role: httpapi.RolePublic, Handler: serveLive},
		{Method: http.MethodGet, Pattern: "/health/ready", Role: httpapi.RolePublic, Handler: c.serveReady},
	}
}

// statusOnly is the body anonymous callers of /health get.
type statusOnly struct {
	Status Status `json:"status"`
}

// ShowsDetails reports whether the caller of r may see the components'
// details: any signed-in role may (when-authorized), anonymous callers not.
func ShowsDetails(r *http.Request) bool {
	return httpapi.PrincipalFrom(r.Context()).Role.Rank() > 0
}

func (c *Checker) serveHealth(w http.ResponseWriter, r *http.Request) {
	rep := c.Check(r.Context())
	if !ShowsDetails(r) {
		httpapi.WriteJSON(w, rep.HTTPStatus(), statusOnly{Status: rep.Status})
		return
	}
	e := c.encoded.Load()
	if e == nil || !e.checkedAt.Equal(rep.CheckedAt) {
		body, err := json.Marshal(rep)
		if err != nil {
			httpapi.WriteError(w, r, fmt.Errorf("encode health report: %w", err))
			return
		}
		e = &encodedReport{checkedAt: rep.CheckedAt, body: append(body, '\n')}
		c.encoded.Store(e)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.HTTPStatus())
	_, _ = w.Write(e.body)
}

// serveLive answers while the process can serve HTTP at all: liveness must
// not depend on other systems, or an orchestrator restarts every instance
// when the database blips.
func serveLive(w http.ResponseWriter, _ *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, Component{Status: Up})
}

// readiness is the body of /health/ready: the overall status and each
// component's status, without details.
type readiness struct {
	Status     Status            `json:"status"`
	Components map[string]Status `json:"components"`
}

// serveReady answers 200 only when the platform can take traffic (UP or
// DEGRADED), 503 when it is DOWN.
func (c *Checker) serveReady(w http.ResponseWriter, r *http.Request) {
	rep := c.Check(r.Context())
	body := readiness{Status: rep.Status, Components: make(map[string]Status, len(rep.Components))}
	for name, comp := range rep.Components {
		body.Components[name] = comp.Status
	}
	httpapi.WriteJSON(w, rep.HTTPStatus(), body)
}

// Func adapts a function to an Indicator.
type Func struct {
	ComponentName string
	IsCritical    bool
	Fn            func(ctx context.Context) Component
}

// Name implements Indicator.
func (f Func) Name() string { return f.ComponentName }

// Critical implements Indicator.
func (f Func) Critical() bool { return f.IsCritical }

// Check implements Indicator.
func (f Func) Check(ctx context.Context) Component { return f.Fn(ctx) }
