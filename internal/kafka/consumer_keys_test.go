package kafka_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
)

// TestKeysHandledConcurrentlyInOrder: within one partition, different keys
// are handled at the same time while each key's records keep offset order.
func TestKeysHandledConcurrentlyInOrder(t *testing.T) {
	t.Parallel()
	const topic, keys, perKey = "KEYED", 20, 10
	r := newRig(t, topic) // one partition: all keys share it
	var recs []*kgo.Record
	for seq := range perKey {
		for k := range keys {
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("k%02d", k)), Value: []byte(strconv.Itoa(seq))})
		}
	}
	r.produce(recs...)

	var (
		mu       sync.Mutex
		seen     = map[string][]int{}
		inFlight atomic.Int32
		peak     atomic.Int32
		all      = make(chan struct{})
		count    int
	)
	stop := r.run(kafka.ConsumerConfig{Group: "keyed", Topics: []string{topic}, Retry: fastRetry, KeyConcurrency: 8,
		Handler: func(_ context.Context, rec *kgo.Record) error {
			n := inFlight.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(2 * time.Millisecond) // long enough for others to start
			inFlight.Add(-1)
			seq, _ := strconv.Atoi(string(rec.Value))
			mu.Lock()
			defer mu.Unlock()
			seen[string(rec.Key)] = append(seen[string(rec.Key)], seq)
			count++
			if count == keys*perKey {
				close(all)
			}
			return nil
		}})
	defer stop()
	await(t, all, "every record")
	mu.Lock()
	defer mu.Unlock()
	for k, seqs := range seen {
		for i, s := range seqs {
			if s != i {
				t.Fatalf("key %s handled out of order: %v", k, seqs)
			}
		}
	}
	if peak.Load() < 2 {
		t.Fatalf("keys were never handled concurrently (peak in flight %d)", peak.Load())
	}
}
