package kafka_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/testfix"
)

// fastRetry keeps the seed's shape (3 attempts, x2, capped) at test speed.
var fastRetry = kafka.RetryPolicy{Attempts: 3, Initial: 2 * time.Millisecond, Multiplier: 2, Max: 10 * time.Millisecond}

const waitLimit = 30 * time.Second

// rig is one private broker with a producer and helpers around a consumer.
type rig struct {
	t        *testing.T
	broker   *kafka.Embedded
	producer *kgo.Client
	admin    *kadm.Client
}

func newRig(t *testing.T, topics ...string) *rig {
	t.Helper()
	b := kafkatest.New(t)
	p := kafkatest.NewProducer(t, b)
	if len(topics) > 0 {
		kafkatest.CreateTopics(t, p, 1, topics...)
	}
	return &rig{t: t, broker: b, producer: p, admin: kadm.NewClient(p)}
}

func (r *rig) produce(recs ...*kgo.Record) {
	r.t.Helper()
	if err := r.producer.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		r.t.Fatalf("produce: %v", err)
	}
}

// run starts a consumer and returns a stop function that cancels it and
// waits for Run to return.
func (r *rig) run(cfg kafka.ConsumerConfig) (stop func()) {
	r.t.Helper()
	cfg.Options = kafkatest.Options(r.broker)
	c, err := kafka.NewConsumer(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				r.t.Errorf("consumer Run: %v", err)
			}
		})
	}
	r.t.Cleanup(stop)
	return stop
}

