package order_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestServiceWakesTheRelayAfterWritingEvents: the service wakes the relay
// of its process after each commit that wrote outbox events, and only then:
// not for an update that changed nothing, a rolled-back one, an idempotent
// replay, or under the cdc strategy (no outbox events for orders).
func TestServiceWakesTheRelayAfterWritingEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := postgrestest.New(t)
	var wakes atomic.Int64
	svc := order.NewService(db.Pool, order.WithRelayWake(func() { wakes.Add(1) }))
	create := func(svc *order.Service, key string) order.CreateResult {
		t.Helper()
		res, err := svc.Create(ctx, order.CreateRequest{Actor: "api:alice", IdempotencyKey: key, Scope: "alice", Fingerprint: []byte("body"),
			Order: order.NewOrder{CustomerID: "cust-1", Items: []order.NewItem{{SKU: "SKU-1", Quantity: 1, UnitPrice: 100}}}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	expect := func(step string, want int64) {
		t.Helper()
		if got := wakes.Load(); got != want {
			t.Fatalf("%s: relay woken %d times in all, want %d", step, got, want)
		}
	}

	id := create(svc, "k-1").Order.ID
	expect("create", 1)
	create(svc, "k-1")
	expect("idempotent replay", 1)
	if _, err := svc.Update(ctx, id, func(o *order.Order) error {
		_, err := o.Transition(order.StatusConfirmed, "", "api:ops", svc.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	expect("status change", 2)
	if _, err := svc.Update(ctx, id, func(*order.Order) error { return nil }); err != nil {
		t.Fatal(err)
	}
	expect("update that changed nothing", 2)
	boom := errors.New("boom")
	if _, err := svc.Update(ctx, id, func(o *order.Order) error {
		if _, err := o.Transition(order.StatusProcessing, "", "api:ops", svc.Now()); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("rolled-back update: %v", err)
	}
	expect("rolled-back update", 2)

	cdc := order.NewService(db.Pool, order.WithChangeStream(), order.WithRelayWake(func() { wakes.Add(1) }))
	create(cdc, "")
	expect("create under the cdc strategy", 2)
}
