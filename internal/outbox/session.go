package outbox

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/postgres"
)

// errFenced: another relay took the cursor (a higher epoch) since this one
// loaded it.
var errFenced = errors.New("another relay took over the outbox")

// batch is what one read gave the relay, on its way to Kafka and then to the
// ledger.
type batch struct {
	rows    []row
	recs    []*kgo.Record // recs[i] is rows[i]'s record; nil when not produced
	results []error       // set by the produce promises
	ackedAt []time.Time   // when each outcome arrived
	pending sync.WaitGroup
	acked   chan struct{} // closed once every produced record has its outcome
	// cursor after this batch; advances is false for a batch of retries
	// only, which leaves the cursor where it is.
	cursor   cursor
	advances bool
	started  time.Time
	// readGen is the session's commit generation when the read started;
	// probed: the read asked whether each row's aggregate has retries.
	readGen uint64
	probed  bool

	// set when resolved
	published []published
	changes   []rowChange
	deferred  map[string]int // aggregates this batch sent to the retry queue
}

// published is one ledger row.
type published struct {
	seq       int64
	partition int32
	offset    int64
	ackedAt   time.Time
	retry     bool // came from the retry queue, which it leaves
}

// rowChange is a row the cursor passes without publishing it, or a retried
// row that failed again.
type rowChange struct {
	seq      int64
	failed   int    // failed attempts to add: 0 for a row sent to the retry queue behind another
	err      string // last_error; "" keeps it
	perm     bool   // given up: failed
	retry    bool   // to (or stays in) the retry queue
	waitSecs float64
}

// session publishes for one owner of the cursor: reads in commit order,
// produces, and hands acknowledged batches to a committer that waits for the
// broker's durability barrier, then records them in the ledger and moves the
// cursor. Reading and producing the next batch overlap the barrier wait and
// the commit of the previous ones; a batch is produced while earlier ones
// are in flight only if it shares no aggregate with them, so an aggregate's
// next event never leaves before its previous one was acknowledged (or sent
// to the retry queue).
type session struct {
	r     *Relay
	epoch int64
	cur   cursor

	mu sync.Mutex
	// aggregates whose rows this session sent to the retry queue in batches
	// not committed yet: later rows of theirs must follow them there.
	deferred map[string]int
	// aggregates whose rows went to the retry queue in a commit, by the
	// commit's generation: a batch read before that commit, or read without
	// asking about retries, did not see them there.
	gen           uint64
	committedAggs map[string]uint64
	// retries: the retry queue may hold rows (checked, and these rows then
	// read, before the window; cleared when it is found empty).
	retries  bool
	retryDue time.Time // when the earliest backing-off retry becomes due

	inflight     []*batch
	inflightAggs map[string]int
	// retries produced and not yet recorded: the queue still holds them,
	// and the next read must not take them again.
	retriesOut map[int64]struct{}
}

func newSession(r *Relay, epoch int64, c cursor) *session {
	return &session{r: r, epoch: epoch, cur: c, deferred: map[string]int{}, committedAggs: map[string]uint64{}, retries: true,
		inflightAggs: map[string]int{}, retriesOut: map[int64]struct{}{}}
}

// markRetries says the retry queue may hold rows (a requeue, or a poll).
func (s *session) markRetries() {
	s.mu.Lock()
	s.retries = true
	s.mu.Unlock()
}

// read returns the next batch: due retries first, then the window's rows.
// An empty batch means there is nothing to publish now. inTx: q is a
// transaction (PublishBatch's).
func (s *session) read(ctx context.Context, q postgres.Querier, inTx bool) (*batch, error) {
	s.mu.Lock()
	// While the retry queue may hold rows it is read first, and each
	// window row's aggregate is looked up in it (an index probe per row).
	p := readPlan{c: s.cur, limit: s.r.cfg.BatchSize, retries: s.retries, probe: s.retries}
	if p.retries {
		p.out = make([]int64, 0, len(s.retriesOut))
		for seq := range s.retriesOut {
			p.out = append(p.out, seq)
		}
	}
	b := &batch{started: time.Now(), readGen: s.gen, probed: p.retries}
	s.mu.Unlock()
	res, err := readBatch(ctx, q, inTx, p)
	if err != nil {
		return nil, err
	}
	if p.c.open && len(res.window) == 0 {
		// The window ended exactly at the last read's limit: open the
		// next one now.
		p.c.open = false
		p.retries = false // already asked
		next, err := readBatch(ctx, q, inTx, p)
		if err != nil {
			return nil, err
		}
		res.window, res.cursor = next.window, next.cursor
	}
	b.rows = append(res.retries, res.window...)
	if b.probed {
		s.mu.Lock()
		if !res.anyRetries && len(s.deferred) == 0 {
			s.retries = false
		}
		s.retryDue = time.Time{}
		if res.nextRetry != nil {
			s.retryDue = *res.nextRetry
		}
		s.mu.Unlock()
	}
	// A read that took retries only up to the limit leaves the window's
	// rows for later; the cursor moves only with window rows.
	s.cur = res.cursor
	b.cursor, b.advances = res.cursor, len(res.window) > 0
	return b, nil
}

