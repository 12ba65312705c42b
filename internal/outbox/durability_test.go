package outbox

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// countingBarrier counts waits and fails them while failing is set.
type countingBarrier struct {
	calls   atomic.Int64
	failing atomic.Bool
}

func (b *countingBarrier) WaitDurable(context.Context) error {
	b.calls.Add(1)
	if b.failing.Load() {
		return errors.New("fsync failed")
	}
	return nil
}

// TestRelayMarksOnlyDurableEventsWithTheirKafkaPosition: the relay waits on
// the broker's barrier before marking, keeps rows unpublished when the
// barrier fails, and records the partition and offset Kafka acknowledged.
func TestRelayMarksOnlyDurableEventsWithTheirKafkaPosition(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	b, producer := startBroker(t, t.TempDir())
	barrier := &countingBarrier{}
	relay := NewRelay(db.Pool, producer, RelayConfig{Durability: barrier})

	barrier.failing.Store(true)
	ev := writeEvent(t, db.Pool, events.OrderCreated, uuid.NewString(), map[string]string{"id": "1"})
	if _, err := relay.PublishBatch(ctx); err == nil {
		t.Fatal("batch succeeded although the broker could not make it durable")
	}
	if s := readRow(t, db.Pool, ev.ID); s.processed {
		t.Fatal("row marked published without durability")
	}

	barrier.failing.Store(false)
	before := time.Now()
	if n, err := relay.PublishBatch(ctx); err != nil || n != 1 {
		t.Fatalf("batch: n=%d err=%v", n, err)
	}
	if barrier.calls.Load() != 2 {
		t.Fatalf("barrier waited %d times, want 2 (once per batch)", barrier.calls.Load())
	}
	// What the order journey reads per event: created, acknowledged and
	// published times, partition and offset.
	var (
		part      int32
		off       int64
		published time.Time
		acked     time.Time
		created   time.Time
		processed bool
	)
	if err := db.Pool.QueryRow(ctx, `SELECT processed, kafka_partition, kafka_offset, published_at, kafka_acked_at, created_at FROM outbox_status WHERE id = $1`, ev.ID).
		Scan(&processed, &part, &off, &published, &acked, &created); err != nil {
		t.Fatal(err)
	}
	// Two publishes (the first was acknowledged, then rolled back): the
	// record the row names is the second, at offset 1 of its partition.
	recs := kafkatest.Read(t, b, events.OrderCreated, 2, 30*time.Second)
	var named *kgo.Record
	for _, r := range recs {
		if r.Partition == part && r.Offset == off {
			named = r
		}
	}
	if !processed || named == nil || string(named.Key) != ev.AggregateID() {
		t.Fatalf("row names partition %d offset %d, which holds %v; records: %d", part, off, named, len(recs))
	}
	if published.Before(before.Add(-time.Second)) || !published.After(created) {
		t.Fatalf("published_at %v is not the time of the mark (batch started %v)", published, before)
	}
	// The acknowledgement comes after the batch started and before the
	// record in the ledger (both clocks are this machine's; a millisecond
	// of slack for the database's own clock reading).
	if acked.Before(before) || acked.After(published.Add(time.Millisecond)) {
		t.Fatalf("kafka_acked_at %v not between the batch's start %v and published_at %v", acked, before, published)
	}
}

