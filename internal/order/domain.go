// Package order is the Order service: the order aggregate and its status
// state machine (plain rules, no I/O), its PostgreSQL store, the service that
// writes each change together with its event, and its HTTP handlers.
package order

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/trackops/trackops/internal/commerce"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/validation"
)

// Status is where an order is in its life.
type Status string

// Order statuses, named as the ORDER_* events carry them.
const (
	StatusPending    Status = events.StatusPending
	StatusConfirmed  Status = events.StatusConfirmed
	StatusProcessing Status = events.StatusProcessing
	StatusShipped    Status = events.StatusShipped
	StatusDelivered  Status = events.StatusDelivered
	StatusCancelled  Status = events.StatusCancelled
)

// transitions lists, for each status, the statuses it may move to.
var transitions = map[Status][]Status{
	StatusPending:    {StatusConfirmed, StatusCancelled},
	StatusConfirmed:  {StatusProcessing, StatusCancelled},
	StatusProcessing: {StatusShipped, StatusCancelled},
	StatusShipped:    {StatusDelivered},
}

// ParseStatus validates a status name (case-insensitive).
func ParseStatus(s string) (Status, bool) {
	st := Status(strings.ToUpper(strings.TrimSpace(s)))
	switch st {
	case StatusPending, StatusConfirmed, StatusProcessing, StatusShipped, StatusDelivered, StatusCancelled:
		return st, true
	}
	return "", false
}

// CanTransition reports whether an order may move from one status to another.
func CanTransition(from, to Status) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Terminal reports whether no transition leaves s.
func (s Status) Terminal() bool { return len(transitions[s]) == 0 }

// Domain errors, mapped to HTTP statuses at the edge.
var (
	ErrNotFound          = errors.New("order not found")
	ErrIllegalTransition = errors.New("illegal status transition")
	// ErrSagaOnly is a client asking for a move only the platform makes:
	// PENDING → CONFIRMED happens when inventory has reserved the stock.
	// It is an ErrIllegalTransition too.
	ErrSagaOnly = fmt.Errorf("%w: an order is confirmed only by the platform, once inventory has reserved its stock; "+
		"create it and wait for CONFIRMED (or CANCELLED with reason OUT_OF_STOCK)", ErrIllegalTransition)
	// ErrNoReservation is a move past CONFIRMED of an order that holds no
	// reservation. It is an ErrIllegalTransition too.
	ErrNoReservation       = fmt.Errorf("%w: the order holds no stock reservation", ErrIllegalTransition)
	ErrVersionMismatch     = errors.New("order version does not match")
	ErrIdempotencyConflict = errors.New("idempotency key was used with a different request")
)

// Cancellation reasons the platform itself sets.
const (
	ReasonOutOfStock = events.ReasonOutOfStock
	// ReasonTimeout cancels an order the pending-order sweeper found
	// PENDING past TRACKOPS_SAGA_PENDING_TIMEOUT that re-driving its
	// reservation could not confirm.
	ReasonTimeout = "TIMEOUT"
)

// Hold is what stock an order holds, as inventory decided it.
type Hold string

// Holds of an order.
const (
	// HoldNone: nothing reserved (not yet decided, failed, released, or
	// the order was cancelled before inventory saw it).
	HoldNone Hold = ""
	// HoldReserved: every line's units are reserved for the order.
	HoldReserved Hold = "reserved"
	// HoldCommitted: the reserved units left the warehouse when the order
	// shipped; a shipped order holds its stock this way.
	HoldCommitted Hold = "committed"
)

// ClientMayRequest checks a status change a client (an API caller) asks
// for, given the stock the order holds. On top of CanTransition:
//   - PENDING → CONFIRMED is the platform's alone (ErrSagaOnly): the saga
//     confirms an order when inventory reports its reservation;
//   - PROCESSING and SHIPPED need the reservation held (HoldReserved);
//   - DELIVERED needs it held or committed: inventory commits the units
//     when it sees SHIPPED, which may happen before or after DELIVERED;
//   - CANCELLED needs nothing (cancelling releases whatever is held).
func ClientMayRequest(from, to Status, hold Hold) error {
	if !CanTransition(from, to) {
		return fmt.Errorf("%w: %s -> %s", ErrIllegalTransition, from, to)
	}
	switch to {
	case StatusConfirmed:
		return ErrSagaOnly
	case StatusProcessing, StatusShipped:
		if hold != HoldReserved {
			return fmt.Errorf("%w: %s -> %s needs its stock reserved", ErrNoReservation, from, to)
		}
	case StatusDelivered:
		if hold != HoldReserved && hold != HoldCommitted {
			return fmt.Errorf("%w: %s -> %s needs its stock reserved or shipped", ErrNoReservation, from, to)
		}
	}
	return nil
}

