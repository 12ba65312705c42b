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
