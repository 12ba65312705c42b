// Package audit keeps TrackOps' audit log: one PostgreSQL row per mutation
// request (who, as what kind of principal, which method and route, which
// path, the status and outcome, request id, client address, when), written
// in batches in the background, and readable by admins over the API.
package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/trackops/trackops/internal/httpapi"
)

// Outcomes of an audited request.
const (
	OutcomeSuccess  = "success"  // 1xx–3xx
	OutcomeDenied   = "denied"   // 401, 403
	OutcomeRejected = "rejected" // any other 4xx, 429 included
	OutcomeError    = "error"    // 5xx
)

// OutcomeOf classifies an HTTP status.
func OutcomeOf(status int) string {
	switch {
	case status == 401 || status == 403:
		return OutcomeDenied
	case status >= 500:
		return OutcomeError
	case status >= 400:
		return OutcomeRejected
	}
	return OutcomeSuccess
}

// Entry is one audit row.
type Entry struct {
	ID            int64     `json:"id"`
	At            time.Time `json:"at"`
	Actor         string    `json:"actor"`
	PrincipalID   string    `json:"principal_id"`
	PrincipalKind string    `json:"principal_kind"`
	Action        string    `json:"action"`
	Method        string    `json:"method"`
	Route         string    `json:"route"`
	Target        string    `json:"target"`
	Status        int       `json:"status"`
	Outcome       string    `json:"outcome"`
	RequestID     string    `json:"request_id"`
	ClientIP      string    `json:"client_ip"`
	DurationMS    float64   `json:"duration_ms"`
}

// FromHTTP turns the router's audit entry into a row.
func FromHTTP(e httpapi.AuditEntry, at time.Time) Entry {
	kind := e.Principal.Kind
	if kind == "" {
		kind = "anonymous"
	}
	return Entry{
		At: at.UTC(), Actor: e.Principal.Actor(), PrincipalID: e.Principal.ID, PrincipalKind: kind,
		Action: e.Method + " " + e.Route, Method: e.Method, Route: e.Route, Target: e.Path,
		Status: e.Status, Outcome: OutcomeOf(e.Status), RequestID: e.RequestID, ClientIP: e.ClientIP,
		DurationMS: float64(e.Duration.Microseconds()) / 1000,
	}
}

// Metrics count audit rows written, and rows given up after retries.
type Metrics struct {
	written prometheus.Counter
	failed  prometheus.Counter
}

// NewMetrics creates the audit writer's metrics and registers them on reg
// (nil: counted, not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		written: f.NewCounter(prometheus.CounterOpts{
			Name: "trackops_audit_rows_written_total", Help: "Audit rows written to PostgreSQL.",
		}),
		failed: f.NewCounter(prometheus.CounterOpts{
			Name: "trackops_audit_rows_failed_total",
			Help: "Audit rows that could not be written after retries (they are logged at error level instead).",
		}),
	}
	return m
}

// WriterOptions tune a Writer; zero values take the defaults.
type WriterOptions struct {
	Logger *slog.Logger
	// BatchSize is the most rows per insert; default 200.
	BatchSize int
	// FlushInterval is the longest a row waits for its batch; default 200 ms.
	FlushInterval time.Duration
	// Buffer is how many rows may wait; when full, Record blocks, so a slow
	// database slows mutations rather than losing their audit rows.
	// Default 10,000.
	Buffer int
	// RetryBackoff is the first pause after a failed insert (doubled per
	// attempt, 5 attempts); default 100 ms.
	RetryBackoff time.Duration
	// Metrics count written and failed rows; nil counts without exporting.
	Metrics *Metrics
}

type item struct {
	entry Entry
	flush chan struct{} // non-nil: a flush marker, closed once everything before it is written
}

// Writer implements httpapi.Auditor: Record queues a row and returns; a
// background goroutine inserts queued rows in batches. Close (or Flush)
// waits until every row recorded before it has been written.
type Writer struct {
	pool *pgxpool.Pool
	opts WriterOptions
	log  *slog.Logger
	ch   chan item
	mu   sync.RWMutex // Record holds it shared; Close exclusively, to close ch safely
	shut bool
	done chan struct{}
}

