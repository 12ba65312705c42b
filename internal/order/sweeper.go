package order

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/trackops/trackops/internal/events"
)

// SweeperLease is the name of the cluster-wide lease under which one
// process of the orders role runs the pending-order sweeper.
const SweeperLease = "order-sweeper"

// SweeperActor is how the pending-order sweeper appears in order histories.
const SweeperActor = "system:order-sweeper"

// Stock is what the sweeper needs of inventory (inventory.Service has it).
type Stock interface {
	// Redrive decides an order's reservation now if inventory has not
	// decided it yet, as created — its ORDER_CREATED, rebuilt with
	// CreatedEvent — would; an order already decided is left as it is.
	// Idempotent.
	Redrive(ctx context.Context, created events.Envelope) error
	// ReleaseOrder returns what a cancelled order holds to stock and
	// closes it for inventory. Idempotent.
	ReleaseOrder(ctx context.Context, orderID uuid.UUID, reason string) error
}

// SweeperConfig tunes a Sweeper.
type SweeperConfig struct {
	// Timeout is how long an order may stay PENDING before it is swept
	// (TRACKOPS_SAGA_PENDING_TIMEOUT). Required.
	Timeout time.Duration
	// Interval is how often the sweeper looks for stuck orders. Default a
	// quarter of Timeout, between 1 s and 1 min.
	Interval time.Duration
	// BatchSize bounds the orders one pass sweeps. Default 100.
	BatchSize int
	// Logger receives each swept order. Default slog.Default().
	Logger *slog.Logger
}

// Sweep outcomes, the values of the metric's outcome label.
const (
	SweepConfirmed = "confirmed" // re-driven: inventory held its stock, the order is CONFIRMED
	SweepCancelled = "cancelled" // re-driving could not help: CANCELLED with reason TIMEOUT, stock released
	SweepSkipped   = "skipped"   // decided meanwhile by the saga, a client or another sweeper
	SweepFailed    = "failed"    // an error; the next pass tries again
)

// Sweeper finds orders PENDING past the timeout — an event lost, a consumer
// down, a reservation decided but never answered — and finishes them: it
// first re-drives the order's reservation (Stock.Redrive), then, in the
// order's own transaction under its row lock, confirms it when inventory
// holds its stock, or cancels it with reason TIMEOUT and releases whatever
// it holds. Every step is idempotent and the row lock decides races, so
// two sweepers at once (or a sweeper and the saga) never cancel or release
// twice; in a cluster one process runs it, under a lease (internal/lease).
type Sweeper struct {
	svc   *Service
	stock Stock
	cfg   SweeperConfig
	log   *slog.Logger

	mu     sync.Mutex
	status SweeperStatus
}

// SweeperStatus is what health and the console show of a sweeper.
type SweeperStatus struct {
	// Active is true while this process runs the sweeper (holds its lease).
	Active  bool          `json:"active"`
	Timeout time.Duration `json:"-"`
	// TimeoutText is Timeout as text, e.g. "5m0s".
	TimeoutText string    `json:"timeout"`
	LastPass    time.Time `json:"lastPass,omitzero"`
	LastError   string    `json:"lastError,omitempty"`
	// Totals count swept orders by outcome since the process started.
	Totals map[string]int64 `json:"totals"`
}

// NewSweeper returns a sweeper acting through svc and stock.
func NewSweeper(svc *Service, stock Stock, cfg SweeperConfig) *Sweeper {
	if cfg.Interval <= 0 {
		cfg.Interval = min(max(cfg.Timeout/4, time.Second), time.Minute)
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Sweeper{svc: svc, stock: stock, cfg: cfg, log: cfg.Logger,
		status: SweeperStatus{Timeout: cfg.Timeout, TimeoutText: cfg.Timeout.String(), Totals: map[string]int64{
			SweepConfirmed: 0, SweepCancelled: 0, SweepSkipped: 0, SweepFailed: 0}},
	}
}

// SetActive records whether this process runs the sweeper now (its lease).
func (s *Sweeper) SetActive(active bool) {
	s.mu.Lock()
	s.status.Active = active
	s.mu.Unlock()
}

// Status returns a copy of the sweeper's status.
func (s *Sweeper) Status() SweeperStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Totals = make(map[string]int64, len(s.status.Totals))
	for k, v := range s.status.Totals {
		st.Totals[k] = v
	}
	return st
}