// runRecorder starts a member of group on topic whose handler keeps every
// record; handled returns what it kept so far, in handling order.
func (r *rig) runRecorder(group, topic string) (handled func() []*kgo.Record) {
	var (
		mu   sync.Mutex
		seen []*kgo.Record
	)
	r.run(kafka.ConsumerConfig{Group: group, Topics: []string{topic}, Retry: fastRetry,
		Handler: func(_ context.Context, rec *kgo.Record) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, rec)
			return nil
		}})
	return func() []*kgo.Record {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

func (r *rig) endOffset(topic string) int64 {
	r.t.Helper()
	ends, err := r.admin.ListEndOffsets(context.Background(), topic)
	if err != nil {
		r.t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	return total
}

func (r *rig) committed(group, topic string) int64 {
	r.t.Helper()
	offs, err := r.admin.FetchOffsets(context.Background(), group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return -1 // the group has not joined yet
	}
	if err != nil {
		r.t.Fatal(err)
	}
	o, ok := offs.Lookup(topic, 0)
	if !ok {
		return -1
	}
	return o.At
}

// waitCommitted waits until group committed topic partition 0 up to at.
func (r *rig) waitCommitted(group, topic string, at int64) {
	r.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for r.committed(group, topic) != at {
		if time.Now().After(deadline) {
			r.t.Fatalf("group %s never committed %s offset %d (now %d)", group, topic, at, r.committed(group, topic))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// callLog counts handler calls per offset.
type callLog struct {
	mu    sync.Mutex
	calls map[int64]int
}

func (l *callLog) add(off int64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.calls == nil {
		l.calls = map[int64]int{}
	}
	l.calls[off]++
	return l.calls[off]
}

func (l *callLog) get(off int64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls[off]
}

func validEvent(t *testing.T) *kgo.Record {
	t.Helper()
	ev, err := events.New(events.OrderCreated, events.AggregateOrder, "5b3c4a52-8f6e-4c8e-9d4b-1f2a3b4c5d6e", map[string]string{"id": "x"}, "corr-1")
	if err != nil {
		t.Fatal(err)
	}
	v, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	rec := &kgo.Record{Topic: events.OrderCreated, Key: []byte(ev.AggregateID()), Value: v}
	for k, val := range ev.Headers() {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: []byte(val)})
	}
	return rec
}

func headerMap(rec *kgo.Record) map[string][]byte {
	m := map[string][]byte{}
	for _, h := range rec.Headers {
		m[h.Key] = h.Value
	}
	return m
}

// TestMalformedRecordIsDeadLetteredAtOnce is the kcat case: a record that is
// not an event reaches ORDER_CREATED.dlq after one attempt, with every Spring
// header, and the consumer goes on with the next record.
func TestMalformedRecordIsDeadLetteredAtOnce(t *testing.T) {
	t.Parallel()
	topic, dlq := events.OrderCreated, events.OrderCreated+events.DLQSuffix
	r := newRig(t, topic, dlq)
	var calls callLog
	next := make(chan struct{})
	r.run(kafka.ConsumerConfig{Group: "inventory", Topics: []string{topic}, Retry: fastRetry,
		Handler: func(_ context.Context, rec *kgo.Record) error {
			calls.add(rec.Offset)
			if _, err := events.Decode(rec.Value); err != nil {
				return fmt.Errorf("order created: %w", err)
			}
			close(next)
			return nil
		}})
	bad := &kgo.Record{Topic: topic, Value: []byte(`{"orderId": 42, "broken`)} // kcat -P: no key
	r.produce(bad)
	r.produce(validEvent(t))
	await(t, next, "the record after the malformed one")

	// Records of other keys may be handled before or beside it; once its
	// dead letter exists it must have been tried exactly once.
	dead := kafkatest.Read(t, r.broker, dlq, 1, waitLimit)
	if len(dead) != 1 {
		t.Fatalf("got %d dead letters, want 1", len(dead))
	}
	if got := calls.get(0); got != 1 {
		t.Errorf("malformed record tried %d times, want 1 (straight to the DLQ)", got)
	}
	dl := dead[0]
	if string(dl.Value) != string(bad.Value) || dl.Key != nil {
		t.Errorf("dead letter key/value changed: key %q value %q", dl.Key, dl.Value)
	}
	h := headerMap(dl)
	for _, name := range []string{kafka.HeaderDLTOriginalTopic, kafka.HeaderDLTOriginalPartition, kafka.HeaderDLTOriginalOffset,
		kafka.HeaderDLTOriginalTimestamp, kafka.HeaderDLTOriginalGroup, kafka.HeaderDLTExceptionFQCN,
		kafka.HeaderDLTExceptionMessage, kafka.HeaderDLTExceptionTrace} {
		if len(h[name]) == 0 {
			t.Errorf("dead letter lacks header %s", name)
		}
	}
	if got := string(h[kafka.HeaderDLTOriginalTopic]); got != topic {
		t.Errorf("original topic %q", got)
	}
	if p := h[kafka.HeaderDLTOriginalPartition]; len(p) != 4 || binary.BigEndian.Uint32(p) != 0 {
		t.Errorf("original partition header %v, want 4-byte big-endian 0", p)
	}
	if o := h[kafka.HeaderDLTOriginalOffset]; len(o) != 8 || binary.BigEndian.Uint64(o) != 0 {
		t.Errorf("original offset header %v, want 8-byte big-endian 0", o)
	}
	if ts := h[kafka.HeaderDLTOriginalTimestamp]; len(ts) != 8 || int64(binary.BigEndian.Uint64(ts)) <= 0 {
		t.Errorf("original timestamp header %v, want 8-byte epoch millis", ts)
	}
	if got := string(h[kafka.HeaderDLTOriginalGroup]); got != "inventory" {
		t.Errorf("original group %q", got)
	}
	if got := string(h[kafka.HeaderDLTExceptionFQCN]); got != "trackops.MalformedEventError" {
		t.Errorf("exception class %q", got)
	}
	if got := string(h[kafka.HeaderDLTExceptionMessage]); !strings.Contains(got, "malformed event") {
		t.Errorf("exception message %q", got)
	}
	if got := string(h[kafka.HeaderDLTAttempts]); got != "1" {
		t.Errorf("attempts header %q, want 1", got)
	}
	r.waitCommitted("inventory", topic, 2)
}

// TestRetryableFailureIsDeadLetteredAfterThreeAttempts: a failure that might
// pass on retry is tried exactly Attempts times, then dead-lettered, and the
// partition moves on.
func TestRetryableFailureIsDeadLetteredAfterThreeAttempts(t *testing.T) {
	t.Parallel()
	topic, dlq := "orders.retry", "orders.retry.dlq"
	r := newRig(t, topic, dlq)
	var calls callLog
	next := make(chan struct{})
	r.run(kafka.ConsumerConfig{Group: "g", Topics: []string{topic}, Retry: fastRetry,
		Handler: func(_ context.Context, rec *kgo.Record) error {
			calls.add(rec.Offset)
			if rec.Offset == 0 {
				return errors.New("reserve stock: connection reset by peer")
			}
			close(next)
			return nil
		}})
	r.produce(&kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("a")}, &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("b")})
	await(t, next, "the record after the failing one")
	if got := calls.get(0); got != 3 {
		t.Errorf("failing record tried %d times, want 3", got)
	}
	dead := kafkatest.Read(t, r.broker, dlq, 1, waitLimit)
	if len(dead) != 1 {
		t.Fatalf("got %d dead letters, want 1", len(dead))
	}
	h := headerMap(dead[0])
	if got := string(h[kafka.HeaderDLTAttempts]); got != "3" {
		t.Errorf("attempts header %q, want 3", got)
	}
	if got := string(h[kafka.HeaderDLTExceptionFQCN]); got != "trackops.Error" {
		t.Errorf("exception class %q", got)
	}
	if string(dead[0].Key) != "k" {
		t.Errorf("dead letter key %q, want the original", dead[0].Key)
	}
	r.waitCommitted("g", topic, 2)
}

// TestFailTwiceThenSucceedProcessesOnce: two failures then success is one
// processing and no dead letter.
func TestFailTwiceThenSucceedProcessesOnce(t *testing.T) {
	t.Parallel()
	topic, dlq := "orders.flaky", "orders.flaky.dlq"
	r := newRig(t, topic, dlq)
	var (
		calls     callLog
		mu        sync.Mutex
		processed int
		seen      []events.Delivery
	)
	r.run(kafka.ConsumerConfig{Group: "g", Topics: []string{topic}, Retry: fastRetry,
		Handler: func(ctx context.Context, rec *kgo.Record) error {
			d, ok := events.DeliveryFrom(ctx)
			mu.Lock()
			if ok {
				seen = append(seen, d)
			}
			mu.Unlock()
			if calls.add(rec.Offset) <= 2 {
				return errors.New("database is starting up")
			}
			mu.Lock()
			processed++
			mu.Unlock()
			return nil
		}})
	r.produce(&kgo.Record{Topic: topic, Value: []byte("x")})
	r.waitCommitted("g", topic, 1)
	mu.Lock()
	defer mu.Unlock()
	if processed != 1 || calls.get(0) != 3 {
		t.Errorf("processed %d times in %d calls, want once in 3", processed, calls.get(0))
	}
	if n := r.endOffset(dlq); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
	// Each attempt's context says where the record came from and which try it is.
	if len(seen) != 3 {
		t.Fatalf("deliveries in context: %+v, want one per attempt", seen)
	}
	for i, d := range seen {
		if d.Group != "g" || d.Topic != topic || d.Partition != 0 || d.Offset != 0 || d.Attempt != i+1 || d.Timestamp.IsZero() {
			t.Errorf("attempt %d: delivery %+v", i+1, d)
		}
	}
}

// TestOffsetsCommittedOnlyForHandledRecords stops a consumer while it is
// stuck on a record: the committed offset points at that record, and the next
// member of the group starts there — nothing skipped.
func TestOffsetsCommittedOnlyForHandledRecords(t *testing.T) {
	t.Parallel()
	topic, dlq := "orders.stuck", "orders.stuck.dlq"
	r := newRig(t, topic, dlq)
	for i := range 5 {
		r.produce(&kgo.Record{Topic: topic, Value: []byte(fmt.Sprint(i))})
	}
	stuck := make(chan struct{})
	stop := r.run(kafka.ConsumerConfig{Group: "g", Topics: []string{topic}, Retry: fastRetry,
		Handler: func(ctx context.Context, rec *kgo.Record) error {
			if rec.Offset < 2 {
				return nil
			}
			if rec.Offset == 2 {
				close(stuck)
			}
			<-ctx.Done() // a slow dependency, until shutdown
			return ctx.Err()
		}})
	await(t, stuck, "the handler to reach offset 2")
	stop()
	if got := r.committed("g", topic); got != 2 {
		t.Fatalf("committed offset %d after stopping on offset 2, want 2", got)
	}

	handled := r.runRecorder("g", topic)
	r.waitCommitted("g", topic, 5)
	var seen []int64
	for _, rec := range handled() {
		seen = append(seen, rec.Offset)
	}
	if fmt.Sprint(seen) != "[2 3 4]" {
		t.Errorf("second member handled offsets %v, want [2 3 4]", seen)
	}
	if n := r.endOffset(dlq); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
}

// TestHandlerPanicIsDeadLettered: a panicking handler does not crash the
// process; the record is dead-lettered at once.
func TestHandlerPanicIsDeadLettered(t *testing.T) {
	t.Parallel()
	topic, dlq := "orders.panic", "orders.panic.dlq"
	r := newRig(t, topic, dlq)
	var calls callLog
	r.run(kafka.ConsumerConfig{Group: "g", Topics: []string{topic}, Retry: fastRetry,
		Handler: func(_ context.Context, rec *kgo.Record) error {
			calls.add(rec.Offset)
			var m map[string]int
			m["boom"]++ // nil map write
			return nil
		}})
	r.produce(&kgo.Record{Topic: topic, Value: []byte("x")})
	r.waitCommitted("g", topic, 1)
	if got := calls.get(0); got != 1 {
		t.Errorf("panicking record tried %d times, want 1", got)
	}
	dead := kafkatest.Read(t, r.broker, dlq, 1, waitLimit)
	if len(dead) != 1 {
		t.Fatalf("got %d dead letters, want 1", len(dead))
	}
	if got := kafka.Header(dead[0], kafka.HeaderDLTExceptionFQCN); got != "trackops.PermanentError" {
		t.Errorf("exception class %q", got)
	}
}

// TestMissingDeadLetterTopicIsCreated: with the dead-letter topic absent
// the record still ends up there instead of stalling the partition.
func TestMissingDeadLetterTopicIsCreated(t *testing.T) {
	t.Parallel()
	topic := "orders.nodlq"
	r := newRig(t, topic)
	r.run(kafka.ConsumerConfig{Group: "g", Topics: []string{topic}, Retry: fastRetry,
		Handler: func(context.Context, *kgo.Record) error { return events.Permanent(errors.New("schema violation")) }})
	r.produce(&kgo.Record{Topic: topic, Value: []byte("x")})
	r.waitCommitted("g", topic, 1)
	if n := r.endOffset(topic + events.DLQSuffix); n != 1 {
		t.Errorf("%d dead letters, want 1", n)
	}
}

// TestDisabledDeadLetterRetriesUntilSuccess: consumers of dead-letter
// topics never dead-letter; they keep retrying.
func TestDisabledDeadLetterRetriesUntilSuccess(t *testing.T) {
	t.Parallel()
	topic := "x.dlq"
	r := newRig(t, topic, topic+events.DLQSuffix)
	var calls callLog
	r.run(kafka.ConsumerConfig{Group: "monitor", Topics: []string{`^.*\.dlq$`}, Retry: fastRetry, DisableDeadLetter: true,
		Handler: func(_ context.Context, rec *kgo.Record) error {
			if calls.add(rec.Offset) <= 5 {
				return events.Permanent(errors.New("database down"))
			}
			return nil
		}})
	r.produce(&kgo.Record{Topic: topic, Value: []byte("x")})
	r.waitCommitted("monitor", topic, 1)
	if got := calls.get(0); got != 6 {
		t.Errorf("tried %d times, want 6", got)
	}
	if n := r.endOffset(topic + events.DLQSuffix); n != 0 {
		t.Errorf("%d dead letters of a dead letter, want none", n)
	}
}

func TestRetryPolicyBackoff(t *testing.T) {
	t.Parallel()
	p := kafka.DefaultRetry()
	if p.Attempts != 3 || p.Initial != time.Second || p.Multiplier != 2 || p.Max != 10*time.Second {
		t.Fatalf("DefaultRetry = %+v, want the seed's 3 attempts, 1 s x2 at most 10 s", p)
	}
	for _, tc := range []struct {
		attempt int
		want    time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {4, 8 * time.Second}, {5, 10 * time.Second}, {60, 10 * time.Second}} {
		if got := p.Backoff(tc.attempt); got != tc.want {
			t.Errorf("Backoff(%d) = %v, want %v", tc.attempt, got, tc.want)
		}
	}
	if got := p.Budget(); got != 3*time.Second {
		t.Errorf("Budget = %v, want 3s (1 s + 2 s before the third attempt)", got)
	}
}

func TestIsPermanentAndErrorClass(t *testing.T) {
	t.Parallel()
	var syntaxErr error
	{
		var v any
		syntaxErr = json.Unmarshal([]byte("{"), &v)
	}
	_, malformed := events.Decode([]byte(`{"specversion":"0.3"}`))
	for _, tc := range []struct {
		name      string
		err       error
		permanent bool
		class     string
	}{
		{"plain", errors.New("timeout"), false, "trackops.Error"},
		{"wrapped plain", fmt.Errorf("reserve: %w", errors.New("timeout")), false, "trackops.Error"},
		{"permanent", events.Permanent(errors.New("bad sku")), true, "trackops.PermanentError"},
		{"malformed event", malformed, true, "trackops.MalformedEventError"},
		{"json syntax", fmt.Errorf("decode: %w", syntaxErr), true, "encoding/json.SyntaxError"},
		{"context", context.DeadlineExceeded, false, "context.deadlineExceededError"},
	} {
		if got := kafka.IsPermanent(tc.err); got != tc.permanent {
			t.Errorf("%s: IsPermanent = %v", tc.name, got)
		}
		if got := kafka.ErrorClass(tc.err); got != tc.class {
			t.Errorf("%s: ErrorClass = %q, want %q", tc.name, got, tc.class)
		}
	}
}

func TestDeadLetterRecordReplacesOldDeadLetterHeaders(t *testing.T) {
	t.Parallel()
	rec := &kgo.Record{Topic: "ORDER_CREATED", Partition: 2, Offset: 1<<40 + 7, Timestamp: time.UnixMilli(1_700_000_000_123),
		Key: []byte("k"), Value: []byte("v"), Headers: []kgo.RecordHeader{
			{Key: "event_id", Value: []byte("e1")},
			{Key: "trackops_replay-count", Value: []byte("2")},
			{Key: kafka.HeaderDLTOriginalOffset, Value: []byte("stale")},
			{Key: kafka.HeaderDLTAttempts, Value: []byte("9")},
		}}
	dl := kafka.DeadLetterRecord(rec, "saga", events.Permanent(errors.New("no")), 1)
	if dl.Topic != "ORDER_CREATED.dlq" {
		t.Errorf("topic %q", dl.Topic)
	}
	counts := map[string]int{}
	for _, h := range dl.Headers {
		counts[h.Key]++
	}
	for k, n := range counts {
		if n != 1 {
			t.Errorf("header %s appears %d times", k, n)
		}
	}
	h := headerMap(dl)
	if string(h["event_id"]) != "e1" || string(h["trackops_replay-count"]) != "2" {
		t.Errorf("original headers not kept: %v", counts)
	}
	if got := binary.BigEndian.Uint32(h[kafka.HeaderDLTOriginalPartition]); got != 2 {
		t.Errorf("partition %d", got)
	}
	if got := binary.BigEndian.Uint64(h[kafka.HeaderDLTOriginalOffset]); got != 1<<40+7 {
		t.Errorf("offset %d", got)
	}
	if got := binary.BigEndian.Uint64(h[kafka.HeaderDLTOriginalTimestamp]); got != 1_700_000_000_123 {
		t.Errorf("timestamp %d", got)
	}
	if again := kafka.DeadLetterRecord(dl, "saga", errors.New("no"), 1); again.Topic != "ORDER_CREATED.dlq" {
		t.Errorf("dead letter of a dead letter goes to %q, want the same .dlq topic", again.Topic)
	}
}

// TestConsumerNeverRunIsReleasedByClose: a process that builds a consumer
// and then fails to start never runs it; Close must release its clients, or
// they keep dialling the broker (and logging about it) after the broker is
// gone and the process has reported its error.
func TestConsumerNeverRunIsReleasedByClose(t *testing.T) {
	t.Parallel()
	b := kafkatest.New(t)
	logs := &testfix.TailBuffer{} // keeps everything
	opts := kafkatest.Options(b)
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{Options: opts, Group: "never-run", Topics: []string{"never-run"},
		Handler: func(context.Context, *kgo.Record) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client().Ping(context.Background()); err != nil { // connected, as a built consumer is
		t.Fatal(err)
	}
	c.Close()
	c.Close() // again: nothing
	b.Close()
	before := len(logs.String())
	time.Sleep(1500 * time.Millisecond) // the clients' dial back-off is well under this
	if late := logs.String()[before:]; late != "" {
		t.Fatalf("the consumer's clients logged after Close and the broker's end:\n%s", late)
	}
}