// startBroker starts an embedded broker of three partitions per topic
// keeping its log in dir ("": in memory), with a producer to it and the
// ORDER_CREATED topic created; both close when t ends.
func startBroker(t *testing.T, dir string) (*kafka.Embedded, *kgo.Client) {
	t.Helper()
	b, err := kafka.StartEmbedded(freeAddr(t), dir, 3, kafka.EmbeddedLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	producer, err := kafka.NewProducer(kafka.Options{Brokers: []string{b.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	if err := kafka.EnsureTopics(context.Background(), producer, 3, events.OrderCreated); err != nil {
		t.Fatal(err)
	}
	return b, producer
}

// TestTornBrokerTailIsPublishedAgain is issue 12's point 7 inside one
// process: events published and durable, a crash, the last 13 bytes of the
// largest segment cut off; on start the broker reports the loss and the
// lost event's row is queued again and published with the same event id.
func TestTornBrokerTailIsPublishedAgain(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	addr, dir := freeAddr(t), t.TempDir()
	quietLog := slog.New(slog.DiscardHandler)
	b, err := kafka.StartEmbedded(addr, dir, 3, kafka.EmbeddedLogger(quietLog))
	if err != nil {
		t.Fatal(err)
	}
	producer, err := kafka.NewProducer(kafka.Options{Brokers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	if err := kafka.EnsureTopics(ctx, producer, 3, events.OrderCreated); err != nil {
		t.Fatal(err)
	}
	const total = 30
	ids := map[string]bool{}
	for i := range total {
		ev := writeEvent(t, db.Pool, events.OrderCreated, uuid.NewString(), map[string]int{"n": i})
		ids[ev.ID] = true
		// One event per batch: each its own record batch on disk.
		relay := NewRelay(db.Pool, producer, RelayConfig{Durability: b.Barrier(), BatchSize: 1})
		if n, err := relay.PublishBatch(ctx); err != nil || n != 1 {
			t.Fatalf("publish %d: n=%d err=%v", i, n, err)
		}
	}
	// One more round records the durable ends the last one reached.
	if err := b.WaitDurable(ctx); err != nil {
		t.Fatal(err)
	}
	producer.Close()
	b.Close()
	if err := os.Remove(filepath.Join(dir, "trackops-clean-shutdown")); err != nil {
		t.Fatal(err) // as after kill -9
	}
	largest, size := "", int64(0)
	matches, _ := filepath.Glob(filepath.Join(dir, "partitions", events.OrderCreated+"-*", "*.dat"))
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && fi.Size() > size {
			largest, size = m, fi.Size()
		}
	}
	if err := os.Truncate(largest, size-13); err != nil {
		t.Fatal(err)
	}

	b, err = kafka.StartEmbedded(addr, dir, 3, kafka.EmbeddedLogger(quietLog))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rec := b.Recovery()
	if !rec.Damaged() || len(rec.Lost) != 1 || rec.Lost[0].DurableEnd-rec.Lost[0].RecoveredEnd != 1 {
		t.Fatalf("recovery = %+v; want one partition that lost one record", rec)
	}
	m := NewMetrics(prometheus.NewRegistry())
	requeued, err := RequeueLost(ctx, db.Pool, rec.Ends, m)
	if err != nil {
		t.Fatal(err)
	}
	if requeued[events.OrderCreated] != 1 {
		t.Fatalf("requeued %v, want 1 ORDER_CREATED", requeued)
	}
	// Idempotent while nothing new was published.
	if again, err := RequeueLost(ctx, db.Pool, rec.Ends, m); err != nil || len(again) != 0 {
		t.Fatalf("second requeue: %v %v", again, err)
	}
	if got := testutil.ToFloat64(m.requeued.WithLabelValues(events.OrderCreated)); got != 1 {
		t.Fatalf("trackops_outbox_requeued_total{topic=%s} = %v, want 1", events.OrderCreated, got)
	}
	producer, err = kafka.NewProducer(kafka.Options{Brokers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	// The lost event's order moves on meanwhile: its next event must not
	// overtake the one published again.
	var lostID, lostAgg string
	if err := db.Pool.QueryRow(ctx, `SELECT id::text, aggregate_id FROM outbox_status WHERE retrying`).Scan(&lostID, &lostAgg); err != nil {
		t.Fatal(err)
	}
	next := writeEvent(t, db.Pool, events.OrderCreated, lostAgg, map[string]int{"n": total})
	relay := NewRelay(db.Pool, producer, RelayConfig{Durability: b.Barrier()})
	if n, err := relay.PublishBatch(ctx); err != nil || n != 2 {
		t.Fatalf("republish: n=%d err=%v, want the lost event and the next one", n, err)
	}
	if n, err := relay.PublishBatch(ctx); err != nil || n != 1 {
		t.Fatalf("after the republish: n=%d err=%v, want the next event, queued behind the lost one", n, err)
	}
	ids[next.ID] = true
	got := map[string]bool{}
	var order []string
	for _, r := range kafkatest.Read(t, b, events.OrderCreated, total+1, 30*time.Second) { // one lost, two more
		env, err := events.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		got[env.ID] = true
		if env.Subject == lostAgg {
			order = append(order, env.ID)
		}
	}
	for id := range ids {
		if !got[id] {
			t.Fatalf("event %s is not in Kafka after recovery (%d of %d present)", id, len(got), len(ids))
		}
	}
	if len(order) < 2 || order[len(order)-2] != lostID || order[len(order)-1] != next.ID {
		t.Fatalf("order %s reads %v from Kafka, want the lost event %s published again, then %s", lostAgg, order, lostID, next.ID)
	}
}

// TestRelayRecordsEachEventsOwnPosition: results of one batch come back in
// the order the broker answered, not the order of the rows; every row must
// still name the partition and offset of its own record.
func TestRelayRecordsEachEventsOwnPosition(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	b, producer := startBroker(t, "")
	const n = 60
	for i := range n {
		writeEvent(t, db.Pool, events.OrderCreated, uuid.NewString(), map[string]int{"n": i})
	}
	if got, err := NewRelay(db.Pool, producer, RelayConfig{}).PublishBatch(ctx); err != nil || got != n {
		t.Fatalf("batch: n=%d err=%v", got, err)
	}
	for _, r := range kafkatest.Read(t, b, events.OrderCreated, n, 30*time.Second) {
		var part int32
		var off int64
		if err := db.Pool.QueryRow(ctx, `SELECT kafka_partition, kafka_offset FROM outbox_status WHERE aggregate_id = $1`, string(r.Key)).Scan(&part, &off); err != nil {
			t.Fatal(err)
		}
		if part != r.Partition || off != r.Offset {
			t.Fatalf("event of %s is at %d/%d, its row says %d/%d", r.Key, r.Partition, r.Offset, part, off)
		}
	}
}
