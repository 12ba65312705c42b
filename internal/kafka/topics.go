package kafka

import (
	"context"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TopicConfig is how the topics TrackOps creates are replicated: the
// durability half of acks=all. With a replication factor of 3 and
// min.insync.replicas of 2, an acknowledged record is on at least two
// brokers, and one broker may be down without stopping writes.
type TopicConfig struct {
	// ReplicationFactor of new topics; 0 or -1 leaves it to the brokers'
	// default.replication.factor.
	ReplicationFactor int16
	// MinInsyncReplicas is set as min.insync.replicas on new topics; 0
	// leaves it to the brokers' default.
	MinInsyncReplicas int
}

// topicSettings rides along in a client's hooks, so that every topic
// created through a client TrackOps built — by the app, a consumer creating
// a dead-letter topic, or the CDC connector creating a table's topic — gets
// the configured replication without each of them passing it down.
type topicSettings struct{ TopicConfig }

// OnNewClient implements kgo.HookNewClient, which kgo requires a hook to
// implement something; it does nothing.
func (topicSettings) OnNewClient(*kgo.Client) {}

// withTopicConfig is the client option carrying tc.
func withTopicConfig(tc TopicConfig) kgo.Opt { return kgo.WithHooks(topicSettings{tc}) }

// topicConfigOf finds the TopicConfig a client was built with; the zero
// value (the brokers' defaults) when none.
func topicConfigOf(client *kgo.Client) TopicConfig {
	hooks, _ := client.OptValue(kgo.WithHooks).([]kgo.Hook)
	for _, h := range hooks {
		if ts, ok := h.(topicSettings); ok {
			return ts.TopicConfig
		}
	}
	return TopicConfig{}
}

// replicationFactor is what CreateTopics is asked for: -1 for the
// brokers' default.
func (tc TopicConfig) replicationFactor() int16 {
	if tc.ReplicationFactor <= 0 {
		return -1
	}
	return tc.ReplicationFactor
}

// topicConfigs are the topic-level settings of a new topic.
func (tc TopicConfig) topicConfigs() map[string]*string {
	if tc.MinInsyncReplicas <= 0 {
		return nil
	}
	v := strconv.Itoa(tc.MinInsyncReplicas)
	return map[string]*string{"min.insync.replicas": &v}
}

// UnderReplicated returns, of topics, those that exist with fewer replicas
// than the client's configured replication factor — topics created before
// it was raised, or by hand. Kafka does not raise it by itself; an operator
// reassigns partitions (kafka-reassign-partitions.sh).
func UnderReplicated(ctx context.Context, client *kgo.Client, topics ...string) (map[string]int, error) {
	want := int(topicConfigOf(client).ReplicationFactor)
	out := map[string]int{}
	if want <= 1 {
		return out, nil
	}
	details, err := kadm.NewClient(client).ListTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("describe topics: %w", err)
	}
	for _, d := range details.Sorted() {
		if d.Err != nil {
			continue // missing topics are created, not reported
		}
		for _, p := range d.Partitions.Sorted() {
			if n := len(p.Replicas); n < want {
				out[d.Topic] = n
				break
			}
		}
	}
	return out, nil
}