// Run sweeps every Interval until ctx ends.
func (s *Sweeper) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := s.SweepOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("pending-order sweep failed; retrying next pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// SweepResult counts one pass's orders by outcome.
type SweepResult map[string]int

// SweepOnce sweeps the orders PENDING for longer than Timeout, oldest
// first, at most BatchSize of them.
func (s *Sweeper) SweepOnce(ctx context.Context) (SweepResult, error) {
	res := SweepResult{}
	cutoff := s.svc.Now().Add(-s.cfg.Timeout)
	rows, err := s.svc.pool.Query(ctx, `SELECT id FROM orders WHERE status = 'PENDING' AND created_at < $1
		ORDER BY created_at LIMIT $2`, cutoff, s.cfg.BatchSize)
	var ids []uuid.UUID
	if err == nil {
		ids, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	}
	s.svc.metrics.sweeperPasses.Inc()
	if err != nil {
		s.note(res, fmt.Errorf("find stuck orders: %w", err))
		return res, fmt.Errorf("find stuck orders: %w", err)
	}
	var firstErr error
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		outcome, err := s.sweep(ctx, id)
		res[outcome]++
		s.svc.metrics.sweepOutcomes.WithLabelValues(outcome).Inc()
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	s.note(res, firstErr)
	return res, firstErr
}

func (s *Sweeper) note(res SweepResult, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.LastPass = time.Now().UTC()
	s.status.LastError = ""
	if err != nil {
		s.status.LastError = err.Error()
	}
	for k, n := range res {
		s.status.Totals[k] += int64(n)
	}
}

// sweep finishes one stuck order.
func (s *Sweeper) sweep(ctx context.Context, id uuid.UUID) (string, error) {
	o, err := s.svc.Load(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return SweepSkipped, nil
	}
	if err != nil {
		return SweepFailed, err
	}
	if o.Status != StatusPending {
		return SweepSkipped, nil
	}
	// Re-drive first: the reservation may never have been tried (its
	// event lost or its consumer down). A failure here (an order inventory
	// cannot read, say) leaves the decision to the order's own state.
	created, redriveErr := CreatedEvent(ctx, o)
	if redriveErr == nil {
		redriveErr = s.stock.Redrive(ctx, created.Envelope)
	}
	if redriveErr != nil {
		s.log.Warn("re-driving a stuck order's reservation failed; deciding on what inventory holds",
			"order_id", id, "err", redriveErr)
	}
	outcome := SweepSkipped
	_, err = s.svc.update(ctx, id, nil, func(ctx context.Context, tx pgx.Tx, o *Order) error {
		outcome = SweepSkipped
		if o.Status != StatusPending {
			return nil // the saga, a client or another sweeper got there first
		}
		hold, err := s.svc.store.Hold(ctx, tx, id)
		if err != nil {
			return err
		}
		if hold == HoldReserved {
			outcome = SweepConfirmed
			_, err = o.Transition(StatusConfirmed, "stock reserved; confirmed by the pending-order sweeper", SweeperActor, s.svc.Now())
			return err
		}
		outcome = SweepCancelled
		_, err = o.Transition(StatusCancelled, ReasonTimeout, SweeperActor, s.svc.Now())
		return err
	})
	if err != nil {
		return SweepFailed, fmt.Errorf("sweep order %s: %w", id, err)
	}
	if outcome == SweepCancelled {
		// Its ORDER_CANCELLED will release the stock too, once consumed;
		// the sweeper does not wait for a pipeline that may be the reason
		// the order was stuck. Both are idempotent.
		if err := s.stock.ReleaseOrder(ctx, id, ReasonTimeout); err != nil {
			return SweepFailed, fmt.Errorf("release stock of swept order %s: %w", id, err)
		}
	}
	s.log.Info("stuck order swept", "order_id", id, "outcome", outcome, "pending_since", o.CreatedAt)
	return outcome, nil
}
