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

// waitDrained waits until no outbox event is pending and returns the
// outbox's statistics then.
func waitDrained(t *testing.T, pool *pgxpool.Pool, timeout time.Duration) outbox.Stats {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := outbox.ReadStats(context.Background(), pool)
		if err != nil {
			t.Fatal(err)
		}
		if st.Pending == 0 {
			return st
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
	_ = db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_status WHERE NOT processed OR published_at IS NULL`).Scan(&unpublished)
	if unpublished != 0 {
		t.Fatalf("%d rows not marked published", unpublished)
	}
	// The seed's columns tell the same: processed, published when Kafka
	// acknowledged.
	var untrue int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_events o LEFT JOIN outbox_published p ON p.seq = o.seq
		WHERE NOT o.processed OR o.published_at IS DISTINCT FROM p.acked_at`).Scan(&untrue); err != nil {
		t.Fatal(err)
	}
	if untrue != 0 {
		t.Fatalf("%d outbox_events rows whose processed or published_at disagree with the ledger", untrue)
	}
}

// lockHolder returns the backend holding the relay's cursor lock, or 0.
func lockHolder(t *testing.T, pool *pgxpool.Pool) int32 {
	t.Helper()
	var pid int32
	err := pool.QueryRow(context.Background(), `SELECT coalesce((SELECT pid FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 1
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND classid::bigint = $1 AND objid::bigint = $2), 0)`, outbox.LockKey>>32, outbox.LockKey&0xffffffff).Scan(&pid)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestRelaysTakeOverWhileOrdersAreWritten: four relays over one outbox while
// eight writers commit thousands of events concurrently (each order's events
// in sequence, several orders per transaction); the relay holding the
// cursor is killed twice (its lock session terminated) and another takes
// over. Every event reaches Kafka, each order's in the order written, and
// each is recorded published exactly once.
func TestRelaysTakeOverWhileOrdersAreWritten(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	broker := kafkatest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var relays sync.WaitGroup
	defer relays.Wait()
	defer cancel()
	for range 4 {
		r := outbox.NewRelay(db.Pool, newProducer(t, broker), outbox.RelayConfig{BatchSize: 100, Workers: 2, PollInterval: 50 * time.Millisecond, Logger: quiet})
		relays.Go(func() { _ = r.Run(ctx) })
	}
	var epoch0 int64
	_ = db.Pool.QueryRow(ctx, `SELECT epoch FROM outbox_relay`).Scan(&epoch0)

	const writers, ordersPerWriter, eventsPerOrder = 8, 10, 50 // 4,000 events
	var (
		mu      sync.Mutex
		ids     = map[string]bool{}
		written sync.WaitGroup
		rounds  = make(chan int, writers*eventsPerOrder)
	)
	for w := range writers {
		written.Go(func() {
			for seq := range eventsPerOrder {
				// One transaction per order and step, some with two orders.
				for o := 0; o < ordersPerWriter; {
					err := postgres.WithTx(ctx, db.Pool, func(tx pgx.Tx) error {
						var evs []events.Event
						for k := 0; k < 1+o%2 && o+k < ordersPerWriter; k++ {
							ev, err := events.New(events.OrderStatusUpdated, events.AggregateOrder, fmt.Sprintf("w%d-o%d", w, o+k), seqData{Seq: seq}, "")
							if err != nil {
								return err
							}
							evs = append(evs, ev)
						}
						if err := outbox.Write(ctx, tx, evs...); err != nil {
							return err
						}
						mu.Lock()
						for _, ev := range evs {
							ids[ev.ID] = true
						}
						mu.Unlock()
						return nil
					})
					if err != nil {
						t.Error(err)
						return
					}
					o += 1 + o%2
				}
				rounds <- seq
			}
		})
	}
	// Kill the cursor's holder after a third and after two thirds of the
	// writing; each time another relay must take the cursor.
	done := 0
	for _, at := range []int{writers * eventsPerOrder / 3, 2 * writers * eventsPerOrder / 3} {
		for done < at {
			<-rounds
			done++
		}
		holder := waitFor(t, "a relay to hold the cursor", func() int32 { return lockHolder(t, db.Pool) })
		if _, err := db.Pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, holder); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "another relay to take the cursor", func() int32 {
			if pid := lockHolder(t, db.Pool); pid != holder {
				return pid
			}
			return 0
		})
	}
	written.Wait()
	waitDrained(t, db.Pool, 90*time.Second)

	recs := kafkatest.Read(t, broker, events.OrderStatusUpdated, len(ids), 30*time.Second)
	checkDelivery(t, recs, ids)
	var epoch, ledger, distinct int64
	_ = db.Pool.QueryRow(ctx, `SELECT (SELECT epoch FROM outbox_relay), (SELECT count(*) FROM outbox_published),
		(SELECT count(DISTINCT seq) FROM outbox_published)`).Scan(&epoch, &ledger, &distinct)
	if int(ledger) != len(ids) || distinct != ledger {
		t.Fatalf("ledger holds %d rows (%d distinct) for %d events", ledger, distinct, len(ids))
	}
	if epoch < epoch0+2 {
		t.Fatalf("cursor epoch went from %d to %d: want two takeovers", epoch0, epoch)
	}
	t.Logf("%d events, %d records in Kafka (%d published again after a takeover), epoch %d -> %d",
		len(ids), len(recs), len(recs)-len(ids), epoch0, epoch)
}

