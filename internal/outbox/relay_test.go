package outbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

var quiet = slog.New(slog.DiscardHandler)

// seqData numbers each aggregate's events so tests can check their order.
type seqData struct {
	Seq int `json:"seq"`
}

// writeEvents writes perAggregate events for each of aggregates aggregates,
// one transaction per event, in per-aggregate order.
func writeEvents(t testing.TB, pool *pgxpool.Pool, aggregates, perAggregate int) map[string]bool {
	t.Helper()
	ctx := context.Background()
	ids := map[string]bool{}
	for seq := range perAggregate {
		err := postgres.WithTx(ctx, pool, func(tx pgx.Tx) error {
			var evs []events.Event
			for a := range aggregates {
				ev, err := events.New(events.OrderStatusUpdated, events.AggregateOrder, fmt.Sprintf("agg-%03d", a), seqData{Seq: seq}, "")
				if err != nil {
					return err
				}
				evs = append(evs, ev)
				ids[ev.ID] = true
			}
			return outbox.Write(ctx, tx, evs...)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

func newProducer(t testing.TB, b *kafka.Embedded) *kgo.Client {
	t.Helper()
	p, err := kafka.NewProducer(kafkatest.Options(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if err := kafka.EnsureTopics(context.Background(), p, 3, events.AllTypes...); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkDelivery asserts every written event is on Kafka and each aggregate's
// events arrived in write order (by first occurrence; duplicates allowed).
func checkDelivery(t *testing.T, recs []*kgo.Record, ids map[string]bool) {
	t.Helper()
	got := map[string]bool{}
	lastSeq := map[string]int{}
	for _, r := range recs {
		env, err := events.Decode(r.Value)
		if err != nil {
			t.Fatalf("record is not a CloudEvent: %v", err)
		}
		if string(r.Key) != env.Subject || kafka.Header(r, events.HeaderEventID) != env.ID {
			t.Fatalf("key %q / event_id header %q do not match event %s about %s", r.Key, kafka.Header(r, events.HeaderEventID), env.ID, env.Subject)
		}
		if got[env.ID] {
			continue // an at-least-once duplicate
		}
		got[env.ID] = true
		var d seqData
		if err := env.DecodeData(&d); err != nil {
			t.Fatal(err)
		}
		if prev, ok := lastSeq[env.Subject]; ok && d.Seq != prev+1 {
			t.Fatalf("aggregate %s: event seq %d arrived after %d", env.Subject, d.Seq, prev)
		}
		lastSeq[env.Subject] = d.Seq
	}
	for id := range ids {
		if !got[id] {
			t.Fatalf("event %s never reached Kafka (%d of %d arrived)", id, len(got), len(ids))
		}
	}
}

func waitDrained(t *testing.T, pool *pgxpool.Pool, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := outbox.ReadStats(context.Background(), pool)
		if err != nil {
			t.Fatal(err)
		}
		if st.Pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox not drained: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRelaysRacingOverOneOutbox(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	broker := kafkatest.New(t)
	producer := newProducer(t, broker)
	ids := writeEvents(t, db.Pool, 40, 25) // 1,000 events

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		r := outbox.NewRelay(db.Pool, producer, outbox.RelayConfig{BatchSize: 37, PollInterval: 20 * time.Millisecond, Logger: quiet})
		wg.Go(func() { _ = r.Run(ctx) })
	}
	waitDrained(t, db.Pool, 60*time.Second)
	cancel()
	wg.Wait()

	recs := kafkatest.Read(t, broker, events.OrderStatusUpdated, len(ids), 20*time.Second)
	checkDelivery(t, recs, ids)
	var unpublished int
	_ = db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_events WHERE NOT processed OR published_at IS NULL`).Scan(&unpublished)
	if unpublished != 0 {
		t.Fatalf("%d rows not marked published", unpublished)
	}
}

func TestRelayWokenByNotify(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	broker := kafkatest.New(t)
	producer := newProducer(t, broker)
	// A poll interval far beyond the test's patience: only NOTIFY can wake it.
	r := outbox.NewRelay(db.Pool, producer, outbox.RelayConfig{PollInterval: time.Hour, Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	select {
	case <-r.Listening():
	case <-time.After(20 * time.Second):
		t.Fatal("the relay never started listening")
	}
	ids := writeEvents(t, db.Pool, 1, 3)
	recs := kafkatest.Read(t, broker, events.OrderStatusUpdated, 3, 20*time.Second)
	checkDelivery(t, recs, ids)
}

// TestRelayDiesMidBatch kills the relay's database session while a batch is
// published (Kafka slowed down so the batch is surely in flight): the claim
// rolls back, and a fresh relay publishes everything, duplicates allowed.
func TestRelayDiesMidBatch(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	broker := kafkatest.New(t)
	producer := newProducer(t, broker)
	ids := writeEvents(t, db.Pool, 10, 20)

	// Slow every produce down so a batch is in flight long enough to be cut.
	cluster := broker.Cluster()
	cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		time.Sleep(100 * time.Millisecond)
		return nil, nil, false
	})

	relayPool, err := pgxpool.New(context.Background(), db.URL+"&application_name=doomed-relay")
	if err != nil {
		t.Fatal(err)
	}
	defer relayPool.Close()
	r := outbox.NewRelay(relayPool, producer, outbox.RelayConfig{BatchSize: 50, Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()

	// Wait until the relay holds a claim open, then terminate its sessions.
	deadline := time.Now().Add(10 * time.Second)
	killed := false
	for time.Now().Before(deadline) && !killed {
		var n int
		_ = db.Pool.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = 'doomed-relay' AND xact_start IS NOT NULL AND datname = current_database()`).Scan(&n)
		killed = n > 0
	}
	cancel()
	<-done
	if !killed {
		t.Log("relay finished before it could be killed mid-batch; checking delivery anyway")
	}

	fresh := outbox.NewRelay(db.Pool, producer, outbox.RelayConfig{BatchSize: 50, PollInterval: 20 * time.Millisecond, Logger: quiet})
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan struct{})
	go func() { _ = fresh.Run(ctx2); close(done2) }()
	waitDrained(t, db.Pool, 30*time.Second)
	cancel2()
	<-done2
	recs := kafkatest.Read(t, broker, events.OrderStatusUpdated, len(ids), 20*time.Second)
	checkDelivery(t, recs, ids)
}

func TestWriteRollsBackWithTransaction(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	ev, _ := events.New(events.OrderCreated, events.AggregateOrder, "x", map[string]int{"a": 1}, "corr-1")
	err := postgres.WithTx(ctx, db.Pool, func(tx pgx.Tx) error {
		if err := outbox.Write(ctx, tx, ev); err != nil {
			return err
		}
		return fmt.Errorf("business rule failed")
	})
	if err == nil {
		t.Fatal("want the transaction's error")
	}
	st, _ := outbox.ReadStats(ctx, db.Pool)
	if st.Pending != 0 {
		t.Fatalf("a rolled-back event is pending: %+v", st)
	}
	if err := postgres.WithTx(ctx, db.Pool, func(tx pgx.Tx) error { return outbox.Write(ctx, tx, ev) }); err != nil {
		t.Fatal(err)
	}
	var headers []byte
	_ = db.Pool.QueryRow(ctx, `SELECT headers FROM outbox_events WHERE id = $1`, ev.ID).Scan(&headers)
	var h map[string]string
	_ = json.Unmarshal(headers, &h)
	if h[events.HeaderCorrelationID] != "corr-1" || h[events.HeaderEventType] != events.OrderCreated || h[events.HeaderEventID] != ev.ID {
		t.Fatalf("stored headers %s", headers)
	}
}

func TestPruneRemovesOnlyOldPublishedEvents(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	writeEvents(t, db.Pool, 3, 2) // 6 events
	// Two published long ago, one published just now, three pending.
	_, err := db.Pool.Exec(ctx, `UPDATE outbox_events SET processed = true, published_at = now() - interval '2 days'
		WHERE seq IN (SELECT seq FROM outbox_events ORDER BY seq LIMIT 2)`)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = db.Pool.Exec(ctx, `UPDATE outbox_events SET processed = true, published_at = now()
		WHERE seq = (SELECT seq FROM outbox_events WHERE NOT processed ORDER BY seq LIMIT 1)`)
	r := outbox.NewRelay(db.Pool, nil, outbox.RelayConfig{Retention: 24 * time.Hour, Logger: quiet})
	n, err := r.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := outbox.ReadStats(ctx, db.Pool)
	if n != 2 || st.Published != 1 || st.Pending != 3 {
		t.Fatalf("pruned %d; stats %+v; want 2 pruned, 1 published and 3 pending left", n, st)
	}
}
