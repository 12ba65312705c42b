package order_test

import (
	"context"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/cache/cachetest"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestCacheConsumerRefreshesTheCacheOncePerChange: under the outbox
// strategy, as under the cdc one, the order service does not touch the
// cache at commit; the cache consumer (order.CacheGroup running
// RefreshFromEvent) invalidates and warms it once per change, when the
// change's event arrives from Kafka. A read that follows a write in the
// same process still sees the write while the refresh is on its way.
func TestCacheConsumerRefreshesTheCacheOncePerChange(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ensureEventTopics(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	counted := &countingCache{Cache: order.NewRedisCache(cachetest.New(t)), calls: map[string]int{}}
	svc := order.NewService(db.Pool, order.WithCache(counted))

	producer := kafkatest.NewProducer(t, b)
	relay := outbox.NewRelay(db.Pool, producer, outbox.RelayConfig{PollInterval: 50 * time.Millisecond, Logger: quiet})
	refreshed := make(chan events.Envelope, 16)
	consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{Options: kafkatest.Options(b), Group: order.CacheGroup,
		Topics: order.CacheTopics, Logger: quiet,
		Events: func(ctx context.Context, ev events.Envelope) error {
			err := svc.RefreshFromEvent(ctx, ev)
			refreshed <- ev
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { _ = relay.Run(ctx); done <- struct{}{} }()
	go func() { _ = consumer.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })

	res, err := svc.Create(ctx, order.CreateRequest{Actor: "api:alice", Order: order.NewOrder{CustomerID: "cust-1",
		Items: []order.NewItem{{SKU: "SKU-1", Quantity: 1, UnitPrice: 100}}}})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Order.ID
	if o, err := svc.Get(ctx, id); err != nil || o.Version != 1 {
		t.Fatalf("cached order: %v %+v", err, o)
	}
	changes := shipReadingBack(t, svc, id)
	// Every change's event has been handled by the cache consumer once
	// these arrive; each version was then invalidated exactly once.
	deadline := time.After(30 * time.Second) // a deadlock guard, not a speed assertion
	for range changes {
		select {
		case <-refreshed:
		case <-deadline:
			t.Fatal("the cache consumer did not receive every change's event")
		}
	}
	for v := 2; v <= 4; v++ {
		if n := counted.count(id, v); n != 1 {
			t.Errorf("version %d invalidated %d times, want once", v, n)
		}
	}
	if o, err := svc.Get(ctx, id); err != nil || o.Version != 4 || o.Status != order.StatusShipped {
		t.Fatalf("final read: %v %+v", err, o)
	}
}
