package outbox_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// BenchmarkRelayBacklog measures how fast a relay drains a backlog: b.N
// events are written first, then published. Reports events/s.
func BenchmarkRelayBacklog(b *testing.B) {
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			db := postgrestest.New(b)
			broker := kafkatest.New(b)
			producer := newProducer(b, broker)
			ctx := context.Background()
			// Bulk-load the backlog with COPY-sized batches of 1,000 events per transaction.
			for written := 0; written < b.N; {
				n := min(1000, b.N-written)
				err := postgres.WithTx(ctx, db.Pool, func(tx pgx.Tx) error {
					evs := make([]events.Event, n)
					for i := range n {
						evs[i], _ = events.New(events.OrderCreated, events.AggregateOrder, fmt.Sprintf("o-%d", (written+i)%5000), seqData{Seq: written + i}, "")
					}
					return outbox.Write(ctx, tx, evs...)
				})
				if err != nil {
					b.Fatal(err)
				}
				written += n
			}
			r := outbox.NewRelay(db.Pool, producer, outbox.RelayConfig{BatchSize: 1000, Workers: workers, PollInterval: 10 * time.Millisecond, Logger: quiet})
			b.ResetTimer()
			start := time.Now()
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { _ = r.Run(rctx); close(done) }()
			for {
				st, err := outbox.ReadStats(ctx, db.Pool)
				if err != nil {
					b.Fatal(err)
				}
				if st.Pending == 0 {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			cancel()
			<-done
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
		})
	}
}

// BenchmarkRelayLatency writes events at a fixed rate (1,000/s), one per
// transaction, and measures from each commit (its start) until a consumer receives the
// record from Kafka — an upper bound of commit -> Kafka acknowledgement, as
// it adds the consumer's fetch. Reports p50 and p99 in milliseconds.
func BenchmarkRelayLatency(b *testing.B) {
	const rate = 1000
	db := postgrestest.New(b)
	broker := kafkatest.New(b)
	producer := newProducer(b, broker)
	ctx, cancel := context.WithCancel(context.Background())
	r := outbox.NewRelay(db.Pool, producer, outbox.RelayConfig{BatchSize: 500, Logger: quiet})
	relayDone := make(chan struct{})
	go func() { _ = r.Run(ctx); close(relayDone) }()
	defer func() { cancel(); <-relayDone }()

	consumer, err := kgo.NewClient(kgo.SeedBrokers(broker.Addr()), kgo.ConsumeTopics(events.OrderCreated),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(10*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer consumer.Close()

	n := max(b.N, 3000)
	var mu sync.Mutex
	committed := make(map[string]time.Time, n)
	latencies := make([]time.Duration, 0, n)
	received := make(chan struct{})
	go func() {
		defer close(received)
		for len(latencies) < n && ctx.Err() == nil {
			fs := consumer.PollFetches(ctx)
			now := time.Now()
			mu.Lock()
			fs.EachRecord(func(rec *kgo.Record) {
				if at, ok := committed[kafka.Header(rec, events.HeaderEventID)]; ok {
					latencies = append(latencies, now.Sub(at))
				}
			})
			mu.Unlock()
		}
	}()
	b.ResetTimer()
	interval := time.Second / rate
	next := time.Now()
	for i := range n {
		time.Sleep(time.Until(next))
		next = next.Add(interval)
		ev, _ := events.New(events.OrderCreated, events.AggregateOrder, fmt.Sprintf("o-%d", i), seqData{Seq: i}, "")
		// Stamped just before the commit so the consumer can never see the
		// record first; the figure includes the commit itself.
		mu.Lock()
		committed[ev.ID] = time.Now()
		mu.Unlock()
		if err := postgres.WithTx(ctx, db.Pool, func(tx pgx.Tx) error { return outbox.Write(ctx, tx, ev) }); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-received:
	case <-time.After(30 * time.Second):
		b.Fatalf("only %d of %d events arrived", len(latencies), n)
	}
	b.StopTimer()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(latencies[len(latencies)-1].Microseconds())/1000, "max-ms")
}
