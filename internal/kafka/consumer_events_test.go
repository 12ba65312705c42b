package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/logging"
)

func (r *rig) options() kafka.Options { return kafkatest.Options(r.broker) }

// deadLetters reads every record of topic from the start.
func (r *rig) deadLetters(topic string, want int) []*kgo.Record {
	r.t.Helper()
	c, err := kgo.NewClient(kgo.SeedBrokers(r.broker.Addr()), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		r.t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want {
		f := c.PollFetches(ctx)
		if ctx.Err() != nil {
			r.t.Fatalf("read %d of %d records of %s", len(out), want, topic)
		}
		out = append(out, f.Records()...)
	}
	return out
}

// TestEventHandlerReceivesTheDecodedEvent: an events.Handler gets the
// CloudEvents envelope, never the record, with the event's correlation id
// in its context and the delivery beside it; the record is committed.
func TestEventHandlerReceivesTheDecodedEvent(t *testing.T) {
	t.Parallel()
	topic := events.OrderCreated
	r := newRig(t, topic, topic+events.DLQSuffix)
	rec := validEvent(t)
	var kept []kgo.RecordHeader
	for _, h := range rec.Headers {
		if h.Key != events.HeaderCorrelationID {
			kept = append(kept, h) // the envelope alone carries it
		}
	}
	rec.Headers = kept
	type seen struct {
		ev    events.Envelope
		corr  string
		topic string
	}
	got := make(chan seen, 1)
	r.run(kafka.ConsumerConfig{Group: "g", Topics: []string{topic}, Retry: fastRetry,
		Events: func(ctx context.Context, ev events.Envelope) error {
			d, _ := events.DeliveryFrom(ctx)
			got <- seen{ev: ev, corr: logging.CorrelationID(ctx), topic: d.Topic}
			return nil
		}})
	r.produce(rec)
	r.waitCommitted("g", topic, 1)
	s := <-got
	if s.ev.Type != events.OrderCreated || s.ev.Subject != "5b3c4a52-8f6e-4c8e-9d4b-1f2a3b4c5d6e" || s.ev.ID == "" {
		t.Errorf("event %+v", s.ev)
	}
	if s.corr != "corr-1" || s.topic != topic {
		t.Errorf("correlation id %q, delivery topic %q; want corr-1 from the envelope, %s", s.corr, s.topic, topic)
	}
	if n := r.endOffset(topic + events.DLQSuffix); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
}

// TestEventHandlerFailuresMapToTheDeadLetterPath: the runner, not the
// handler, decides what a failure means for the record. A record that is
// no event never reaches the handler and is dead-lettered at once; an
// error the handler marks events.Permanent is dead-lettered at once with
// its own message; any other error is retried, then dead-lettered. The
// dead letters carry Spring's kafka_dlt-* headers as before.
func TestEventHandlerFailuresMapToTheDeadLetterPath(t *testing.T) {
	t.Parallel()
	topic := events.OrderCreated
	r := newRig(t, topic, topic+events.DLQSuffix)
	var (
		mu    sync.Mutex
		calls = map[string]int{}
	)
	r.run(kafka.ConsumerConfig{Group: "g", Topics: []string{topic}, Retry: fastRetry,
		Events: func(_ context.Context, ev events.Envelope) error {
			var d map[string]string
			if err := ev.DecodeData(&d); err != nil {
				return err
			}
			mu.Lock()
			calls[d["id"]]++
			mu.Unlock()
			switch d["id"] {
			case "unknown-order":
				return events.Permanent(fmt.Errorf("order saga: %s names unknown order", ev.ID))
			case "flaky":
				return errors.New("database is starting up")
			}
			return nil
		}})
	event := func(id string) *kgo.Record {
		ev, err := events.New(events.OrderCreated, events.AggregateOrder, "5b3c4a52-8f6e-4c8e-9d4b-1f2a3b4c5d6e", map[string]string{"id": id}, "")
		if err != nil {
			t.Fatal(err)
		}
		v, _ := ev.Marshal()
		return &kgo.Record{Topic: topic, Key: []byte("k"), Value: v}
	}
	r.produce(&kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("not an event")}, event("unknown-order"), event("flaky"), event("fine"))
	r.waitCommitted("g", topic, 4)
	dead := r.deadLetters(topic+events.DLQSuffix, 3)
	want := []struct {
		class, message, attempts string
	}{
		{"trackops.MalformedEventError", "malformed event: invalid character 'o' in literal null (expecting 'u')", "1"},
		{"trackops.PermanentError", "", "1"},
		{"trackops.Error", "database is starting up", "3"},
	}
	for i, w := range want {
		h := headerMap(dead[i])
		if string(h[kafka.HeaderDLTOriginalTopic]) != topic || string(h[kafka.HeaderDLTOriginalGroup]) != "g" {
			t.Errorf("dead letter %d: original topic %q group %q", i, h[kafka.HeaderDLTOriginalTopic], h[kafka.HeaderDLTOriginalGroup])
		}
		if got := string(h[kafka.HeaderDLTExceptionFQCN]); got != w.class {
			t.Errorf("dead letter %d: class %q, want %q", i, got, w.class)
		}
		if w.message != "" && string(h[kafka.HeaderDLTExceptionMessage]) != w.message {
			t.Errorf("dead letter %d: message %q, want %q", i, h[kafka.HeaderDLTExceptionMessage], w.message)
		}
		if got := string(h[kafka.HeaderDLTAttempts]); got != w.attempts {
			t.Errorf("dead letter %d: %s attempts, want %s", i, got, w.attempts)
		}
	}
	if msg := string(headerMap(dead[1])[kafka.HeaderDLTExceptionMessage]); !strings.HasPrefix(msg, "order saga: ") {
		t.Errorf("permanent failure's message %q, want the handler's own", msg)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls["unknown-order"] != 1 || calls["flaky"] != 3 || calls["fine"] != 1 {
		t.Errorf("handler calls %v, want unknown-order once, flaky 3 times, fine once", calls)
	}
}

// TestWrapHandlerWrapsEveryAttemptAroundDecoding: Options.WrapHandler (the
// process's tracing) sees each attempt at the record, decoding included.
func TestWrapHandlerWrapsEveryAttemptAroundDecoding(t *testing.T) {
	t.Parallel()
	topic := events.OrderCreated
	r := newRig(t, topic, topic+events.DLQSuffix)
	var (
		mu      sync.Mutex
		wrapped []string
		outcome []error
	)
	cfg := kafka.ConsumerConfig{Group: "traced", Topics: []string{topic}, Retry: fastRetry,
		Events: func(context.Context, events.Envelope) error { return nil }}
	opts := r.options()
	opts.WrapHandler = func(group string, h kafka.Handler) kafka.Handler {
		mu.Lock()
		wrapped = append(wrapped, group)
		mu.Unlock()
		return func(ctx context.Context, rec *kgo.Record) error {
			err := h(ctx, rec)
			mu.Lock()
			outcome = append(outcome, err)
			mu.Unlock()
			return err
		}
	}
	cfg.Options = opts
	c, err := kafka.NewConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	r.produce(validEvent(t), &kgo.Record{Topic: topic, Value: []byte("{")})
	r.waitCommitted("traced", topic, 2)
	mu.Lock()
	defer mu.Unlock()
	if len(wrapped) != 1 || wrapped[0] != "traced" {
		t.Errorf("wrapped for %v, want once for the group", wrapped)
	}
	ok, malformed := 0, 0
	for _, err := range outcome {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, events.ErrMalformed):
			malformed++
		}
	}
	if len(outcome) != 2 || ok != 1 || malformed != 1 {
		t.Errorf("the wrapper saw %v, want the event's success and the malformed record's error", outcome)
	}
}

func TestConsumerWantsExactlyOneHandler(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rh := func(context.Context, *kgo.Record) error { return nil }
	eh := func(context.Context, events.Envelope) error { return nil }
	for name, cfg := range map[string]kafka.ConsumerConfig{
		"neither": {},
		"both":    {Handler: rh, Events: eh},
	} {
		cfg.Group, cfg.Topics, cfg.Options = "g", []string{"t"}, r.options()
		if c, err := kafka.NewConsumer(cfg); err == nil {
			c.Client().Close()
			t.Errorf("%s: NewConsumer accepted it", name)
		}
	}
}
