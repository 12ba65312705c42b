// Package health aggregates component health in Spring Boot Actuator's
// shape: an overall status and one entry per component with its details.
package health

import (
	"context"
	"net/http"
	"sync"
	"time"

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
}

// Checker runs indicators.
type Checker struct {
	mu         sync.RWMutex
	indicators []Indicator
	timeout    time.Duration
	// OnReport, if set, receives every report (e.g. to keep the last one in
	// the system store).
	OnReport func(context.Context, Report)
}

// NewChecker returns a checker over indicators.
func NewChecker(indicators ...Indicator) *Checker {
	return &Checker{indicators: indicators, timeout: 3 * time.Second}
}

// Add registers more indicators.
func (c *Checker) Add(ind ...Indicator) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.indicators = append(c.indicators, ind...)
}

// Check runs every indicator concurrently, each bounded by the checker's
// timeout, and aggregates: DOWN when a critical component is down,
// DEGRADED when any other is not UP.
func (c *Checker) Check(ctx context.Context) Report {
	c.mu.RLock()
	inds := append([]Indicator(nil), c.indicators...)
	c.mu.RUnlock()
	rep := Report{Status: Up, Components: make(map[string]Component, len(inds))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, ind := range inds {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			comp := ind.Check(cctx)
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

// Routes serves /health, /health/live and /health/ready.
func (c *Checker) Routes() []httpapi.Route {
	return []httpapi.Route{
		{Method: http.MethodGet, Pattern: "/health", Role: httpapi.RolePublic, Handler: c.serveHealth},
		{Method: http.MethodGet, Pattern: "/health/live", Role: httpapi.RolePublic, Handler: serveLive},
		{Method: http.MethodGet, Pattern: "/health/ready", Role: httpapi.RolePublic, Handler: c.serveReady},
	}
}

func (c *Checker) serveHealth(w http.ResponseWriter, r *http.Request) {
	rep := c.Check(r.Context())
	code := http.StatusOK
	if rep.Status == Down {
		code = http.StatusServiceUnavailable
	}
	httpapi.WriteJSON(w, code, rep)
}

// serveLive answers while the process can serve HTTP at all.
func serveLive(w http.ResponseWriter, _ *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, Component{Status: Up})
}

// serveReady answers 200 only when the platform can take traffic.
func (c *Checker) serveReady(w http.ResponseWriter, r *http.Request) {
	rep := c.Check(r.Context())
	code := http.StatusOK
	if rep.Status == Down {
		code = http.StatusServiceUnavailable
	}
	httpapi.WriteJSON(w, code, Report{Status: rep.Status, Components: map[string]Component{}})
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