// ClientTransition is Transition for a move a client asked for: it refuses
// what ClientMayRequest refuses.
func (o *Order) ClientTransition(to Status, hold Hold, reason, actor string, now time.Time) (HistoryEntry, error) {
	if err := ClientMayRequest(o.Status, to, hold); err != nil {
		return HistoryEntry{}, err
	}
	return o.Transition(to, reason, actor, now)
}

// InventoryOutcome is what inventory decided about an order's stock, as
// the saga reads it from INVENTORY_RESERVED or INVENTORY_RESERVATION_FAILED.
type InventoryOutcome struct {
	OrderID uuid.UUID
	// To is where the outcome moves a PENDING order: CONFIRMED when its
	// stock is reserved, CANCELLED when it is not.
	To Status
	// Reason is the cancellation's reason (ReasonOutOfStock), or "".
	Reason string
}

// ReadInventoryOutcome reads an inventory outcome event. An event of
// another type, or one whose order id is not a UUID, fails permanently
// (events.IsPermanent): no retry can make it readable.
func ReadInventoryOutcome(ev events.Envelope) (InventoryOutcome, error) {
	var (
		out   InventoryOutcome
		rawID string
	)
	switch ev.Type {
	case events.InventoryReserved:
		var d events.InventoryReservedData
		if err := ev.DecodeData(&d); err != nil {
			return InventoryOutcome{}, err
		}
		rawID, out.To = d.OrderID, StatusConfirmed
	case events.InventoryReservationFailed:
		var d events.InventoryReservationFailedData
		if err := ev.DecodeData(&d); err != nil {
			return InventoryOutcome{}, err
		}
		rawID, out.To, out.Reason = d.OrderID, StatusCancelled, ReasonOutOfStock
	default:
		return InventoryOutcome{}, events.Permanent(fmt.Errorf("order saga: unexpected event type %q", ev.Type))
	}
	if rawID == "" {
		rawID = ev.Subject
	}
	id, err := uuid.Parse(rawID)
	if err != nil {
		return InventoryOutcome{}, events.Permanent(fmt.Errorf("%w: %s %s: order id %q is not a UUID", events.ErrMalformed, ev.Type, ev.ID, rawID))
	}
	out.OrderID = id
	return out, nil
}

// ApplyInventoryOutcome moves a PENDING order as inventory decided, as
// actor. An order no longer PENDING — cancelled, or moved on, before
// inventory answered — is left as it is, and applied is false: inventory
// releases what it reserved for it when it sees the cancellation.
func (o *Order) ApplyInventoryOutcome(out InventoryOutcome, actor string, now time.Time) (applied bool, err error) {
	if o.Status != StatusPending {
		return false, nil
	}
	if _, err := o.Transition(out.To, out.Reason, actor, now); err != nil {
		return false, err
	}
	return true, nil
}

// Item is one line of an order.
type Item struct {
	ID        uuid.UUID
	LineNo    int
	SKU       string
	Quantity  int
	UnitPrice commerce.Money
	LineTotal commerce.Money
}

// Order is the order aggregate.
type Order struct {
	ID              uuid.UUID
	CustomerID      string
	Status          Status
	Currency        string
	TotalAmount     commerce.Money
	ShippingAddress json.RawMessage
	CancelReason    string
	Version         int
	CreatedAt       time.Time
	UpdatedAt       time.Time
	Items           []Item

	// changes are the transitions made since the order was loaded, which
	// the service saves, with their events, in the same transaction.
	changes []HistoryEntry
}

// Changes returns the transitions made since the order was loaded.
func (o *Order) Changes() []HistoryEntry { return o.changes }

// HistoryEntry is one status change of an order.
type HistoryEntry struct {
	FromStatus Status    `json:"from_status,omitempty"`
	ToStatus   Status    `json:"to_status"`
	Reason     string    `json:"reason,omitempty"`
	Actor      string    `json:"actor"`
	Version    int       `json:"version"`
	ChangedAt  time.Time `json:"changed_at"`
}

// Limits on what one order may hold.
const (
	MaxItems       = 100
	MaxUnitPrice   = commerce.Money(100_000_000_00) // 100 million in major units
	MaxCustomerLen = 100
	MaxReasonLen   = 500
	MaxAddressLen  = 4096
	// MaxAmount is the largest line or order total the numeric(14,2)
	// columns hold: 999,999,999,999.99.
	MaxAmount = commerce.Money(99_999_999_999_999)
)

var currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)

// NewItem is one requested line of a new order.
type NewItem struct {
	SKU       string
	Quantity  int
	UnitPrice commerce.Money
}

// NewOrder is a validated request to place an order.
type NewOrder struct {
	CustomerID      string
	Currency        string
	ShippingAddress json.RawMessage
	Items           []NewItem
}

