package cdc

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trackops/trackops/internal/progress"
)

// snapshot reads every captured table in the snapshot the slot exported,
// so the snapshot and the stream that follows it from the slot's consistent
// point neither miss nor repeat a change. Records are "r" events with
// source.snapshot markers as Debezium writes them. It returns once Kafka
// has acknowledged every record.
func (c *Connector) snapshot(ctx context.Context, meta *pgxpool.Pool, em *emitter, slot pglogrepl.CreateReplicationSlotResult, tables []tableName) error {
	c.stats.phase.Store("snapshotting")
	consistent, err := pglogrepl.ParseLSN(slot.ConsistentPoint)
	if err != nil {
		return fmt.Errorf("slot consistent point %q: %w", slot.ConsistentPoint, err)
	}
	conn, err := meta.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("snapshot connection: %w", err)
	}
	defer conn.Release()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return fmt.Errorf("begin snapshot transaction: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only work; nothing to keep
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+slot.SnapshotName+"'"); err != nil {
		return fmt.Errorf("import exported snapshot %s: %w", slot.SnapshotName, err)
	}
	var xid uint64
	if err := tx.QueryRow(ctx, `SELECT txid_current()`).Scan(&xid); err != nil {
		return fmt.Errorf("snapshot transaction id: %w", err)
	}
	started := time.Now()
	// A long snapshot logs how far it has got every 10 s ("snapshot completed" ends it).
	prog := progress.NewLog(c.log, "snapshot", 0)
	track := em.tracker.begin()
	if len(c.cfg.SnapshotInclude) > 0 { // snapshot.include.collection.list
		var only []tableName
		for _, tn := range tables {
			if anyMatch(c.cfg.SnapshotInclude, tn.schema+"."+tn.name) {
				only = append(only, tn)
			}
		}
		tables = only
	}
	r := snapshotReader{c: c, em: em, track: track, xid: xid, lsn: uint64(consistent), at: started, kind: "initial",
		progress: func(table string, rows int) error {
			prog.Add(int64(rows), table)
			return nil
		}}
	total, err := r.read(ctx, tx, tables)
	if err != nil {
		return err
	}
	em.tracker.commit(track, 0)
	if err := em.producer.Flush(ctx); err != nil {
		return fmt.Errorf("flush snapshot records: %w", err)
	}
	if err := em.tracker.failed(); err != nil {
		return fmt.Errorf("snapshot records not delivered to Kafka: %w", err)
	}
	em.tracker.advance()
	c.log.Info("snapshot completed", "tables", len(tables), "records", total, "took", time.Since(started).Round(time.Millisecond))
	return nil
}

// snapshotReader reads whole tables in one transaction's snapshot and
// emits their rows as "r" events with the source.snapshot markers Debezium
// writes: the initial snapshot and blocking ad-hoc snapshots alike.
type snapshotReader struct {
	c     *Connector
	em    *emitter
	track *txTrack
	// xid, lsn and at are the events' source.txId, source.lsn and
	// source.ts_ms; lastCommitLSN the first element of source.sequence.
	xid, lsn, lastCommitLSN uint64
	at                      time.Time
	// kind labels the rows-read metric: initial or blocking.
	kind string
	// queries are SELECT statements replacing "all rows" for some tables
	// (a blocking snapshot's additional conditions).
	queries map[tableName]string
	// progress is told of rows read (every few thousand and at each
	// table's end); an error stops the reading.
	progress func(table string, rows int) error
}

