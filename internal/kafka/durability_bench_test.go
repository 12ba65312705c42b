package kafka

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/testfix"
)

// BenchmarkEmbeddedDurability produces records on a fixed schedule (1,000
// and 5,000 records/s, one record per request as the relay's small batches
// are) to the embedded broker with its log on disk, in each durability
// mode, and reports from each record's scheduled time: the produce
// acknowledgement (ack-p50/p99-ms) and the point where the durability
// barrier returned for it (durable-p50/p99-ms), plus fsync rounds per
// second. Run it alone on a quiet machine:
//
//	go test -run '^$' -bench EmbeddedDurability -benchtime 5000x ./internal/kafka
func BenchmarkEmbeddedDurability(b *testing.B) {
	for _, mode := range []Durability{DurabilitySync, DurabilityGroup, DurabilityNone} {
		for _, rate := range []int{1000, 5000} {
			b.Run(fmt.Sprintf("%s/%d-per-s", mode, rate), func(b *testing.B) { benchDurability(b, mode, rate) })
		}
	}
}

func benchDurability(b *testing.B, mode Durability, rate int) {
	broker, err := StartEmbedded("127.0.0.1:0", b.TempDir(), 3, WithDurability(mode, 0), EmbeddedLogger(quietLog))
	if err != nil {
		b.Fatal(err)
	}
	defer broker.Close()
	p, err := NewProducer(Options{Brokers: []string{broker.Addr()}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	if err := EnsureTopics(ctx, p, 3, "bench"); err != nil {
		b.Fatal(err)
	}
	n := max(b.N, 2000)
	acks := make([]time.Duration, n)
	durable := make([]time.Duration, n)
	var wg sync.WaitGroup
	var failed error
	var mu sync.Mutex
	interval := time.Second / time.Duration(rate)
	b.ResetTimer()
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(at))
		wg.Add(1)
		rec := &kgo.Record{Topic: "bench", Key: fmt.Appendf(nil, "k%d", i%64), Value: make([]byte, 300)}
		p.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			acks[i] = time.Since(at)
			// Promises run one at a time: wait off the callback, as the
			// relay and the CDC connector wait off the producer.
			go func() {
				defer wg.Done()
				if err == nil {
					err = broker.WaitDurable(ctx)
				}
				durable[i] = time.Since(at)
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
				}
			}()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if failed != nil {
		b.Fatal(failed)
	}
	rounds := 0.0
	if broker.syncer != nil {
		broker.syncer.mu.Lock()
		rounds = float64(broker.syncer.roundsOK)
		broker.syncer.mu.Unlock()
	}
	report := func(name string, ds []time.Duration) {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, name+"-p50-ms")
		b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds())/1000, name+"-p99-ms")
	}
	report("ack", acks)
	report("durable", durable)
	b.ReportMetric(rounds/elapsed.Seconds(), "fsync-rounds/s")
}

// BenchmarkSyncRound is a group-commit round that finds segments written
// and fsyncs them, in a data directory of 24 partitions, finding the
// changes by walking the log and by change notifications: one segment, and
// six (a busy round: the segments and indexes of the partitions written,
// the group log, TrackOps' ends log). It reports the round's time (mostly
// the fsyncs) and the process's CPU per round (cpu-µs/op). Run it alone:
//
//	go test -run '^$' -bench SyncRound ./internal/kafka
func BenchmarkSyncRound(b *testing.B) {
	for _, watched := range []bool{false, true} {
		for _, written := range []int{1, 6} {
			name := fmt.Sprintf("%s/%d-files", map[bool]string{false: "walk", true: "watch"}[watched], written)
			b.Run(name, func(b *testing.B) { benchSyncRound(b, watched, written) })
		}
	}
}

func benchSyncRound(b *testing.B, watched bool, written int) {
	dir := b.TempDir()
	var segments []string
	for t := range 8 {
		for p := range 3 {
			d := filepath.Join(dir, "partitions", fmt.Sprintf("topic%d-%d", t, p))
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.Fatal(err)
			}
			segments = append(segments, filepath.Join(d, "0.dat"))
			for _, f := range []string{"0.dat", "0.idx", "meta.json"} {
				if err := os.WriteFile(filepath.Join(d, f), []byte("x"), 0o644); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	files := make([]*os.File, written)
	for i := range files {
		f, err := os.OpenFile(segments[i], os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		files[i] = f
	}
	s := newSyncer(dir, nil, 0, nil, nil, quietLog)
	if watched {
		s.startWatch("start")
		defer s.closeWatch()
	}
	if _, err := s.syncChanged(); err != nil {
		b.Fatal(err)
	}
	record := make([]byte, 300)
	cpu := testfix.SelfCPU()
	for b.Loop() {
		for _, f := range files {
			if _, err := f.Write(record); err != nil {
				b.Fatal(err)
			}
		}
		if n, err := s.syncChanged(); err != nil || n != written {
			b.Fatalf("round synced %d (err %v), want the %d segments written", n, err, written)
		}
	}
	b.ReportMetric(float64((testfix.SelfCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
}
