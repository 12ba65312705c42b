//go:build chaos

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestClusterChaos is the long variant of TestClusterOnLoopback (`make
// chaos`): for each strategy in CHAOS_STRATEGIES (default outbox,cdc), the
// nine-process cluster under CHAOS_CLUSTER_LOAD (default 90s) of load at
// CHAOS_CLUSTER_RATE requests/s, with three rounds of one SIGKILL per role.
func TestClusterChaos(t *testing.T) {
	load, err := time.ParseDuration(envOr("CHAOS_CLUSTER_LOAD", "90s"))
	if err != nil {
		t.Fatalf("CHAOS_CLUSTER_LOAD: %v", err)
	}
	rate := 40
	if v := envOr("CHAOS_CLUSTER_RATE", ""); v != "" {
		if _, err := fmt.Sscan(v, &rate); err != nil {
			t.Fatalf("CHAOS_CLUSTER_RATE: %v", err)
		}
	}
	const pending = 20 * time.Second
	for _, strategy := range strings.Split(envOr("CHAOS_STRATEGIES", "outbox,cdc"), ",") {
		strategy = strings.TrimSpace(strategy)
		t.Run(strategy, func(t *testing.T) {
			c := startCluster(t, strategy, pending)
			sum := c.run(clusterRun{load: load, rate: rate, rounds: 3})
			t.Logf("%s: %d requests, status codes %v", strategy, sum.Requests, sum.StatusCodes)
			c.settle(3 * time.Minute)
			c.verify(pending)
			if n := c.checkEventOrder(); n == 0 {
				t.Error("no two events of one order were compared")
			}
			c.checkSingletons()
		})
	}
}