// read emits the rows of tables and returns how many there were.
func (r *snapshotReader) read(ctx context.Context, tx pgx.Tx, tables []tableName) (int, error) {
	c, em := r.c, r.em
	// Markers follow Debezium's RelationalSnapshotChangeEventSource
	// (setSnapshotMarker): "last" for the last row of the last table,
	// "first" for the first row of the first table, then
	// "last_in_data_collection" / "first_in_data_collection" for a table's
	// last and first rows, "true" otherwise. As Debezium's snapshot receiver
	// does, the record held back last is marked "last" whatever its table
	// (the last tables may be empty).
	marker := func(ti int, firstInTable, lastInTable bool) string {
		firstTable, lastTable := ti == 0, ti == len(tables)-1
		switch {
		case lastInTable && lastTable:
			return "last"
		case firstInTable && firstTable:
			return "first"
		case lastInTable:
			return "last_in_data_collection"
		case firstInTable:
			return "first_in_data_collection"
		}
		return "true"
	}
	var (
		held        *change
		heldPending bool // marker waits to know whether the row ends its table
		heldFirst   bool
		heldTable   int
		total       int
	)
	flushHeld := func(final string) {
		if held == nil {
			return
		}
		if final != "" {
			held.snapshot = final
		}
		em.emitOne(held, r.track)
		held = nil
	}
	const progressEvery = 1000
	for ti, tn := range tables {
		m, err := loadTableMeta(ctx, tx.Conn(), tn.schema, tn.name)
		if err != nil {
			return total, err
		}
		t := newTable(&c.cfg, c.metrics, c.cfg.Name, tn.schema, tn.name, m.order, m, nil)
		if t.outbox == nil {
			em.ensureTopic(ctx, t.topic)
		}
		cols := make([]string, len(m.order))
		for i, n := range m.order {
			cols[i] = pgx.Identifier{n}.Sanitize()
		}
		q := "SELECT " + joinComma(cols) + " FROM " + tn.String()
		if stmt, ok := r.queries[tn]; ok {
			q = "SELECT " + joinComma(cols) + " FROM (" + stmt + ") AS snapshot_select"
		}
		rows, err := tx.Query(ctx, q, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			return total, fmt.Errorf("snapshot %s: %w", tn, err)
		}
		read := c.metrics.snapshotRowsRead.WithLabelValues(c.cfg.Name, tn.schema+"."+tn.name, r.kind)
		inTable, unreported := 0, 0
		for rows.Next() {
			if held != nil && heldPending {
				held.snapshot = marker(heldTable, heldFirst, false)
			}
			flushHeld("")
			held = &change{op: 'r', table: t, after: copyRow(rows.RawValues()), commitTime: r.at, txID: r.xid, lsn: r.lsn,
				lastCommitLSN: r.lastCommitLSN}
			heldPending, heldFirst, heldTable = true, inTable == 0, ti
			inTable++
			total++
			if unreported++; unreported == progressEvery {
				read.Add(progressEvery)
				if err := r.report(tn, unreported); err != nil {
					rows.Close()
					return total, err
				}
				unreported = 0
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return total, fmt.Errorf("snapshot %s: %w", tn, err)
		}
		read.Add(float64(unreported))
		if err := r.report(tn, unreported); err != nil {
			return total, err
		}
		if held != nil && heldPending && heldTable == ti {
			held.snapshot = marker(ti, heldFirst, true)
			heldPending = false
		}
		if ctx.Err() != nil {
			return total, ctx.Err()
		}
	}
	flushHeld("last")
	return total, nil
}

// report tells progress of rows read, and stops the reading once a record
// could not be delivered.
func (r *snapshotReader) report(tn tableName, rows int) error {
	if err := r.em.tracker.failed(); err != nil {
		return fmt.Errorf("snapshot records not delivered to Kafka: %w", err)
	}
	if r.progress != nil {
		return r.progress(tn.String(), rows)
	}
	return nil
}

// copyRow copies a row's text values into one buffer the change owns
// (RawValues is reused by the next row).
func copyRow(raw [][]byte) []tupleValue {
	size := 0
	for _, v := range raw {
		size += len(v)
	}
	buf := make([]byte, 0, size)
	vals := make([]tupleValue, len(raw))
	for i, v := range raw {
		if v == nil {
			vals[i] = tupleValue{kind: valueNull}
			continue
		}
		start := len(buf)
		buf = append(buf, v...)
		vals[i] = tupleValue{kind: valueText, data: buf[start:len(buf):len(buf)]}
	}
	return vals
}

func joinComma(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ", "
		}
		out += v
	}
	return out
}
