package order

import (
	"context"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/logging"
)

// The order events are built here and only here, for both event
// strategies: the order service writes them to the outbox, and under the
// cdc strategy ChangeStream builds them from the change stream with the
// same constructors, so consumers cannot tell which strategy runs and the
// two cannot drift apart.

// eventIDSpace is the UUIDv5 namespace of order event ids.
var eventIDSpace = uuid.MustParse("4f7c1d2e-8b1a-5c3e-9d6f-2a7b8c9d0e1f")

// EventID is the id of the event of type typ that version of an order
// produced. It is derived, not random: the outbox and the change stream
// give one change the same id, and a change streamed again after a crash
// yields the same event, which consumers deduplicate by id.
func EventID(orderID uuid.UUID, typ string, version int) string {
	return uuid.NewSHA1(eventIDSpace, []byte(orderID.String()+"/"+typ+"/"+strconv.Itoa(version))).String()
}

// CreatedEvent is the ORDER_CREATED event of a new order.
func CreatedEvent(ctx context.Context, o *Order) (events.Event, error) {
	items := make([]events.OrderItem, len(o.Items))
	for i, it := range o.Items {
		items[i] = events.OrderItem{SKU: it.SKU, Quantity: it.Quantity, UnitPrice: it.UnitPrice.String()}
	}
	return orderEvent(ctx, events.OrderCreated, o.ID, o.Version, o.CreatedAt, events.OrderCreatedData{
		OrderID: o.ID.String(), CustomerID: o.CustomerID, Status: string(o.Status), Items: items,
		TotalAmount: o.TotalAmount.String(), Currency: o.Currency, Version: o.Version, CreatedAt: o.CreatedAt,
	})
}

// TransitionEvent is the event of one status change: ORDER_CANCELLED for a
// cancellation, ORDER_STATUS_UPDATED for any other move.
func TransitionEvent(ctx context.Context, o *Order, h HistoryEntry) (events.Event, error) {
	id := o.ID.String()
	if h.ToStatus == StatusCancelled {
		return orderEvent(ctx, events.OrderCancelled, o.ID, h.Version, h.ChangedAt, events.OrderCancelledData{
			OrderID: id, PreviousStatus: string(h.FromStatus), Reason: h.Reason, Actor: h.Actor,
			Version: h.Version, CancelledAt: h.ChangedAt,
		})
	}
	return orderEvent(ctx, events.OrderStatusUpdated, o.ID, h.Version, h.ChangedAt, events.OrderStatusUpdatedData{
		OrderID: id, OldStatus: string(h.FromStatus), NewStatus: string(h.ToStatus), Reason: h.Reason,
		Actor: h.Actor, Version: h.Version, UpdatedAt: h.ChangedAt,
	})
}

// orderEvent builds an order event with its derived id; its time is when
// the change happened (CloudEvents' "time" is the occurrence's), and its
// correlation id is ctx's, or the event's own id when ctx has none.
func orderEvent(ctx context.Context, typ string, orderID uuid.UUID, version int, at time.Time, data any) (events.Event, error) {
	corr := logging.CorrelationID(ctx)
	ev, err := events.New(typ, events.AggregateOrder, orderID.String(), data, corr)
	if err != nil {
		return events.Event{}, err
	}
	ev.ID = EventID(orderID, typ, version)
	if corr == "" {
		ev.CorrelationID = ev.ID
	}
	if !at.IsZero() {
		ev.Time = at.UTC()
	}
	return ev, nil
}