// waitFor polls f until it returns non-zero, for at most 30 s.
func waitFor(t *testing.T, what string, f func() int32) int32 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if v := f(); v != 0 {
			return v
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
	return 0
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
	// A first event, published by the relay's first look or a
	// notification; once it is out the relay is idle, and only
	// notifications can bring the next ones.
	ids := writeEvents(t, db.Pool, 1, 1)
	waitDrained(t, db.Pool, 20*time.Second)
	for i := range 3 {
		ev := newEvent(t, "later", i)
		if err := outbox.Write(context.Background(), db.Pool, ev); err != nil {
			t.Fatal(err)
		}
		ids[ev.ID] = true
	}
	recs := kafkatest.Read(t, broker, events.OrderStatusUpdated, 4, 20*time.Second)
	checkDelivery(t, recs, ids)
}

// TestRelayDiesMidBatch kills every database session of the relay holding
// the cursor while a batch is on its way to Kafka (produce slowed down so it
// surely is): a standby relay takes the cursor at once and publishes
// everything the first had not recorded, duplicates allowed, order kept,
// each event recorded once.
func TestRelayDiesMidBatch(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	broker := kafkatest.New(t)
	producer := newProducer(t, broker)
	ids := writeEvents(t, db.Pool, 10, 20)

	// Hold every produce until the relay's sessions are killed, so its first
	// batch is surely in flight when it dies however slow the machine, and
	// say when the first one arrives. SleepControl leaves the broker serving
	// everyone else meanwhile.
	cluster := broker.Cluster()
	inFlight := make(chan struct{})
	release := make(chan struct{})
	var once, releaseOnce sync.Once
	releaseProduces := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseProduces)
	cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		once.Do(func() { close(inFlight) })
		cluster.SleepControl(func() { <-release })
		return nil, nil, false
	})

	relayPool, err := pgxpool.New(context.Background(), db.URL+"&application_name=doomed-relay")
	if err != nil {
		t.Fatal(err)
	}
	defer relayPool.Close()
	var epoch0 int64
	_ = db.Pool.QueryRow(context.Background(), `SELECT epoch FROM outbox_relay`).Scan(&epoch0)
	doomed := outbox.NewRelay(relayPool, producer, outbox.RelayConfig{BatchSize: 50, Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	doomedDone := make(chan struct{})
	go func() { _ = doomed.Run(ctx); close(doomedDone) }()
	<-inFlight
	if lockHolder(t, db.Pool) == 0 {
		t.Fatal("a batch is in flight but no relay holds the cursor")
	}

	standby := outbox.NewRelay(db.Pool, newProducer(t, broker), outbox.RelayConfig{BatchSize: 50, PollInterval: 20 * time.Millisecond, Logger: quiet})
	ctx2, cancel2 := context.WithCancel(context.Background())
	standbyDone := make(chan struct{})
	go func() { _ = standby.Run(ctx2); close(standbyDone) }()
	var killed int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'doomed-relay' AND datname = current_database()`).Scan(&killed); err != nil || killed == 0 {
		t.Fatalf("killed %d sessions of the relay (%v)", killed, err)
	}
	cancel() // the doomed relay must not take the cursor again
	releaseProduces()
	<-doomedDone
	waitDrained(t, db.Pool, 60*time.Second)
	cancel2()
	<-standbyDone

	recs := kafkatest.Read(t, broker, events.OrderStatusUpdated, len(ids), 20*time.Second)
	checkDelivery(t, recs, ids)
	var epoch, ledger, distinct int64
	_ = db.Pool.QueryRow(context.Background(), `SELECT (SELECT epoch FROM outbox_relay), (SELECT count(*) FROM outbox_published),
		(SELECT count(DISTINCT seq) FROM outbox_published)`).Scan(&epoch, &ledger, &distinct)
	if int(ledger) != len(ids) || distinct != ledger || epoch < epoch0+2 {
		t.Fatalf("ledger %d rows (%d distinct) for %d events, epoch %d -> %d: want each event once and a takeover", ledger, distinct, len(ids), epoch0, epoch)
	}
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
	broker := kafkatest.New(t)
	producer := newProducer(t, broker)
	writeEvents(t, db.Pool, 3, 2) // 6 events
	// Three published, two of them long ago; three pending.
	if n, err := outbox.NewRelay(db.Pool, producer, outbox.RelayConfig{BatchSize: 3, Logger: quiet}).PublishBatch(ctx); err != nil || n != 3 {
		t.Fatalf("publish: n=%d err=%v", n, err)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE outbox_published SET published_at = now() - interval '2 days'
		WHERE seq IN (SELECT seq FROM outbox_published ORDER BY seq LIMIT 2)`); err != nil {
		t.Fatal(err)
	}
	r := outbox.NewRelay(db.Pool, nil, outbox.RelayConfig{Retention: 24 * time.Hour, Logger: quiet})
	n, err := r.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := outbox.ReadStats(ctx, db.Pool)
	var events int
	_ = db.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox_events`).Scan(&events)
	if n != 2 || st.Published != 1 || st.Pending != 3 || events != 4 {
		t.Fatalf("pruned %d; stats %+v; %d events left; want 2 pruned, 1 published and 3 pending left", n, st, events)
	}
}
