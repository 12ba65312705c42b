// Package outbox implements the transactional outbox: events are written in
// the same transaction as the business change they describe, and the Relay
// publishes them to Kafka afterwards, at least once and in order per
// aggregate.
package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/tracing"
)

// Write appends events to the outbox inside tx. They become visible to the
// relay when tx commits, and vanish with it if it rolls back.
func Write(ctx context.Context, tx postgres.Querier, evs ...events.Event) error {
	if len(evs) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	if err := Queue(ctx, b, evs...); err != nil {
		return err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("outbox: insert events: %w", err)
	}
	return nil
}

// Queue adds the inserts of events to b, for a caller that sends them in
// the same round trip as the change they describe; b must be sent inside
// the change's transaction, as Write's are.
func Queue(ctx context.Context, b *pgx.Batch, evs ...events.Event) error {
	for _, e := range evs {
		if e.TraceParent == "" {
			// The trace of the request or record that caused the event
			// continues in the record the relay publishes.
			e.TraceParent = tracing.TraceParent(ctx)
		}
		value, err := e.Marshal()
		if err != nil {
			return fmt.Errorf("outbox: encode %s: %w", e.Type, err)
		}
		headers, err := json.Marshal(e.Headers())
		if err != nil {
			return fmt.Errorf("outbox: encode headers: %w", err)
		}
		id, err := uuid.Parse(e.ID)
		if err != nil {
			return fmt.Errorf("outbox: event id %q: %w", e.ID, err)
		}
		b.Queue(`INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, topic, event_data, headers, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			id, e.AggregateType, e.AggregateID(), e.Type, e.Topic(), string(value), headers, e.Time)
	}
	return nil
}

// Stats describe the outbox's backlog.
type Stats struct {
	Pending        int64      `json:"pending"`
	Failed         int64      `json:"failed"`
	Published      int64      `json:"published"`
	OldestPending  *time.Time `json:"oldest_pending_at,omitempty"`
	OldestAgeSecs  float64    `json:"oldest_pending_age_seconds"`
	RetryingEvents int64      `json:"retrying"`
}

// ReadStats summarises the outbox. Pending and retrying come from the
// backlog (outbox_pending: rows past the relay's committed cursor and the
// retry queue), failed from its partial index, published from the ledger.
func ReadStats(ctx context.Context, db postgres.Querier) (Stats, error) {
	var s Stats
	err := db.QueryRow(ctx, `WITH p AS MATERIALIZED (SELECT created_at, attempts FROM outbox_pending)
		SELECT (SELECT count(*) FROM p), (SELECT count(*) FROM outbox_events WHERE failed),
			(SELECT count(*) FROM outbox_published), (SELECT min(created_at) FROM p),
			(SELECT count(*) FROM p WHERE attempts > 0)`).Scan(&s.Pending, &s.Failed, &s.Published, &s.OldestPending, &s.RetryingEvents)
	if err != nil {
		return Stats{}, fmt.Errorf("outbox stats: %w", err)
	}
	if s.OldestPending != nil {
		s.OldestAgeSecs = time.Since(*s.OldestPending).Seconds()
	}
	return s, nil
}

// Drained reports whether nothing waits to be published (failed events
// aside): cheaper than ReadStats, for a loop waiting on the relay.
func Drained(ctx context.Context, db postgres.Querier) (bool, error) {
	var pending bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT FROM outbox_pending)`).Scan(&pending); err != nil {
		return false, fmt.Errorf("outbox backlog: %w", err)
	}
	return !pending, nil
}
