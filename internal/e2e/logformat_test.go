package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestOneLogFormatWhileRedisIsUnreachable runs the binary with JSON logs
// and a Redis nobody listens on — go-redis then reports its failed dials —
// and checks that every line the process writes is a JSON object: no
// library prints its own plain-text lines into the log.
func TestOneLogFormatWhileRedisIsUnreachable(t *testing.T) {
	endToEnd(t)
	db := postgrestest.New(t)
	cfg := newConfig(t, db)
	cfg.Extra = []string{"TRACKOPS_REDIS_URL=redis://" + RefusedAddr(t)}
	p := Start(t, cfg)
	// Requests that go through the cache (sessions, orders) while Redis is
	// unreachable.
	mustCall(t, p, http.MethodPut, "/api/v1/inventory/SKU-LOG", `{"name":"log widget","on_hand":10}`, http.StatusCreated, nil)
	var o struct{ ID string }
	mustCall(t, p, http.MethodPost, "/api/v1/orders",
		`{"customer_id":"log","items":[{"sku":"SKU-LOG","quantity":1,"unit_price":"1.00"}]}`, http.StatusCreated, &o)
	waitUntil(t, "a log line from go-redis", hangGuard, until(func() bool {
		mustCall(t, p, http.MethodGet, "/api/v1/orders/"+o.ID, "", http.StatusOK, nil)
		return strings.Contains(p.Log.String(), `"component":"redis"`)
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if code, err := p.Stop(ctx); err != nil || code != 0 {
		t.Fatalf("stop: exit %d, %v", code, err)
	}
	lines := strings.Split(strings.TrimSpace(p.Log.String()), "\n")
	for i, line := range lines {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Errorf("line %d of %d is not JSON: %q", i+1, len(lines), line)
		}
	}
}
