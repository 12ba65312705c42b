package health_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/health"
	"github.com/trackops/trackops/internal/httpapi"
)

func fixed(name string, critical bool, st health.Status) health.Indicator {
	return health.Func{ComponentName: name, IsCritical: critical, Fn: func(context.Context) health.Component {
		return health.Component{Status: st}
	}}
}

func TestAggregateStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		db, kafk health.Status
		redis    health.Status
		cdc      health.Status
		want     health.Status
		wantCode int
	}{
		{"all up", health.Up, health.Up, health.Up, health.Up, health.Up, 200},
		{"redis down degrades", health.Up, health.Up, health.Down, health.Up, health.Degraded, 200},
		{"cdc unknown degrades", health.Up, health.Up, health.Up, health.Unknown, health.Degraded, 200},
		{"db down is down", health.Down, health.Up, health.Up, health.Up, health.Down, 503},
		{"kafka down is down", health.Up, health.Down, health.Up, health.Up, health.Down, 503},
		{"db and redis down is down", health.Down, health.Up, health.Down, health.Up, health.Down, 503},
		{"redis then db: down wins", health.Down, health.Up, health.Down, health.Down, health.Down, 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := health.NewChecker(
				fixed("db", true, tt.db), fixed("kafka", true, tt.kafk),
				fixed("redis", false, tt.redis), fixed("cdc", false, tt.cdc),
			)
			c.CacheFor = -1
			rep := c.Check(context.Background())
			if rep.Status != tt.want || rep.HTTPStatus() != tt.wantCode {
				t.Fatalf("status %s (%d), want %s (%d)", rep.Status, rep.HTTPStatus(), tt.want, tt.wantCode)
			}
			if len(rep.Components) != 4 {
				t.Fatalf("components %v, want 4", rep.Components)
			}
		})
	}
}

func TestStuckIndicatorIsCutOffAsDown(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	stuck := health.Func{ComponentName: "db", IsCritical: true, Fn: func(context.Context) health.Component {
		<-release // ignores its context on purpose
		return health.Component{Status: health.Up}
	}}
	c := health.NewChecker(stuck, fixed("redis", false, health.Up))
	c.Timeout = 50 * time.Millisecond
	rep := c.Check(context.Background())
	if rep.Status != health.Down || rep.Components["db"].Status != health.Down {
		t.Fatalf("report %+v, want db DOWN", rep)
	}
	if rep.Components["db"].Details["error"] == nil || rep.Components["redis"].Status != health.Up {
		t.Fatalf("report %+v, want a timeout error on db and redis UP", rep)
	}
}

func TestPanickingIndicatorIsDown(t *testing.T) {
	t.Parallel()
	c := health.NewChecker(health.Func{ComponentName: "kafka", IsCritical: true, Fn: func(context.Context) health.Component {
		panic("boom")
	}})
	if rep := c.Check(context.Background()); rep.Status != health.Down {
		t.Fatalf("status %s, want DOWN", rep.Status)
	}
}

// TestConcurrentChecksShareOneRun: many simultaneous /health requests cost
// the dependencies one round of checks, and a fresh report is reused.
func TestConcurrentChecksShareOneRun(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	gate := make(chan struct{})
	counting := health.Func{ComponentName: "db", IsCritical: true, Fn: func(context.Context) health.Component {
		runs.Add(1)
		<-gate
		return health.Component{Status: health.Up}
	}}
	c := health.NewChecker(counting)
	c.CacheFor = time.Hour
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			if rep := c.Check(context.Background()); rep.Status != health.Up {
				t.Errorf("status %s", rep.Status)
			}
		})
	}
	close(gate)
	wg.Wait()
	c.Check(context.Background())
	if n := runs.Load(); n != 1 {
		t.Fatalf("indicator ran %d times for 65 checks within the cache period, want 1", n)
	}

	c.CacheFor = -1
	c.Check(context.Background())
	if n := runs.Load(); n != 2 {
		t.Fatalf("indicator ran %d times with caching off, want 2", n)
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	up := health.NewChecker(fixed("db", true, health.Up), fixed("redis", false, health.Down))
	down := health.NewChecker(fixed("db", true, health.Down))
	tests := []struct {
		checker  *health.Checker
		path     string
		code     int
		status   health.Status
		hasNames bool
	}{
		{up, "/health", 200, health.Degraded, true},
		{up, "/health/ready", 200, health.Degraded, true},
		{up, "/health/live", 200, health.Up, false},
		{down, "/health", 503, health.Down, true},
		{down, "/health/ready", 503, health.Down, true},
		{down, "/health/live", 200, health.Up, false},
	}
	for _, tt := range tests {
		h := router(tt.checker)
		code, body := get(t, h, tt.path)
		if code != tt.code || body["status"] != string(tt.status) {
			t.Errorf("%s: %d %v, want %d %s", tt.path, code, body["status"], tt.code, tt.status)
		}
		if _, ok := body["components"]; ok != tt.hasNames {
			t.Errorf("%s: components present=%v, want %v", tt.path, ok, tt.hasNames)
		}
	}
}

func router(c *health.Checker) http.Handler {
	return httpapi.NewRouter(httpapi.RouterConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, c.Routes())
}

func get(t testing.TB, h http.Handler, path string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("%s: %v: %s", path, err, rec.Body.String())
	}
	return rec.Code, body
}
