package inbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/inbox"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

func TestClaimOnceAndPrune(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	claim := func(consumer, id string) bool {
		t.Helper()
		first, err := inbox.Claim(ctx, db.Pool, consumer, id)
		if err != nil {
			t.Fatal(err)
		}
		return first
	}
	if !claim("inventory", "e1") || claim("inventory", "e1") {
		t.Fatal("an event must be claimed once per consumer")
	}
	if !claim("saga", "e1") || !claim("inventory", "e2") {
		t.Fatal("other consumers and other events are separate claims")
	}
	// e1 of inventory is old; everything else is recent.
	if _, err := db.Pool.Exec(ctx, `UPDATE processed_events SET processed_at = now() - interval '30 days'
		WHERE consumer = 'inventory' AND event_id = 'e1'`); err != nil {
		t.Fatal(err)
	}
	n, err := inbox.Prune(ctx, db.Pool, 14*24*time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("pruned %d (%v), want 1", n, err)
	}
	if claim("saga", "e1") || claim("inventory", "e2") {
		t.Fatal("recent claims must survive pruning")
	}
}

func TestClaimRecordsWhereTheEventWasHandled(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	at := time.Date(2026, 3, 4, 5, 6, 7, 8000, time.UTC)
	inKafka := events.WithDelivery(ctx, events.Delivery{Group: "g-inv", Topic: "ORDER_CREATED", Partition: 2, Offset: 41,
		Timestamp: at, Attempt: 3})
	if first, err := inbox.Claim(inKafka, db.Pool, "inventory", "e1"); err != nil || !first {
		t.Fatalf("claim: %v %v", first, err)
	}
	// The pipelined form records the same.
	b := &pgx.Batch{}
	inbox.QueueClaim(events.WithDelivery(ctx, events.Delivery{Group: "g-saga", Topic: "INVENTORY_RESERVED", Offset: 7, Attempt: 1}),
		b, "saga", "e2")
	br := db.Pool.SendBatch(ctx, b)
	if first, err := inbox.Claimed(br); err != nil || !first {
		t.Fatalf("queued claim: %v %v", first, err)
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}
	// Outside a consumer the delivery columns stay empty.
	if _, err := inbox.Claim(ctx, db.Pool, "saga", "e1"); err != nil {
		t.Fatal(err)
	}
	if _, err := inbox.Claim(ctx, db.Pool, "other", "unrelated"); err != nil {
		t.Fatal(err)
	}

	hs, err := inbox.Handlings(ctx, db.Pool, []string{"e1", "e2", "missing"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]inbox.Handling{}
	for _, h := range hs {
		got[h.Consumer+"/"+h.EventID] = h
	}
	if len(hs) != 3 {
		t.Fatalf("handlings = %+v, want inventory/e1, saga/e2 and saga/e1", hs)
	}
	inv := got["inventory/e1"]
	if inv.Group == nil || *inv.Group != "g-inv" || *inv.Topic != "ORDER_CREATED" || *inv.Partition != 2 ||
		*inv.Offset != 41 || *inv.Attempts != 3 || !inv.RecordTimestamp.Equal(at) || inv.HandledAt.IsZero() {
		t.Errorf("inventory/e1 = %+v", inv)
	}
	if s := got["saga/e2"]; s.Topic == nil || *s.Topic != "INVENTORY_RESERVED" || *s.Offset != 7 || s.RecordTimestamp != nil {
		t.Errorf("saga/e2 = %+v", s)
	}
	if s := got["saga/e1"]; s.Topic != nil || s.Attempts != nil {
		t.Errorf("a claim outside a consumer recorded a delivery: %+v", s)
	}
}

// TestPrunerPrunesEveryInterval: the pruner run by the relay role deletes
// old claims round after round until it is stopped.
func TestPrunerPrunesEveryInterval(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- inbox.Pruner{DB: db.Pool, Retention: 24 * time.Hour, Interval: 10 * time.Millisecond}.Run(ctx)
	}()
	remaining := func() int {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM processed_events WHERE consumer = 'old'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for round := range 2 {
		id := "e" + string(rune('1'+round))
		if _, err := inbox.Claim(ctx, db.Pool, "old", id); err != nil {
			t.Fatal(err)
		}
		if _, err := inbox.Claim(ctx, db.Pool, "recent", id); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Pool.Exec(ctx, `UPDATE processed_events SET processed_at = now() - interval '2 days' WHERE consumer = 'old'`); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second) // a deadlock guard, not a speed assertion
		for remaining() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: old claims never pruned", round)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var recent int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM processed_events WHERE consumer = 'recent'`).Scan(&recent); err != nil || recent != 2 {
		t.Fatalf("recent claims: %d (%v), want both kept", recent, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
