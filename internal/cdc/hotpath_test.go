package cdc

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestCommittedChangesDoNotLinger: the connector's producer lingers to fill
// batches, but a committed transaction is sent at once. With a linger of a
// minute the change still reaches Kafka within 20 s: the commit ended it.
func TestCommittedChangesDoNotLinger(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ctx := context.Background()
	cfg := parse(t, rawConfig(t, db, map[string]string{"snapshot.mode": "no_data"}))
	c := NewConnector(cfg, Options{Kafka: kafkatest.Options(b), Logger: testLogger(), TopicPartitions: 1,
		ProducerOpts: []kgo.Opt{kgo.ProducerLinger(time.Minute)}})
	startConnector(t, c)
	waitStreaming(t, c)
	// The first record for a partition the producer has not seen yet
	// lingers before a commit can reach it (it waits for metadata): let a
	// probe, flushed for good, make the topic's partitions known.
	producer := c.em.Load().producer
	if err := kafka.EnsureTopics(ctx, producer, 1, "orders.orders"); err != nil {
		t.Fatal(err)
	}
	probed := make(chan error, 1)
	producer.Produce(ctx, &kgo.Record{Topic: "orders.orders", Key: []byte("probe")}, func(_ *kgo.Record, err error) { probed <- err })
	if err := producer.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-probed; err != nil {
		t.Fatal(err)
	}
	id := newOrderID()
	if _, err := db.Pool.Exec(ctx, insertOrder, id); err != nil {
		t.Fatal(err)
	}
	recs := kafkatest.Read(t, b, "orders.orders", 2, 20*time.Second)
	if len(recs) != 2 {
		t.Fatalf("got %d records within 20 s with a minute's linger, want the probe and the change: the commit did not send it", len(recs))
	}
	if changeKeyOf(t, recs[1]) != id {
		t.Fatalf("record key %s, want order %s", recs[1].Key, id)
	}
}

func changeKeyOf(t *testing.T, r *kgo.Record) string {
	t.Helper()
	const prefix, suffix = `{"id":"`, `"}`
	k := string(r.Key)
	if len(k) < len(prefix)+len(suffix) || k[:len(prefix)] != prefix || k[len(k)-len(suffix):] != suffix {
		t.Fatalf("unexpected key %s", k)
	}
	return k[len(prefix) : len(k)-len(suffix)]
}

// gatedBarrier holds each WaitDurable until the test releases it.
type gatedBarrier struct {
	started chan struct{}
	release chan error
}

func (g *gatedBarrier) WaitDurable(ctx context.Context) error {
	g.started <- struct{}{}
	select {
	case err := <-g.release:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestDurableWaiterCoversOnlyWhatWasAskedBeforeTheRound: a round covers the
// positions asked for before it began, never one asked for while it ran; a
// failed round covers nothing and the next request tries again.
func TestDurableWaiterCoversOnlyWhatWasAskedBeforeTheRound(t *testing.T) {
	g := &gatedBarrier{started: make(chan struct{}), release: make(chan error)}
	w := startDurableWaiter(context.Background(), g, 10, testLogger())
	defer w.stop()

	w.request(100)
	<-g.started      // the round for 100 runs
	w.request(200)   // acknowledged while it runs
	g.release <- nil // the round finishes
	<-g.started      // and the next begins, for 200
	if got := w.covered.Load(); got != 100 {
		t.Fatalf("covered %d after the first round, want 100 (200 came after it began)", got)
	}
	g.release <- errors.New("fsync failed")
	w.request(200) // the stream asks again at its next status
	<-g.started
	if got := w.covered.Load(); got != 100 {
		t.Fatalf("covered %d after a failed round, want 100", got)
	}
	g.release <- nil
	eventually(t, "200 covered", 10*time.Second, func() bool { return w.covered.Load() == 200 })
	w.request(150) // below what is covered: nothing to do
	select {
	case <-g.started:
		t.Fatal("a round started for a position already covered")
	default:
	}
}

// TestReadaheadPacesOnlyLargeTransactions: pacing switches on once a
// transaction has streamed readaheadAfter messages and off when it
// commits, and a paced connection waits only after a read that emptied
// the socket.
func TestReadaheadPacesOnlyLargeTransactions(t *testing.T) {
	var r readahead
	for i := 1; i < readaheadAfter; i++ {
		r.follow(true)
	}
	if r.on.Load() {
		t.Fatalf("paced after %d messages of a transaction", readaheadAfter-1)
	}
	r.follow(true)
	if !r.on.Load() {
		t.Fatalf("not paced after %d messages", readaheadAfter)
	}
	r.follow(false)
	if r.on.Load() {
		t.Fatal("still paced after the commit")
	}
	var none *readahead
	none.follow(true) // a connector run without Run's dialer

	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	conn := &pacedConn{Conn: client, r: &r}
	go func() { _, _ = server.Write([]byte("abc")) }()
	buf := make([]byte, 8)
	if n, err := conn.Read(buf); err != nil || n != 3 || !conn.drained {
		t.Fatalf("read %d, %v; drained %v, want 3 bytes from an emptied socket", n, err, conn.drained)
	}
	go func() { _, _ = server.Write([]byte("12345678")) }()
	if n, err := conn.Read(buf); err != nil || n != 8 || conn.drained {
		t.Fatalf("read %d, %v; drained %v, want a full buffer", n, err, conn.drained)
	}
}
