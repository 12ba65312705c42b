package cdc

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// refusingBarrier refuses durability until allowed, counting the calls.
type refusingBarrier struct {
	calls   atomic.Int64
	allowed atomic.Bool
}

func (b *refusingBarrier) WaitDurable(context.Context) error {
	b.calls.Add(1)
	if !b.allowed.Load() {
		return errors.New("not durable yet")
	}
	return nil
}

// TestSlotNeverConfirmsPastTheDurabilityBarrier: Kafka acknowledged the
// change, but until the broker's barrier says it is durable the slot stays
// where it was; once it does, the slot moves.
func TestSlotNeverConfirmsPastTheDurabilityBarrier(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ctx := context.Background()
	cfg := parse(t, rawConfig(t, db, map[string]string{"snapshot.mode": "no_data", "status.update.interval.ms": "20"}))
	barrier := &refusingBarrier{}
	opts := kafkatest.Options(b)
	opts.Durability = barrier
	c := NewConnector(cfg, Options{Kafka: opts, Logger: testLogger(), TopicPartitions: 1})
	startConnector(t, c)
	waitStreaming(t, c)
	start, _ := slotPositions(t, db, cfg.SlotName)

	if _, err := db.Pool.Exec(ctx, insertOrder, newOrderID()); err != nil {
		t.Fatal(err)
	}
	afterInsert := currentWAL(t, db)
	if recs := kafkatest.Read(t, b, "orders.orders", 1, 20*time.Second); len(recs) != 1 {
		t.Fatalf("got %d change records, want 1", len(recs))
	}
	// Let the connector ask (and be refused) several times after the ack.
	calls := barrier.calls.Load()
	eventually(t, "barrier asked again after the ack", 20*time.Second, func() bool { return barrier.calls.Load() >= calls+3 })
	if confirmed, _ := slotPositions(t, db, cfg.SlotName); confirmed != start {
		t.Fatalf("slot moved from %X to %X although the broker never made the change durable", start, confirmed)
	}
	barrier.allowed.Store(true)
	waitConfirmed(t, db, cfg.SlotName, afterInsert, "slot confirmed once durable")
}
