package order

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/trackops/trackops/internal/commerce"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/validation"
)

func TestCanTransition(t *testing.T) {
	all := []Status{StatusPending, StatusConfirmed, StatusProcessing, StatusShipped, StatusDelivered, StatusCancelled}
	allowed := map[[2]Status]bool{
		{StatusPending, StatusConfirmed}:    true,
		{StatusConfirmed, StatusProcessing}: true,
		{StatusProcessing, StatusShipped}:   true,
		{StatusShipped, StatusDelivered}:    true,
		{StatusPending, StatusCancelled}:    true,
		{StatusConfirmed, StatusCancelled}:  true,
		{StatusProcessing, StatusCancelled}: true,
	}
	for _, from := range all {
		for _, to := range all {
			want := allowed[[2]Status{from, to}]
			if got := CanTransition(from, to); got != want {
				t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
	}
	for _, s := range []Status{StatusDelivered, StatusCancelled} {
		if !s.Terminal() {
			t.Errorf("%s should be terminal", s)
		}
	}
}

func TestTransitionRecordsHistoryAndVersion(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	o := &Order{Status: StatusPending, Version: 1}
	h, err := o.Transition(StatusConfirmed, "reserved", "system:saga", now)
	if err != nil {
		t.Fatal(err)
	}
	if o.Status != StatusConfirmed || o.Version != 2 || h.FromStatus != StatusPending || h.ToStatus != StatusConfirmed || h.Version != 2 {
		t.Fatalf("after transition: order %+v, history %+v", o, h)
	}
	if _, err := o.Transition(StatusDelivered, "", "x", now); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("CONFIRMED -> DELIVERED: err = %v, want ErrIllegalTransition", err)
	}
	if o.Version != 2 || len(o.Changes()) != 1 {
		t.Fatalf("a refused transition changed the order: %+v", o)
	}
	if _, err := o.Transition(StatusCancelled, "customer asked", "user:a", now); err != nil {
		t.Fatal(err)
	}
	if o.CancelReason != "customer asked" || len(o.Changes()) != 2 {
		t.Fatalf("cancel: %+v", o)
	}
}

func TestNewOrderValidate(t *testing.T) {
	good := func() NewOrder {
		return NewOrder{CustomerID: "c-1", Items: []NewItem{{SKU: "SKU-1", Quantity: 2, UnitPrice: 1999}}}
	}
	tests := []struct {
		name   string
		mutate func(*NewOrder)
		field  string // "" = valid
	}{
		{"valid", func(*NewOrder) {}, ""},
		{"no customer", func(n *NewOrder) { n.CustomerID = "  " }, "customer_id"},
		{"long customer", func(n *NewOrder) { n.CustomerID = strings.Repeat("x", 101) }, "customer_id"},
		{"control char", func(n *NewOrder) { n.CustomerID = "a\x00b" }, "customer_id"},
		{"no items", func(n *NewOrder) { n.Items = nil }, "items"},
		{"too many items", func(n *NewOrder) { n.Items = make([]NewItem, MaxItems+1) }, "items"},
		{"zero quantity", func(n *NewOrder) { n.Items[0].Quantity = 0 }, "items[0].quantity"},
		{"negative quantity", func(n *NewOrder) { n.Items[0].Quantity = -3 }, "items[0].quantity"},
		{"huge quantity", func(n *NewOrder) { n.Items[0].Quantity = commerce.MaxQuantity + 1 }, "items[0].quantity"},
		{"negative price", func(n *NewOrder) { n.Items[0].UnitPrice = -1 }, "items[0].unit_price"},
		{"bad sku", func(n *NewOrder) { n.Items[0].SKU = "a b" }, "items[0].sku"},
		{"empty sku", func(n *NewOrder) { n.Items[0].SKU = "" }, "items[0].sku"},
		{"bad currency", func(n *NewOrder) { n.Currency = "usd" }, "currency"},
		{"address not object", func(n *NewOrder) { n.ShippingAddress = json.RawMessage(`"x"`) }, "shipping_address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := good()
			tt.mutate(&n)
			err := n.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			var verrs validation.Errors
			if !errors.As(err, &verrs) {
				t.Fatalf("want validation errors, got %v", err)
			}
			for _, f := range verrs {
				if f.Field == tt.field {
					return
				}
			}
			t.Fatalf("no error for field %q in %v", tt.field, verrs)
		})
	}
}

