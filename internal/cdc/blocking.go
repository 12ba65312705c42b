package cdc

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// blockingSnapshot takes a blocking ad-hoc snapshot (execute-snapshot with
// type blocking), as Debezium's ChangeEventSourceCoordinator.doBlockingSnapshot:
// the stream stops at the signal, the tables are read whole as in the
// initial snapshot (op "r" with its source.snapshot markers) in one
// REPEATABLE READ transaction, and the stream resumes after the signal. The
// records belong to the signal's transaction, so the slot passes the signal
// only once Kafka holds them all; a crash before that takes the snapshot
// again. Changes committed between the signal and the snapshot's start come
// after the snapshot's reads of the same rows, as in Debezium ("possible
// duplicates"). The replication connection is kept alive with status
// updates while the tables are read.
func (c *Connector) blockingSnapshot(ctx context.Context, em *emitter, st *streamState, tables []tableName, d snapshotSignalData, signalID string, lsn uint64) error {
	if len(tables) == 0 {
		return nil
	}
	c.stats.phase.Store("snapshotting")
	defer c.stats.phase.Store("streaming")
	c.metrics.snapshotRunning.WithLabelValues(c.cfg.Name, SnapshotBlocking).Set(1)
	defer c.metrics.snapshotRunning.WithLabelValues(c.cfg.Name, SnapshotBlocking).Set(0)
	started := time.Now()
	p := &SnapshotProgress{Type: SnapshotBlocking, State: "running", SignalID: signalID, TablesTotal: len(tables), StartedAt: started.UTC()}
	for _, t := range tables {
		p.Tables = append(p.Tables, t.schema+"."+t.name)
	}
	p.CurrentTable = p.Tables[0]
	publish := func() {
		cp := *p
		cp.Tables = append([]string(nil), p.Tables...)
		cp.UpdatedAt = time.Now().UTC()
		c.stats.snapshot.Store(&cp)
	}
	publish()

	conn, err := em.meta.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("blocking snapshot connection: %w", err)
	}
	defer conn.Release()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return fmt.Errorf("begin blocking snapshot: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only work
	var xid uint64
	if err := tx.QueryRow(ctx, `SELECT txid_current()`).Scan(&xid); err != nil {
		return fmt.Errorf("blocking snapshot transaction id: %w", err)
	}
	queries := map[tableName]string{}
	for _, t := range tables {
		if f := conditionFor(d.AdditionalConditions, t.schema+"."+t.name); f != "" {
			queries[t] = f // a whole SELECT statement for blocking snapshots
		}
	}
	lastStatus := time.Now()
	current := ""
	r := snapshotReader{c: c, em: em, track: c.txOf(em, st), xid: xid, lsn: lsn, lastCommitLSN: st.lastCommitLSN,
		at: started, kind: SnapshotBlocking, queries: queries,
		progress: func(table string, rows int) error {
			if table != current {
				if current != "" {
					p.TablesDone++
					p.Tables = p.Tables[1:]
				}
				current, p.CurrentTable, p.TableRowsRead = table, p.Tables[0], 0
			}
			p.TableRowsRead += int64(rows)
			p.RowsRead += int64(rows)
			publish()
			// The walsender ends a connection silent for wal_sender_timeout.
			if time.Since(lastStatus) >= c.cfg.StatusInterval {
				lastStatus = time.Now()
				return c.sendStatus(ctx, st.repl, em, st, false)
			}
			return nil
		}}
	total, err := r.read(ctx, tx, tables)
	if err != nil {
		return fmt.Errorf("blocking snapshot: %w", err)
	}
	_ = tx.Commit(ctx)
	p.TablesDone, p.Tables, p.CurrentTable, p.TableRowsRead, p.State = len(tables), []string{}, "", 0, "completed"
	publish()
	c.log.Info("blocking snapshot completed; streaming resumes", "signal", signalID, "tables", len(tables), "records", total,
		"took", time.Since(started).Round(time.Millisecond))
	return nil
}
