package app

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/httpapi"
)

// TestSweeperRunsUnderItsLease: a process of the orders role takes the
// sweeper's lease, runs the sweeper, counts its passes on /metrics and
// shows it in /health (component "sweeper") to a signed-in caller.
func TestSweeperRunsUnderItsLease(t *testing.T) {
	t.Parallel()
	fa := startFullApp(t, slog.New(slog.DiscardHandler))
	token := fa.key(t, "sweeper-test", httpapi.RoleViewer)
	var comp struct {
		Status  string
		Details struct {
			Active  bool
			Timeout string
			Lease   struct{ Held bool }
			Totals  map[string]int64
		}
	}
	deadline := time.Now().Add(60 * time.Second) // a hang guard, not a speed assertion
	for {
		req, _ := http.NewRequest(http.MethodGet, fa.base+"/health", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var rep struct{ Components map[string]json.RawMessage }
		_ = json.NewDecoder(resp.Body).Decode(&rep)
		resp.Body.Close()
		_ = json.Unmarshal(rep.Components["sweeper"], &comp)
		if comp.Details.Active && comp.Details.Lease.Held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sweeper component never active: %s", rep.Components["sweeper"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if comp.Status != "UP" || comp.Details.Timeout != fa.cfg.Sweeper.PendingTimeout.String() || comp.Details.Totals == nil {
		t.Fatalf("sweeper component: %+v", comp)
	}
	resp, err := http.Get(fa.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "trackops_order_sweeper_passes_total") {
		t.Fatal("/metrics has no trackops_order_sweeper_passes_total")
	}
}
