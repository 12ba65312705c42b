package kafka_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
)

// metadataCounter counts the metadata requests a client sends.
type metadataCounter struct{ n atomic.Int64 }

// OnBrokerWrite implements kgo.HookBrokerWrite.
func (m *metadataCounter) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == kmsg.Metadata.Int16() && err == nil {
		m.n.Add(1)
	}
}

// TestClientsRefreshMetadataWithinMinAge: every client TrackOps builds may
// refresh metadata again after MetadataMinAge, not franz-go's 5 s, so a topic
// created after the client asked about it is seen at once.
func TestClientsRefreshMetadataWithinMinAge(t *testing.T) {
	t.Parallel()
	b := kafkatest.New(t)
	p, err := kafka.NewProducer(kafkatest.Options(b))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{Options: kafkatest.Options(b), Group: "g", Topics: []string{"t"},
		Handler: func(context.Context, *kgo.Record) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Client().Close()
	for name, cl := range map[string]*kgo.Client{"producer": p, "consumer": c.Client()} {
		if got := cl.OptValue(kgo.MetadataMinAge); got != kafka.MetadataMinAge {
			t.Errorf("%s: metadata min age %v, want %v", name, got, kafka.MetadataMinAge)
		}
	}
}

// TestFirstRecordOnNewTopicNeedsNoRetry: a topic made with EnsureTopics is
// known to the client that made it, so the first record produced to it is
// acknowledged without a round of "unknown topic" metadata retries (each of
// which would wait on the metadata back-off).
func TestFirstRecordOnNewTopicNeedsNoRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := kafkatest.New(t)
	meta := &metadataCounter{}
	p, err := kafka.NewProducer(kafkatest.Options(b), kgo.WithHooks(meta))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range 3 {
		topic := fmt.Sprintf("brand-new-%d", i)
		if err := kafka.EnsureTopics(ctx, p, 3, topic); err != nil {
			t.Fatal(err)
		}
		before := meta.n.Load()
		if err := p.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("first")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		// At most the refresh EnsureTopics started and the producer's
		// own first look at the topic.
		if n := meta.n.Load() - before; n > 2 {
			t.Fatalf("%s: %d metadata requests to produce the first record", topic, n)
		}
	}
}

// BenchmarkFirstRecordOnNewTopic is the wait the issue saw: a consumer
// subscribed to a topic before it exists (as a reader of a CDC table's topic
// is before the first change) has used up franz-go's quick metadata retries;
// then the topic is created and one record produced. The clock runs from
// the produce to the record's arrival at the consumer: with franz-go's
// default metadata min age (5 s) the consumer learns of the topic on its
// next slow refresh, with TrackOps' (kafka.MetadataMinAge) within a quarter
// second.
//
//	go test ./internal/kafka -run '^$' -bench FirstRecordOnNewTopic -benchtime 3x
func BenchmarkFirstRecordOnNewTopic(b *testing.B) {
	broker := kafkatest.New(b)
	producer, err := kafka.NewProducer(kafkatest.Options(broker))
	if err != nil {
		b.Fatal(err)
	}
	defer producer.Close()
	for _, c := range []struct {
		name string
		opts []kgo.Opt
	}{
		{"franz-go-default", nil},
		{"trackops", []kgo.Opt{kafka.FreshMetadata()}},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			var total time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				topic := fmt.Sprintf("late-%s-%d-%d", c.name, i, time.Now().UnixNano())
				meta := &metadataCounter{}
				consumer, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(broker.Addr()), kgo.ConsumeTopics(topic),
					kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(10 * time.Millisecond), kgo.WithHooks(meta)}, c.opts...)...)
				if err != nil {
					b.Fatal(err)
				}
				got := make(chan time.Time, 1)
				go func() {
					for {
						fs := consumer.PollFetches(ctx)
						if fs.IsClientClosed() {
							return
						}
						if fs.NumRecords() > 0 {
							got <- time.Now()
							return
						}
					}
				}()
				// The initial request and franz-go's 8 quick retries.
				for deadline := time.Now().Add(time.Minute); meta.n.Load() < 9; {
					if time.Now().After(deadline) {
						b.Fatalf("consumer sent %d metadata requests", meta.n.Load())
					}
					time.Sleep(10 * time.Millisecond)
				}
				b.StartTimer()
				start := time.Now()
				if err := kafka.EnsureTopics(ctx, producer, 1, topic); err != nil {
					b.Fatal(err)
				}
				if err := producer.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("first")}).FirstErr(); err != nil {
					b.Fatal(err)
				}
				total += (<-got).Sub(start)
				consumer.Close()
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-first-record")
		})
	}
}
