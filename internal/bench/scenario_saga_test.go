package bench

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestSagaHops: each step is timed from its own order's creation, only
// confirmed orders count, and a step no order recorded is NaN, not zero.
func TestSagaHops(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	// Two confirmed orders created a second apart with the same step
	// durations (10, 30, 45 and 60 ms; the second's reservation 50 ms), and
	// a pending one whose late steps must not count.
	_, err := db.Pool.Exec(ctx, `
	INSERT INTO orders (id, customer_id, status, currency, total_amount, shipping_address, version, created_at, updated_at) VALUES
		('00000000-0000-4000-8000-000000000001', 'c', 'CONFIRMED', 'USD', 1, '{}', 2, '2026-01-01 00:00:00+00', '2026-01-01 00:00:00+00'),
		('00000000-0000-4000-8000-000000000002', 'c', 'CONFIRMED', 'USD', 1, '{}', 2, '2026-01-01 00:00:01+00', '2026-01-01 00:00:01+00'),
		('00000000-0000-4000-8000-000000000003', 'c', 'PENDING', 'USD', 1, '{}', 1, '2026-01-01 00:00:02+00', '2026-01-01 00:00:02+00');
	INSERT INTO order_status_history (order_id, from_status, to_status, reason, actor, version, changed_at) VALUES
		('00000000-0000-4000-8000-000000000001', 'PENDING', 'CONFIRMED', '', 'saga', 2, '2026-01-01 00:00:00.060+00'),
		('00000000-0000-4000-8000-000000000002', 'PENDING', 'CONFIRMED', '', 'saga', 2, '2026-01-01 00:00:01.060+00');
	INSERT INTO inventory_orders (order_id, state, created_at, updated_at) VALUES
		('00000000-0000-4000-8000-000000000001', 'reserved', '2026-01-01 00:00:00.030+00', now()),
		('00000000-0000-4000-8000-000000000002', 'reserved', '2026-01-01 00:00:01.050+00', now()),
		('00000000-0000-4000-8000-000000000003', 'reserved', '2026-01-01 00:00:09+00', now());
	INSERT INTO outbox_events (seq, id, aggregate_type, aggregate_id, event_type, topic, event_data) VALUES
		(1, gen_random_uuid(), 'order', '00000000-0000-4000-8000-000000000001', 'ORDER_CREATED', 'ORDER_CREATED', '{}'),
		(2, gen_random_uuid(), 'order', '00000000-0000-4000-8000-000000000001', 'INVENTORY_RESERVED', 'INVENTORY_RESERVED', '{}'),
		(3, gen_random_uuid(), 'order', '00000000-0000-4000-8000-000000000002', 'ORDER_CREATED', 'ORDER_CREATED', '{}'),
		(4, gen_random_uuid(), 'order', '00000000-0000-4000-8000-000000000002', 'INVENTORY_RESERVED', 'INVENTORY_RESERVED', '{}'),
		(5, gen_random_uuid(), 'order', '00000000-0000-4000-8000-000000000003', 'ORDER_CREATED', 'ORDER_CREATED', '{}');
	INSERT INTO outbox_published (seq, kafka_partition, kafka_offset, acked_at) VALUES
		(1, 0, 0, '2026-01-01 00:00:00.010+00'),
		(2, 0, 1, '2026-01-01 00:00:00.045+00'),
		(3, 0, 2, '2026-01-01 00:00:01.010+00'),
		(4, 0, 3, '2026-01-01 00:00:01.045+00'),
		(5, 0, 4, '2026-01-01 00:00:12+00')`)
	if err != nil {
		t.Fatal(err)
	}
	hops, err := sagaHops(ctx, db.Pool, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ p50, p99 float64 }{{10, 10}, {40, 49.8}, {45, 45}, {60, 60}}
	if len(hops) != len(want) {
		t.Fatalf("%d hops, want %d: %+v", len(hops), len(want), hops)
	}
	for i, w := range want {
		if math.Abs(hops[i].p50-w.p50) > 0.01 || math.Abs(hops[i].p99-w.p99) > 0.01 {
			t.Errorf("%s: p50 %.3f p99 %.3f, want %.1f and %.1f", hops[i].step, hops[i].p50, hops[i].p99, w.p50, w.p99)
		}
	}
	// Orders created before since (a warm-up's) are left out: from the
	// second order's creation on, only its reservation (50 ms) counts.
	late, err := sagaHops(ctx, db.Pool, time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC))
	if err != nil || late[1].p50 != 50 || late[1].p99 != 50 {
		t.Errorf("orders since the second: %+v, %v; want the reservation at 50 ms", late, err)
	}
	note := formatHops(hops)
	if !strings.Contains(note, "ORDER_CREATED acknowledged 10.0 / 10.0 ms") || !strings.Contains(note, "CONFIRMED 60.0 / 60.0 ms") {
		t.Errorf("note %q", note)
	}

	// Without the relay's ledger the acknowledgement steps are unknown.
	if _, err := db.Pool.Exec(ctx, `DELETE FROM outbox_published`); err != nil {
		t.Fatal(err)
	}
	hops, err = sagaHops(ctx, db.Pool, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(hops[0].p50) || !math.IsNaN(hops[2].p99) || hops[3].p50 != 60 {
		t.Errorf("without the ledger: %+v; want NaN for the acknowledgements and CONFIRMED still 60", hops)
	}

	// No confirmed order at all: every step unknown.
	if _, err := db.Pool.Exec(ctx, `DELETE FROM order_status_history`); err != nil {
		t.Fatal(err)
	}
	if hops, err = sagaHops(ctx, db.Pool, time.Time{}); err != nil || !math.IsNaN(hops[3].p50) {
		t.Errorf("no confirmed order: %+v, %v; want NaN", hops, err)
	}
}

