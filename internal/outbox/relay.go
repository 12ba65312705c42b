package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/postgres"
)

// NotifyChannel is the LISTEN/NOTIFY channel an outbox insert signals.
const NotifyChannel = "trackops_outbox"

// NotifyRetry is the payload of a notification that the retry queue gained
// rows from outside the relay (an operator's requeue).
const NotifyRetry = "retry"

// RelayConfig tunes a Relay.
type RelayConfig struct {
	// BatchSize is how many events one read takes at most.
	BatchSize int
	// PollInterval is how often the relay looks for work when no
	// notification woke it (the fallback when NOTIFY is lost).
	PollInterval time.Duration
	// Retention is how long published events (and their ledger rows) are
	// kept before pruning; 0 keeps them.
	Retention time.Duration
	// RetryInitial and RetryMax bound the back-off of a failed event.
	RetryInitial, RetryMax time.Duration
	// Workers is how many batches the relay holding the cursor has in
	// flight at once: read and produced, not yet recorded. Batches that
	// share no aggregate are produced while earlier ones await their
	// acknowledgement; the broker's durability barrier and the ledger
	// commit of one batch always overlap the next.
	Workers int
	// Durability is the broker's durability barrier: the relay waits on
	// it after Kafka's acknowledgement and before recording events
	// published, so a published event is always durable in the broker's
	// log. nil (a real cluster with acks=all) does not wait.
	Durability kafka.Barrier
	// ListenPool holds the relay's own session: the cursor's advisory lock
	// and the LISTEN. nil means the relay's pool. Behind a transaction
	// pooler (PgBouncer) both need a session of their own, so the app
	// passes a pool on the direct database URL.
	ListenPool *pgxpool.Pool
	// Metrics count what the relay publishes; nil counts without
	// exporting.
	Metrics *Metrics
	Logger  *slog.Logger
}

func (c *RelayConfig) defaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.RetryInitial <= 0 {
		c.RetryInitial = time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = time.Minute
	}
	if c.Workers <= 0 {
		c.Workers = 2
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
}

// Relay publishes outbox events to Kafka, at least once and in order per
// aggregate.
//
// The outbox is append-only (see cursor): the relay reads events in commit
// order behind a cursor and records each published one in a narrow ledger
// (outbox_published) instead of rewriting its row. Any number of relays, in
// one process or many, may run over one outbox: one of them holds the
// cursor (a session-level advisory lock on its LISTEN connection) and
// publishes; the others wait on the lock and take over the moment its
// session ends. A relay that took over bumps the cursor's epoch, so a
// former holder that lost its lock without noticing can no longer commit.
//
// Delivery is at least once. An event is recorded published only after
// Kafka acknowledged it and the broker made it durable (the embedded
// broker's group commit); if the relay dies in between, its successor
// publishes the event again from the cursor, with the same event id, key
// and value. The ledger records the partition and offset Kafka gave the
// event, when Kafka acknowledged it and when the relay recorded it, so a
// broker log that lost its tail can be refilled (RequeueLost).
//
// Per-aggregate order: within the cursor's order an aggregate's events go
// out in the order they were written, and an event is not produced while an
// earlier event of its aggregate is still in flight. An event that fails to
// publish goes to the retry queue (outbox_retries) with a back-off, and
// the later events of its aggregate follow it there; the other aggregates
// are not held up.
type Relay struct {
	pool     *pgxpool.Pool
	producer *kgo.Client
	cfg      RelayConfig
	wake     chan struct{}
	owner    string

	mu      sync.Mutex
	session *session // while this relay holds the cursor
}

// NewRelay returns a relay over the outbox in pool publishing with producer.
func NewRelay(pool *pgxpool.Pool, producer *kgo.Client, cfg RelayConfig) *Relay {
	cfg.defaults()
	host, _ := os.Hostname()
	owner := fmt.Sprintf("%s:%d:%s", host, os.Getpid(), uuid.NewString()[:8])
	return &Relay{pool: pool, producer: producer, cfg: cfg, wake: make(chan struct{}, 1), owner: owner}
}

// lockKey is the advisory lock (per database) the relay holding the cursor
// owns: "trackops-outbox" in ASCII.
const lockKey int64 = 0x74726b6f75746278

