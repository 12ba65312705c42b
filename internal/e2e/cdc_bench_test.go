package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// Fixed load of the latency benchmark: one multi-row INSERT of benchBatch
// orders every benchInterval, i.e. 5,000 changes/s.
const (
	benchBatch    = 50
	benchInterval = 10 * time.Millisecond
)

// BenchmarkCDCCommitToKafkaLatency measures, through the real binary under
// the cdc strategy, the delay from a transaction's commit (its INSERT
// returning to the client) to each of its change events arriving at a
// consumer of orders.orders, at a fixed (open-model) rate of 5,000
// changes/s; b.N is the number of changes measured. Arrival at a consumer
// is an upper bound of Kafka's acknowledgement. It reports p50/p99/max and
// the process's resident memory (current and peak).
//
// roles=cdc runs the connector (with the order change stream deriving the
// order events) alone; roles=all is the whole platform, where inventory and
// the saga also react to every new order (and their updates are further
// changes on the same slot).
// broker=embedded is the process's own persisted broker, which fsyncs every
// produced batch and offset commit inside its single event loop;
// broker=memory is an in-memory broker in the benchmark's process
// (TRACKOPS_KAFKA_BROKERS), which isolates the connector's own delay and
// keeps the broker out of the RSS figure.
//
//	go test ./internal/e2e -run '^$' -bench CDCCommitToKafka -benchtime 50000x
func BenchmarkCDCCommitToKafkaLatency(b *testing.B) {
	for _, broker := range []string{"embedded", "memory"} {
		for _, roles := range []string{"cdc", "all"} {
			b.Run("broker="+broker+"/roles="+roles, func(b *testing.B) {
				var args []string
				if roles != "all" {
					args = []string{"--roles", roles}
				}
				benchCommitToKafka(b, broker == "memory", args)
			})
		}
	}
}

func benchCommitToKafka(b *testing.B, memoryBroker bool, args []string) {
	ctx := context.Background()
	db := postgrestest.New(b)
	cfg, _ := strategyConfig(b, db, "cdc")
	cfg.Extra = append(cfg.Extra, "TRACKOPS_LOG_LEVEL=error")
	brokers := cfg.KafkaAddr
	if memoryBroker {
		brokers = kafkatest.New(b).Addr()
		// A single-node broker: topics with one replica.
		cfg.Extra = append(cfg.Extra, "TRACKOPS_KAFKA_BROKERS="+brokers, "TRACKOPS_KAFKA_REPLICATION_FACTOR=1")
	}
	p := Start(b, cfg, args...)

	var (
		mu        sync.Mutex
		committed = map[string]time.Time{} // batch tag -> commit time
		arrivals  []arrival
		want      int
		done      = make(chan struct{})
	)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(ordersTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	consumeCtx, stopConsume := context.WithCancel(ctx)
	defer stopConsume()
	go func() {
		for consumeCtx.Err() == nil {
			fs := cl.PollFetches(consumeCtx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				var ev struct {
					Op    string `json:"op"`
					After struct {
						CustomerID string `json:"customer_id"`
					} `json:"after"`
				}
				if json.Unmarshal(r.Value, &ev) != nil || ev.Op != "c" {
					return
				}
				tag, _, _ := strings.Cut(ev.After.CustomerID, "/")
				if !strings.HasPrefix(tag, "bench-") {
					return // warm-up
				}
				mu.Lock()
				arrivals = append(arrivals, arrival{tag, now})
				if len(arrivals) == want {
					close(done)
				}
				mu.Unlock()
			})
		}
	}()

	insert := func(tag string) error {
		_, err := db.Pool.Exec(ctx, `INSERT INTO orders (id, customer_id, status, total_amount)
			SELECT gen_random_uuid(), $1 || '/' || g, 'PENDING', 10.00 FROM generate_series(1, $2::int) g`, tag, benchBatch)
		return err
	}
	// run inserts batches at the fixed rate; a batch late by more than the
	// interval is sent at once rather than skipped (no coordinated omission).
	run := func(prefix string, batches int) time.Duration {
		start := time.Now()
		for i := range batches {
			if d := time.Until(start.Add(time.Duration(i) * benchInterval)); d > 0 {
				time.Sleep(d)
			}
			tag := prefix + strconv.Itoa(i)
			if err := insert(tag); err != nil {
				b.Fatal(err)
			}
			at := time.Now()
			mu.Lock()
			committed[tag] = at
			mu.Unlock()
		}
		return time.Since(start)
	}

	run("warm-", 100) // a second of load: topic metadata, relation cache, connections
	batches := max(1, (b.N+benchBatch-1)/benchBatch)
	mu.Lock()
	want = batches * benchBatch
	mu.Unlock()
	b.ResetTimer()
	elapsed := run("bench-", batches)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		mu.Lock()
		n := len(arrivals)
		mu.Unlock()
		b.Fatalf("only %d of %d change events arrived", n, want)
	}
	b.StopTimer()

	mu.Lock()
	defer mu.Unlock()
	latencies := make([]time.Duration, len(arrivals))
	for i, a := range arrivals {
		// An event can reach the consumer before the INSERT's answer
		// reaches the client: that latency counts as zero.
		latencies[i] = max(0, a.at.Sub(committed[a.tag]))
	}
	slices.Sort(latencies)
	q := func(f float64) float64 {
		return float64(latencies[min(len(latencies)-1, int(f*float64(len(latencies))))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(want)/elapsed.Seconds(), "changes/s")
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
	rss, peak := processRSS(b, p.Pid())
	b.ReportMetric(rss, "rss-MB")
	b.ReportMetric(peak, "peak-rss-MB")
}

// arrival is when a change event of a batch reached the consumer.
type arrival struct {
	tag string
	at  time.Time
}

// processRSS reads a process's current and peak resident set in MB.
func processRSS(b *testing.B, pid int) (rss, peak float64) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Logf("no RSS figure: %v", err)
		return 0, 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return rss, peak
}