// conflicts reports whether b shares an aggregate with a batch in flight.
func (s *session) conflicts(b *batch) bool {
	if len(s.inflightAggs) == 0 {
		return false
	}
	for i := range b.rows {
		if s.inflightAggs[b.rows[i].aggregateID] > 0 {
			return true
		}
	}
	return false
}

// produce sends b's rows to Kafka, except those that must wait: a window row
// whose aggregate has rows in the retry queue goes there too, behind them; a
// retry whose aggregate this session is still sending there is left for a
// later read.
func (s *session) produce(ctx context.Context, b *batch) {
	b.recs = make([]*kgo.Record, len(b.rows))
	b.results = make([]error, len(b.rows))
	b.ackedAt = make([]time.Time, len(b.rows))
	s.mu.Lock()
	// Did the read see the retry queue as it is for this aggregate?
	stale := func(agg string) bool {
		g, ok := s.committedAggs[agg]
		return ok && (!b.probed || g > b.readGen)
	}
	for i := range b.rows {
		r := &b.rows[i]
		switch {
		case r.retry && s.deferred[r.aggregateID] > 0:
			// Left in the queue behind this session's uncommitted
			// deferrals of its aggregate; read again later.
		case !r.retry && (r.blocked || s.deferred[r.aggregateID] > 0 || stale(r.aggregateID)):
			b.changes = append(b.changes, rowChange{seq: r.seq, retry: true})
			if b.deferred == nil {
				b.deferred = map[string]int{}
			}
			b.deferred[r.aggregateID]++
			s.deferred[r.aggregateID]++
		default:
			b.recs[i] = record(r)
			if r.retry {
				s.retriesOut[r.seq] = struct{}{}
			}
		}
	}
	if b.probed {
		// Later batches are read after this one: what it saw in the
		// database needs no remembering.
		for agg, g := range s.committedAggs {
			if g <= b.readGen {
				delete(s.committedAggs, agg)
			}
		}
	}
	s.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	n := 0
	for _, rec := range b.recs {
		if rec != nil {
			n++
		}
	}
	b.pending.Add(n)
	for i, rec := range b.recs {
		if rec == nil {
			continue
		}
		s.inflightAggs[b.rows[i].aggregateID]++
		s.r.producer.Produce(pctx, rec, func(_ *kgo.Record, err error) {
			b.results[i], b.ackedAt[i] = err, time.Now()
			b.pending.Done()
		})
	}
	b.acked = make(chan struct{})
	go func() { b.pending.Wait(); cancel(); close(b.acked) }()
	s.inflight = append(s.inflight, b)
}

// done is closed once every record of b has its outcome.
func (b *batch) done() <-chan struct{} { return b.acked }

