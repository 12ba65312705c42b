// Package inbox makes Kafka consumers idempotent: a consumer claims each
// event id inside the transaction that applies the event, so the claim and
// the change commit together and a redelivered event is recognised and
// skipped. Deduplication lives in PostgreSQL next to the data it guards,
// never in a cache beside it.
package inbox

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/postgres"
)

// PruningLease is the name of the cluster-wide lease under which one
// process prunes consumers' processed-event rows.
const PruningLease = "inbox-pruning"

// claimSQL records a claim together with where the event was handled (see
// events.Delivery): one statement, so recording it costs no round trip.
const claimSQL = `INSERT INTO processed_events (consumer, event_id, consumer_group, topic, kafka_partition, kafka_offset,
	record_timestamp, attempts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`

// claimArgs are claimSQL's arguments; the delivery columns stay null when
// ctx carries no events.Delivery (a claim made outside a consumer).
func claimArgs(ctx context.Context, consumer, eventID string) []any {
	d, ok := events.DeliveryFrom(ctx)
	if !ok {
		return []any{consumer, eventID, nil, nil, nil, nil, nil, nil}
	}
	var ts *time.Time
	if !d.Timestamp.IsZero() {
		ts = &d.Timestamp
	}
	return []any{consumer, eventID, d.Group, d.Topic, d.Partition, d.Offset, ts, d.Attempt}
}

// Claim records in tx that consumer has processed eventID, and where (the
// events.Delivery in ctx, if any). It returns false when the event was
// processed before, in which case the caller must change nothing. A
// concurrent claim of the same event waits for the first transaction and
// then sees it, so two deliveries can never both apply.
func Claim(ctx context.Context, tx postgres.Querier, consumer, eventID string) (bool, error) {
	tag, err := tx.Exec(ctx, claimSQL, claimArgs(ctx, consumer, eventID)...)
	if err != nil {
		return false, fmt.Errorf("inbox: claim event %s for %s: %w", eventID, consumer, err)
	}
	return tag.RowsAffected() == 1, nil
}

// QueueClaim queues Claim's statement on b, so a consumer can pipeline it
// with its own first statements in one round trip. Read its outcome with
// Claimed, in queue order.
func QueueClaim(ctx context.Context, b *pgx.Batch, consumer, eventID string) {
	b.Queue(claimSQL, claimArgs(ctx, consumer, eventID)...)
}

// Claimed reads the outcome of a claim queued with QueueClaim.
func Claimed(br pgx.BatchResults) (bool, error) {
	tag, err := br.Exec()
	if err != nil {
		return false, fmt.Errorf("inbox: claim event: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// Processed reports whether consumer has processed eventID.
func Processed(ctx context.Context, db postgres.Querier, consumer, eventID string) (bool, error) {
	var ok bool
	err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2)`,
		consumer, eventID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("inbox: look up event %s: %w", eventID, err)
	}
	return ok, nil
}

// Prune deletes inbox rows older than maxAge, a bounded chunk at a time, and
// returns how many it removed. Keep maxAge well beyond the topics'
// retention: an event redelivered after its row is gone would apply again.
func Prune(ctx context.Context, db postgres.Querier, maxAge time.Duration) (int64, error) {
	var total int64
	for {
		tag, err := db.Exec(ctx, `DELETE FROM processed_events WHERE ctid IN (
			SELECT ctid FROM processed_events WHERE processed_at < now() - make_interval(secs => $1) LIMIT 5000)`,
			maxAge.Seconds())
		if err != nil {
			return total, fmt.Errorf("inbox: prune: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 5000 {
			return total, nil
		}
	}
}

// Pruner deletes, every Interval, the inbox rows older than Retention
// (TRACKOPS_INBOX_RETENTION). One runs beside the outbox relay, which prunes
// the outbox the same way.
type Pruner struct {
	DB        postgres.Querier
	Retention time.Duration
	// Interval is the time between rounds; the first round runs one
	// Interval after Run starts. Default one hour.
	Interval time.Duration
	// Logger receives each round's outcome. Default slog.Default().
	Logger *slog.Logger
}

// Run prunes every Interval until ctx ends, then returns nil. A failed
// round is logged, and the next one tries again.
func (p Pruner) Run(ctx context.Context) error {
	if p.Interval <= 0 {
		p.Interval = time.Hour
	}
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if n, err := Prune(ctx, p.DB, p.Retention); err != nil && ctx.Err() == nil {
			log.Warn("inbox prune failed", "err", err)
		} else if n > 0 {
			log.Info("inbox pruned", "rows", n)
		}
	}
}

// Handling is one consumer's record of one event it applied: where the
// record was read from and when it was handled. The delivery fields are nil
// for rows written before they were recorded or by claims made outside a
// Kafka consumer.
type Handling struct {
	Consumer        string     `json:"consumer"`
	EventID         string     `json:"event_id"`
	HandledAt       time.Time  `json:"handled_at"`
	Group           *string    `json:"group,omitempty"`
	Topic           *string    `json:"topic,omitempty"`
	Partition       *int32     `json:"partition,omitempty"`
	Offset          *int64     `json:"offset,omitempty"`
	RecordTimestamp *time.Time `json:"record_timestamp,omitempty"`
	Attempts        *int       `json:"attempts,omitempty"`
}

// Handlings returns every consumer's record of the given events, oldest
// first. The table's key leads with the consumer, so it walks the few
// distinct consumers (a loose index scan) and looks each event up by key,
// instead of keeping a second index on event_id that every claim would pay
// for.
func Handlings(ctx context.Context, db postgres.Querier, eventIDs []string) ([]Handling, error) {
	if len(eventIDs) == 0 {
		return nil, nil
	}
	rows, err := db.Query(ctx, `WITH RECURSIVE consumers AS (
			SELECT min(consumer) AS consumer FROM processed_events
			UNION ALL
			SELECT (SELECT min(p.consumer) FROM processed_events p WHERE p.consumer > c.consumer)
			FROM consumers c WHERE c.consumer IS NOT NULL)
		SELECT p.consumer, p.event_id, p.processed_at, p.consumer_group, p.topic, p.kafka_partition, p.kafka_offset,
			p.record_timestamp, p.attempts
		FROM consumers c JOIN processed_events p ON p.consumer = c.consumer AND p.event_id = ANY($1)
		ORDER BY p.processed_at, p.consumer`, eventIDs)
	if err != nil {
		return nil, fmt.Errorf("inbox: look up handlings: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Handling, error) {
		var h Handling
		err := row.Scan(&h.Consumer, &h.EventID, &h.HandledAt, &h.Group, &h.Topic, &h.Partition, &h.Offset,
			&h.RecordTimestamp, &h.Attempts)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("inbox: look up handlings: %w", err)
	}
	return out, nil
}
