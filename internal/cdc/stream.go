package cdc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/trackops/trackops/internal/kafka"
)

// shutdownGrace is how long a stopping connector waits for Kafka to
// acknowledge records already produced, so it can confirm them.
const shutdownGrace = 5 * time.Second

// streamState is the stream goroutine's view of the replication protocol.
type streamState struct {
	relations map[uint32]*table // nil value: relation not captured

	inTx          bool
	tx            *txTrack
	txID          uint64
	commitTime    time.Time
	lastCommitLSN uint64

	received  uint64 // highest WAL position seen
	flushed   uint64 // highest position whose events Kafka acknowledged
	confirmed uint64 // highest position confirmed to the server

	before, after []tupleValue

	// transformCols are, by relation id, the column maps of the tables the
	// connector's TxTransform captures; buf collects their changes between
	// BEGIN and COMMIT (nil without a transform).
	transformCols map[uint32]*rowColumns
	buf           *txBuffer
	stats         *connectorStats

	// durable waits for the broker's durability barrier in the background
	// (nil without a barrier); stopping makes the final status wait itself.
	durable  *durableWaiter
	stopping bool
	// repl is the replication connection (for status updates during long
	// work on the stream's goroutine); snap runs the ad-hoc snapshots.
	repl *pgconn.PgConn
	snap *incremental
}

