package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/postgres"
)

// cursor is where the relay is in the outbox, in commit order. The outbox is
// append-only: rows are never marked, so a row is done when the cursor has
// passed it. A bigserial seq is taken when a row is inserted, not when its
// transaction commits, so a transaction that took a low seq can commit after
// rows with higher seqs were published: a cursor on seq alone would skip it.
// The cursor therefore follows snapshots (as PgQ does): the rows of
// transactions visible in snapshot a are done; the rows of transactions that
// committed after a and by b (the window) are done up to seq lastSeq; every
// other row is pending.
//
// Within a window rows go out in seq order. That keeps each aggregate's
// order: a transaction that writes an aggregate's next event holds the
// aggregate's lock, which it got after the previous event's transaction
// committed, so its seq is higher, and its commit cannot be visible in an
// earlier snapshot than the previous one's.
type cursor struct {
	a, b    string // pg_snapshot text: xmin:xmax:xip,...
	lastSeq int64
	// open: the window may hold rows after lastSeq. A read that returns
	// fewer rows than asked closes it; the next read opens the window from
	// b to the snapshot of that read.
	open bool
}

// The relay's reads run for every batch, so they must plan once: every
// parameter sits in a subquery ((SELECT $1)), which makes the plan's
// estimates the same whatever the values, so PostgreSQL settles on its
// generic plan after a few executions instead of planning each read anew
// (a custom plan of the window read costs more than executing it). The
// generic plans are the ones wanted here whatever the table's size: a range
// on the xid index, and the seq index read in order under a LIMIT.

// readSQL reads the window's next rows through the seq index: the window
// filter needs no index, and seq order is the order the rows go out in.
// blocked says whether the event's aggregate has rows waiting to be retried
// (only asked while there may be such rows: it costs an index probe per row).
const readSQL = `
SELECT seq, id::text, aggregate_id, topic, event_data, headers, attempts, created_at, %s
FROM outbox_events
WHERE seq > (SELECT $3::bigint) AND NOT pg_visible_in_snapshot(xid, (SELECT $1::pg_snapshot))
  AND pg_visible_in_snapshot(xid, (SELECT $2::pg_snapshot))
ORDER BY seq LIMIT (SELECT $4::int)`

// openSQL opens the window from $1 to the statement's own snapshot and
// reads its first rows; a last row with a NULL seq carries that snapshot
// (so an empty window still returns it). The window's lowest seq comes from
// the xid index: rows of transactions not visible in $1 (from its xmax on,
// and those it lists as running) as far as the statement sees them, which
// is exactly the new snapshot. (The xid range has an upper bound that
// excludes nothing: a range bounded on both sides is what makes the generic
// plan's estimate small enough to use the index on a large table.) The rows
// are then read in seq order from there. Comparing with the new snapshot is
// needed by later reads only.
const openSQL = `
SELECT * FROM (
	SELECT NULL::text AS snapshot, seq, id::text, aggregate_id, topic, event_data, headers, attempts, created_at, %s AS blocked
	FROM outbox_events
	WHERE seq >= (SELECT min(w.seq) FROM (
			SELECT seq FROM outbox_events
			WHERE xid >= (SELECT pg_snapshot_xmax($1::pg_snapshot)) AND xid < (SELECT '18446744073709551615'::xid8)
			UNION ALL
			SELECT seq FROM outbox_events WHERE xid = ANY(ARRAY(SELECT pg_snapshot_xip($1::pg_snapshot)))) w)
	  AND NOT pg_visible_in_snapshot(xid, (SELECT $1::pg_snapshot))
	ORDER BY seq LIMIT (SELECT $2::int)) r
UNION ALL
SELECT pg_current_snapshot()::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL`

const (
	blockedNever = `false`
	blockedProbe = `EXISTS (SELECT FROM outbox_retries r WHERE r.aggregate_id = outbox_events.aggregate_id)`
)

var (
	readPlain, readProbing = fmt.Sprintf(readSQL, blockedNever), fmt.Sprintf(readSQL, blockedProbe)
	openPlain, openProbing = fmt.Sprintf(openSQL, blockedNever), fmt.Sprintf(openSQL, blockedProbe)
)

