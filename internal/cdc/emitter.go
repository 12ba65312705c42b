package cdc

import (
	"context"
	"errors"
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

	// txm counts the events of the transaction being streamed when
	// provide.transaction.metadata is on; nil otherwise and in snapshots.
	txm *txMeta
	// afters runs transforms' after-ack work (see Derived.AfterAck).
	afters afterRunner

	topicsMu sync.Mutex
	topics   map[string]bool

	// promise is acked as a func value, made once: every record shares it.
	promise func(*kgo.Record, error)
	// received is when the replication message being handled arrived (set
	// by the stream around handle, zero otherwise): the processing time of
	// its change events, read from the clock once per message instead of
	// once for the envelope, once for the record and once for the counters.
	received time.Time
}

func newEmitter(c *Connector, producer *kgo.Client, meta *pgxpool.Pool) *emitter {
	e := &emitter{c: c, producer: producer, meta: meta, enc: newRecordEncoder(&c.cfg), topics: map[string]bool{}, produceCtx: context.Background()}
	e.promise = e.acked
	e.afters.sem = make(chan struct{}, maxConcurrentAfters)
	e.tracker.runAfter = func(fn func(context.Context), done func()) {
		e.afters.run(func() { fn(e.produceCtx) }, done)
	}
	return e
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

// produce hands rec to the producer as one more record of tx. The record
// carries tx in its Context (in its block's slot when the encoder carved
// it), so the promise needs no closure of its own. rec is the producer's
// until its promise: a carved record's block may be reused after it.
func (e *emitter) produce(rec *kgo.Record, tx *txTrack) {
	e.tracker.add(tx)
	tx.produced.Store(true)
	if c, ok := rec.Context.(*blockContext); ok {
		c.tx = tx
	} else {
		rec.Context = tx.recordContext(e.produceCtx, rec.Context)
	}
	e.producer.Produce(e.produceCtx, rec, e.promise)
}

// producerLinger bounds how long a record waits in the producer for more of
// its batch when nothing sends it sooner. Every committed transaction is
// sent at once (send), so this applies only to records outside one
// (heartbeats, snapshot reads), and to batches that fill before the commit
// (those go as soon as they are full). Kafka's producer lingers 5 ms by
// default since 4.0.
const producerLinger = 5 * time.Millisecond

// doneCtx is an already-cancelled context, for send.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// send ends the linger of every buffered record: the producer builds its
// requests now. kgo's Flush stops every linger before it waits for the
// buffered records; with an already-cancelled context it returns at once
// instead of waiting, which is all that is wanted here
// (TestCommittedChangesDoNotLinger catches a producer that would not).
func (e *emitter) send() {
	_ = e.producer.Flush(doneCtx)
}

// acked is the promise of every produced record: it counts the ack (or
// failure) against the record's transaction and releases the record's
// block.
func (e *emitter) acked(r *kgo.Record, err error) {
	tx := recordTx(r)
	if tx == nil {
		e.tracker.fail(errRecordWithoutTx)
		return
	}
	e.tracker.done(tx, err)
	releaseRecord(r)
}

var errRecordWithoutTx = errors.New("cdc: a produced record lost its transaction")

// now is the processing time of the event being emitted.
func (e *emitter) now() time.Time {
	if !e.received.IsZero() {
		return e.received
	}
	return time.Now()
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
	// Counted before any transform, as Debezium counts the events it
	// dispatches: an outbox row the EventRouter drops still counts.
	if e.txm != nil && ch.snapshot == "false" {
		ch.txOrder, ch.txCollectionOrder = e.txm.count(ch.table)
	}
	if ch.table.outbox != nil {
		e.emitOutbox(ch, tx)
		return
	}
	if ch.processed.IsZero() {
		ch.processed = e.now()
	}
	rec := e.enc.record(ch)
	if ch.header != nil {
		rec.Headers = append(rec.Headers, *ch.header)
	}
	// Made before rec is produced: once produced, rec may be acknowledged
	// and its block reused at any moment.
	var tombstone *kgo.Record
	if ch.op == 'd' && e.c.cfg.TombstonesOnDelete && rec.Key != nil {
		tombstone = e.enc.tombstone(rec)
	}
	e.produce(rec, tx)
	if tombstone != nil {
		e.produce(tombstone, tx)
	}
	e.countAt(ch.table, string(ch.op), ch.commitTime, ch.processed)
}

// emitTruncate produces a truncate event (op "t") of one table.
func (e *emitter) emitTruncate(ch *change, tx *txTrack) {
	if e.txm != nil {
		ch.txOrder, ch.txCollectionOrder = e.txm.count(ch.table)
	}
	ch.processed = e.now()
	e.produce(e.enc.truncate(ch.table, ch), tx)
	e.countAt(ch.table, "t", ch.commitTime, ch.processed)
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
	e.countAt(t, op, commit, e.now())
}

// countAt counts one event of t processed at now.
func (e *emitter) countAt(t *table, op string, commit, now time.Time) {
	t.counters[op].Inc()
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
