package kafka_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
)

// threeBrokers starts a three-broker Kafka-protocol cluster for t.
func threeBrokers(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.DefaultNumPartitions(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// replication describes how topic was created: replicas per partition
// (the smallest) and its min.insync.replicas.
func replication(t *testing.T, adm *kadm.Client, topic string) (replicas int, minISR string) {
	t.Helper()
	ctx := context.Background()
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := details[topic]
	if !ok || d.Err != nil || len(d.Partitions) == 0 {
		t.Fatalf("topic %s: %+v", topic, d)
	}
	replicas = 1 << 30
	for _, p := range d.Partitions {
		replicas = min(replicas, len(p.Replicas))
	}
	cfgs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cfgs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rc.Configs {
		if c.Key == "min.insync.replicas" {
			minISR = c.MaybeValue()
		}
	}
	return replicas, minISR
}

// Topics created through a TrackOps producer get the configured replication
// factor and min.insync.replicas on a three-broker cluster — also when the
// client is built with extra options, as the CDC connector's is, and for a
// topic created later (a dead-letter topic on first use).
func TestTopicsAreCreatedReplicated(t *testing.T) {
	t.Parallel()
	cluster := threeBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := kafka.Options{Brokers: cluster.ListenAddrs(), ClientID: "topics-test",
		Topics: kafka.TopicConfig{ReplicationFactor: 3, MinInsyncReplicas: 2}}
	producer, err := kafka.NewProducer(opts, kgo.MaxBufferedRecords(10))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	adm := kadm.NewClient(producer)

	if err := kafka.EnsureTopics(ctx, producer, 3, "ORDER_CREATED", "ORDER_CREATED.dlq"); err != nil {
		t.Fatal(err)
	}
	if err := kafka.EnsureTopics(ctx, producer, -1, "orders.order_items"); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"ORDER_CREATED", "ORDER_CREATED.dlq", "orders.order_items"} {
		if n, isr := replication(t, adm, topic); n != 3 || isr != "2" {
			t.Errorf("%s: %d replicas, min.insync.replicas %q; want 3 and 2", topic, n, isr)
		}
	}
	// Creating again is not an error, and what exists is left alone.
	if err := kafka.EnsureTopics(ctx, producer, 3, "ORDER_CREATED"); err != nil {
		t.Fatalf("second EnsureTopics: %v", err)
	}

	// Producers acknowledge only what all in-sync replicas have, idempotently.
	if acks := producer.OptValue(kgo.RequiredAcks); acks != kgo.AllISRAcks() {
		t.Errorf("producer acks = %v, want all in-sync replicas", acks)
	}
	if off := producer.OptValue(kgo.DisableIdempotentWrite); off != false {
		t.Errorf("idempotent writes disabled: %v", off)
	}
	if err := producer.ProduceSync(ctx, &kgo.Record{Topic: "ORDER_CREATED", Key: []byte("o-1"), Value: []byte("{}")}).FirstErr(); err != nil {
		t.Fatalf("produce with acks=all to a replicated topic: %v", err)
	}
}

// Another replication (2, both in sync) is what the cluster reports — not
// the brokers' defaults (3 replicas, min.insync.replicas 1 here) — and a
// client built without the settings gets the defaults.
func TestTopicReplicationFollowsTheOptions(t *testing.T) {
	t.Parallel()
	cluster := threeBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	two, err := kafka.NewProducer(kafka.Options{Brokers: cluster.ListenAddrs(),
		Topics: kafka.TopicConfig{ReplicationFactor: 2, MinInsyncReplicas: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer two.Close()
	plain, err := kafka.NewProducer(kafka.Options{Brokers: cluster.ListenAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := kafka.EnsureTopics(ctx, two, 3, "two"); err != nil {
		t.Fatal(err)
	}
	if err := kafka.EnsureTopics(ctx, plain, 3, "defaults"); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(plain)
	if n, isr := replication(t, adm, "two"); n != 2 || isr != "2" {
		t.Errorf("two: %d replicas, min.insync.replicas %q; want 2 and 2", n, isr)
	}
	if _, isr := replication(t, adm, "defaults"); isr == "2" {
		t.Errorf("defaults: min.insync.replicas %q set without a TopicConfig", isr)
	}

	// A topic with fewer replicas than configured is reported.
	three, err := kafka.NewProducer(kafka.Options{Brokers: cluster.ListenAddrs(),
		Topics: kafka.TopicConfig{ReplicationFactor: 3, MinInsyncReplicas: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer three.Close()
	short, err := kafka.UnderReplicated(ctx, three, "two", "defaults")
	if err != nil || len(short) != 1 || short["two"] != 2 {
		t.Fatalf("UnderReplicated = %v, %v; want two with 2 replicas", short, err)
	}

	// More replicas than brokers is refused with a pointer to the setting.
	five, err := kafka.NewProducer(kafka.Options{Brokers: cluster.ListenAddrs(),
		Topics: kafka.TopicConfig{ReplicationFactor: 5}})
	if err != nil {
		t.Fatal(err)
	}
	defer five.Close()
	if err := kafka.EnsureTopics(ctx, five, 3, "five"); err == nil {
		t.Fatal("replication factor 5 on three brokers accepted")
	}
}

// A consumer that creates a missing dead-letter topic on first use creates
// it replicated, from the same Options.
func TestDeadLetterTopicIsCreatedReplicated(t *testing.T) {
	t.Parallel()
	cluster := threeBrokers(t)
	opts := kafka.Options{Brokers: cluster.ListenAddrs(), ClientID: "dlq-topics-test",
		Topics: kafka.TopicConfig{ReplicationFactor: 3, MinInsyncReplicas: 2}}
	producer, err := kafka.NewProducer(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, producer, 1, "INVENTORY_RESERVED"); err != nil {
		t.Fatal(err)
	}
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{Options: opts, Group: "g", Topics: []string{"INVENTORY_RESERVED"},
		Retry:   kafka.RetryPolicy{Attempts: 1, Initial: time.Millisecond, Multiplier: 1, Max: time.Millisecond},
		Handler: func(context.Context, *kgo.Record) error { return events.Permanent(errors.New("unreadable")) }})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(runCtx) }()
	defer func() { stop(); <-done }()
	if err := producer.ProduceSync(ctx, &kgo.Record{Topic: "INVENTORY_RESERVED", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(producer)
	for {
		var total int64
		if ends, err := adm.ListEndOffsets(ctx, "INVENTORY_RESERVED.dlq"); err == nil {
			ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
		}
		if total == 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the record never reached its dead-letter topic")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n, isr := replication(t, adm, "INVENTORY_RESERVED.dlq"); n != 3 || isr != "2" {
		t.Fatalf("dead-letter topic: %d replicas, min.insync.replicas %q; want 3 and 2", n, isr)
	}
}
