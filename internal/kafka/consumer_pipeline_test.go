package kafka_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
)

// TestSlowKeyDoesNotHoldBackLaterRecords: a record that takes long holds
// back only its own key. A record of another key fetched while it runs is
// handled at once, and the committed offset still stops before the slow
// record, so a stop redelivers it (and what followed it).
func TestSlowKeyDoesNotHoldBackLaterRecords(t *testing.T) {
	t.Parallel()
	const topic = "orders.slowkey"
	r := newRig(t, topic) // one partition
	r.produce(&kgo.Record{Topic: topic, Key: []byte("slow"), Value: []byte("a")})
	started, later := make(chan struct{}), make(chan struct{})
	stop := r.run(kafka.ConsumerConfig{Group: "g", Topics: []string{topic}, Retry: fastRetry,
		Handler: func(ctx context.Context, rec *kgo.Record) error {
			switch string(rec.Key) {
			case "slow":
				close(started)
				<-ctx.Done() // a slow dependency, until shutdown
				return ctx.Err()
			default:
				close(later)
				return nil
			}
		}})
	await(t, started, "the slow record to start")
	// Fetched after the slow record began: a poll-handle-commit loop would
	// not fetch it before the slow record ends.
	r.produce(&kgo.Record{Topic: topic, Key: []byte("other"), Value: []byte("b")})
	await(t, later, "the other key's record, while the slow one still runs")
	stop()
	if got := r.committed("g", topic); got > 0 {
		t.Fatalf("committed offset %d past the unfinished record at offset 0", got)
	}

	handled := r.runRecorder("g", topic)
	r.waitCommitted("g", topic, 2)
	var seen []string
	for _, rec := range handled() {
		seen = append(seen, string(rec.Value))
	}
	slices.Sort(seen) // different keys: handled in either order
	if fmt.Sprint(seen) != "[a b]" {
		t.Errorf("second member handled %v, want [a b] (the unfinished record and everything after it)", seen)
	}
}

// TestRebalanceNeverRunsAKeyTwiceAtOnce: members join a group while
// records flow. Every record is handled, every offset is committed in the
// end, and no key is ever handled by two workers at once, on one member or
// across members: a revoked partition's records in flight finish (and are
// committed) before its next owner fetches them.
func TestRebalanceNeverRunsAKeyTwiceAtOnce(t *testing.T) {
	t.Parallel()
	const (
		topic      = "orders.rebalance"
		partitions = 6
		keys       = 60
		perKey     = 20
	)
	b := kafkatest.New(t)
	p := kafkatest.NewProducer(t, b)
	kafkatest.CreateTopics(t, p, partitions, topic)

	var (
		mu      sync.Mutex
		running = map[string]bool{}
		handled = map[string]int{} // key/seq -> times
		overlap string
		// closed when that many distinct records have been handled
		reached = map[int]chan struct{}{200: make(chan struct{}), 500: make(chan struct{}), 800: make(chan struct{}), keys * perKey: make(chan struct{})}
	)
	handler := func(_ context.Context, rec *kgo.Record) error {
		key := string(rec.Key)
		mu.Lock()
		if running[key] && overlap == "" {
			overlap = key
		}
		running[key] = true
		mu.Unlock()
		// Long enough to be in flight when a rebalance starts.
		time.Sleep(10 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		running[key] = false
		id := key + "/" + string(rec.Value)
		if handled[id]++; handled[id] == 1 {
			if ch, ok := reached[len(handled)]; ok {
				close(ch)
			}
		}
		return nil
	}
	start := func() (stop func()) {
		opts := kafkatest.Options(b)
		c, err := kafka.NewConsumer(kafka.ConsumerConfig{Options: opts, Group: "rebalancing", Topics: []string{topic},
			Retry: fastRetry, KeyConcurrency: 4, Handler: handler})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		var once sync.Once
		stop = func() { once.Do(func() { cancel(); <-done }) }
		t.Cleanup(stop)
		return stop
	}

	var recs []*kgo.Record
	for s := range perKey {
		for k := range keys {
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte("k" + strconv.Itoa(k)), Value: []byte(strconv.Itoa(s))})
		}
	}
	if err := p.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Members come and go while records are in flight.
	start()
	await(t, reached[200], "200 records handled")
	second := start()
	await(t, reached[500], "500 records handled")
	start()
	await(t, reached[800], "800 records handled")
	second() // leaves: its partitions are revoked and reassigned
	await(t, reached[keys*perKey], "every record handled")

	adm := kadm.NewClient(p)
	deadline := time.Now().Add(waitLimit)
	for {
		ends, err := adm.ListEndOffsets(context.Background(), topic)
		if err != nil {
			t.Fatal(err)
		}
		offs, err := adm.FetchOffsets(context.Background(), "rebalancing")
		if err != nil {
			t.Fatal(err)
		}
		behind := 0
		ends.Each(func(e kadm.ListedOffset) {
			if o, ok := offs.Lookup(e.Topic, e.Partition); !ok || o.At != e.Offset {
				behind++
			}
		})
		if behind == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d partitions never committed to their end", behind)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if overlap != "" {
		t.Fatalf("key %s was handled twice at once", overlap)
	}
	if len(handled) != keys*perKey {
		t.Fatalf("%d distinct records handled, want %d", len(handled), keys*perKey)
	}
}