// stream decodes pgoutput from the slot and produces change events until ctx
// ends or a failure occurs. It confirms to the server only positions whose
// transactions Kafka holds completely, and — when nothing is in flight —
// the server's WAL end from keepalives, so an idle slot keeps advancing.
func (c *Connector) stream(ctx context.Context, repl *pgconn.PgConn, em *emitter, confirmed uint64, off Offsets) error {
	err := pglogrepl.StartReplication(ctx, repl, c.cfg.SlotName, 0, pglogrepl.StartReplicationOptions{
		Mode:       pglogrepl.LogicalReplication,
		PluginArgs: []string{"proto_version '1'", "publication_names '" + c.cfg.PublicationName + "'"},
	})
	if err != nil {
		return fmt.Errorf("start replication from slot %s: %w", c.cfg.SlotName, err)
	}
	c.stats.phase.Store("streaming")
	c.log.Info("streaming changes", "slot", c.cfg.SlotName, "from", pglogrepl.LSN(confirmed))

	produceCtx, cancelProduce := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelProduce()
	em.produceCtx = produceCtx
	stopGrace := context.AfterFunc(ctx, func() {
		time.AfterFunc(shutdownGrace, cancelProduce)
	})
	defer stopGrace()

	st := &streamState{relations: map[uint32]*table{}, transformCols: map[uint32]*rowColumns{}, stats: &c.stats, received: confirmed, flushed: confirmed, confirmed: confirmed}
	st.repl = repl
	if c.cfg.ProvideTransactionMetadata {
		em.ensureTopic(ctx, c.cfg.TransactionTopic)
	}
	c.stats.flushedLSN.Store(confirmed)
	c.stats.receivedLSN.Store(confirmed)
	if c.cfg.SignalTable != "" {
		st.snap = newIncremental(c, em, &off)
		if err := st.snap.resume(ctx, st); err != nil {
			if ctx.Err() != nil {
				c.stop(repl, em, st)
				return nil
			}
			return err
		}
	}

	status := c.cfg.StatusInterval
	nextStatus := time.Now().Add(status)
	var nextHeartbeat time.Time
	if c.cfg.HeartbeatInterval > 0 {
		nextHeartbeat = time.Now().Add(c.cfg.HeartbeatInterval)
	}
	lastSaved := off.FlushedLSN
	if b := c.opts.Kafka.Durability; b != nil {
		st.durable = startDurableWaiter(ctx, b, confirmed, c.log)
		defer st.durable.stop()
	}

	// Receives wait on the connection's read deadline (the next status or
	// heartbeat), not on a context: pgconn watches a cancellable context
	// with a timer and a channel per ReceiveMessage, which cost about a
	// tenth of the connector's CPU at one change per message. Cancelling
	// ctx moves the deadline to now, which ends a receive in progress.
	conn := repl.Conn()
	stopWake := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stopWake()
	defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
	var readDeadline time.Time
	now := time.Now()
	for {
		if !now.Before(nextStatus) {
			if err := c.sendStatus(ctx, repl, em, st, true); err != nil {
				return err
			}
			nextStatus = now.Add(status)
			if st.flushed != lastSaved && st.flushed-lastSaved > 0 {
				// Informational only; a failure here costs nothing but a stale figure.
				off.FlushedLSN = st.flushed
				if err := c.opts.Offsets.SaveOffsets(ctx, c.cfg.Name, off); err == nil {
					lastSaved = st.flushed
				}
			}
		}
		if !nextHeartbeat.IsZero() && !now.Before(nextHeartbeat) {
			em.heartbeat(ctx)
			nextHeartbeat = now.Add(c.cfg.HeartbeatInterval)
		}
		if err := em.tracker.failed(); err != nil {
			return fmt.Errorf("change events not delivered to Kafka: %w", err)
		}
		deadline := nextStatus
		if !nextHeartbeat.IsZero() && nextHeartbeat.Before(deadline) {
			deadline = nextHeartbeat
		}
		if !deadline.Equal(readDeadline) {
			if err := conn.SetReadDeadline(deadline); err != nil {
				return fmt.Errorf("replication stream: %w", err)
			}
			readDeadline = deadline
		}
		// After setting the deadline: a cancellation that came before it
		// is seen here, one that comes after moves it to now.
		if ctx.Err() != nil {
			c.stop(repl, em, st)
			return nil
		}
		msg, err := repl.ReceiveMessage(context.Background())
		now = time.Now()
		if err != nil {
			if ctx.Err() != nil {
				c.stop(repl, em, st)
				return nil
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("replication stream: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return fmt.Errorf("parse keepalive: %w", err)
				}
				if uint64(pkm.ServerWALEnd) > st.received {
					st.received = uint64(pkm.ServerWALEnd)
				}
				c.stats.receivedLSN.Store(st.received)
				if !st.inTx {
					// Everything before this point has been handed to us; once
					// Kafka has acknowledged it all, the slot may move here.
					if _, drained := em.tracker.advance(); drained && uint64(pkm.ServerWALEnd) > st.flushed {
						st.flushed = uint64(pkm.ServerWALEnd)
					}
				}
				if pkm.ReplyRequested {
					if err := c.sendStatus(ctx, repl, em, st, false); err != nil {
						return err
					}
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return fmt.Errorf("parse XLogData: %w", err)
				}
				if uint64(xld.WALStart) > st.received {
					st.received = uint64(xld.WALStart)
				}
				em.received = now
				err = c.handle(ctx, em, st, xld)
				em.received = time.Time{}
				if err != nil {
					if ctx.Err() != nil {
						// Stopped during a snapshot's work on the database.
						c.stop(repl, em, st)
						return nil
					}
					return err
				}
				c.reads.follow(st.inTx)
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyDone:
			return errors.New("replication stream ended by the server")
		}
	}
}

// sendStatus reports the confirmed position; when asking for a reply the
// server answers with a keepalive carrying its WAL end, which lets an idle
// slot advance.
func (c *Connector) sendStatus(ctx context.Context, repl *pgconn.PgConn, em *emitter, st *streamState, requestReply bool) error {
	if lsn, _ := em.tracker.advance(); lsn > st.flushed {
		st.flushed = lsn
	}
	flush := c.durableFlush(ctx, st)
	if st.snap != nil && flush > st.confirmed {
		// An incremental snapshot's progress is recorded before the slot
		// passes the records it stands for.
		flush = st.snap.persist(ctx, flush, st.confirmed)
	}
	c.stats.flushedLSN.Store(flush)
	c.stats.receivedLSN.Store(st.received)
	write := st.received
	if write < flush {
		write = flush
	}
	err := pglogrepl.SendStandbyStatusUpdate(ctx, repl, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(write),
		WALFlushPosition: pglogrepl.LSN(flush),
		WALApplyPosition: pglogrepl.LSN(flush),
		ReplyRequested:   requestReply && !st.inTx,
	})
	if err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	st.confirmed = flush
	c.stats.statusSent.Add(1)
	return nil
}

