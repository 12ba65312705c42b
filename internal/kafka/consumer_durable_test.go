package kafka_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
)

type gateBarrier struct {
	calls atomic.Int64
	open  atomic.Bool
}

func (g *gateBarrier) WaitDurable(context.Context) error {
	g.calls.Add(1)
	if !g.open.Load() {
		return errors.New("not durable")
	}
	return nil
}

// TestDurableCommitsWaitForTheBroker: a consumer whose handler produces
// (DurableCommits) commits no offset until the broker's barrier says what
// was produced is durable.
func TestDurableCommitsWaitForTheBroker(t *testing.T) {
	r := newRig(t, "durable-in")
	gate := &gateBarrier{}
	handled := make(chan struct{}, 10)
	opts := kafkatest.Options(r.broker)
	opts.Durability = gate
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{Options: opts, Group: "durable-group", Topics: []string{"durable-in"},
		DurableCommits: true, Retry: fastRetry,
		Handler: func(context.Context, *kgo.Record) error { handled <- struct{}{}; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	r.produce(&kgo.Record{Topic: "durable-in", Key: []byte("k"), Value: []byte("v")})
	await(t, handled, "the record handled")
	deadline := time.Now().Add(waitLimit)
	for gate.calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the consumer never asked the barrier before committing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := r.committed("durable-group", "durable-in"); got > 0 {
		t.Fatalf("offset %d committed although the broker refused durability", got)
	}
	gate.open.Store(true)
	// The next poll's commit carries the record once the barrier passes.
	r.produce(&kgo.Record{Topic: "durable-in", Key: []byte("k"), Value: []byte("w")})
	await(t, handled, "the second record handled")
	r.waitCommitted("durable-group", "durable-in", 2)
}