// Validate checks every field and reports all problems at once.
func (n NewOrder) Validate() error {
	var errs validation.Errors
	switch c := strings.TrimSpace(n.CustomerID); {
	case validation.TextProblem(c) != "":
		errs.Text("customer_id", c)
	case c == "":
		errs.Add("customer_id", "is required")
	case utf8.RuneCountInString(c) > MaxCustomerLen:
		errs.Add("customer_id", "must be at most %d characters", MaxCustomerLen)
	case strings.ContainsFunc(c, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		errs.Add("customer_id", "must not contain control characters")
	}
	if len(n.ShippingAddress) > 0 {
		if p := validation.RawJSONProblem(n.ShippingAddress); p != "" {
			errs.Add("shipping_address", "%s", p)
		}
	}
	if n.Currency != "" && !currencyPattern.MatchString(n.Currency) {
		errs.Add("currency", "must be a three-letter ISO 4217 code such as USD")
	}
	if len(n.ShippingAddress) > 0 && string(n.ShippingAddress) != "null" {
		if len(n.ShippingAddress) > MaxAddressLen {
			errs.Add("shipping_address", "must be at most %d bytes", MaxAddressLen)
		} else if n.ShippingAddress[0] != '{' {
			errs.Add("shipping_address", "must be an object")
		}
	}
	switch {
	case len(n.Items) == 0:
		errs.Add("items", "must hold at least one item")
	case len(n.Items) > MaxItems:
		errs.Add("items", "must hold at most %d items", MaxItems)
	}
	var total commerce.Money
	for i, it := range n.Items {
		f := fmt.Sprintf("items[%d]", i)
		if !commerce.ValidSKU(it.SKU) {
			errs.Add(f+".sku", commerce.SKUProblem)
		}
		if !commerce.ValidQuantity(it.Quantity) {
			errs.Add(f+".quantity", "must be between 1 and %d", commerce.MaxQuantity)
		}
		priceOK := it.UnitPrice >= 0 && it.UnitPrice <= MaxUnitPrice
		if !priceOK {
			errs.Add(f+".unit_price", "must be between 0 and %s", MaxUnitPrice)
		}
		// Each factor within its limit can still make a line (or the sum
		// of lines) too large to store: say so instead of failing the write.
		if priceOK && commerce.ValidQuantity(it.Quantity) {
			line := it.UnitPrice * commerce.Money(it.Quantity)
			if line > MaxAmount {
				errs.Add(f, "line total %s × %d exceeds %s, the largest amount an order may hold", it.UnitPrice, it.Quantity, MaxAmount)
			} else {
				total += line
			}
		}
	}
	if total > MaxAmount {
		errs.Add("items", "order total exceeds %s, the largest amount an order may hold", MaxAmount)
	}
	return errs.Err()
}

// Place turns a validated request into a new PENDING order.
func Place(n NewOrder, now time.Time) (*Order, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	o := &Order{
		ID:              uuid.New(),
		CustomerID:      strings.TrimSpace(n.CustomerID),
		Status:          StatusPending,
		Currency:        n.Currency,
		ShippingAddress: n.ShippingAddress,
		Version:         1,
		CreatedAt:       now,
		UpdatedAt:       now,
	}
	if o.Currency == "" {
		o.Currency = "USD"
	}
	if string(o.ShippingAddress) == "null" {
		o.ShippingAddress = nil
	}
	for i, it := range n.Items {
		line := it.UnitPrice * commerce.Money(it.Quantity)
		o.Items = append(o.Items, Item{
			ID: uuid.New(), LineNo: i + 1, SKU: it.SKU, Quantity: it.Quantity,
			UnitPrice: it.UnitPrice, LineTotal: line,
		})
		o.TotalAmount += line
	}
	return o, nil
}

// Transition moves the order to status to, bumping its version, and returns
// the history entry to record. It refuses moves the state machine forbids.
// It is the platform's own move (the saga, the sweeper), whose proof that
// stock is held is the event or inventory row it acts on; a client's request
// goes through ClientTransition.
func (o *Order) Transition(to Status, reason, actor string, now time.Time) (HistoryEntry, error) {
	if !CanTransition(o.Status, to) {
		return HistoryEntry{}, fmt.Errorf("%w: %s -> %s", ErrIllegalTransition, o.Status, to)
	}
	if err := ValidateReason(reason); err != nil {
		return HistoryEntry{}, err
	}
	from := o.Status
	o.Status = to
	o.Version++
	o.UpdatedAt = now
	if to == StatusCancelled {
		o.CancelReason = reason
	}
	h := HistoryEntry{FromStatus: from, ToStatus: to, Reason: reason, Actor: actor, Version: o.Version, ChangedAt: now}
	o.changes = append(o.changes, h)
	return h, nil
}

// ValidateReason checks the reason of a status change or cancellation.
func ValidateReason(reason string) error {
	var errs validation.Errors
	if errs.Text("reason", reason) && utf8.RuneCountInString(reason) > MaxReasonLen {
		errs.Add("reason", "must be at most %d characters", MaxReasonLen)
	}
	return errs.Err()
}