// durableFlush is the position the slot may be confirmed to: the
// acknowledged position once the broker's durability barrier
// (kafka.Options.Durability, the embedded broker's group commit) covers it,
// else the position confirmed before. Acknowledged is not durable on a
// broker that syncs in rounds; a slot confirmed past what a power loss can
// take away would never send those changes again.
//
// While streaming, the barrier is waited for off the stream goroutine
// (st.durable): a round (an fsync, tens of milliseconds on a busy disk)
// would otherwise stall every change behind it once per status interval.
// The slot then confirms what the last finished round covered, one status
// later. The final status of a stopping stream waits here.
func (c *Connector) durableFlush(ctx context.Context, st *streamState) uint64 {
	if st.flushed <= st.confirmed {
		return st.flushed
	}
	if st.durable != nil && !st.stopping {
		st.durable.request(st.flushed)
		return max(st.confirmed, min(st.durable.covered.Load(), st.flushed))
	}
	if err := kafka.WaitDurable(ctx, c.opts.Kafka.Durability); err != nil {
		c.log.Warn("broker did not make change events durable; slot not advanced", "err", err)
		return st.confirmed
	}
	return st.flushed
}

// stop waits briefly for in-flight records, confirms what Kafka acknowledged
// and ends the stream.
func (c *Connector) stop(repl *pgconn.PgConn, em *emitter, st *streamState) {
	flushCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	_ = em.producer.Flush(flushCtx)
	em.afters.wait(flushCtx)
	st.stopping = true
	ctx, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if err := c.sendStatus(ctx, repl, em, st, false); err != nil {
		c.log.Warn("final status update failed", "err", err)
	}
	c.log.Info("stopped", "confirmed", pglogrepl.LSN(st.flushed))
}