// Run publishes until ctx ends: it waits for the cursor's lock, then
// publishes while it holds it. Batches in flight when ctx ends are finished
// (their acknowledged events recorded) before Run returns.
func (r *Relay) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if r.cfg.Retention > 0 {
		wg.Go(func() { r.pruneLoop(ctx) })
	}
	for ctx.Err() == nil {
		err := r.lead(ctx)
		if ctx.Err() != nil {
			break
		}
		r.cfg.Logger.Warn("outbox relay lost its database session; taking the cursor again", "err", err)
		sleepCtx(ctx, time.Second)
	}
	wg.Wait()
	return nil
}

// Wake asks the relay to look for work now.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// lead waits for the cursor's lock on a connection of its own, listens for
// new events on the same connection and publishes until ctx ends or the
// connection fails (with it the lock is gone).
func (r *Relay) lead(ctx context.Context) error {
	pool := r.cfg.ListenPool
	if pool == nil {
		pool = r.pool
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer func() {
		// The lock and the LISTEN end with the session: this connection
		// never goes back to the pool.
		_ = conn.Conn().Close(context.Background())
		conn.Release()
	}()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, lockKey); err != nil {
		return fmt.Errorf("wait for the outbox cursor: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return err
	}
	r.cfg.Logger.Info("outbox relay holds the cursor", "owner", r.owner)
	// Notifications arrive while sessions come and go; the connection's
	// failure ends them all.
	lctx, lost := context.WithCancelCause(ctx)
	listening := make(chan struct{})
	go func() {
		defer close(listening)
		for {
			n, err := conn.Conn().WaitForNotification(lctx)
			if err != nil {
				lost(fmt.Errorf("outbox relay's lock connection: %w", err))
				return
			}
			if n.Payload == NotifyRetry {
				r.mu.Lock()
				if r.session != nil {
					r.session.markRetries()
				}
				r.mu.Unlock()
			}
			r.Wake()
		}
	}()
	defer func() { lost(nil); <-listening }()
	for {
		err := r.publishSession(lctx)
		if ctx.Err() != nil {
			return nil
		}
		if lctx.Err() != nil {
			return context.Cause(lctx)
		}
		r.cfg.Logger.Warn("outbox relay session failed; resuming from the committed cursor", "err", err)
		sleepCtx(lctx, time.Second)
	}
}

// publishSession loads the cursor and publishes until ctx ends or a commit
// fails: reading and producing here, recording in a committer goroutine.
func (r *Relay) publishSession(ctx context.Context) error {
	epoch, cur, err := loadCursor(ctx, r.pool, r.owner)
	if err != nil {
		return err
	}
	s := newSession(r, epoch, cur)
	r.mu.Lock()
	r.session = s
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.session = nil
		r.mu.Unlock()
	}()

	// Work in flight is finished even when asked to stop: records may
	// already be on their way to Kafka.
	bctx := context.WithoutCancel(ctx)
	sctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	q := newCommitQueue()
	committerDone := make(chan struct{})
	go func() {
		defer close(committerDone)
		r.commitLoop(bctx, s, q, fail)
	}()
	err = r.publishLoop(sctx, bctx, s, q)
	q.close()
	<-committerDone
	if cause := context.Cause(sctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// publishLoop reads and produces; it hands each resolved batch to the
// committer in order. It returns once ctx ended and nothing is in flight.
// It reads ahead of the committer by at most a few batches' worth of rows:
// what is published but not recorded would be published again by a
// successor.
func (r *Relay) publishLoop(ctx, bctx context.Context, s *session, q *commitQueue) error {
	poll := time.NewTimer(0)
	defer poll.Stop()
	var pollAt pollDeadline
	maxUncommitted := 4 * r.cfg.BatchSize
	more := true // there may be rows to read
	// woken: new events were committed (a notification or a writer of
	// this process). They are read once no batch is in flight, as a poll
	// is: events that commit while a batch awaits its acknowledgement go
	// out together in the next one, so the reads follow the path's pace
	// instead of every commit.
	woken := false
	// A new holder starts as busy, whatever its predecessor left: it reads
	// at once, and asks writers to notify once the rate it reads at is low
	// or it found nothing for a while.
	w := wakeState{log: r.cfg.Logger}
	if err := w.setListening(ctx, r.pool, false, time.Now()); err != nil {
		return err
	}
	for {
		if ctx.Err() != nil {
			for len(s.inflight) > 0 {
				q.put(s.resolve(bctx))
			}
			return nil
		}
		if woken && len(s.inflight) == 0 {
			more, woken = true, false
		}
		if more && len(s.inflight) < r.cfg.Workers && q.uncommitted() < maxUncommitted {
			pollAt.clear()
			b, err := s.read(ctx, r.pool, false)
			if err != nil {
				for len(s.inflight) > 0 {
					q.put(s.resolve(bctx))
				}
				return err
			}
			if len(b.rows) == 0 {
				more = false
				continue
			}
			reread, err := w.found(ctx, r.pool, len(b.rows))
			if err != nil {
				r.cfg.Logger.Warn("outbox relay could not switch writers' notifications", "err", err)
			}
			// An aggregate's next event waits for the previous one's
			// outcome.
			for len(s.inflight) > 0 && s.conflicts(b) {
				q.put(s.resolve(bctx))
			}
			s.produce(bctx, b)
			more = reread || len(b.rows) >= r.cfg.BatchSize || b.cursor.open
			continue
		}
		// Wait for the oldest batch's acknowledgements, the committer to
		// catch up, new events, a retry coming due, the poll, or the end.
		var done <-chan struct{}
		if len(s.inflight) > 0 {
			done = s.inflight[0].done()
		}
		next, busy := r.nextPoll(s), false
		if !more && len(s.inflight) == 0 {
			// Nothing to read: poll briefly while recently busy, then
			// ask writers to notify again and read once more, since a
			// writer that looked before this may have committed since.
			wait, reread, err := w.idle(ctx, r.pool)
			if err != nil {
				r.cfg.Logger.Warn("outbox relay could not ask writers to notify; polling", "err", err)
				wait = busyPoll
			}
			if reread {
				more = true
				continue
			}
			if wait > 0 && wait < next {
				next, busy = wait, true
			}
		}
		poll.Reset(pollAt.arm(time.Now(), next, busy))
		select {
		case <-done:
			q.put(s.resolve(bctx))
		case <-q.room:
		case <-r.wake:
			woken = true
		case <-poll.C:
			if !pollAt.busy {
				s.markRetries()
			}
			pollAt.clear()
			more = true
		case <-ctx.Done():
		}
	}
}

// pollDeadline is when the relay reads again unless something makes it
// read sooner. Arming it again keeps the earlier time: a batch acknowledged
// or recorded meanwhile must not push the poll back. (The committer
// finishing a few milliseconds after each acknowledgement used to restart
// the busy poll, so a busy relay read about every 10 ms instead of every 5.)
type pollDeadline struct {
	at   time.Time
	busy bool // a busy poll, not a full one (which also looks at due retries)
}

// arm asks for a poll d after now and returns how long to wait for the
// earlier of it and the poll already armed.
func (p *pollDeadline) arm(now time.Time, d time.Duration, busy bool) time.Duration {
	if at := now.Add(d); p.at.IsZero() || at.Before(p.at) {
		p.at, p.busy = at, busy
	}
	return p.at.Sub(now)
}

// clear forgets the armed poll: the relay reads now.
func (p *pollDeadline) clear() { *p = pollDeadline{} }

// nextPoll is how long the relay may sleep: the poll interval, or less when
// a retry comes due sooner.
func (r *Relay) nextPoll(s *session) time.Duration {
	d := r.cfg.PollInterval
	s.mu.Lock()
	due := s.retryDue
	s.mu.Unlock()
	if !due.IsZero() {
		d = min(d, max(time.Until(due), time.Millisecond))
	}
	return d
}

// commitQueue carries resolved batches from the publisher to the committer,
// which takes everything queued at once: one barrier wait and one
// transaction for all of it.
type commitQueue struct {
	mu      sync.Mutex
	batches []*batch
	rows    int // queued or being committed
	closed  bool
	ready   chan struct{} // something queued, or closed
	room    chan struct{} // a commit finished
}

func newCommitQueue() *commitQueue {
	return &commitQueue{ready: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

func (q *commitQueue) put(b *batch) {
	q.mu.Lock()
	q.batches = append(q.batches, b)
	q.rows += len(b.rows)
	q.mu.Unlock()
	notify(q.ready)
}

func (q *commitQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	notify(q.ready)
}

// take waits for batches; ok is false once the queue is closed and empty.
func (q *commitQueue) take() (batches []*batch, ok bool) {
	for {
		q.mu.Lock()
		batches, q.batches = q.batches, nil
		closed := q.closed
		q.mu.Unlock()
		if len(batches) > 0 {
			return batches, true
		}
		if closed {
			return nil, false
		}
		<-q.ready
	}
}

// committed frees the room batches took.
func (q *commitQueue) committed(batches []*batch) {
	q.mu.Lock()
	for _, b := range batches {
		q.rows -= len(b.rows)
	}
	q.mu.Unlock()
	notify(q.room)
}

func (q *commitQueue) uncommitted() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.rows
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// commitLoop records resolved batches, all those queued at once; a failed
// commit ends the session (its successor resumes from the committed cursor
// and publishes again what was not recorded).
func (r *Relay) commitLoop(ctx context.Context, s *session, q *commitQueue, fail context.CancelCauseFunc) {
	var failed error
	for {
		batches, ok := q.take()
		if !ok {
			return
		}
		if failed == nil {
			if err := s.commit(ctx, r.pool, batches); err != nil {
				failed = err
				fail(err)
			} else if s.committed(batches) {
				r.Wake() // rows wait in the retry queue now: read them
			}
		}
		q.committed(batches)
	}
}

// PublishBatch publishes one batch and records it before returning, in one
// transaction that holds the cursor's lock meanwhile. It returns how many
// events it read (0 when there is nothing to publish, or when another relay
// holds the cursor). Run is the way to publish continuously; PublishBatch
// serves tools and tests.
func (r *Relay) PublishBatch(ctx context.Context) (int, error) {
	bctx := context.WithoutCancel(ctx)
	var n int
	err := postgres.WithTx(bctx, r.pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(bctx, `SELECT pg_try_advisory_xact_lock($1)`, lockKey).Scan(&locked); err != nil {
			return fmt.Errorf("lock the outbox cursor: %w", err)
		}
		if !locked {
			return nil
		}
		epoch, cur, err := loadCursor(bctx, tx, r.owner)
		if err != nil {
			return err
		}
		s := newSession(r, epoch, cur)
		b, err := s.read(bctx, tx, true)
		if err != nil {
			return err
		}
		n = len(b.rows)
		if n == 0 && !b.advances {
			return nil
		}
		s.produce(bctx, b)
		b = s.resolve(bctx)
		var pub []published
		var last *cursor
		pub = b.published
		if b.advances {
			last = &b.cursor
		}
		if len(pub) > 0 {
			dctx, cancel := context.WithTimeout(bctx, 30*time.Second)
			err := kafka.WaitDurable(dctx, r.cfg.Durability)
			cancel()
			if err != nil {
				return fmt.Errorf("broker did not make published events durable: %w", err)
			}
		}
		if err := s.write(bctx, tx, pub, b.changes, last); err != nil {
			return err
		}
		if len(pub) > 0 {
			r.cfg.Metrics.batchSeconds.Observe(time.Since(b.started).Seconds())
		}
		return nil
	})
	return n, err
}

// retryAlone publishes again, one at a time, the records of b that failed
// with a permanent error while sharing the batch. The broker rejects a whole
// record batch when it is too large, so one oversized event would otherwise
// take its innocent neighbours down with it; only a record that fails on its
// own is given up.
func (r *Relay) retryAlone(ctx context.Context, b *batch) {
	produced := 0
	for _, rec := range b.recs {
		if rec != nil {
			produced++
		}
	}
	if produced < 2 {
		return
	}
	for i, err := range b.results {
		if err == nil || b.recs[i] == nil || !permanentProduceError(err) {
			continue
		}
		old := b.recs[i]
		rec := &kgo.Record{Topic: old.Topic, Key: old.Key, Value: old.Value, Headers: old.Headers}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		b.recs[i], b.results[i] = rec, r.producer.ProduceSync(pctx, rec)[0].Err
		b.ackedAt[i] = time.Now()
		cancel()
	}
}

func (r *Relay) backoff(attempt int) time.Duration {
	d := r.cfg.RetryInitial
	for i := 1; i < attempt && d < r.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, r.cfg.RetryMax)
}

// permanentProduceError reports errors no retry can fix: the record is too
// large for the broker or otherwise invalid.
func permanentProduceError(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) ||
		errors.Is(err, kerr.InvalidRecord) || errors.Is(err, kerr.InvalidTopicException)
}

// pruneLoop deletes published rows past the retention, a bounded chunk at
// a time so it never holds long locks.
func (r *Relay) pruneLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := r.Prune(ctx); err != nil && ctx.Err() == nil {
			r.cfg.Logger.Warn("outbox prune failed", "err", err)
		}
	}
}

