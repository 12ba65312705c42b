package order

import (
	"context"
	"errors"
	"fmt"

	"github.com/trackops/trackops/internal/events"
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

// Handler returns the saga as an events.Handler for the Kafka consumer
// runner, claiming events in the inbox under inboxName (normally
// SagaGroup).
func (s *Saga) Handler(inboxName string) events.Handler {
	return func(ctx context.Context, ev events.Envelope) error { return s.Apply(ctx, inboxName, ev) }
}

// Apply reacts to one inventory outcome: ReadInventoryOutcome reads it and
// Order.ApplyInventoryOutcome decides, in the order's transaction after the
// inbox claim.
func (s *Saga) Apply(ctx context.Context, inboxName string, env events.Envelope) error {
	decided, err := ReadInventoryOutcome(env)
	if err != nil {
		return err
	}
	id := decided.OrderID
	var outcome string
	updated, err := s.svc.UpdateAfter(ctx, id, &Claim{Consumer: inboxName, EventID: env.ID}, func(o *Order) error {
		applied, err := o.ApplyInventoryOutcome(decided, SagaActor, s.svc.Now())
		switch {
		case err != nil:
			return err
		case !applied:
			outcome = "stale" // cancelled (or moved on) before inventory answered
		default:
			outcome = map[Status]string{StatusConfirmed: "confirmed", StatusCancelled: "cancelled"}[decided.To]
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		// Not permanent: under the cdc strategy the order's transaction
		// reaches the replication stream when its commit record is flushed,
		// a moment before other sessions see it, and inventory may answer
		// within that moment. A retry finds the order; an event naming an
		// order that never comes is dead-lettered once the retries run out.
		return fmt.Errorf("order saga: %s %s names order %s, which this database does not show (yet): %w", env.Type, env.ID, id, err)
	}
	if err != nil {
		return fmt.Errorf("order saga: %s for order %s: %w", env.Type, id, err)
	}
	if updated == nil {
		outcome = "duplicate" // the claim found the event processed before
	}
	s.svc.metrics.sagaOutcomes.WithLabelValues(env.Type, outcome).Inc()
	return nil
}