// NewWriter starts a writer on pool.
func NewWriter(pool *pgxpool.Pool, opts WriterOptions) *Writer {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 200
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 200 * time.Millisecond
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 10_000
	}
	if opts.RetryBackoff <= 0 {
		opts.RetryBackoff = 100 * time.Millisecond
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	w := &Writer{pool: pool, opts: opts, log: opts.Logger, ch: make(chan item, opts.Buffer), done: make(chan struct{})}
	go w.run()
	return w
}

// Record implements httpapi.Auditor.
func (w *Writer) Record(ctx context.Context, e httpapi.AuditEntry) {
	w.Write(ctx, FromHTTP(e, time.Now()))
}

// Write queues one row. After Close it writes the row synchronously, so late
// requests of a shutting-down server are not lost either.
func (w *Writer) Write(ctx context.Context, e Entry) {
	w.mu.RLock()
	if w.shut {
		w.mu.RUnlock()
		w.insert(context.WithoutCancel(ctx), []Entry{e})
		return
	}
	w.ch <- item{entry: e}
	w.mu.RUnlock()
}

// Flush waits until every row queued before it is written, or ctx ends.
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.RLock()
	if w.shut {
		w.mu.RUnlock()
		return nil
	}
	marker := make(chan struct{})
	w.ch <- item{flush: marker}
	w.mu.RUnlock()
	select {
	case <-marker:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush audit log: %w", ctx.Err())
	}
}

// Close writes every queued row and stops the background writer. It waits
// for ctx at most; rows still queued then are written by the writer anyway
// before it exits.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.shut {
		w.shut = true
		close(w.ch)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close audit log: %w", ctx.Err())
	}
}

func (w *Writer) run() {
	defer close(w.done)
	batch := make([]Entry, 0, w.opts.BatchSize)
	var markers []chan struct{}
	ticker := time.NewTicker(w.opts.FlushInterval)
	defer ticker.Stop()
	write := func() {
		if len(batch) > 0 {
			w.insert(context.Background(), batch)
			batch = batch[:0]
		}
		for _, m := range markers {
			close(m)
		}
		markers = markers[:0]
	}
	for {
		select {
		case it, ok := <-w.ch:
			if !ok {
				write()
				return
			}
			if it.flush != nil {
				markers = append(markers, it.flush)
			} else {
				batch = append(batch, it.entry)
			}
			if len(batch) >= w.opts.BatchSize {
				write()
			}
		case <-ticker.C:
			write()
		}
		// A flush waits only for what is already queued, not for the ticker.
		if len(markers) > 0 && len(w.ch) == 0 {
			write()
		}
	}
}

// insert writes rows with COPY, retrying with back-off; rows that still
// cannot be written are logged at error level, so the trail survives in the
// logs even when the database does not take it.
func (w *Writer) insert(ctx context.Context, rows []Entry) {
	backoff := w.opts.RetryBackoff
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		_, err = w.pool.CopyFrom(ctx, pgx.Identifier{"audit_log"}, columns, pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			e := rows[i]
			return []any{e.At, e.Actor, e.PrincipalID, e.PrincipalKind, e.Action, e.Method, e.Route, e.Target,
				e.Status, e.Outcome, e.RequestID, e.ClientIP, e.DurationMS}, nil
		}))
		if err == nil {
			w.opts.Metrics.written.Add(float64(len(rows)))
			return
		}
		if errors.Is(err, context.Canceled) {
			break
		}
		time.Sleep(backoff)
		backoff *= 2
	}
	w.opts.Metrics.failed.Add(float64(len(rows)))
	for _, e := range rows {
		w.log.Error("audit row not written", "err", err, "at", e.At, "actor", e.Actor, "action", e.Action,
			"target", e.Target, "status", e.Status, "request_id", e.RequestID, "client_ip", e.ClientIP)
	}
}

var columns = []string{"at", "actor", "principal_id", "principal_kind", "action", "method", "route", "target",
	"status", "outcome", "request_id", "client_ip", "duration_ms"}