// resolve waits for the oldest batch in flight and sorts its rows into the
// ledger, the retry queue and the failed; permanent failures are first sent
// again alone (the broker refuses a whole record batch for one oversized
// record).
func (s *session) resolve(ctx context.Context) *batch {
	b := s.inflight[0]
	s.inflight = s.inflight[1:]
	<-b.acked
	s.r.retryAlone(ctx, b)
	for i := range b.rows {
		if b.recs[i] == nil {
			continue
		}
		r := &b.rows[i]
		if s.inflightAggs[r.aggregateID]--; s.inflightAggs[r.aggregateID] <= 0 {
			delete(s.inflightAggs, r.aggregateID)
		}
		err := b.results[i]
		if err == nil {
			rec, acked := b.recs[i], b.ackedAt[i]
			b.published = append(b.published, published{seq: r.seq, partition: rec.Partition, offset: rec.Offset, ackedAt: acked, retry: r.retry})
			s.r.cfg.Metrics.published.WithLabelValues(r.topic).Inc()
			s.r.cfg.Metrics.latency.Observe(acked.Sub(r.createdAt).Seconds())
			continue
		}
		perm := permanentProduceError(err)
		s.r.cfg.Metrics.failures.WithLabelValues(r.topic, strconv.FormatBool(perm)).Inc()
		c := rowChange{seq: r.seq, failed: 1, err: err.Error(), perm: perm, retry: !perm, waitSecs: s.r.backoff(r.attempts + 1).Seconds()}
		b.changes = append(b.changes, c)
		if perm {
			s.r.cfg.Logger.Error("outbox event can never be published; marked failed", "event_id", r.id, "err", err)
			continue
		}
		// Later events of the aggregate follow it to the retry queue.
		s.mu.Lock()
		s.deferred[r.aggregateID]++
		s.mu.Unlock()
		if b.deferred == nil {
			b.deferred = map[string]int{}
		}
		b.deferred[r.aggregateID]++
	}
	if failed := len(b.changes); failed > 0 {
		var first string
		for _, c := range b.changes {
			if c.err != "" {
				first = c.err
				break
			}
		}
		if first != "" {
			s.r.cfg.Logger.Warn("outbox events not published; will retry", "not_published", failed, "published", len(b.published), "first_err", first)
		}
	}
	// The ledger commit needs only the outcomes: the payloads and records
	// go now, not once the commit, up to four batches later, has run.
	for i := range b.rows {
		b.rows[i].value, b.rows[i].headers = nil, nil
	}
	b.recs = nil
	return b
}

// commit records resolved batches: it waits until the broker made their
// records durable, then, in one transaction sent in one round trip (and its
// COMMIT), writes their ledger rows, the rows that failed or went to the
// retry queue, and the cursor after the last batch, provided this session
// still owns it. The commit does not wait for PostgreSQL's WAL flush: a
// commit lost in a database crash only makes the relay publish those events
// again, which at-least-once allows.
func (s *session) commit(ctx context.Context, pool *pgxpool.Pool, batches []*batch) error {
	var (
		pub     []published
		changes []rowChange
		last    *cursor
	)
	for _, b := range batches {
		pub = append(pub, b.published...)
		changes = append(changes, b.changes...)
		if b.advances {
			last = &b.cursor
		}
	}
	if len(pub) > 0 {
		// Acknowledged is not yet durable on the embedded broker.
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := kafka.WaitDurable(dctx, s.r.cfg.Durability)
		cancel()
		if err != nil {
			return fmt.Errorf("broker did not make published events durable: %w", err)
		}
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("record published events: %w", err)
	}
	// A connection left inside a failed transaction is closed, not reused.
	defer conn.Release()
	qb := &pgx.Batch{}
	qb.Queue("BEGIN")
	s.queueWrite(qb, pub, changes, last)
	if err := execWrite(conn.SendBatch(ctx, qb), qb.Len(), true); err != nil {
		_, _ = conn.Exec(ctx, "ROLLBACK")
		return err
	}
	if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("record published events: %w", err)
	}
	return nil
}

// write records pub, changes and the cursor in tx (PublishBatch's own
// transaction).
func (s *session) write(ctx context.Context, tx pgx.Tx, pub []published, changes []rowChange, last *cursor) error {
	qb := &pgx.Batch{}
	s.queueWrite(qb, pub, changes, last)
	return execWrite(tx.SendBatch(ctx, qb), qb.Len(), false)
}

// queueWrite queues the statements of a commit. The first updates the
// cursor (or only its time, for a batch of retries) if the epoch is still
// this session's: the row lock it takes orders the commit against a
// takeover, which bumps the epoch.
func (s *session) queueWrite(qb *pgx.Batch, pub []published, changes []rowChange, last *cursor) {
	// No wait for the WAL flush (see commit); no sequential scan of the
	// outbox in a plan cached while it was small, and no JIT (see
	// readBatch).
	qb.Queue(`SELECT set_config('synchronous_commit', 'off', true), set_config('enable_seqscan', 'off', true),
		set_config('jit', 'off', true)`)
	var a, b *string
	var lastSeq *int64
	if last != nil {
		a, b, lastSeq = &last.a, &last.b, &last.lastSeq
	}
	qb.Queue(`UPDATE outbox_relay SET snap_a = coalesce($2::pg_snapshot, snap_a), snap_b = coalesce($3::pg_snapshot, snap_b),
		last_seq = coalesce($4::bigint, last_seq), updated_at = now() WHERE id = 1 AND epoch = $1`, s.epoch, a, b, lastSeq)
	if len(pub) > 0 {
		n := len(pub)
		seqs, parts, offs, acks := make([]int64, n), make([]int32, n), make([]int64, n), make([]time.Time, n)
		var retried []int64
		for i, p := range pub {
			seqs[i], parts[i], offs[i], acks[i] = p.seq, p.partition, p.offset, p.ackedAt
			if p.retry {
				retried = append(retried, p.seq)
			}
		}
		// The ledger row, and the seed's columns for people and tools
		// (a HOT update: no index names them).
		qb.Queue(`WITH l AS (
				INSERT INTO outbox_published (seq, kafka_partition, kafka_offset, acked_at)
				SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::timestamptz[])
				RETURNING seq, acked_at)
			UPDATE outbox_events o SET processed = true, published_at = l.acked_at FROM l WHERE o.seq = l.seq`,
			seqs, parts, offs, acks)
		if len(retried) > 0 {
			qb.Queue(`DELETE FROM outbox_retries WHERE seq = ANY($1)`, retried)
		}
	}
	if len(changes) > 0 {
		queueChanges(qb, changes)
	}
}

