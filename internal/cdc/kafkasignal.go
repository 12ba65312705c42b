package cdc

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
)

// kafkaSignals is Debezium's Kafka signal channel (signal.enabled.channels
// with kafka): it reads partition 0 of signal.kafka.topic (default
// <topic.prefix>-signal), takes records whose key is the connector's
// topic.prefix and whose value is {"id", "type", "data": {...}}, and relays
// each signal into the signaling table, where the stream meets it like a
// signal inserted with SQL — so it is ordered with the changes, durable,
// and applied once. Its position is committed for group
// signal.kafka.groupId (default kafka-signal) after the relay, as Debezium
// keeps the channel's offset; a signal relayed twice after a crash keeps its
// id and is written once.
func (c *Connector) kafkaSignals(ctx context.Context, meta *pgxpool.Pool) {
	cfg := &c.cfg
	log := c.log.With("topic", cfg.SignalKafkaTopic)
	for wait := time.Second; ctx.Err() == nil; wait = min(2*wait, 30*time.Second) {
		err := c.relaySignals(ctx, meta)
		if ctx.Err() != nil {
			return
		}
		log.Warn("kafka signal channel failed; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (c *Connector) relaySignals(ctx context.Context, meta *pgxpool.Pool) error {
	cfg := &c.cfg
	topic, group := cfg.SignalKafkaTopic, cfg.SignalKafkaGroup
	admin, err := kafka.NewProducer(c.opts.Kafka)
	if err != nil {
		return err
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	// Debezium requires a one-partition signal topic; create it so.
	if err := kafka.EnsureTopics(ctx, admin, 1, topic); err != nil {
		return err
	}
	start := kgo.NewOffset().AtStart() // auto.offset.reset=earliest
	committed, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	switch {
	case errors.Is(err, kerr.GroupIDNotFound): // nothing committed yet
	case err != nil:
		return err
	default:
		if o, ok := committed.Lookup(topic, 0); ok && o.Err == nil && o.At >= 0 {
			start = kgo.NewOffset().At(o.At)
		}
	}
	cl, err := kafka.NewProducer(c.opts.Kafka, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: start}}),
		kgo.FetchMaxWait(time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	c.log.Info("reading signals from Kafka", "topic", topic, "group", group)
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errs := fs.Errors(); len(errs) > 0 {
			return errs[0].Err
		}
		var last *kgo.Record
		var relayErr error
		fs.EachRecord(func(r *kgo.Record) {
			if relayErr != nil {
				return
			}
			if relayErr = c.relaySignal(ctx, meta, r); relayErr == nil {
				last = r
			}
		})
		if last != nil {
			offs := kadm.Offsets{}
			offs.AddOffset(topic, 0, last.Offset+1, -1)
			if _, err := adm.CommitOffsets(ctx, group, offs); err != nil {
				return err
			}
		}
		if relayErr != nil {
			return relayErr
		}
	}
}

// relaySignal writes one Kafka signal to the signaling table; records that
// are not signals for this connector are skipped, as Debezium skips them.
func (c *Connector) relaySignal(ctx context.Context, meta *pgxpool.Pool, r *kgo.Record) error {
	cfg := &c.cfg
	if string(r.Key) != cfg.TopicPrefix {
		c.log.Info("kafka signal skipped: its key is not the connector's topic.prefix", "key", string(r.Key), "offset", r.Offset)
		return nil
	}
	var v struct {
		ID   string          `json:"id"`
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(r.Value, &v); err != nil || v.Type == "" {
		c.log.Warn("kafka signal skipped: not {\"type\", \"data\"} JSON", "offset", r.Offset)
		return nil
	}
	if v.ID == "" {
		v.ID = "kafka-" + strconv.FormatInt(r.Offset, 10)
	}
	data := ""
	if len(v.Data) > 0 && string(v.Data) != "null" {
		data = string(v.Data)
	}
	err := writeSignal(ctx, meta, cfg, Signal{ID: v.ID, Type: v.Type, Data: data})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return nil // relayed before (a crash before the offset commit)
	}
	if err == nil {
		c.log.Info("kafka signal relayed to the signaling table", "id", v.ID, "type", v.Type, "offset", r.Offset)
	}
	return err
}
