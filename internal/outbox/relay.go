package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/postgres"
)

// NotifyChannel is the LISTEN/NOTIFY channel an outbox insert signals.
const NotifyChannel = "trackops_outbox"

var (
	publishedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "trackops_outbox_published_total",
		Help: "Outbox events published to Kafka, by topic.",
	}, []string{"topic"})
	publishFailures = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "trackops_outbox_publish_failures_total",
		Help: "Failed attempts to publish an outbox event, by topic and whether the event was given up (permanent).",
	}, []string{"topic", "permanent"})
	relayLatency = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "trackops_relay_publish_latency_seconds",
		Help:    "Time from an outbox event's creation to Kafka's acknowledgement of it.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
	})
	relayBatchSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "trackops_relay_batch_seconds",
		Help:    "Time to claim, publish and mark one relay batch.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	})
)

// RelayConfig tunes a Relay.
type RelayConfig struct {
	// BatchSize is how many events one claim takes at most.
	BatchSize int
	// PollInterval is how often the relay looks for work when no
	// notification woke it (the fallback when NOTIFY is lost).
	PollInterval time.Duration
	// Retention is how long published rows are kept before pruning; 0 keeps them.
	Retention time.Duration
	// RetryInitial and RetryMax bound the back-off of a failed event.
	RetryInitial, RetryMax time.Duration
	// Workers is how many batches one relay publishes at once.
	Workers int
	// Durability is the broker's durability barrier: the relay waits on
	// it after Kafka's acknowledgement and before marking rows published,
	// so a published row is always durable in the broker's log. nil (a
	// real cluster with acks=all) does not wait.
	Durability kafka.Barrier
	// ListenPool holds the LISTEN connection; nil means the relay's pool.
	// Behind a transaction pooler (PgBouncer) LISTEN needs a session of its
	// own, so the app passes a pool on the direct database URL.
	ListenPool *pgxpool.Pool
	Logger     *slog.Logger
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
		c.Workers = 1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Relay publishes outbox events to Kafka. Any number of relays, in one
// process or many, may run over one outbox: each claims rows with
// FOR UPDATE SKIP LOCKED, and an event is never claimed while an earlier
// unpublished event of the same aggregate is held elsewhere, so one
// aggregate's events reach Kafka in the order they were written.
//
// Delivery is at least once. A row is marked published only after Kafka
// acknowledged it and the broker made it durable (the embedded broker's
// group commit); if the relay dies between the acknowledgement and the
// mark, the event is published again, with the same event id, key and
// value. The mark records the partition and offset Kafka gave the event and
// the time of the mark (published_at), so a broker log that lost its tail
// can be refilled (RequeueLost).
type Relay struct {
	pool     *pgxpool.Pool
	producer *kgo.Client
	cfg      RelayConfig
	wake     chan struct{}
	// listening is closed once the relay's first LISTEN succeeded.
	listening     chan struct{}
	listeningOnce sync.Once
}

// NewRelay returns a relay over the outbox in pool publishing with producer.
func NewRelay(pool *pgxpool.Pool, producer *kgo.Client, cfg RelayConfig) *Relay {
	cfg.defaults()
	return &Relay{pool: pool, producer: producer, cfg: cfg, wake: make(chan struct{}, 1), listening: make(chan struct{})}
}

// Listening is closed once the relay LISTENs for outbox NOTIFYs: from then
// on, a committed outbox row wakes it without waiting for the poll.
func (r *Relay) Listening() <-chan struct{} { return r.listening }

// Run publishes until ctx ends. A batch in flight when ctx ends is finished
// (its acknowledged events marked) before Run returns.
func (r *Relay) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { r.listen(ctx) })
	if r.cfg.Retention > 0 {
		wg.Go(func() { r.pruneLoop(ctx) })
	}
	for range r.cfg.Workers {
		wg.Go(func() { r.work(ctx) })
	}
	wg.Wait()
	return nil
}