// TestSagaSplit: each hop runs from one stamp to the next, the commits
// taken from PostgreSQL's commit timestamps. The order's stamps are set
// against its transactions' real commits: hops that start at a commit are
// exact, hops that end at one are the stamp's offset plus the sleeps and
// statements between (bounded below by the offset, above by a margin).
func TestSagaSplit(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	var on bool
	if err := db.Pool.QueryRow(ctx, `SELECT current_setting('track_commit_timestamp')::bool`).Scan(&on); err != nil {
		t.Fatal(err)
	}
	if !on {
		t.Fatal("PostgreSQL records no commit timestamps: run scripts/ensure-services.sh (track_commit_timestamp = on)")
	}
	const id = "00000000-0000-4000-8000-000000000001"
	steps := []string{
		// The order's transaction: created 300 ms before it commits.
		`INSERT INTO orders (id, customer_id, status, currency, total_amount, shipping_address, version, created_at, updated_at)
			VALUES ('` + id + `', 'c', 'CONFIRMED', 'USD', 1, '{}', 2, clock_timestamp() - interval '300 ms', now());
		 INSERT INTO outbox_events (seq, id, aggregate_type, aggregate_id, event_type, topic, event_data)
			VALUES (1, gen_random_uuid(), 'order', '` + id + `', 'ORDER_CREATED', 'ORDER_CREATED', '{}')`,
		// Acknowledged 50 ms after that commit.
		`INSERT INTO outbox_published (seq, kafka_partition, kafka_offset, acked_at)
			SELECT seq, 0, 0, pg_xact_commit_timestamp(xid(xid)) + interval '50 ms' FROM outbox_events WHERE seq = 1`,
		// The reservation begun 80 ms after the acknowledgement, committed
		// after a 250 ms sleep: about 120 ms later.
		`SELECT pg_sleep(0.25);
		 INSERT INTO inventory_orders (order_id, state, created_at, updated_at)
			SELECT '` + id + `', 'reserved', acked_at + interval '80 ms', now() FROM outbox_published WHERE seq = 1;
		 INSERT INTO outbox_events (seq, id, aggregate_type, aggregate_id, event_type, topic, event_data)
			VALUES (2, gen_random_uuid(), 'order', '` + id + `', 'INVENTORY_RESERVED', 'INVENTORY_RESERVED', '{}')`,
		// Acknowledged 40 ms after its commit.
		`INSERT INTO outbox_published (seq, kafka_partition, kafka_offset, acked_at)
			SELECT seq, 0, 1, pg_xact_commit_timestamp(xid(xid)) + interval '40 ms' FROM outbox_events WHERE seq = 2`,
		// CONFIRMED stamped 60 ms after that, committed after a 200 ms
		// sleep: about 100 ms later.
		`SELECT pg_sleep(0.2);
		 INSERT INTO order_status_history (order_id, from_status, to_status, reason, actor, version, changed_at)
			SELECT '` + id + `', 'PENDING', 'CONFIRMED', '', 'saga', 2, acked_at + interval '60 ms' FROM outbox_published WHERE seq = 2`,
	}
	for _, sql := range steps {
		if _, err := db.Pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	hops, err := readSplit(ctx, db.Pool, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		step     string
		min, max float64 // ms
	}{
		{"order transaction", 300, 340},
		{"relay ORDER_CREATED", 50, 50},
		{"inventory consumer", 80, 80},
		{"reservation transaction", 120, 160},
		{"relay INVENTORY_RESERVED", 40, 40},
		{"order consumer and saga", 60, 60},
		{"confirmation commit", 100, 140},
	}
	if len(hops) != len(want) {
		t.Fatalf("%d hops, want %d: %+v", len(hops), len(want), hops)
	}
	for i, w := range want {
		h := hops[i]
		if h.step != w.step || h.p50 < w.min-0.01 || h.p50 > w.max+0.01 || h.p99 != h.p50 || h.slow != h.p50 {
			t.Errorf("hop %d: %+v, want %s in [%.0f, %.0f] ms with p99 and the slowest orders' mean the same (one order)", i+1, h, w.step, w.min, w.max)
		}
	}
	note, err := sagaSplit(ctx, db.Pool, time.Time{})
	if err != nil || !strings.Contains(note, "relay ORDER_CREATED 50.0 / 50.0 / 50.0 ms") {
		t.Errorf("note %q, %v", note, err)
	}
	// A transaction with no commit timestamp (committed before the setting
	// was on, or frozen): the hops at its commit are unknown, not zero.
	if _, err := db.Pool.Exec(ctx, `UPDATE outbox_events SET xid = '2' WHERE seq = 1`); err != nil {
		t.Fatal(err)
	}
	if hops, err = readSplit(ctx, db.Pool, time.Time{}); err != nil || len(hops) != len(want) {
		t.Fatalf("without the order's commit timestamp: %+v, %v", hops, err)
	}
	if !math.IsNaN(hops[0].p50) || !math.IsNaN(hops[1].slow) || hops[2].p50 != 80 {
		t.Errorf("without the order's commit timestamp: %+v; want the first two hops unknown, the others as before", hops)
	}
	// Orders created since a later time: none, so nothing to split.
	if note, err := sagaSplit(ctx, db.Pool, time.Now().Add(time.Hour)); err != nil || !strings.Contains(note, "no order was confirmed") {
		t.Errorf("no orders: %q, %v", note, err)
	}
}
