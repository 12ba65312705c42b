package cdc

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
)

// emitter encodes changes and hands them to the producer, counting each
// record against its transaction so the slot is confirmed only once Kafka
// holds them all.
type emitter struct {
	c        *Connector
	producer *kgo.Client
	meta     *pgxpool.Pool
	enc      *recordEncoder
	tracker  ackTracker
	// produceCtx outlives the run's ctx by a grace period, so records in
	// flight at shutdown still get acknowledged.
	produceCtx context.Context

	topicsMu sync.Mutex
	topics   map[string]bool
}

func newEmitter(c *Connector, producer *kgo.Client, meta *pgxpool.Pool) *emitter {
	return &emitter{c: c, producer: producer, meta: meta, enc: newRecordEncoder(&c.cfg), topics: map[string]bool{}, produceCtx: context.Background()}
}

// ensureTopic creates a table's topic on first use, so brokers without
// automatic topic creation work too.
func (e *emitter) ensureTopic(ctx context.Context, topic string) {
	e.topicsMu.Lock()
	defer e.topicsMu.Unlock()
	if e.topics[topic] {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	parts := e.c.opts.TopicPartitions
	if parts <= 0 {
		parts = -1
	}
	if err := kafka.EnsureTopics(ctx, e.producer, parts, topic); err != nil {
		e.c.log.Warn("could not create topic; relying on automatic creation", "topic", topic, "err", err)
	}
	e.topics[topic] = true
}

// Topics lists the topics the connector has written to in this run.
func (e *emitter) topicList() []string {
	e.topicsMu.Lock()
	defer e.topicsMu.Unlock()
	out := make([]string, 0, len(e.topics))
	for t := range e.topics {
		out = append(out, t)
	}
	return out
}

func (e *emitter) produce(rec *kgo.Record, tx *txTrack) {
	e.tracker.add(tx)
	e.producer.Produce(e.produceCtx, rec, func(_ *kgo.Record, err error) { e.tracker.done(tx, err) })
}

// emit encodes and produces one row change (plus its tombstone).
func (e *emitter) emit(ch *change, tx *txTrack) {
	t := ch.table
	// A primary-key change is a delete of the old key and a create of the
	// new one, as Debezium emits it, so compacted topics stay right.
	if ch.op == 'u' && ch.before != nil && len(t.key) > 0 {
		if keyChanged(t, ch.before, ch.after) {
			// Debezium marks the pair with the other half's key:
			// __debezium.newkey on the delete, __debezium.oldkey on the create.
			del := *ch
			del.op, del.after = 'd', nil
			del.header = &kgo.RecordHeader{Key: HeaderNewKey, Value: e.enc.keyHeader(t, ch.after)}
			ins := *ch
			ins.op, ins.before = 'c', nil
			ins.header = &kgo.RecordHeader{Key: HeaderOldKey, Value: e.enc.keyHeader(t, ch.before)}
			e.emitOne(&del, tx)
			e.emitOne(&ins, tx)
			return
		}
	}
	e.emitOne(ch, tx)
}

func (e *emitter) emitOne(ch *change, tx *txTrack) {
	if e.c.cfg.SkippedOperations[string(ch.op)] {
		return
	}
	if ch.table.outbox != nil {
		e.emitOutbox(ch, tx)
		return
	}
	rec := e.enc.record(ch)
	if ch.header != nil {
		rec.Headers = append(rec.Headers, *ch.header)
	}
	e.produce(rec, tx)
	if ch.op == 'd' && e.c.cfg.TombstonesOnDelete && rec.Key != nil {
		e.produce(&kgo.Record{Topic: rec.Topic, Key: rec.Key}, tx)
	}
	e.count(ch.table, string(ch.op), ch.commitTime)
}

// emitOutbox hands a change of an outbox table to its EventRouter, as
// Debezium's EventRouterDelegate: inserts and snapshot reads become routed
// events, deletes (and their tombstones) are dropped, updates are dropped
// with a warning or an error log, or fail the connector
// (debezium.op.invalid.behavior).
func (e *emitter) emitOutbox(ch *change, tx *txTrack) {
	p := ch.table.outbox
	switch ch.op {
	case 'c', 'r':
		rec, err := e.enc.outboxRecord(p, ch)
		if err != nil {
			e.tracker.fail(err)
			return
		}
		e.ensureTopic(e.produceCtx, rec.Topic)
		e.produce(rec, tx)
	case 'u':
		switch p.r.invalidOp {
		case "fatal":
			e.tracker.fail(errOutboxUpdate)
			return
		case "error":
			e.c.log.Error("unexpected update of an outbox row ignored", "table", ch.table.schema+"."+ch.table.name, "lsn", ch.lsn)
		default:
			e.c.log.Warn("unexpected update of an outbox row ignored", "table", ch.table.schema+"."+ch.table.name, "lsn", ch.lsn)
		}
	}
	e.count(ch.table, string(ch.op), ch.commitTime)
}

func (e *emitter) count(t *table, op string, commit time.Time) {
	t.counters[op].Inc()
	now := time.Now()
	e.c.stats.events.Add(1)
	e.c.stats.lastEventNanos.Store(now.UnixNano())
	e.c.stats.lastCommitNanos.Store(commit.UnixNano())
}

// heartbeat writes Debezium's heartbeat record to __debezium-heartbeat.<prefix>.
func (e *emitter) heartbeat(ctx context.Context) {
	cfg := &e.c.cfg
	topic := routeTopic(cfg, cfg.HeartbeatTopicPrefix+cfg.TopicDelimiter+cfg.TopicPrefix)
	e.ensureTopic(ctx, topic)
	key := []byte(`{"serverName":` + string(appendJSONString(nil, cfg.TopicPrefix)) + `}`)
	value := []byte(`{"ts_ms":` + strconv.FormatInt(time.Now().UnixMilli(), 10) + `}`)
	if cfg.KeySchemas {
		key = []byte(`{"schema":{"type":"struct","fields":[{"type":"string","optional":false,"field":"serverName"}],"optional":false,"name":"io.debezium.connector.common.ServerNameKey"},"payload":` + string(key) + `}`)
	}
	if cfg.ValueSchemas {
		value = []byte(`{"schema":{"type":"struct","fields":[{"type":"int64","optional":false,"field":"ts_ms"}],"optional":false,"name":"io.debezium.connector.common.Heartbeat"},"payload":` + string(value) + `}`)
	}
	e.producer.Produce(e.produceCtx, &kgo.Record{Topic: topic, Key: key, Value: value}, func(_ *kgo.Record, err error) {
		if err != nil {
			e.c.log.Warn("heartbeat not delivered", "err", err)
		}
	})
}

// keyChanged compares the primary-key values of two row images.
func keyChanged(t *table, before, after []tupleValue) bool {
	for _, idx := range t.key {
		if idx >= len(before) || idx >= len(after) {
			return false
		}
		b, a := before[idx], after[idx]
		if a.kind == valueUnchanged || b.kind == valueUnchanged {
			continue
		}
		if a.kind != b.kind || string(a.data) != string(b.data) {
			return true
		}
	}
	return false
}
