package outbox

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/pagination"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/validation"
)

// PruningLease is the name of the cluster-wide lease under which one
// process prunes published outbox rows.
const PruningLease = "outbox-pruning"

// Row states an operator can list.
const (
	StatePending = "pending" // not yet published, still being tried
	StateFailed  = "failed"  // given up: can never be published as it is
)

// Row is one unpublished outbox event as operators see it (the payload
// itself is left out; its size is given).
type Row struct {
	Seq           int64     `json:"seq"`
	ID            uuid.UUID `json:"id"`
	AggregateType string    `json:"aggregate_type"`
	AggregateID   string    `json:"aggregate_id"`
	EventType     string    `json:"event_type"`
	Topic         string    `json:"topic"`
	State         string    `json:"state"`
	SizeBytes     int       `json:"size_bytes"`
	Attempts      int       `json:"attempts"`
	LastError     string    `json:"last_error,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	// NextAttemptAt is when a retried event is tried again; absent for an
	// event the relay has not tried yet and for a failed one.
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
}

// ListFilter selects unpublished rows.
type ListFilter struct {
	// State is StatePending, StateFailed, or "" for both.
	State string
	// Limit caps the rows returned (default 100, at most 1000).
	Limit int
	// AfterSeq continues a listing after the row with this sequence number.
	AfterSeq int64
}

// List returns unpublished rows (pending and/or failed) in seq order.
func List(ctx context.Context, db postgres.Querier, f ListFilter) ([]Row, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 1000)
	rows, err := db.Query(ctx, `SELECT seq, id, aggregate_type, aggregate_id, event_type, topic, failed,
			octet_length(event_data), attempts, coalesce(last_error, ''), created_at, next_attempt_at
		FROM (SELECT seq, id, aggregate_type, aggregate_id, event_type, topic, failed, event_data, attempts, last_error, created_at,
				next_attempt_at
			FROM outbox_pending WHERE $2 <> 'failed'
			UNION ALL
			SELECT seq, id, aggregate_type, aggregate_id, event_type, topic, failed, event_data, attempts, last_error, created_at,
				NULL::timestamptz
			FROM outbox_events WHERE failed AND $2 <> 'pending') o
		WHERE seq > $1
		ORDER BY seq LIMIT $3`, f.AfterSeq, f.State, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list outbox: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Row, error) {
		var r Row
		var failed bool
		err := row.Scan(&r.Seq, &r.ID, &r.AggregateType, &r.AggregateID, &r.EventType, &r.Topic, &failed,
			&r.SizeBytes, &r.Attempts, &r.LastError, &r.CreatedAt, &r.NextAttemptAt)
		r.State = StatePending
		if failed {
			r.State = StateFailed
		}
		return r, err
	})
}

// Errors of Requeue.
var (
	ErrNotFound  = errors.New("outbox event not found")
	ErrNotFailed = errors.New("outbox event is not failed")
)

// Requeue puts a failed row back in the relay's queue, to be tried at once
// (after its cause was fixed, e.g. the broker's message size raised). It
// returns ErrNotFound or ErrNotFailed when there is nothing to requeue. The
// event is published after later events of its aggregate that went out
// while it was failed: consumers see it out of order.
func Requeue(ctx context.Context, db postgres.Querier, id uuid.UUID) error {
	// The retry queue takes it (the cursor passed it long ago); the
	// notification tells the relay holding the cursor to look there.
	var failed bool
	err := db.QueryRow(ctx, `WITH u AS (
			UPDATE outbox_events SET failed = false WHERE id = $1 AND failed
			RETURNING seq, aggregate_id, pg_notify($2, $3)),
		q AS (
			INSERT INTO outbox_retries (seq, aggregate_id, next_attempt_at) SELECT seq, aggregate_id, now() FROM u
			ON CONFLICT (seq) DO UPDATE SET next_attempt_at = now())
		SELECT failed FROM outbox_events WHERE id = $1`, id, NotifyChannel, NotifyRetry).Scan(&failed)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("requeue outbox event: %w", err)
	}
	// The SELECT sees the row as it was before the UPDATE.
	if !failed {
		return ErrNotFailed
	}
	return nil
}

// Handlers serve the outbox's ops endpoints.
type Handlers struct {
	db    postgres.Querier
	relay *Relay
}

// NewHandlers returns the ops endpoints over the outbox in db; relay, when
// not nil, is woken after a requeue so the event goes out at once.
func NewHandlers(db postgres.Querier, relay *Relay) *Handlers {
	return &Handlers{db: db, relay: relay}
}

// Routes lists GET /api/v1/ops/outbox (viewer) and
// POST /api/v1/ops/outbox/{id}/retry (admin).
func (h *Handlers) Routes() []httpapi.Route {
	return []httpapi.Route{
		{Method: http.MethodGet, Pattern: "/api/v1/ops/outbox", Role: httpapi.RoleViewer, Handler: h.list},
		{Method: http.MethodPost, Pattern: "/api/v1/ops/outbox/{id}/retry", Role: httpapi.RoleAdmin, Handler: h.retry},
	}
}

// ListJSON is the body of GET /api/v1/ops/outbox.
type ListJSON struct {
	Stats      Stats  `json:"stats"`
	Events     []Row  `json:"events"`
	NextCursor string `json:"next_cursor,omitempty"`
}

func (h *Handlers) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var errs validation.Errors
	f := ListFilter{State: q.Get("state"), Limit: 100}
	if f.State != "" && f.State != StatePending && f.State != StateFailed {
		errs.Add("state", "must be pending or failed")
	}
	f.Limit = pagination.Limit(q.Get("limit"), f.Limit, 1000, &errs)
	if s := q.Get("cursor"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			errs.Add("cursor", "must be the next_cursor of a previous page")
		}
		f.AfterSeq = n
	}
	if len(errs) > 0 {
		httpapi.WriteValidation(w, r, errs)
		return
	}
	stats, err := ReadStats(r.Context(), h.db)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	rows, err := List(r.Context(), h.db, f)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	out := ListJSON{Stats: stats, Events: rows}
	if out.Events == nil {
		out.Events = []Row{}
	}
	if len(rows) == f.Limit {
		out.NextCursor = strconv.FormatInt(rows[len(rows)-1].Seq, 10)
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func (h *Handlers) retry(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		httpapi.WriteProblem(w, r, http.StatusBadRequest, "the event id must be a UUID")
		return
	}
	switch err := Requeue(r.Context(), h.db, id); {
	case errors.Is(err, ErrNotFound):
		httpapi.WriteProblem(w, r, http.StatusNotFound, fmt.Sprintf("outbox event %s not found", id))
		return
	case errors.Is(err, ErrNotFailed):
		httpapi.WriteProblem(w, r, http.StatusConflict, fmt.Sprintf("outbox event %s is not failed; only failed events can be retried", id))
		return
	case err != nil:
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.LoggerFrom(r.Context()).InfoContext(r.Context(), "failed outbox event requeued", "event_id", id,
		"actor", httpapi.PrincipalFrom(r.Context()).Actor())
	if h.relay != nil {
		h.relay.Wake()
	}
	httpapi.WriteJSON(w, http.StatusAccepted, map[string]any{"id": id, "state": StatePending})
}
