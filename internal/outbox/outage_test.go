package outbox_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestBrokerStoppedDuringOrderLoadLosesNothing stops the (private, on-disk)
// embedded broker while orders are being placed: every order is still
// accepted (its event waits in the outbox), and once the broker is back on
// the same port and data directory the backlog drains — every order's
// ORDER_CREATED event reaches Kafka, including those published before the
// stop (they survived on disk).
func TestBrokerStoppedDuringOrderLoadLosesNothing(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := postgrestest.New(t)
	addr, dir := freePort(t), t.TempDir()
	broker, err := kafka.StartEmbedded(addr, dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	producer, err := kafka.NewProducer(kafka.Options{Brokers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	if err := kafka.EnsureTopics(ctx, producer, 3, events.OrderCreated); err != nil {
		t.Fatal(err)
	}
	relay := outbox.NewRelay(db.Pool, producer, outbox.RelayConfig{BatchSize: 50, PollInterval: 50 * time.Millisecond,
		RetryInitial: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond, Workers: 2})
	relayDone := make(chan struct{})
	go func() { _ = relay.Run(ctx); close(relayDone) }()
	defer func() { cancel(); <-relayDone }()

	svc := order.NewService(db.Pool)
	var (
		mu  sync.Mutex
		ids = map[string]bool{}
	)
	place := func(phase string, n int) {
		t.Helper()
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				res, err := svc.Create(ctx, order.CreateRequest{Order: order.NewOrder{
					CustomerID: fmt.Sprintf("%s-%d", phase, i), Currency: "EUR",
					Items: []order.NewItem{{SKU: "SKU-1", Quantity: 1, UnitPrice: 1999}},
				}})
				if err != nil {
					t.Errorf("%s: order not accepted: %v", phase, err)
					return
				}
				mu.Lock()
				ids[res.Order.ID.String()] = true
				mu.Unlock()
			})
		}
		wg.Wait()
	}

	place("before", 40)
	broker.Close()
	place("during", 60)
	// The broker stays away until the relay has tried to publish during the
	// outage: records it handed to the producer wait in its buffer, not
	// delivered.
	tryDeadline := time.Now().Add(60 * time.Second)
	for producer.BufferedProduceRecords() == 0 {
		if time.Now().After(tryDeadline) {
			t.Fatal("the relay never tried to publish while the broker was down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	place("during-late", 20)
	stats, err := outbox.ReadStats(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Pending == 0 {
		t.Fatalf("no event waiting in the outbox while the broker is down: %+v", stats)
	}

	broker, err = kafka.StartEmbedded(addr, dir, 3)
	if err != nil {
		t.Fatalf("restart the broker on %s: %v", addr, err)
	}
	defer broker.Close()
	restarted, backlog := time.Now(), stats.Pending
	place("after", 40)

	stats = waitDrained(t, db.Pool, 90*time.Second)
	drained := time.Now()
	if stats.Failed != 0 || stats.Published != 160 {
		t.Fatalf("outbox after the outage: %+v, want 160 published, none failed", stats)
	}

	seen := readSubjects(t, addr, events.OrderCreated, len(ids))
	for id := range ids {
		if seen[id] == 0 {
			t.Errorf("order %s has no ORDER_CREATED event in Kafka", id)
		}
	}
	if len(ids) != 160 {
		t.Errorf("%d orders accepted, want 160", len(ids))
	}
	dupes := 0
	for _, n := range seen {
		dupes += n - 1
	}
	t.Logf("%d orders, %d distinct events in Kafka, %d duplicates (at-least-once); backlog of %d drained %v after the restart",
		len(ids), len(seen), dupes, backlog, drained.Sub(restarted).Round(time.Millisecond))
}

// readSubjects reads topic from the start until want distinct event
// subjects arrived (or a generous limit passed) and counts each.
func readSubjects(t *testing.T, addr, topic string, want int) map[string]int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	seen := map[string]int{}
	for len(seen) < want && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			env, err := events.Decode(r.Value)
			if err != nil {
				t.Errorf("undecodable event at offset %d: %v", r.Offset, err)
				return
			}
			seen[env.Subject]++
		})
	}
	return seen
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