// handle processes one pgoutput message.
func (c *Connector) handle(ctx context.Context, em *emitter, st *streamState, xld pglogrepl.XLogData) error {
	data := xld.WALData
	if len(data) == 0 {
		return nil
	}
	lsn := uint64(xld.WALStart)
	switch data[0] {
	case 'B':
		var m pglogrepl.BeginMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decode begin: %w", err)
		}
		st.inTx, st.txID, st.commitTime = true, uint64(m.Xid), m.CommitTime
		st.tx = em.tracker.begin()
		if c.cfg.ProvideTransactionMetadata {
			em.txm = newTxMeta(st.txID)
			em.produce(em.txRecord(st.txID, lsn, m.CommitTime, nil), st.tx)
		}
		if c.opts.Transform != nil {
			st.buf = &txBuffer{tx: Transaction{XID: st.txID, BeginLSN: lsn, CommitTime: m.CommitTime}}
		}
	case 'C':
		var m pglogrepl.CommitMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decode commit: %w", err)
		}
		if err := c.commitTx(ctx, em, st, m, lsn); err != nil {
			return err
		}
		st.inTx, st.tx, st.buf = false, nil, nil
		st.lastCommitLSN = uint64(m.CommitLSN)
	case 'R':
		var m pglogrepl.RelationMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decode relation: %w", err)
		}
		delete(st.transformCols, m.RelationID)
		if !c.cfg.captures(m.Namespace, m.RelationName) {
			st.relations[m.RelationID] = nil
			return nil
		}
		names := make([]string, len(m.Columns))
		fallback := map[string]columnMeta{}
		for i, col := range m.Columns {
			names[i] = col.Name
			fallback[col.Name] = columnMeta{oid: col.DataType, typmod: col.TypeModifier, typeName: ""}
		}
		conn, err := em.meta.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("metadata connection: %w", err)
		}
		meta, err := loadTableMeta(ctx, conn.Conn(), m.Namespace, m.RelationName)
		conn.Release()
		if err != nil {
			// Dropped since the change was written: decode from the relation message alone.
			c.log.Warn("no catalog data for relation; types from the relation message, no key", "table", m.Namespace+"."+m.RelationName, "err", err)
			meta = tableMeta{columns: fallback}
		}
		t := newTable(&c.cfg, c.metrics, c.cfg.Name, m.Namespace, m.RelationName, names, meta, fallback)
		t.replicaIdentity = m.ReplicaIdentity
		if t.outbox == nil { // outbox events go to the topics their rows name
			em.ensureTopic(ctx, t.topic)
		}
		st.relations[m.RelationID] = t
		if c.opts.Transform != nil && c.opts.Transform.Captures(m.Namespace, m.RelationName) {
			st.transformCols[m.RelationID] = newRowColumns(t)
		}
	case 'I':
		if len(data) < 6 {
			return errors.New("short insert message")
		}
		t, ok := c.relation(st, binary.BigEndian.Uint32(data[1:]))
		if !ok || t == nil {
			return relationErr(ok, data)
		}
		vals, _, err := parseTuple(data[6:], st.after[:0])
		if err != nil {
			return fmt.Errorf("decode insert: %w", err)
		}
		st.after = vals
		if st.snap != nil {
			if err := c.snapshotHook(ctx, st, 'c', t, nil, vals, lsn); err != nil {
				return err
			}
		}
		st.buffer(data, OpCreate, t, lsn, nil, vals)
		em.emit(&change{op: 'c', table: t, after: vals, commitTime: st.commitTime, txID: st.txID, lsn: lsn,
			lastCommitLSN: st.lastCommitLSN, snapshot: "false"}, c.txOf(em, st))
	case 'U':
		if len(data) < 6 {
			return errors.New("short update message")
		}
		t, ok := c.relation(st, binary.BigEndian.Uint32(data[1:]))
		if !ok || t == nil {
			return relationErr(ok, data)
		}
		pos := 5
		var before []tupleValue
		if data[pos] == 'K' || data[pos] == 'O' {
			vals, n, err := parseTuple(data[pos+1:], st.before[:0])
			if err != nil {
				return fmt.Errorf("decode update: %w", err)
			}
			st.before, before = vals, vals
			pos += 1 + n
		}
		if pos >= len(data) || data[pos] != 'N' {
			return errors.New("decode update: missing new tuple")
		}
		after, _, err := parseTuple(data[pos+1:], st.after[:0])
		if err != nil {
			return fmt.Errorf("decode update: %w", err)
		}
		st.after = after
		if st.snap != nil {
			if err := c.snapshotHook(ctx, st, 'u', t, before, after, lsn); err != nil {
				return err
			}
		}
		st.buffer(data, OpUpdate, t, lsn, before, after)
		em.emit(&change{op: 'u', table: t, before: before, after: after, commitTime: st.commitTime, txID: st.txID, lsn: lsn,
			lastCommitLSN: st.lastCommitLSN, snapshot: "false"}, c.txOf(em, st))
	case 'D':
		if len(data) < 6 {
			return errors.New("short delete message")
		}
		t, ok := c.relation(st, binary.BigEndian.Uint32(data[1:]))
		if !ok || t == nil {
			return relationErr(ok, data)
		}
		before, _, err := parseTuple(data[6:], st.before[:0])
		if err != nil {
			return fmt.Errorf("decode delete: %w", err)
		}
		st.before = before
		if st.snap != nil {
			if err := c.snapshotHook(ctx, st, 'd', t, before, nil, lsn); err != nil {
				return err
			}
		}
		st.buffer(data, OpDelete, t, lsn, before, nil)
		em.emit(&change{op: 'd', table: t, before: before, commitTime: st.commitTime, txID: st.txID, lsn: lsn,
			lastCommitLSN: st.lastCommitLSN, snapshot: "false"}, c.txOf(em, st))
	case 'T':
		var m pglogrepl.TruncateMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decode truncate: %w", err)
		}
		for _, id := range m.RelationIDs {
			if t := st.relations[id]; t != nil {
				st.bufferTruncate(id, t, lsn)
				if st.snap != nil {
					st.snap.truncated(t)
				}
			}
		}
		if c.cfg.SkippedOperations["t"] {
			return nil
		}
		for _, id := range m.RelationIDs {
			t := st.relations[id]
			if t == nil || t.outbox != nil { // the outbox router drops truncates
				continue
			}
			ch := &change{op: 't', table: t, commitTime: st.commitTime, txID: st.txID, lsn: lsn, lastCommitLSN: st.lastCommitLSN, snapshot: "false"}
			em.emitTruncate(ch, c.txOf(em, st))
		}
	}
	return nil
}

// snapshotHook lets the ad-hoc snapshots see a row change before its event
// is emitted: a row inserted into the signaling table is a signal (and, with
// insert_delete, a deleted watermark closes its window); any change of the
// table an incremental snapshot reads deduplicates the chunk in flight.
func (c *Connector) snapshotHook(ctx context.Context, st *streamState, op byte, t *table, before, after []tupleValue, lsn uint64) error {
	if t.signal {
		switch op {
		case 'c':
			if sig, ok := signalOf(after); ok {
				return st.snap.signal(ctx, st, sig, lsn)
			}
		case 'd':
			return st.snap.signalDelete(ctx, st, t, before, lsn)
		}
		return nil
	}
	st.snap.observe(st, t, before, after)
	return nil
}