// Prune deletes published events older than the retention, with their
// ledger rows, and returns how many it removed.
func (r *Relay) Prune(ctx context.Context) (int64, error) {
	var total int64
	for {
		// Oldest first along the ledger's key: events past the retention
		// sit at its low end.
		tag, err := r.pool.Exec(ctx, `WITH old AS (
				DELETE FROM outbox_published WHERE seq IN (
					SELECT seq FROM outbox_published WHERE published_at < now() - make_interval(secs => $1)
					ORDER BY seq LIMIT 5000)
				RETURNING seq)
			DELETE FROM outbox_events o USING old WHERE o.seq = old.seq`,
			r.cfg.Retention.Seconds())
		if err != nil {
			return total, fmt.Errorf("prune outbox: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 5000 {
			return total, nil
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// RequeueLost queues again every published event whose recorded Kafka
// offset is at or beyond the end of its partition in ends (topic →
// end offset per partition; a topic missing from ends counts as empty): the
// broker's log lost those records, so the relay publishes them again, with
// the same event ids. Their ledger rows go; the events join the retry queue,
// and later events of their aggregates wait behind them. It must run before
// any relay publishes to the recovered broker, while recorded offsets still
// refer to the log that was loaded. Events published before offsets were
// recorded cannot be checked. It returns how many events it queued again,
// per topic, and counts them in m (nil: not counted).
func RequeueLost(ctx context.Context, db postgres.Querier, ends map[string][]int64, m *Metrics) (map[string]int64, error) {
	var (
		topics []string
		parts  []int32
		offs   []int64
	)
	for t, es := range ends {
		for p, e := range es {
			topics = append(topics, t)
			parts = append(parts, int32(p))
			offs = append(offs, e)
		}
	}
	rows, err := db.Query(ctx, `WITH ends AS (
			SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[]) AS e(topic, part, end_offset)),
		lost AS (
			SELECT p.seq FROM outbox_published p
			JOIN outbox_events o ON o.seq = p.seq
			LEFT JOIN ends ON ends.topic = o.topic AND ends.part = p.kafka_partition
			WHERE p.kafka_offset IS NOT NULL AND p.kafka_offset >= COALESCE(ends.end_offset, 0)),
		gone AS (
			DELETE FROM outbox_published p USING lost WHERE p.seq = lost.seq
			RETURNING p.seq, p.kafka_partition, p.kafka_offset),
		queued AS (
			INSERT INTO outbox_retries (seq, aggregate_id, next_attempt_at)
			SELECT o.seq, o.aggregate_id, now() FROM gone JOIN outbox_events o ON o.seq = gone.seq
			ON CONFLICT (seq) DO NOTHING)
		UPDATE outbox_events o SET processed = false, published_at = NULL,
			last_error = format('requeued: the broker''s log lost offset %s of partition %s', gone.kafka_offset, gone.kafka_partition)
		FROM gone WHERE o.seq = gone.seq
		RETURNING o.topic`, topics, parts, offs)
	if err != nil {
		return nil, fmt.Errorf("requeue events the broker lost: %w", err)
	}
	out := map[string]int64{}
	var topic string
	if _, err := pgx.ForEachRow(rows, []any{&topic}, func() error { out[topic]++; return nil }); err != nil {
		return nil, fmt.Errorf("requeue events the broker lost: %w", err)
	}
	if m != nil {
		for t, n := range out {
			m.requeued.WithLabelValues(t).Add(float64(n))
		}
	}
	return out, nil
}
