// Package kafka holds TrackOps' Kafka plumbing: client options, the embedded
// single-node broker, topic administration and the consumer runner with
// retries and dead-lettering that every consumer in TrackOps uses.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Options configure every client TrackOps creates.
type Options struct {
	// Brokers are the bootstrap brokers.
	Brokers []string
	// ClientID names the process in broker logs.
	ClientID string
	// Extra are appended last and win over TrackOps' defaults (TLS, SASL, ...).
	Extra []kgo.Opt
	// Durability is the broker's durability barrier (the embedded broker's
	// group commit); nil for a real cluster, where acks=all is the
	// durability. Consumers with ConsumerConfig.DurableCommits and
	// dead-lettering consumers wait on it before committing offsets; the
	// CDC connector waits on it before confirming a position to its slot.
	Durability Barrier
	// Topics is the replication of topics created through clients built
	// with these options (EnsureTopics); zero means the brokers' defaults.
	Topics TopicConfig

	// ConsumerRetry is the retry policy of consumers built with these
	// options whose ConsumerConfig.Retry is unset; zero means DefaultRetry.
	ConsumerRetry RetryPolicy
	// Compression is the producer's batch codec: none (the default), gzip,
	// snappy, lz4 or zstd. franz-go's own default is snappy, which some
	// clients (KafkaJS without a plugin) cannot read; Kafka's Java producer
	// defaults to none, and so does TrackOps.
	Compression string
	// Logger receives the clients' own log lines (connection failures,
	// group changes); nil discards them.
	Logger *slog.Logger
	// WrapHandler, when set, wraps the record handler of every consumer
	// built with these options, around the decoding of events: the
	// process's tracing gives each attempt a span of the record's trace
	// this way. group is the consumer's group.
	WrapHandler func(group string, h Handler) Handler
	// Metrics count what consumers handle and, with kprom, what every
	// client built with these options sends and receives; nil counts
	// without exporting.
	Metrics *Metrics
}

// logOpts routes a client's log lines to o.Logger.
func (o Options) logOpts() []kgo.Opt {
	if o.Logger == nil {
		return nil
	}
	return []kgo.Opt{kgo.WithLogger(clientLogger{o.Logger.With("component", "kafka-client", "client_id", clientID(o.ClientID))})}
}

// Codec returns the franz-go codec named by TRACKOPS_KAFKA_COMPRESSION's
// values; "" is none.
func Codec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "", "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("unknown Kafka compression %q: want none, gzip, snappy, lz4 or zstd", name)
}

// NewProducer returns a client set up for durable publishing: idempotent,
// acks from all in-sync replicas, records of one key kept in order. Record
// batches stay within Kafka's default max.message.bytes (about 1 MB): a
// larger batch would be refused by a broker with default settings as a
// whole, failing every record in it.
func NewProducer(o Options, extra ...kgo.Opt) (*kgo.Client, error) {
	codec, err := Codec(o.Compression)
	if err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.ProducerBatchCompression(codec),
		kgo.SeedBrokers(o.Brokers...),
		kgo.ClientID(clientID(o.ClientID)),
		FreshMetadata(),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(30 * time.Second),
		// Kafka (and the embedded broker) refuse messages over 1 MB by default.
		kgo.ProducerBatchMaxBytes(1 << 20),
		kgo.MaxBufferedRecords(100_000),
		// The default sticky partitioner spreads keyless records; keyed ones
		// (all of ours) hash like the Java client so other producers agree.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
	}
	opts = append(opts, o.logOpts()...)
	opts = append(opts, o.Metrics.clientOpts(clientID(o.ClientID))...)
	opts = append(opts, o.Extra...)
	opts = append(opts, extra...)
	opts = append(opts, withTopicConfig(o.Topics))
	c, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	return c, nil
}

// MetadataMinAge is the shortest time between two metadata refreshes of a
// TrackOps client. franz-go's default is 5 s, and it is what made the first
// record on a new topic wait about 5 s: a client that asked about the topic
// before it existed (a consumer subscribed ahead of the first change, a
// producer racing the topic's creation) retries for 2 s, then only once per
// min age, so it learned of the topic up to 5 s after it appeared. Refreshes
// are still rare on a steady cluster: they follow errors and new topics,
// and the periodic one stays at franz-go's metadata max age (5 min).
const MetadataMinAge = 250 * time.Millisecond

// FreshMetadata is the client option that applies MetadataMinAge; NewProducer
// and NewConsumer use it, and so should any other client that may meet a
// topic younger than itself.
func FreshMetadata() kgo.Opt { return kgo.MetadataMinAge(MetadataMinAge) }

func clientID(id string) string {
	if id == "" {
		return "trackops"
	}
	return id
}

// EnsureTopics creates each topic that does not exist yet with the given
// partition count (-1: the brokers' default), replicated as the Options.Topics
// the client was built with say (NewProducer carries them in the client); a
// client built otherwise leaves replication to the brokers' defaults. When it
// created one, the client's metadata is refreshed at once, so a first record
// produced right after finds the topic's partitions known instead of waiting
// on a refresh.
func EnsureTopics(ctx context.Context, client *kgo.Client, partitions int32, topics ...string) error {
	adm := kadm.NewClient(client)
	tc := topicConfigOf(client)
	resp, err := adm.CreateTopics(ctx, partitions, tc.replicationFactor(), tc.topicConfigs(), topics...)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	created := false
	for _, r := range resp.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", r.Topic, r.Err)
		}
		created = created || r.Err == nil
	}
	if created {
		client.ForceMetadataRefresh()
	}
	return nil
}

// WaitForBroker blocks until the cluster answers a metadata request or ctx
// ends, logging while it waits.
func WaitForBroker(ctx context.Context, client *kgo.Client, log *slog.Logger) error {
	for attempt := 0; ; attempt++ {
		pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := client.Ping(pingCtx)
		cancel()
		if err == nil {
			return nil
		}
		if attempt == 0 || attempt%10 == 0 {
			log.Warn("waiting for Kafka", "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka unreachable: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
