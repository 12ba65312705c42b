package outbox_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestBacklogPlanBeforeStatistics: on an outbox whose statistics were never
// gathered (a new database, or autovacuum off) the backlog view is read
// through its indexes, and its plan stays below jit_above_cost. Before, the
// planner guessed hundreds of outbox_relay rows, crossed the JIT threshold
// and spent half a CPU-second compiling each read of the backlog.
func TestBacklogPlanBeforeStatistics(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	// 30 transactions of 1,000 events, unanalyzed.
	for range 30 {
		if _, err := db.Pool.Exec(ctx, `INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, topic, event_data)
			SELECT gen_random_uuid(), 'order', 'o-' || i, 'ORDER_CREATED', 'ORDER_CREATED', '{}' FROM generate_series(1, 1000) i`); err != nil {
			t.Fatal(err)
		}
	}
	// A transaction the cursor saw running and a few retries, so each of
	// the view's lookups has something to look up.
	if _, err := db.Pool.Exec(ctx, `UPDATE outbox_relay SET snap_a = (SELECT (min(xid)::text || ':' || (max(xid)::text::bigint + 1)::text || ':' || min(xid)::text)::pg_snapshot
		FROM outbox_events)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO outbox_retries (seq, aggregate_id, next_attempt_at) SELECT seq, aggregate_id, now() FROM outbox_events LIMIT 3`); err != nil {
		t.Fatal(err)
	}
	var jitAbove float64
	if err := db.Pool.QueryRow(ctx, `SELECT current_setting('jit_above_cost')::float8`).Scan(&jitAbove); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`SELECT count(*), min(created_at) FROM outbox_pending`,
		`SELECT EXISTS (SELECT FROM outbox_pending)`,
	} {
		var raw []byte
		if err := db.Pool.QueryRow(ctx, `EXPLAIN (FORMAT JSON) `+q).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		var plans []struct {
			Plan planNode       `json:"Plan"`
			JIT  map[string]any `json:"JIT"`
		}
		if err := json.Unmarshal(raw, &plans); err != nil {
			t.Fatal(err)
		}
		p := plans[0]
		if p.JIT != nil || p.Plan.TotalCost >= jitAbove {
			t.Errorf("%s: cost %.0f (jit_above_cost %.0f), JIT %v", q, p.Plan.TotalCost, jitAbove, p.JIT)
		}
		p.Plan.walk(func(n planNode) {
			if n.NodeType == "Seq Scan" && n.Relation == "outbox_events" {
				t.Errorf("%s: scans the whole outbox:\n%s", q, raw)
			}
		})
	}
}

type planNode struct {
	NodeType  string     `json:"Node Type"`
	Relation  string     `json:"Relation Name"`
	TotalCost float64    `json:"Total Cost"`
	Plans     []planNode `json:"Plans"`
}

func (n planNode) walk(fn func(planNode)) {
	fn(n)
	for _, c := range n.Plans {
		c.walk(fn)
	}
}