// execWrite reads the results of the n statements queueWrite queued (the
// first a BEGIN when begun); errFenced when the cursor belongs to another
// relay now.
func execWrite(br pgx.BatchResults, n int, begun bool) error {
	defer br.Close()
	cursorAt := 1 // after the settings
	if begun {
		cursorAt = 2
	}
	for i := range n {
		tag, err := br.Exec()
		if err != nil {
			return fmt.Errorf("record published events: %w", err)
		}
		if i == cursorAt && tag.RowsAffected() == 0 {
			return errFenced
		}
	}
	return br.Close()
}

// queueChanges queues the record of rows not published: failures count an
// attempt and keep their error; the retry queue gains (or keeps, with a new
// back-off) the rows to try again and loses those given up.
func queueChanges(qb *pgx.Batch, changes []rowChange) {
	n := len(changes)
	seqs, failed, errs, perm, retry, wait := make([]int64, n), make([]int32, n), make([]*string, n), make([]bool, n), make([]bool, n), make([]float64, n)
	for i, c := range changes {
		seqs[i], failed[i], perm[i], retry[i], wait[i] = c.seq, int32(c.failed), c.perm, c.retry, c.waitSecs
		if c.err != "" {
			errs[i] = &c.err
		}
	}
	qb.Queue(`WITH c AS (
			SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::bool[], $5::bool[], $6::float8[]) AS c(seq, failed, err, perm, retry, wait)),
		failures AS (
			UPDATE outbox_events o SET attempts = o.attempts + c.failed, last_error = coalesce(c.err, o.last_error), failed = c.perm
			FROM c WHERE o.seq = c.seq AND (c.failed > 0 OR c.perm)),
		given_up AS (
			DELETE FROM outbox_retries r USING c WHERE r.seq = c.seq AND NOT c.retry)
		INSERT INTO outbox_retries (seq, aggregate_id, next_attempt_at)
		SELECT c.seq, o.aggregate_id, now() + make_interval(secs => c.wait)
		FROM c JOIN outbox_events o ON o.seq = c.seq WHERE c.retry
		ON CONFLICT (seq) DO UPDATE SET next_attempt_at = excluded.next_attempt_at`, seqs, failed, errs, perm, retry, wait)
}

// committed tells the session its batches are in the database: rows it
// sent to the retry queue are now found there by the next read. It reports
// whether any were.
func (s *session) committed(batches []*batch) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	queued := false
	for _, b := range batches {
		queued = queued || len(b.deferred) > 0
		if len(b.deferred) > 0 {
			s.retries = true
			s.gen++
		}
		for agg, n := range b.deferred {
			if s.deferred[agg] -= n; s.deferred[agg] <= 0 {
				delete(s.deferred, agg)
			}
			s.committedAggs[agg] = s.gen
		}
		for i := range b.rows {
			if b.rows[i].retry {
				delete(s.retriesOut, b.rows[i].seq)
			}
		}
		if len(b.published) > 0 {
			s.r.cfg.Metrics.batchSeconds.Observe(time.Since(b.started).Seconds())
		}
	}
	return queued
}

// record builds the Kafka record of an outbox row.
func record(r *row) *kgo.Record {
	rec := &kgo.Record{Topic: r.topic, Key: []byte(r.aggregateID), Value: r.value}
	rec.Headers = parseHeaders(r.headers)
	return rec
}