// row is one outbox event the relay read.
type row struct {
	seq         int64
	id          string
	aggregateID string
	topic       string
	value       []byte
	headers     []byte
	attempts    int
	createdAt   time.Time
	// retry: read from the retry queue rather than the window.
	retry bool
	// blocked: the aggregate has events waiting to be retried, which must
	// go out first; this one joins them.
	blocked bool
}

// readPlan asks for one read: the retry queue first when retries, then
// the window after c (opening the next one when c is closed).
type readPlan struct {
	c       cursor
	limit   int
	retries bool
	// probe asks, for each window row, whether its aggregate has retries.
	probe bool
	// out are retries already on their way, not to be read again.
	out []int64
}

// readResult is what one read found.
type readResult struct {
	retries    []row
	anyRetries bool       // the queue holds rows (only asked when retries)
	nextRetry  *time.Time // when the earliest backing-off retry is due
	window     []row
	cursor     cursor // after window
}

// readBatch reads in one round trip: a read-only transaction (unless q is
// one already) in which the planner may not choose a sequential scan for
// the window's read. The relay's statements are prepared and PostgreSQL
// caches their generic plan; one made while the outbox was nearly empty (a
// new database) would scan the whole table on every read once it has grown,
// until the next ANALYZE. With sequential scans priced out, the plan is the
// index path whatever the table's size when it was made. (The retry queue is
// small: its reads keep sequential scans.)
func readBatch(ctx context.Context, q postgres.Querier, inTx bool, p readPlan) (readResult, error) {
	res := readResult{cursor: p.c}
	qb := &pgx.Batch{}
	if !inTx {
		qb.Queue("BEGIN READ ONLY")
	}
	// No JIT: these statements run in microseconds, and a plan priced with
	// a disabled sequential scan (a small table with no index path) would
	// look expensive enough to compile.
	if p.retries {
		qb.Queue(`SELECT set_config('jit', 'off', true)`)
		qb.Queue(retryStateSQL)
		qb.Queue(retrySQL, p.limit, p.out)
		qb.Queue(`SELECT set_config('enable_seqscan', 'off', true)`)
	} else {
		qb.Queue(`SELECT set_config('jit', 'off', true), set_config('enable_seqscan', 'off', true)`)
	}
	read, open := readPlain, openPlain
	if p.probe {
		read, open = readProbing, openProbing
	}
	if p.c.open {
		qb.Queue(read, p.c.a, p.c.b, p.c.lastSeq, p.limit)
	} else {
		qb.Queue(open, p.c.b, p.limit)
	}
	if !inTx {
		qb.Queue("COMMIT")
	}
	br := q.SendBatch(ctx, qb)
	defer br.Close()
	var err error
	if !inTx {
		if _, err = br.Exec(); err != nil {
			return res, fmt.Errorf("read outbox: %w", err)
		}
	}
	if _, err = br.Exec(); err != nil { // settings
		return res, fmt.Errorf("read outbox: %w", err)
	}
	if p.retries {
		if err := br.QueryRow().Scan(&res.anyRetries, &res.nextRetry); err != nil {
			return res, fmt.Errorf("read outbox retries: %w", err)
		}
		rows, _ := br.Query()
		if res.retries, err = collectRows(rows, p.limit, true); err != nil {
			return res, err
		}
		if _, err = br.Exec(); err != nil { // enable_seqscan
			return res, fmt.Errorf("read outbox: %w", err)
		}
	}
	rows, _ := br.Query()
	if p.c.open {
		out, err := collectRows(rows, p.limit, false)
		if err != nil {
			return res, err
		}
		if len(out) > 0 {
			res.cursor.lastSeq = out[len(out)-1].seq
		}
		res.cursor.open = len(out) == p.limit
		res.window = out
	} else {
		out, snap, err := collectOpened(rows, p.limit)
		if err != nil {
			return res, err
		}
		res.cursor = cursor{a: p.c.b, b: snap, open: len(out) == p.limit}
		if len(out) > 0 {
			res.cursor.lastSeq = out[len(out)-1].seq
		}
		res.window = out
	}
	if !inTx {
		if _, err = br.Exec(); err != nil {
			return res, fmt.Errorf("read outbox: %w", err)
		}
	}
	return res, br.Close()
}

