package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/tracing/tracingtest"
)

const modulePrefix = "github.com/trackops/trackops/internal/"

// appDir is the directory of internal/app's source files.
var appDir = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}()

// Where a request or a record enters TrackOps: frames below these belong to
// the transport (and to the goroutine that runs it, which app may start);
// frames above them are the path the request or event takes.
var transportEntries = []string{
	"net/http.serverHandler.ServeHTTP",
	modulePrefix + "kafka.(*Consumer).handle",
}

// orderPath are the handlers an order passes through between POST and
// CONFIRMED with its cache refreshed; each touches PostgreSQL or the order
// cache on its own goroutine.
var orderPath = []string{
	modulePrefix + "order.(*Handlers).create",          // POST /api/v1/orders
	modulePrefix + "inventory.(*Service).Reserve",      // ORDER_CREATED
	modulePrefix + "order.(*Saga).Apply",               // INVENTORY_RESERVED: CONFIRMED
	modulePrefix + "order.(*Service).RefreshFromEvent", // ORDER_STATUS_UPDATED: the cache refreshed
}

// stackTracer is a pgx tracer that reads, at every query, the stack of the
// goroutine running it: the path from the transport to PostgreSQL (and,
// through stackCache, to the order cache).
type stackTracer struct {
	mu sync.Mutex
	// seen are the orderPath handlers found on a path.
	seen map[string]bool
	// throughApp are the paths with a frame of internal/app above the
	// transport, keyed by that frame.
	throughApp map[string]string
	// traced counts paths through the tracing's wrapper of a consumer.
	traced int
}

func (st *stackTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	st.record()
	return ctx
}
func (st *stackTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (st *stackTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	st.record()
	return ctx
}
func (st *stackTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (st *stackTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// stackCache is the order cache with the same reading of the stack: the
// cache refresh touches Redis on the consumer's goroutine, and PostgreSQL
// only in the cache's shared load.
type stackCache struct {
	order.Cache
	st *stackTracer
}

func (c stackCache) Order(ctx context.Context, id uuid.UUID, load func(context.Context) (*order.Order, error)) (*order.Order, error) {
	c.st.record()
	return c.Cache.Order(ctx, id, load)
}

func (c stackCache) InvalidateOrder(ctx context.Context, id uuid.UUID, version int) {
	c.st.record()
	c.Cache.InvalidateOrder(ctx, id, version)
}

// isHook reports whether fn is the test's own hooks, not the path.
func isHook(fn string) bool {
	return strings.HasPrefix(fn, modulePrefix+"app.(*stackTracer)") || strings.HasPrefix(fn, modulePrefix+"app.stackCache")
}

func (st *stackTracer) record() {
	pcs := make([]uintptr, 512)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs)])
	var (
		path    []string // leaf first, up to the transport
		appCode []string // the frames of them written in internal/app
	)
	entered, traced := false, false
	for {
		f, more := frames.Next()
		if isHook(f.Function) {
			continue
		}
		for _, e := range transportEntries {
			entered = entered || f.Function == e
		}
		if entered || !more {
			break
		}
		path = append(path, f.Function)
		// By the file the code is written in, not by the symbol: a
		// closure of another package inlined into a function of app is
		// named after that function, but is not app's code.
		if filepath.Dir(f.File) == appDir && !strings.HasSuffix(f.File, "_test.go") {
			appCode = append(appCode, f.Function+" ("+filepath.Base(f.File)+")")
		}
		if filepath.Base(filepath.Dir(f.File)) == "tracing" && strings.HasSuffix(f.File, "instrument.go") {
			traced = true
		}
	}
	if !entered {
		return // a worker's own loop (the relay, the sweeper), not a request or a record
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, fn := range path {
		for _, h := range orderPath {
			if fn == h {
				st.seen[h] = true
			}
		}
	}
	for _, fn := range appCode {
		st.throughApp[fn] = strings.Join(path, "\n\t")
	}
	if traced {
		st.traced++
	}
}

func (st *stackTracer) missing() []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []string
	for _, h := range orderPath {
		if !st.seen[h] {
			out = append(out, h)
		}
	}
	return out
}

// TestOrderPathNeverPassesThroughApp measures the order's path through the
// running platform: every handler from POST /api/v1/orders to CONFIRMED,
// and the cache refresh of the confirmation, reads its own stack when it
// queries PostgreSQL or touches the order cache. internal/app builds the
// parts and starts them; no code of it may sit between the transport
// (net/http, the Kafka consumer runner) and the domain — no wrapping
// closure, no decoding, no cache invalidation done on the domain's behalf.
// With tracing on, the spans wrap the handlers through the Kafka options,
// not through app.
func TestOrderPathNeverPassesThroughApp(t *testing.T) {
	for _, traced := range []bool{false, true} {
		t.Run(map[bool]string{false: "tracing off", true: "tracing on"}[traced], func(t *testing.T) {
			var tweaks []func(*config.Config)
			if traced {
				col := tracingtest.NewCollector(t)
				tweaks = append(tweaks, func(c *config.Config) { c.Tracing.Endpoint = col.URL + "/v1/traces" })
			}
			st := measureOrderPath(t, tweaks...)
			st.mu.Lock()
			defer st.mu.Unlock()
			if traced != (st.traced > 0) {
				t.Errorf("tracing on: %v; paths through the tracing's consumer wrapper: %d", traced, st.traced)
			}
		})
	}
}

// measureOrderPath runs one order through a whole platform and fails t if
// code of internal/app was on its path; it returns what it saw.
func measureOrderPath(t *testing.T, tweaks ...func(*config.Config)) *stackTracer {
	st := &stackTracer{seen: map[string]bool{}, throughApp: map[string]string{}}
	testHookQueryTracer = st
	testHookOrderCache = func(c order.Cache) order.Cache { return stackCache{Cache: c, st: st} }
	t.Cleanup(func() { testHookQueryTracer, testHookOrderCache = nil, nil })
	fa := startFullApp(t, slog.New(slog.NewTextHandler(io.Discard, nil)), tweaks...)
	token := fa.key(t, "order-path", httpapi.RoleOperator)
	fa.mustDo(t, http.StatusCreated, token, http.MethodPut, "/api/v1/inventory/PATH-1", `{"name":"Widget","on_hand":10}`, nil)
	var created struct{ ID string }
	fa.mustDo(t, http.StatusCreated, token, http.MethodPost, "/api/v1/orders",
		`{"customer_id":"c-1","items":[{"sku":"PATH-1","quantity":2,"unit_price":"19.99"}]}`, &created)

	deadline := time.Now().Add(60 * time.Second) // a deadlock guard, not a speed assertion
	for {
		_, body := fa.do(t, token, http.MethodGet, "/api/v1/orders/"+created.ID, "")
		var o struct{ Status string }
		_ = json.Unmarshal(body, &o)
		missing := st.missing()
		if o.Status == "CONFIRMED" && len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %s is %q; handlers not seen on its path: %v", created.ID, o.Status, missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	frames := make([]string, 0, len(st.throughApp))
	for f := range st.throughApp {
		frames = append(frames, f)
	}
	sort.Strings(frames)
	for _, f := range frames {
		t.Errorf("internal/app on a request's or record's path: %s, in\n\t%s", f, st.throughApp[f])
	}
	return st
}
