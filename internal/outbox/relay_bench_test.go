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

	"github.com/trackops/trackops/internal/cpusteal"
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
			// The relay has a pool of its own, so the cost counts its
			// database sessions alone (not the loop waiting for the drain).
			relayPool := appPool(b, db.URL, "relay-bench")
			r := outbox.NewRelay(relayPool, producer, outbox.RelayConfig{BatchSize: 1000, Workers: workers, PollInterval: 10 * time.Millisecond, Logger: benchLogger()})
			cost := startCost(b, db.Pool, "relay-bench")
			b.ResetTimer()
			start, steal0 := time.Now(), cpusteal.Read()
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { _ = r.Run(rctx); close(done) }()
			for {
				drained, err := outbox.Drained(ctx, db.Pool)
				if err != nil {
					b.Fatal(err)
				}
				if drained {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			cost.report(b, b.N)
			cancel()
			<-done
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			cpusteal.Report(b, steal0) // on a shared host it moves the figures from run to run
		})
	}
}

// BenchmarkRelayLatency measures commit → record consumed at 1,000 events/s
// on an embedded broker keeping its log on disk, for each durability mode,
// and from the ledger commit → Kafka's acknowledgement and commit →
// durable and recorded.
// Sends follow a fixed schedule and each event's latency counts from its
// scheduled time, each commit in its own goroutine: a slow commit delays no
// later send, and queueing behind it shows in the figures (no coordinated
// omission).
func BenchmarkRelayLatency(b *testing.B) {
	for _, mode := range []kafka.Durability{kafka.DurabilityGroup, kafka.DurabilitySync, kafka.DurabilityNone} {
		b.Run(string(mode), func(b *testing.B) { benchRelayLatency(b, mode) })
	}
}

func benchRelayLatency(b *testing.B, mode kafka.Durability) {
	const rate = 1000
	db := postgrestest.New(b)
	broker, err := kafka.StartEmbedded("127.0.0.1:0", b.TempDir(), 3, kafka.WithDurability(mode, 0), kafka.EmbeddedLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	defer broker.Close()
	producer := newProducer(b, broker)
	ctx, cancel := context.WithCancel(context.Background())
	relayPool := appPool(b, db.URL, "relay-bench")
	r := outbox.NewRelay(relayPool, producer, outbox.RelayConfig{BatchSize: 500, Logger: quiet, Durability: broker.Barrier(), ListenPool: relayPool})
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
	scheduled := make(map[string]time.Time, n)
	latencies := make([]time.Duration, 0, n)
	received := make(chan struct{})
	go func() {
		defer close(received)
		for len(latencies) < n && ctx.Err() == nil {
			fs := consumer.PollFetches(ctx)
			now := time.Now()
			mu.Lock()
			fs.EachRecord(func(rec *kgo.Record) {
				if at, ok := scheduled[kafka.Header(rec, events.HeaderEventID)]; ok {
					latencies = append(latencies, now.Sub(at))
					delete(scheduled, kafka.Header(rec, events.HeaderEventID))
				}
			})
			mu.Unlock()
		}
	}()
	cost := startCost(b, db.Pool, "relay-bench")
	b.ResetTimer()
	interval := time.Second / rate
	start := time.Now()
	var writers sync.WaitGroup
	errs := make(chan error, 1)
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(at))
		ev, _ := events.New(events.OrderCreated, events.AggregateOrder, fmt.Sprintf("o-%d", i), seqData{Seq: i}, "")
		mu.Lock()
		scheduled[ev.ID] = at
		mu.Unlock()
		writers.Go(func() {
			if err := postgres.WithTx(ctx, db.Pool, func(tx pgx.Tx) error { return outbox.Write(ctx, tx, ev) }); err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		})
	}
	writers.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	select {
	case <-received:
	case <-time.After(60 * time.Second):
		b.Fatalf("only %d of %d events arrived", len(latencies), n)
	}
	b.StopTimer()
	cost.report(b, n)
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(latencies[len(latencies)-1].Microseconds())/1000, "max-ms")
	// From the ledger: commit -> Kafka's acknowledgement, and -> durable
	// and recorded (created_at is stamped at the scheduled time).
	var ack50, ack99, rec50, rec99 float64
	if err := db.Pool.QueryRow(context.Background(), `SELECT
			percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM kafka_acked_at - created_at)),
			percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM kafka_acked_at - created_at)),
			percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM published_at - created_at)),
			percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM published_at - created_at))
		FROM outbox_status WHERE processed`).Scan(&ack50, &ack99, &rec50, &rec99); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(ack50*1000, "ack-p50-ms")
	b.ReportMetric(ack99*1000, "ack-p99-ms")
	b.ReportMetric(rec50*1000, "recorded-p50-ms")
	b.ReportMetric(rec99*1000, "recorded-p99-ms")
}
