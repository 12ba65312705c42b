package order

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/inbox"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/logging"
)

// SagaGroup is the Kafka consumer group of the order saga, and the default
// name it claims events under in the inbox.
const SagaGroup = "trackops-order-saga"

// SagaTopics are the inventory outcomes the saga reacts to.
var SagaTopics = []string{events.InventoryReserved, events.InventoryReservationFailed}

// SagaActor is how the saga appears in order histories.
const SagaActor = "system:order-saga"

// Saga closes an order's reservation loop: INVENTORY_RESERVED confirms a
// PENDING order, INVENTORY_RESERVATION_FAILED cancels it with reason
// OUT_OF_STOCK. The inbox claim, the order change and its event commit in
// one transaction, so a redelivered event changes nothing; an order no
// longer PENDING (cancelled meanwhile) is left as it is.
type Saga struct {
	svc *Service
}

// NewSaga returns the saga acting through svc.
func NewSaga(svc *Service) *Saga { return &Saga{svc: svc} }

// Handler returns the saga's kafka.Handler, claiming events in the inbox
// under inboxName (normally SagaGroup).
func (s *Saga) Handler(inboxName string) kafka.Handler {
	return func(ctx context.Context, rec *kgo.Record) error {
		env, err := events.Decode(rec.Value)
		if err != nil {
			return err
		}
		if logging.CorrelationID(ctx) == "" && env.CorrelationID != "" {
			ctx = logging.WithCorrelationID(ctx, env.CorrelationID)
		}
		return s.Apply(ctx, inboxName, env)
	}
}

// Apply reacts to one inventory outcome.
func (s *Saga) Apply(ctx context.Context, inboxName string, env events.Envelope) error {
	var (
		rawID  string
		to     Status
		reason string
	)
	switch env.Type {
	case events.InventoryReserved:
		var d events.InventoryReservedData
		if err := env.DecodeData(&d); err != nil {
			return err
		}
		rawID, to = d.OrderID, StatusConfirmed
	case events.InventoryReservationFailed:
		var d events.InventoryReservationFailedData
		if err := env.DecodeData(&d); err != nil {
			return err
		}
		rawID, to, reason = d.OrderID, StatusCancelled, ReasonOutOfStock
	default:
		return kafka.Permanent(fmt.Errorf("order saga: unexpected event type %q", env.Type))
	}
	if rawID == "" {
		rawID = env.Subject
	}
	id, err := uuid.Parse(rawID)
	if err != nil {
		return kafka.Permanent(fmt.Errorf("%w: %s %s: order id %q is not a UUID", events.ErrMalformed, env.Type, env.ID, rawID))
	}
	outcome := "duplicate"
	_, err = s.svc.UpdateAfter(ctx, id, func(ctx context.Context, tx pgx.Tx) (bool, error) {
		outcome = "duplicate"
		return inbox.Claim(ctx, tx, inboxName, env.ID)
	}, func(o *Order) error {
		if o.Status != StatusPending {
			outcome = "stale" // cancelled (or moved on) before inventory answered
			return nil
		}
		if _, err := o.Transition(to, reason, SagaActor, s.svc.Now()); err != nil {
			return err
		}
		outcome = map[Status]string{StatusConfirmed: "confirmed", StatusCancelled: "cancelled"}[to]
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		// Retrying cannot make the order appear: dead-letter the event.
		return kafka.Permanent(fmt.Errorf("order saga: %s %s names unknown order %s", env.Type, env.ID, id))
	}
	if err != nil {
		return fmt.Errorf("order saga: %s for order %s: %w", env.Type, id, err)
	}
	s.svc.metrics.sagaOutcomes.WithLabelValues(env.Type, outcome).Inc()
	return nil
}