func collectRows(rows pgx.Rows, limit int, retry bool) ([]row, error) {
	defer rows.Close()
	out := make([]row, 0, min(limit, 64))
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.seq, &r.id, &r.aggregateID, &r.topic, &r.value, &r.headers, &r.attempts, &r.createdAt, &r.blocked); err != nil {
			return nil, fmt.Errorf("read outbox: %w", err)
		}
		r.retry = retry
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return out, nil
}

// collectOpened reads openSQL's result: the window's first rows, and the
// row with no seq that carries the new snapshot.
func collectOpened(rows pgx.Rows, limit int) ([]row, string, error) {
	defer rows.Close()
	out := make([]row, 0, min(limit, 64))
	var snap string
	for rows.Next() {
		var (
			r        row
			snapshot *string
			seq      *int64
			attempts *int32
			created  *time.Time
			id, agg  *string
			topic    *string
			blocked  *bool
		)
		if err := rows.Scan(&snapshot, &seq, &id, &agg, &topic, &r.value, &r.headers, &attempts, &created, &blocked); err != nil {
			return nil, "", fmt.Errorf("read outbox: %w", err)
		}
		if seq == nil {
			if snapshot != nil {
				snap = *snapshot
			}
			continue
		}
		r.seq, r.id, r.aggregateID, r.topic, r.attempts, r.createdAt, r.blocked = *seq, *id, *agg, *topic, int(*attempts), *created, *blocked
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("read outbox: %w", err)
	}
	if snap == "" {
		return nil, "", fmt.Errorf("read outbox: no snapshot returned")
	}
	return out, snap, nil
}

// retrySQL reads the retry queue's due rows in seq order, leaving out those
// behind an earlier row of their aggregate that is still backing off, and
// those already on their way ($2).
const retrySQL = `
SELECT o.seq, o.id::text, o.aggregate_id, o.topic, o.event_data, o.headers, o.attempts, o.created_at, false
FROM outbox_retries r JOIN outbox_events o ON o.seq = r.seq
WHERE r.next_attempt_at <= now() AND r.seq <> ALL($2::bigint[])
  AND NOT EXISTS (SELECT FROM outbox_retries e WHERE e.aggregate_id = r.aggregate_id
                  AND e.seq < r.seq AND e.next_attempt_at > now())
ORDER BY r.seq LIMIT $1`

// retryStateSQL says whether any row waits in the retry queue and when the
// next one that is backing off becomes due.
const retryStateSQL = `SELECT EXISTS (SELECT FROM outbox_retries),
	(SELECT min(next_attempt_at) FROM outbox_retries WHERE next_attempt_at > now())`

// ErrCursorAhead: the relay's cursor names transactions this server has
// not reached, as after the database was restored from a dump into another
// cluster. Events written now would count as published already; the relay
// refuses to run until the cursor is set again (docs/fault-tolerance.md).
var ErrCursorAhead = errors.New("the outbox cursor is ahead of this server's transaction ids (the database was restored into another cluster?); " +
	"queue unpublished events and reset the cursor as docs/fault-tolerance.md says before starting a relay")

// loadCursor takes the relay's cursor for a new owner: it bumps the epoch,
// which fences whoever held the cursor before (their next commit finds
// another epoch and fails), and returns the committed position.
func loadCursor(ctx context.Context, q postgres.Querier, owner string) (int64, cursor, error) {
	var (
		epoch int64
		c     cursor
		ahead bool
	)
	err := q.QueryRow(ctx, `UPDATE outbox_relay SET epoch = epoch + 1, owner = $1, updated_at = now() WHERE id = 1
		RETURNING epoch, snap_a::text, snap_b::text, last_seq,
			pg_snapshot_xmax(snap_b) > pg_snapshot_xmax(pg_current_snapshot())`, owner).Scan(&epoch, &c.a, &c.b, &c.lastSeq, &ahead)
	if err != nil {
		return 0, c, fmt.Errorf("take the outbox relay's cursor: %w", err)
	}
	if ahead {
		return 0, c, ErrCursorAhead
	}
	c.open = true
	return epoch, c, nil
}
