// Package kafkatest starts a private in-memory Kafka-protocol broker for a
// test and reads records back from it.
package kafkatest

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
)

// New starts a broker on a free loopback port for t and stops it when t ends.
func New(t testing.TB) *kafka.Embedded {
	t.Helper()
	b, err := kafka.StartEmbedded("127.0.0.1:0", "", 3)
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// Options returns client options for the broker.
func Options(b *kafka.Embedded) kafka.Options {
	return kafka.Options{Brokers: []string{b.Addr()}, ClientID: "trackops-test"}
}

// NewProducer returns a producer on b, closed when t ends.
func NewProducer(t testing.TB, b *kafka.Embedded, extra ...kgo.Opt) *kgo.Client {
	t.Helper()
	p, err := kafka.NewProducer(Options(b), extra...)
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// CreateTopics creates topics of the given number of partitions through p.
func CreateTopics(t testing.TB, p *kgo.Client, partitions int32, topics ...string) {
	t.Helper()
	if err := kafka.EnsureTopics(context.Background(), p, partitions, topics...); err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
}

// Read consumes topic from the start until n records arrived or timeout
// passed, and returns what it got.
func Read(t testing.TB, b *kafka.Embedded, topic string, n int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(b.Addr()),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond),
		kafka.FreshMetadata(),
	)
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}
