package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestWritersNotifyOnlyWhileTheRelayListens: an outbox insert notifies
// the relay only while outbox_relay.listening is set (a notifying commit
// serialises with every other one); a relay clears it while rows keep
// coming, polls meanwhile, and sets it again once idle, so an event written
// to an idle outbox still wakes it at once.
func TestWritersNotifyOnlyWhileTheRelayListens(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+outbox.NotifyChannel); err != nil {
		t.Fatal(err)
	}
	notified := func(within time.Duration) bool {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, within)
		defer cancel()
		_, err := conn.Conn().WaitForNotification(wctx)
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
		return err == nil
	}
	setListening := func(on bool) {
		t.Helper()
		if _, err := db.Pool.Exec(ctx, `UPDATE outbox_relay SET listening = $1`, on); err != nil {
			t.Fatal(err)
		}
	}

	setListening(false)
	writeEvents(t, db.Pool, 1, 1)
	if notified(300 * time.Millisecond) {
		t.Fatal("an insert notified while the relay was not listening")
	}
	setListening(true)
	writeEvents(t, db.Pool, 1, 1)
	if !notified(5 * time.Second) {
		t.Fatal("an insert did not notify while the relay was listening")
	}

	// A relay: busy while a backlog drains (listening cleared), listening
	// again once idle; an event then written reaches Kafka.
	broker := kafkatest.New(t)
	producer := newProducer(t, broker)
	ids := writeEvents(t, db.Pool, 50, 40) // 2,000 events behind the two above
	rctx, cancel := context.WithCancel(ctx)
	relay := outbox.NewRelay(db.Pool, producer, outbox.RelayConfig{BatchSize: 100, PollInterval: time.Hour, Logger: quiet})
	done := make(chan struct{})
	go func() { _ = relay.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	sawBusy := false
	deadline := time.Now().Add(30 * time.Second)
	for {
		var listening bool
		var pending int
		if err := db.Pool.QueryRow(ctx, `SELECT (SELECT listening FROM outbox_relay), (SELECT count(*) FROM outbox_pending)`).
			Scan(&listening, &pending); err != nil {
			t.Fatal(err)
		}
		sawBusy = sawBusy || !listening
		if pending == 0 && listening && sawBusy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay never went busy and back to listening (saw busy %v, listening %v, %d pending)", sawBusy, listening, pending)
		}
		time.Sleep(2 * time.Millisecond)
	}
	// Past the short polls that follow (a tenth of a second), with a poll
	// interval of an hour: only the notification can wake it now.
	time.Sleep(300 * time.Millisecond)
	late := writeEvents(t, db.Pool, 1, 1)
	for id := range late {
		ids[id] = true
	}
	recs := kafkatest.Read(t, broker, events.OrderStatusUpdated, len(ids)+2, 20*time.Second)
	for _, rec := range recs {
		delete(ids, kafka.Header(rec, events.HeaderEventID))
	}
	if len(ids) > 0 {
		t.Fatalf("%d of the events never reached Kafka", len(ids))
	}
}

// TestRelayStopsListeningWhenNotifyingCommitsQueue stands in for a slow
// disk: every writer's commit holds the cluster-wide NOTIFY lock for 20 ms
// (commit_delay), so while writers notify, at most 50 of their commits a
// second get through — far below the rate at which the relay stops
// listening on its own. The relay must see the queue at the lock and stop
// listening, and listen again once the writers stop; nothing is lost.
func TestRelayStopsListeningWhenNotifyingCommitsQueue(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	broker := kafkatest.New(t)
	rctx, cancel := context.WithCancel(ctx)
	relay := outbox.NewRelay(db.Pool, newProducer(t, broker), outbox.RelayConfig{BatchSize: 100, PollInterval: time.Hour, Logger: quiet})
	done := make(chan struct{})
	go func() { _ = relay.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()

	// becomes waits until outbox_relay.listening is want.
	becomes := func(what string, want bool) {
		t.Helper()
		waitFor(t, what, func() int32 {
			var on bool
			if err := db.Pool.QueryRow(ctx, `SELECT listening FROM outbox_relay`).Scan(&on); err != nil {
				t.Fatal(err)
			}
			if on == want {
				return 1
			}
			return 0
		})
	}
	// A relay starts busy, not listening, and listens once calm.
	becomes("the relay to start, not listening", false)
	becomes("the relay to listen", true)

	const writers = 4
	wctx, stopWriting := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[string]bool{}
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			conn, err := outbox.ConnectWithSlowCommits(ctx, db.URL, 20*time.Millisecond)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(ctx)
			for seq := 0; wctx.Err() == nil; seq++ {
				ev, err := events.New(events.OrderStatusUpdated, events.AggregateOrder, fmt.Sprintf("slow-%d", w), seqData{Seq: seq}, "")
				if err == nil {
					err = postgres.WithTx(ctx, conn, func(tx pgx.Tx) error { return outbox.Write(ctx, tx, ev) })
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				ids[ev.ID] = true
				mu.Unlock()
			}
		})
	}
	becomes("the relay to stop listening while writers queue for the NOTIFY lock", false)
	stopWriting()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	becomes("the relay to listen again once the writers stopped", true)

	recs := kafkatest.Read(t, broker, events.OrderStatusUpdated, len(ids), 20*time.Second)
	for _, rec := range recs {
		delete(ids, kafka.Header(rec, events.HeaderEventID))
	}
	if len(ids) > 0 {
		t.Fatalf("%d of the events never reached Kafka", len(ids))
	}
}
