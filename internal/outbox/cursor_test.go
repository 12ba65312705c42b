package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// newEvent makes an ORDER_STATUS_UPDATED event of aggregate numbered seq.
func newEvent(t *testing.T, aggregate string, seq int) events.Event {
	t.Helper()
	ev, err := events.New(events.OrderStatusUpdated, events.AggregateOrder, aggregate, seqData{Seq: seq}, "")
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// drain publishes with PublishBatch until a batch reads nothing.
func drain(t *testing.T, r *outbox.Relay) {
	t.Helper()
	for range 100 {
		n, err := r.PublishBatch(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
	t.Fatal("the relay kept finding events after 100 batches")
}

// published returns the ids of the events recorded published, in the order
// Kafka acknowledged them.
func published(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id::text FROM outbox_status WHERE processed ORDER BY kafka_acked_at, seq`)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestCursorNeverSkipsALateCommit: a transaction takes a seq, then commits
// after later seqs were published. A cursor on seq would pass it by; the
// relay's cursor follows commits, so the event is published when its
// transaction commits.
func TestCursorNeverSkipsALateCommit(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	broker := kafkatest.New(t)
	producer := newProducer(t, broker)
	ctx := context.Background()
	relay := outbox.NewRelay(db.Pool, producer, outbox.RelayConfig{Logger: quiet})

	late, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback(ctx)
	lateEv := newEvent(t, "late", 0)
	if err := outbox.Write(ctx, late, lateEv); err != nil {
		t.Fatal(err)
	}
	var early []string
	for i := range 3 {
		ev := newEvent(t, fmt.Sprintf("early-%d", i), 0)
		if err := outbox.Write(ctx, db.Pool, ev); err != nil {
			t.Fatal(err)
		}
		early = append(early, ev.ID)
	}
	drain(t, relay)
	if got := published(t, db.Pool); len(got) != 3 {
		t.Fatalf("published %v before the late commit, want the 3 early events", got)
	}
	var lateSeq, maxSeq int64
	_ = late.QueryRow(ctx, `SELECT seq FROM outbox_events WHERE id = $1`, lateEv.ID).Scan(&lateSeq)
	_ = db.Pool.QueryRow(ctx, `SELECT max(seq) FROM outbox_events`).Scan(&maxSeq)
	if lateSeq >= maxSeq {
		t.Fatalf("the late event's seq %d is not below the published ones (max %d): the test proves nothing", lateSeq, maxSeq)
	}
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	drain(t, relay)
	got := published(t, db.Pool)
	if len(got) != 4 || got[3] != lateEv.ID {
		t.Fatalf("published %v, want the 3 early events then the late one %s", got, lateEv.ID)
	}
	recs := kafkatest.Read(t, broker, events.OrderStatusUpdated, 4, 20*time.Second)
	checkDelivery(t, recs, map[string]bool{lateEv.ID: true, early[0]: true, early[1]: true, early[2]: true})
	st, err := outbox.ReadStats(ctx, db.Pool)
	if err != nil || st.Pending != 0 || st.Published != 4 {
		t.Fatalf("stats %+v (%v), want 4 published and none pending", st, err)
	}
}

// TestAggregateOrderFollowsCommitsNotTransactionIDs: a transaction that got
// its id first but wrote an order's event after another transaction
// committed the order's previous event must not overtake it. Ordering by
// transaction id would; the relay orders by commit, then seq.
func TestAggregateOrderFollowsCommitsNotTransactionIDs(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	broker := kafkatest.New(t)
	producer := newProducer(t, broker)
	ctx := context.Background()

	second, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Rollback(ctx)
	var secondXid, firstXid uint64
	// The second transaction takes its id now (by writing an unrelated
	// event), then writes the order's event later.
	if err := outbox.Write(ctx, second, newEvent(t, "unrelated", 0)); err != nil {
		t.Fatal(err)
	}
	_ = second.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&secondXid)

	first := newEvent(t, "order-1", 0)
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&firstXid); err != nil {
			return err
		}
		return outbox.Write(ctx, tx, first)
	})
	if err != nil {
		t.Fatal(err)
	}
	next := newEvent(t, "order-1", 1)
	if err := outbox.Write(ctx, second, next); err != nil {
		t.Fatal(err)
	}
	if err := second.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if secondXid >= firstXid {
		t.Fatalf("transaction ids %d then %d: the test needs the later writer to hold the lower id", firstXid, secondXid)
	}
	drain(t, outbox.NewRelay(db.Pool, producer, outbox.RelayConfig{Logger: quiet}))
	recs := kafkatest.Read(t, broker, events.OrderStatusUpdated, 3, 20*time.Second)
	checkDelivery(t, recs, map[string]bool{first.ID: true, next.ID: true})
}

// TestCursorAheadOfTheServerIsRefused: a cursor naming transactions the
// server has not reached (a database restored into another cluster) would
// take new events for published ones; the relay refuses it, and the reset
// docs/fault-tolerance.md gives publishes every unpublished event.
func TestCursorAheadOfTheServerIsRefused(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	broker := kafkatest.New(t)
	ctx := context.Background()
	relay := outbox.NewRelay(db.Pool, newProducer(t, broker), outbox.RelayConfig{Logger: quiet})
	ev := newEvent(t, "restored", 0)
	if err := outbox.Write(ctx, db.Pool, ev); err != nil {
		t.Fatal(err)
	}
	// As if copied from a cluster whose transaction ids ran far ahead.
	if _, err := db.Pool.Exec(ctx, `UPDATE outbox_relay SET snap_a = '9000000000:9000000000:', snap_b = '9000000000:9000000000:'`); err != nil {
		t.Fatal(err)
	}
	if _, err := relay.PublishBatch(ctx); !errors.Is(err, outbox.ErrCursorAhead) {
		t.Fatalf("PublishBatch with a cursor ahead of the server: %v, want ErrCursorAhead", err)
	}
	// The documented reset.
	if _, err := db.Pool.Exec(ctx, `BEGIN;
		INSERT INTO outbox_retries (seq, aggregate_id, next_attempt_at)
		SELECT seq, aggregate_id, now() FROM outbox_events o
		WHERE NOT failed AND NOT EXISTS (SELECT FROM outbox_published p WHERE p.seq = o.seq)
		ON CONFLICT (seq) DO NOTHING;
		UPDATE outbox_relay SET snap_a = pg_current_snapshot(), snap_b = pg_current_snapshot(), last_seq = 0;
		COMMIT;`); err != nil {
		t.Fatal(err)
	}
	drain(t, relay)
	if got := published(t, db.Pool); len(got) != 1 || got[0] != ev.ID {
		t.Fatalf("published %v after the reset, want %s", got, ev.ID)
	}
}