func (r *Relay) work(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		n, err := r.PublishBatch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			wait := min(time.Duration(failures)*200*time.Millisecond, 5*time.Second)
			r.cfg.Logger.Warn("outbox relay batch failed", "err", err, "retry_in", wait)
			sleepCtx(ctx, wait)
			continue
		}
		failures = 0
		if n >= r.cfg.BatchSize {
			continue // a backlog: go straight on
		}
		timer := time.NewTimer(r.cfg.PollInterval)
		select {
		case <-ctx.Done():
		case <-r.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// Wake asks the relay to look for work now.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// listen turns outbox NOTIFYs into wake-ups, reconnecting when the
// connection drops; polling covers the gaps.
func (r *Relay) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := r.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		r.cfg.Logger.Warn("outbox listener lost its connection", "err", err)
		sleepCtx(ctx, time.Second)
	}
}

func (r *Relay) listenOnce(ctx context.Context) error {
	pool := r.cfg.ListenPool
	if pool == nil {
		pool = r.pool
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer func() {
		// A LISTENing connection must not go back to the pool.
		_ = conn.Conn().Close(context.Background())
		conn.Release()
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return err
	}
	r.Wake() // catch what was written while not listening
	r.listeningOnce.Do(func() { close(r.listening) })
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			return err
		}
		r.Wake()
	}
}

type claimed struct {
	id          string
	seq         int64
	aggregateID string
	topic       string
	value       string
	headers     []byte
	attempts    int
	createdAt   time.Time
}

// claimSQL locks the oldest publishable events; rows other relays hold are
// skipped, not waited for.
const claimSQL = `
SELECT id::text, seq, aggregate_id, topic, event_data, headers, attempts, created_at
FROM outbox_events
WHERE NOT processed AND NOT failed AND next_attempt_at <= now()
ORDER BY seq
LIMIT $1
FOR UPDATE SKIP LOCKED`

// pendingOfSQL lists the unpublished events of some aggregates up to a
// sequence number, through the (aggregate_id, seq) index.
const pendingOfSQL = `
SELECT aggregate_id, id::text FROM outbox_events
WHERE aggregate_id = ANY($1) AND NOT processed AND NOT failed AND seq <= $2
ORDER BY aggregate_id, seq`

// PublishBatch claims one batch, publishes it and records the outcome. It
// returns how many events it claimed.
func (r *Relay) PublishBatch(ctx context.Context) (int, error) {
	start := time.Now()
	// Finish a claimed batch even when asked to stop: its records may
	// already be on their way to Kafka.
	bctx := context.WithoutCancel(ctx)
	var n int
	err := postgres.WithTx(bctx, r.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(bctx, claimSQL, r.cfg.BatchSize)
		if err != nil {
			return fmt.Errorf("claim outbox events: %w", err)
		}
		batch, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (claimed, error) {
			var c claimed
			err := row.Scan(&c.id, &c.seq, &c.aggregateID, &c.topic, &c.value, &c.headers, &c.attempts, &c.createdAt)
			return c, err
		})
		if err != nil {
			return fmt.Errorf("read claimed events: %w", err)
		}
		n = len(batch)
		if n == 0 {
			return nil
		}
		if batch, err = inOrder(bctx, tx, batch); err != nil {
			return err
		}
		return r.publish(bctx, tx, batch)
	})
	if n > 0 {
		relayBatchSeconds.Observe(time.Since(start).Seconds())
	}
	return n, err
}

