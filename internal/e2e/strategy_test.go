package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// strategies are the event publishing strategies every saga test runs under.
var strategies = []string{"outbox", "cdc"}

// uniqueSuffix is a short random hex string for names that must not collide
// with parallel tests: replication slots (cluster-wide) and Redis keys (the
// process's cache has no per-test prefix).
func uniqueSuffix() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// strategyConfig is a process configuration for db under strategy: a slot of
// its own for the built-in connector, rate limits off (parallel tests all
// come from 127.0.0.1 and share Redis), and short consumer back-offs.
func strategyConfig(t testing.TB, db *postgrestest.Database, strategy string) (Config, string) {
	t.Helper()
	slot := "e2e_" + uniqueSuffix()
	return Config{
		DatabaseURL: db.URL,
		DataDir:     t.TempDir(),
		HTTPAddr:    FreeAddr(t),
		KafkaAddr:   FreeAddr(t),
		ConnectAddr: FreeAddr(t),
		Extra: []string{
			"TRACKOPS_EVENT_STRATEGY=" + strategy,
			"TRACKOPS_CDC_SLOT_NAME=" + slot,
			"TRACKOPS_RATE_LIMIT_PRINCIPAL=off",
			"TRACKOPS_RATE_LIMIT_IP=off",
			"TRACKOPS_CONSUMER_RETRY_BACKOFF=10ms",
			"TRACKOPS_CONSUMER_RETRY_MAX_BACKOFF=100ms",
			"TRACKOPS_RELAY_POLL_INTERVAL=100ms",
			"TRACKOPS_LOG_LEVEL=warn",
		},
	}, slot
}

// call sends an authenticated request and decodes the JSON answer into out
// (when not nil); it returns the status code.
func call(p *Process, method, path, body string, out any) (int, error) {
	resp, err := p.Do(method, path, body)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode %q: %w", method, path, raw, err)
		}
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, nil
}

// mustCall is call for the test goroutine: any answer but want fails the test.
func mustCall(t testing.TB, p *Process, method, path, body string, want int, out any) {
	t.Helper()
	code, err := call(p, method, path, body, out)
	if code != want {
		t.Fatalf("%s %s: got %d, want %d (%v)", method, path, code, want, err)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// waitUntil polls cond until it holds. The timeout is a hang guard, not a
// speed assertion: it fails the test only when the platform never gets there.
func waitUntil(t testing.TB, what string, timeout time.Duration, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		ok, err := cond(ctx)
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not happen within %s (last error: %v)", what, timeout, err)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// apiItem is GET /api/v1/inventory/{sku}.
type apiItem struct {
	SKU       string `json:"sku"`
	OnHand    int64  `json:"on_hand"`
	Reserved  int64  `json:"reserved"`
	Available int64  `json:"available"`
}

// apiOrder is the part of an order the tests read.
type apiOrder struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Version int    `json:"version"`
}

func placeOrder(p *Process, sku string, qty int) (apiOrder, int, error) {
	var o apiOrder
	body := fmt.Sprintf(`{"customer_id":"cust-%s","items":[{"sku":%q,"quantity":%d,"unit_price":"9.99"}]}`, uniqueSuffix(), sku, qty)
	code, err := call(p, http.MethodPost, "/api/v1/orders", body, &o)
	return o, code, err
}