func TestPlaceComputesTotals(t *testing.T) {
	o, err := Place(NewOrder{CustomerID: "c", Items: []NewItem{
		{SKU: "A", Quantity: 3, UnitPrice: 1999},
		{SKU: "B", Quantity: 1, UnitPrice: 1},
	}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if o.TotalAmount != 5998 || o.Items[0].LineTotal != 5997 || o.Currency != "USD" || o.Status != StatusPending || o.Version != 1 {
		t.Fatalf("placed order: %+v", o)
	}
}

// TestClientMayRequest is the table of the moves a client may ask for: the
// state machine's, minus PENDING → CONFIRMED (the saga's alone), and past
// CONFIRMED only while the order holds its stock.
func TestClientMayRequest(t *testing.T) {
	all := []Status{StatusPending, StatusConfirmed, StatusProcessing, StatusShipped, StatusDelivered, StatusCancelled}
	holds := []Hold{HoldNone, HoldReserved, HoldCommitted}
	// allowed[{from, to}] lists the holds under which a client may move.
	allowed := map[[2]Status][]Hold{
		{StatusPending, StatusCancelled}:    holds,
		{StatusConfirmed, StatusCancelled}:  holds,
		{StatusProcessing, StatusCancelled}: holds,
		{StatusConfirmed, StatusProcessing}: {HoldReserved},
		{StatusProcessing, StatusShipped}:   {HoldReserved},
		{StatusShipped, StatusDelivered}:    {HoldReserved, HoldCommitted},
	}
	for _, from := range all {
		for _, to := range all {
			for _, hold := range holds {
				err := ClientMayRequest(from, to, hold)
				want := false
				for _, h := range allowed[[2]Status{from, to}] {
					want = want || h == hold
				}
				if (err == nil) != want {
					t.Errorf("ClientMayRequest(%s, %s, %q) = %v, want allowed=%v", from, to, hold, err, want)
				}
				if err != nil && !errors.Is(err, ErrIllegalTransition) {
					t.Errorf("ClientMayRequest(%s, %s, %q) = %v, not an ErrIllegalTransition (409)", from, to, hold, err)
				}
			}
		}
	}
	for _, hold := range holds {
		if err := ClientMayRequest(StatusPending, StatusConfirmed, hold); !errors.Is(err, ErrSagaOnly) {
			t.Errorf("PENDING -> CONFIRMED with hold %q: %v, want ErrSagaOnly", hold, err)
		}
	}
	if err := ClientMayRequest(StatusConfirmed, StatusProcessing, HoldNone); !errors.Is(err, ErrNoReservation) {
		t.Errorf("CONFIRMED -> PROCESSING without a hold: %v, want ErrNoReservation", err)
	}
	// ClientTransition refuses the same and leaves the order unchanged.
	o := &Order{Status: StatusPending, Version: 1}
	if _, err := o.ClientTransition(StatusConfirmed, HoldReserved, "", "user:x", time.Now()); !errors.Is(err, ErrSagaOnly) || o.Status != StatusPending || o.Version != 1 {
		t.Fatalf("client confirm: %v, order now %s v%d", err, o.Status, o.Version)
	}
}

func TestOrderTotalsMustFitTheColumns(t *testing.T) {
	line := NewItem{SKU: "SKU-1", Quantity: commerce.MaxQuantity, UnitPrice: MaxUnitPrice}
	err := NewOrder{CustomerID: "c", Items: []NewItem{line}}.Validate()
	var verrs validation.Errors
	if !errors.As(err, &verrs) || len(verrs) != 1 || verrs[0].Field != "items[0]" {
		t.Fatalf("line of %d × %s: %v, want one error on items[0]", commerce.MaxQuantity, MaxUnitPrice, err)
	}
	// Lines each within the limit whose sum is not.
	big := NewItem{SKU: "SKU-1", Quantity: 9_999, UnitPrice: MaxUnitPrice} // 999,900,000,000.00
	err = NewOrder{CustomerID: "c", Items: []NewItem{big, big}}.Validate()
	if !errors.As(err, &verrs) || len(verrs) != 1 || verrs[0].Field != "items" {
		t.Fatalf("sum over the limit: %v, want one error on items", err)
	}
	if err := (NewOrder{CustomerID: "c", Items: []NewItem{big}}).Validate(); err != nil {
		t.Fatalf("a line within the limit: %v", err)
	}
}

func TestTextFieldsRefuseNUL(t *testing.T) {
	bad := []NewOrder{
		{CustomerID: "a\x00b", Items: []NewItem{{SKU: "S", Quantity: 1}}},
		{CustomerID: "a\xffb", Items: []NewItem{{SKU: "S", Quantity: 1}}},
		{CustomerID: "c", ShippingAddress: json.RawMessage(`{"city":"a\u0000b"}`), Items: []NewItem{{SKU: "S", Quantity: 1}}},
		{CustomerID: "c", ShippingAddress: json.RawMessage(`{"a\u0000":"b"}`), Items: []NewItem{{SKU: "S", Quantity: 1}}},
	}
	for i, n := range bad {
		if err := n.Validate(); err == nil {
			t.Errorf("order %d (%q): valid, want refused", i, n.CustomerID)
		}
	}
	ok := NewOrder{CustomerID: "c", ShippingAddress: json.RawMessage(`{"city":"a\\u0000b"}`), Items: []NewItem{{SKU: "S", Quantity: 1}}}
	if err := ok.Validate(); err != nil {
		t.Errorf("an escaped backslash before u0000 is no NUL: %v", err)
	}
	if err := ValidateReason("a\x00"); err == nil {
		t.Error("reason with NUL accepted")
	}
}

// The saga's rules are plain Go: reading inventory's answer and applying it
// to an order need no PostgreSQL, Kafka or HTTP.

func inventoryEvent(t *testing.T, typ, subject string, data any) events.Envelope {
	t.Helper()
	ev, err := events.New(typ, events.AggregateOrder, subject, data, "")
	if err != nil {
		t.Fatal(err)
	}
	return ev.Envelope
}

func TestReadInventoryOutcome(t *testing.T) {
	id := uuid.New()
	out, err := ReadInventoryOutcome(inventoryEvent(t, events.InventoryReserved, id.String(), events.InventoryReservedData{OrderID: id.String()}))
	if err != nil || out != (InventoryOutcome{OrderID: id, To: StatusConfirmed}) {
		t.Errorf("reserved: %+v, %v", out, err)
	}
	out, err = ReadInventoryOutcome(inventoryEvent(t, events.InventoryReservationFailed, id.String(),
		events.InventoryReservationFailedData{Reason: events.ReasonOutOfStock})) // the subject names the order
	if err != nil || out != (InventoryOutcome{OrderID: id, To: StatusCancelled, Reason: ReasonOutOfStock}) {
		t.Errorf("failed: %+v, %v", out, err)
	}
	for name, ev := range map[string]events.Envelope{
		"another type":      inventoryEvent(t, events.InventoryReleased, id.String(), events.InventoryReleasedData{OrderID: id.String()}),
		"id not a UUID":     inventoryEvent(t, events.InventoryReserved, "order-7", events.InventoryReservedData{}),
		"data of bad shape": inventoryEvent(t, events.InventoryReserved, id.String(), map[string]int{"order_id": 1}),
	} {
		if _, err := ReadInventoryOutcome(ev); !events.IsPermanent(err) {
			t.Errorf("%s: %v, want a permanent failure", name, err)
		}
	}
}

func TestApplyInventoryOutcomeMovesOnlyPendingOrders(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	o := &Order{Status: StatusPending, Version: 1}
	applied, err := o.ApplyInventoryOutcome(InventoryOutcome{To: StatusCancelled, Reason: ReasonOutOfStock}, "system:order-saga", now)
	if err != nil || !applied || o.Status != StatusCancelled || o.CancelReason != ReasonOutOfStock || o.Version != 2 {
		t.Fatalf("pending order: applied %v err %v order %+v", applied, err, o)
	}
	if h := o.Changes(); len(h) != 1 || h[0].Actor != "system:order-saga" || h[0].FromStatus != StatusPending {
		t.Errorf("history %+v", h)
	}
	// Cancelled before inventory answered: the late reservation changes
	// nothing (inventory releases it on the cancellation).
	applied, err = o.ApplyInventoryOutcome(InventoryOutcome{To: StatusConfirmed}, "system:order-saga", now)
	if err != nil || applied || o.Status != StatusCancelled || o.Version != 2 {
		t.Errorf("stale outcome: applied %v err %v order %+v", applied, err, o)
	}
}
