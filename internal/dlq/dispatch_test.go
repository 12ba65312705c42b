package dlq

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/lease"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestAlertsAreRaisedOnceAcrossProcesses: two processes run the alert
// dispatcher under the dlq-alerts lease; dead letters recorded (by any
// process's monitor) are alerted exactly once, by the holder, and the other
// process takes over when the holder stops, alerting what was recorded
// meanwhile — nothing twice, nothing missed. Rows recorded before this
// feature (marked by the migration) are not alerted again.
func TestAlertsAreRaisedOnceAcrossProcesses(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	hook := newWebhook(t)
	store := NewStore(db.Pool)
	ctx := context.Background()
	insert := func(i int) int64 {
		t.Helper()
		// Distinct errors (words, which Normalise keeps), so the
		// per-fingerprint rate limit lets each through.
		const letters = "ghijklmnopqrstuvwxyz"
		word := string([]byte{letters[i%20], letters[(i/20)%20]})
		m := Message{Topic: "ORDER_CREATED.dlq", Partition: 0, Offset: int64(i), OriginalTopic: "ORDER_CREATED",
			ExceptionClass: "trackops.Error", ExceptionMessage: "failure of kind " + word}
		m.Fingerprint, m.ErrorPattern = Fingerprint(m.ExceptionClass, m.ExceptionMessage)
		id, _, err := store.Insert(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	old := insert(1000)
	if _, err := db.Pool.Exec(ctx, `UPDATE dlq_messages SET alerted_at = now() WHERE id = $1`, old); err != nil {
		t.Fatal(err)
	}

	type proc struct {
		lease  *lease.Lease
		cancel context.CancelFunc
		done   chan struct{}
	}
	start := func(name string) proc {
		quiet := slog.New(slog.DiscardHandler)
		d := NewAlertDispatcher(db.Pool, NewAlerter(AlertConfig{WebhookURL: hook.srv.URL, Interval: time.Hour, Logger: quiet}),
			DispatcherConfig{Interval: 50 * time.Millisecond, Logger: quiet})
		l := lease.New(db.URL, "dlq-alerts", lease.Options{Identity: name, RetryInterval: 100 * time.Millisecond,
			CheckInterval: 100 * time.Millisecond, Logger: quiet})
		pctx, cancel := context.WithCancel(ctx)
		p := proc{lease: l, cancel: cancel, done: make(chan struct{})}
		go func() { defer close(p.done); _ = l.Run(pctx, d.Run) }()
		t.Cleanup(func() { cancel(); <-p.done })
		return p
	}
	ps := []proc{start("p1"), start("p2")}
	var holder int
	eventually(t, "one process holds the lease", func() bool {
		switch {
		case ps[0].lease.Held() && !ps[1].lease.Held():
			holder = 0
		case ps[1].lease.Held() && !ps[0].lease.Held():
			holder = 1
		default:
			return false
		}
		return true
	})
	want := map[int64]bool{}
	for i := range 20 {
		want[insert(i)] = true
	}
	alertedOnce := func() bool {
		seen := map[int64]int{}
		for _, a := range hook.got() {
			seen[a.DLQID]++
		}
		for id := range want {
			if seen[id] != 1 {
				return false
			}
		}
		return true
	}
	eventually(t, "each dead letter alerted", alertedOnce)

	// The holder stops (a process shutting down); the other takes over.
	ps[holder].cancel()
	<-ps[holder].done
	other := ps[1-holder]
	eventually(t, "the other process takes the lease", other.lease.Held)
	for i := 20; i < 40; i++ {
		want[insert(i)] = true
	}
	eventually(t, "each dead letter alerted after the hand-over", alertedOnce)
	seen := map[int64]int{}
	for _, a := range hook.got() {
		seen[a.DLQID]++
		if seen[a.DLQID] > 1 {
			t.Errorf("dead letter %d alerted %d times", a.DLQID, seen[a.DLQID])
		}
		if !want[a.DLQID] {
			t.Errorf("dead letter %d alerted, but it was recorded (and alerted) before", a.DLQID)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("%d dead letters alerted, want %d", len(seen), len(want))
	}
}