// inOrder drops each claimed event that has an earlier unpublished event of
// its aggregate outside the claim — held by another relay or backing off
// after a failure — and every later event of that aggregate, so one
// aggregate's events reach Kafka in the order they were written. Dropped rows
// stay locked until the batch commits, then are claimed again.
func inOrder(ctx context.Context, tx pgx.Tx, batch []claimed) ([]claimed, error) {
	inClaim := make(map[string]bool, len(batch))
	aggSet := make(map[string]bool)
	var maxSeq int64
	for _, c := range batch {
		inClaim[c.id] = true
		aggSet[c.aggregateID] = true
		maxSeq = max(maxSeq, c.seq)
	}
	aggs := make([]string, 0, len(aggSet))
	for a := range aggSet {
		aggs = append(aggs, a)
	}
	rows, err := tx.Query(ctx, pendingOfSQL, aggs, maxSeq)
	if err != nil {
		return nil, fmt.Errorf("check outbox order: %w", err)
	}
	blocked := make(map[string]bool) // aggregates with a gap before some claimed event
	eligible := make(map[string]bool, len(batch))
	var agg, id string
	_, err = pgx.ForEachRow(rows, []any{&agg, &id}, func() error {
		switch {
		case blocked[agg]:
		case inClaim[id]:
			eligible[id] = true
		default:
			blocked[agg] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("check outbox order: %w", err)
	}
	out := batch[:0]
	for _, c := range batch {
		if eligible[c.id] {
			out = append(out, c)
		}
	}
	return out, nil
}

func (r *Relay) publish(ctx context.Context, tx pgx.Tx, batch []claimed) error {
	recs := make([]*kgo.Record, len(batch))
	for i, c := range batch {
		rec := &kgo.Record{Topic: c.topic, Key: []byte(c.aggregateID), Value: []byte(c.value)}
		var hs map[string]string
		if len(c.headers) > 0 && json.Unmarshal(c.headers, &hs) == nil {
			for k, v := range hs {
				rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
			}
		}
		recs[i] = rec
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	results := r.producer.ProduceSync(pctx, recs...)
	cancel()
	r.retryAlone(ctx, results, recs)
	ackedAt := time.Now()

	var (
		ok         []string
		partitions []int32
		offsets    []int64
	)
	type failure struct {
		id        string
		err       string
		permanent bool
		wait      time.Duration
	}
	var failed []failure
	// ProduceSync returns results in the order the broker answered, not
	// the order of the records: find each result's row by its record.
	rowOf := make(map[*kgo.Record]int, len(recs))
	for i, rec := range recs {
		rowOf[rec] = i
	}
	for _, res := range results {
		c := batch[rowOf[res.Record]]
		if res.Err == nil {
			ok = append(ok, c.id)
			partitions = append(partitions, res.Record.Partition)
			offsets = append(offsets, res.Record.Offset)
			publishedTotal.WithLabelValues(c.topic).Inc()
			relayLatency.Observe(ackedAt.Sub(c.createdAt).Seconds())
			continue
		}
		perm := permanentProduceError(res.Err)
		publishFailures.WithLabelValues(c.topic, strconv.FormatBool(perm)).Inc()
		failed = append(failed, failure{id: c.id, err: res.Err.Error(), permanent: perm, wait: r.backoff(c.attempts + 1)})
	}
	if len(ok) > 0 {
		// Acknowledged is not yet durable on the embedded broker: wait for
		// the group commit that covers these records. If it fails, the
		// batch rolls back and is published again (at least once).
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := kafka.WaitDurable(dctx, r.cfg.Durability)
		cancel()
		if err != nil {
			return fmt.Errorf("broker did not make published events durable: %w", err)
		}
		// clock_timestamp(), not now(): now() is the start of the claim
		// transaction, before the records were even sent. Taken once per
		// statement (an InitPlan), so one batch shares one stamp.
		if _, err := tx.Exec(ctx, `UPDATE outbox_events o SET processed = true, published_at = (SELECT clock_timestamp()),
			attempts = o.attempts + 1, kafka_partition = p.part, kafka_offset = p.off
			FROM unnest($1::uuid[], $2::int[], $3::bigint[]) AS p(id, part, off)
			WHERE o.id = p.id`, ok, partitions, offsets); err != nil {
			return fmt.Errorf("mark events published: %w", err)
		}
	}
	for _, f := range failed {
		if f.permanent {
			r.cfg.Logger.Error("outbox event can never be published; marked failed", "event_id", f.id, "err", f.err)
		}
		if _, err := tx.Exec(ctx, `UPDATE outbox_events SET attempts = attempts + 1, last_error = $2, failed = $3,
			next_attempt_at = now() + make_interval(secs => $4) WHERE id = $1`, f.id, f.err, f.permanent, f.wait.Seconds()); err != nil {
			return fmt.Errorf("record publish failure: %w", err)
		}
	}
	if len(failed) > 0 {
		r.cfg.Logger.Warn("outbox events not published; will retry", "failed", len(failed), "published", len(ok), "first_err", failed[0].err)
	}
	return nil
}

// retryAlone publishes again, one at a time, the records that failed with a
// permanent error while sharing a batch. The broker rejects a whole record
// batch when it is too large, so one oversized event would otherwise take its
// innocent neighbours down with it; only a record that fails on its own is
// given up.
func (r *Relay) retryAlone(ctx context.Context, results kgo.ProduceResults, recs []*kgo.Record) {
	if len(results) < 2 {
		return
	}
	for i, res := range results {
		if res.Err == nil || !permanentProduceError(res.Err) {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		old := res.Record
		rec := &kgo.Record{Topic: old.Topic, Key: old.Key, Value: old.Value, Headers: old.Headers}
		results[i] = r.producer.ProduceSync(pctx, rec)[0]
		cancel()
		// The caller finds each result's row by its record.
		for j := range recs {
			if recs[j] == old {
				recs[j] = rec
			}
		}
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

// Prune deletes published events older than the retention and returns how
// many it removed.
func (r *Relay) Prune(ctx context.Context) (int64, error) {
	var total int64
	for {
		// Oldest rows first along the seq index: published rows past the
		// retention sit at the low end.
		tag, err := r.pool.Exec(ctx, `DELETE FROM outbox_events WHERE id IN (
			SELECT id FROM outbox_events WHERE processed AND published_at < now() - make_interval(secs => $1)
			ORDER BY seq LIMIT 5000)`,
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

var requeuedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "trackops_outbox_requeued_total",
	Help: "Published outbox events queued again because the broker's log no longer held them, by topic.",
}, []string{"topic"})

// RequeueLost queues again every published event whose recorded Kafka
// offset is at or beyond the end of its partition in ends (topic →
// end offset per partition; a topic missing from ends counts as empty): the
// broker's log lost those records, so the relay publishes them again, with
// the same event ids. It must run before any relay publishes to the
// recovered broker, while recorded offsets still refer to the log that was
// loaded. Events published before offsets were recorded cannot be checked.
// It returns how many events it queued again, per topic.
func RequeueLost(ctx context.Context, db postgres.Querier, ends map[string][]int64) (map[string]int64, error) {
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
			SELECT o.id FROM outbox_events o
			LEFT JOIN ends ON ends.topic = o.topic AND ends.part = o.kafka_partition
			WHERE o.processed AND o.kafka_offset IS NOT NULL AND o.kafka_offset >= COALESCE(ends.end_offset, 0))
		UPDATE outbox_events o SET processed = false, published_at = NULL, next_attempt_at = now(),
			last_error = format('requeued: the broker''s log lost offset %s of partition %s', o.kafka_offset, o.kafka_partition),
			kafka_partition = NULL, kafka_offset = NULL
		FROM lost WHERE o.id = lost.id
		RETURNING o.topic`, topics, parts, offs)
	if err != nil {
		return nil, fmt.Errorf("requeue events the broker lost: %w", err)
	}
	out := map[string]int64{}
	var topic string
	if _, err := pgx.ForEachRow(rows, []any{&topic}, func() error { out[topic]++; return nil }); err != nil {
		return nil, fmt.Errorf("requeue events the broker lost: %w", err)
	}
	for t, n := range out {
		requeuedTotal.WithLabelValues(t).Add(float64(n))
	}
	return out, nil
}
