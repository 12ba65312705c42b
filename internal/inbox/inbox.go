// Package inbox makes Kafka consumers idempotent: a consumer claims each
// event id inside the transaction that applies the event, so the claim and
// the change commit together and a redelivered event is recognised and
// skipped. Deduplication lives in PostgreSQL next to the data it guards,
// never in a cache beside it.
package inbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/postgres"
)

const claimSQL = `INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`

// Claim records in tx that consumer has processed eventID. It returns false
// when the event was processed before, in which case the caller must change
// nothing. A concurrent claim of the same event waits for the first
// transaction and then sees it, so two deliveries can never both apply.
func Claim(ctx context.Context, tx postgres.Querier, consumer, eventID string) (bool, error) {
	tag, err := tx.Exec(ctx, claimSQL, consumer, eventID)
	if err != nil {
		return false, fmt.Errorf("inbox: claim event %s for %s: %w", eventID, consumer, err)
	}
	return tag.RowsAffected() == 1, nil
}

// QueueClaim queues Claim's statement on b, so a consumer can pipeline it
// with its own first statements in one round trip. Read its outcome with
// Claimed, in queue order.
func QueueClaim(b *pgx.Batch, consumer, eventID string) {
	b.Queue(claimSQL, consumer, eventID)
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
