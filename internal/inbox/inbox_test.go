package inbox_test

import (
	"context"
	"testing"
	"time"

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