// commitTx closes the streamed transaction: the transform's derived records
// and the END record join its change events, and it becomes confirmable once
// Kafka holds them all (and the transform's after-ack work is done).
func (c *Connector) commitTx(ctx context.Context, em *emitter, st *streamState, m pglogrepl.CommitMessage, lsn uint64) error {
	track := st.tx
	if track == nil {
		return nil // a commit without a begin: nothing was produced
	}
	if st.buf != nil && len(st.buf.tx.Changes) > 0 {
		tx := &st.buf.tx
		tx.CommitLSN, tx.EndLSN = uint64(m.CommitLSN), uint64(m.TransactionEndLSN)
		d, err := c.opts.Transform.Transaction(ctx, tx)
		if err != nil {
			return fmt.Errorf("transform of transaction %d: %w", tx.XID, err)
		}
		for _, rec := range d.Records {
			em.ensureTopic(ctx, rec.Topic)
			em.produce(rec, track)
		}
		c.stats.derived.Add(uint64(len(d.Records)))
		if d.AfterAck != nil {
			em.tracker.holdUntilAfter(track, d.AfterAck)
		}
	}
	if em.txm != nil {
		em.produce(em.txRecord(st.txID, lsn, m.CommitTime, em.txm), track)
		em.txm = nil
	}
	em.tracker.commit(track, uint64(m.TransactionEndLSN))
	if track.produced.Load() {
		em.send() // the transaction is complete: no record of it lingers
	}
	return nil
}

// buffer keeps a row change of a table the transform captures, copied out
// of the message buffer.
func (st *streamState) buffer(data []byte, op Op, t *table, lsn uint64, before, after []tupleValue) {
	if st.buf == nil {
		return
	}
	rc := st.transformCols[binary.BigEndian.Uint32(data[1:])]
	if rc == nil {
		return
	}
	st.buf.tx.Changes = append(st.buf.tx.Changes, Change{Op: op, Schema: t.schema, Table: t.name, LSN: lsn,
		Before: rowOf(rc, before, nil), After: rowOf(rc, after, before)})
	st.noteBuffered()
}

func (st *streamState) bufferTruncate(relation uint32, t *table, lsn uint64) {
	if st.buf == nil || st.transformCols[relation] == nil {
		return
	}
	st.buf.tx.Changes = append(st.buf.tx.Changes, Change{Op: OpTruncate, Schema: t.schema, Table: t.name, LSN: lsn})
	st.noteBuffered()
}

// noteBuffered keeps the high-water mark of buffered changes.
func (st *streamState) noteBuffered() {
	if n := int64(len(st.buf.tx.Changes)); n > st.stats.maxBuffered.Load() {
		st.stats.maxBuffered.Store(n)
	}
}

// txOf is the open transaction's tracker (pgoutput v1 sends changes only
// inside Begin/Commit; a stray change gets a transaction of its own).
func (c *Connector) txOf(em *emitter, st *streamState) *txTrack {
	if st.tx == nil {
		st.tx = em.tracker.begin()
	}
	return st.tx
}

// relation returns the table of a relation id; ok is false when no Relation
// message announced it.
func (c *Connector) relation(st *streamState, id uint32) (*table, bool) {
	t, ok := st.relations[id]
	return t, ok
}

func relationErr(known bool, data []byte) error {
	if known {
		return nil // not captured
	}
	return fmt.Errorf("change for unknown relation %d before its Relation message", binary.BigEndian.Uint32(data[1:]))
}

// parseTuple decodes pgoutput TupleData into dst without copying values:
// they point into the message buffer, valid until the next receive.
func parseTuple(src []byte, dst []tupleValue) ([]tupleValue, int, error) {
	if len(src) < 2 {
		return nil, 0, errors.New("short tuple")
	}
	n := int(binary.BigEndian.Uint16(src))
	pos := 2
	for i := 0; i < n; i++ {
		if pos >= len(src) {
			return nil, 0, errors.New("short tuple")
		}
		kind := src[pos]
		pos++
		switch kind {
		case 't', 'b':
			if pos+4 > len(src) {
				return nil, 0, errors.New("short tuple value")
			}
			l := int(binary.BigEndian.Uint32(src[pos:]))
			pos += 4
			if pos+l > len(src) {
				return nil, 0, errors.New("short tuple value")
			}
			dst = append(dst, tupleValue{kind: valueText, data: src[pos : pos+l]})
			pos += l
		case 'n':
			dst = append(dst, tupleValue{kind: valueNull})
		case 'u':
			dst = append(dst, tupleValue{kind: valueUnchanged})
		default:
			return nil, 0, fmt.Errorf("unknown tuple value kind %q", kind)
		}
	}
	return dst, pos, nil
}
