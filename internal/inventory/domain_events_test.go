package inventory

import (
	"errors"
	"reflect"
	"testing"

	"github.com/google/uuid"

	"github.com/trackops/trackops/internal/events"
)

// The reactions' reading of order events is plain Go: these tests need no
// PostgreSQL, Kafka or HTTP.

func orderEvent(t *testing.T, typ, subject string, data any) events.Envelope {
	t.Helper()
	ev, err := events.New(typ, events.AggregateOrder, subject, data, "")
	if err != nil {
		t.Fatal(err)
	}
	return ev.Envelope
}

func TestReadReservationSumsTheOrdersLines(t *testing.T) {
	id := uuid.New()
	ev := orderEvent(t, events.OrderCreated, id.String(), events.OrderCreatedData{OrderID: id.String(), Items: []events.OrderItem{
		{SKU: "B", Quantity: 1}, {SKU: "A", Quantity: 2}, {SKU: "B", Quantity: 4},
	}})
	req, err := ReadReservation(ev)
	if err != nil {
		t.Fatal(err)
	}
	if req.OrderID != id || !reflect.DeepEqual(req.Lines, []Line{{"A", 2}, {"B", 5}}) {
		t.Errorf("request %+v", req)
	}
	// The subject names the order when the data does not.
	ev = orderEvent(t, events.OrderCreated, id.String(), events.OrderCreatedData{Items: []events.OrderItem{{SKU: "A", Quantity: 1}}})
	if req, err := ReadReservation(ev); err != nil || req.OrderID != id {
		t.Errorf("order from the subject: %+v, %v", req, err)
	}
}

// TestMalformedOrderEventsFailPermanently: an event no retry can make
// readable is a permanent failure (the Kafka runner dead-letters it at
// once); a status change other than SHIPPED is no failure, just ignored.
func TestMalformedOrderEventsFailPermanently(t *testing.T) {
	id := uuid.NewString()
	for name, read := range map[string]func() error{
		"no lines": func() error {
			_, err := ReadReservation(orderEvent(t, events.OrderCreated, id, events.OrderCreatedData{OrderID: id}))
			return err
		},
		"bad sku": func() error {
			_, err := ReadReservation(orderEvent(t, events.OrderCreated, id, events.OrderCreatedData{OrderID: id,
				Items: []events.OrderItem{{SKU: "no spaces", Quantity: 1}}}))
			return err
		},
		"quantity above any order's": func() error {
			_, err := ReadReservation(orderEvent(t, events.OrderCreated, id, events.OrderCreatedData{OrderID: id,
				Items: []events.OrderItem{{SKU: "A", Quantity: 10_001}}}))
			return err
		},
		"order id not a UUID": func() error {
			_, err := ReadCancellation(orderEvent(t, events.OrderCancelled, "order-7", events.OrderCancelledData{}))
			return err
		},
		"data of the wrong shape": func() error {
			_, _, err := ReadShipment(orderEvent(t, events.OrderStatusUpdated, id, map[string]int{"new_status": 5}))
			return err
		},
	} {
		err := read()
		if !events.IsPermanent(err) || !errors.Is(err, events.ErrMalformed) {
			t.Errorf("%s: %v, want a permanent malformed-event error", name, err)
		}
	}
}

func TestReadShipmentOnlyTakesShipped(t *testing.T) {
	id := uuid.New()
	for status, want := range map[string]bool{
		events.StatusShipped: true, events.StatusProcessing: false, events.StatusDelivered: false, events.StatusConfirmed: false,
	} {
		shipped, got, err := ReadShipment(orderEvent(t, events.OrderStatusUpdated, id.String(),
			events.OrderStatusUpdatedData{OrderID: id.String(), NewStatus: status}))
		if err != nil || shipped != want || (want && got != id) {
			t.Errorf("%s: shipped %v order %s err %v; want %v", status, shipped, got, err, want)
		}
	}
	c, err := ReadCancellation(orderEvent(t, events.OrderCancelled, id.String(), events.OrderCancelledData{OrderID: id.String(), Reason: "TIMEOUT"}))
	if err != nil || c != (Cancellation{OrderID: id, Reason: "TIMEOUT"}) {
		t.Errorf("cancellation %+v, %v", c, err)
	}
}
