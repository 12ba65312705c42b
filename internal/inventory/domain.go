// Package inventory is the Inventory service: stock per SKU with the
// reservation arithmetic (plain rules, no I/O), its PostgreSQL store, the
// service behind the HTTP API, and the reactions to order events that
// reserve, release and commit stock — all-or-nothing per order, idempotent
// per event, and never oversold.
package inventory

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/trackops/trackops/internal/commerce"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/validation"
)

// Item is the stock of one SKU.
type Item struct {
	SKU       string
	Name      string
	OnHand    int64
	Reserved  int64
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Available is what new orders may still reserve.
func (i Item) Available() int64 { return i.OnHand - i.Reserved }

// ReservationStatus is where a reservation is in its life.
type ReservationStatus string

// Reservation statuses.
const (
	// StatusReserved units are held for an open order.
	StatusReserved ReservationStatus = "reserved"
	// StatusReleased units went back to stock when the order was cancelled.
	StatusReleased ReservationStatus = "released"
	// StatusCommitted units left the warehouse with the shipped order.
	StatusCommitted ReservationStatus = "committed"
)

// ParseReservationStatus validates a reservation status name.
func ParseReservationStatus(s string) (ReservationStatus, bool) {
	st := ReservationStatus(strings.ToLower(strings.TrimSpace(s)))
	switch st {
	case StatusReserved, StatusReleased, StatusCommitted:
		return st, true
	}
	return "", false
}

// Reservation is the units of one SKU held for one order.
type Reservation struct {
	OrderID   string
	SKU       string
	Quantity  int64
	Status    ReservationStatus
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Limits on stock figures, far above any real warehouse and far below
// overflow.
const (
	MaxOnHand    = 1_000_000_000
	MaxNameLen   = 200
	MaxReasonLen = 500
)

// Domain errors, mapped to HTTP statuses at the edge.
var (
	ErrNotFound = errors.New("inventory item not found")
	// ErrStockConflict means a change would leave on_hand below what is
	// reserved (or below zero).
	ErrStockConflict = errors.New("stock conflict")
)

// StockConflictError explains a refused change of on_hand.
type StockConflictError struct {
	SKU       string
	OnHand    int64 // what on_hand would become
	Reserved  int64
	Requested string // what was asked, e.g. "on_hand 3" or "delta -7"
}

func (e *StockConflictError) Error() string {
	if e.OnHand < 0 {
		return fmt.Sprintf("%s would leave on_hand of %s at %d; on_hand cannot go below zero", e.Requested, e.SKU, e.OnHand)
	}
	return fmt.Sprintf("%s would leave on_hand of %s at %d, below the %d units reserved for open orders; "+
		"cancel or ship those orders first, or set on_hand to at least %d", e.Requested, e.SKU, e.OnHand, e.Reserved, e.Reserved)
}

// Is makes errors.Is(err, ErrStockConflict) true.
func (e *StockConflictError) Is(target error) bool { return target == ErrStockConflict }

// checkOnHand refuses an on_hand the item's reservations do not fit in.
func (i Item) checkOnHand(onHand int64, requested string) error {
	if onHand < 0 || onHand < i.Reserved {
		return &StockConflictError{SKU: i.SKU, OnHand: onHand, Reserved: i.Reserved, Requested: requested}
	}
	return nil
}

// SetRequest creates an item or sets its stock (PUT /inventory/{sku}).
type SetRequest struct {
	SKU string
	// Name is required when creating; nil keeps the current name.
	Name   *string
	OnHand int64
	Actor  string
}

// Validate checks the fields that do not depend on the stored item.
func (r SetRequest) Validate() error {
	var errs validation.Errors
	if !commerce.ValidSKU(r.SKU) {
		errs.Add("sku", commerce.SKUProblem)
	}
	if r.Name != nil {
		validName(&errs, *r.Name)
	}
	if r.OnHand < 0 || r.OnHand > MaxOnHand {
		errs.Add("on_hand", "must be between 0 and %d", MaxOnHand)
	}
	return errs.Err()
}

func validName(errs *validation.Errors, name string) {
	n := strings.TrimSpace(name)
	switch {
	case n == "":
		errs.Add("name", "must not be empty")
	case utf8.RuneCountInString(n) > MaxNameLen:
		errs.Add("name", "must be at most %d characters", MaxNameLen)
	case strings.ContainsFunc(n, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		errs.Add("name", "must not contain control characters")
	}
}

// AdjustRequest changes on_hand by a delta (POST /inventory/{sku}/adjust).
type AdjustRequest struct {
	SKU    string
	Delta  int64
	Reason string
	Actor  string
}

// Validate checks the request's fields.
func (r AdjustRequest) Validate() error {
	var errs validation.Errors
	if !commerce.ValidSKU(r.SKU) {
		errs.Add("sku", commerce.SKUProblem)
	}
	if r.Delta == 0 || r.Delta < -MaxOnHand || r.Delta > MaxOnHand {
		errs.Add("delta", "must be a non-zero whole number between %d and %d", -MaxOnHand, MaxOnHand)
	}
	switch reason := strings.TrimSpace(r.Reason); {
	case reason == "":
		errs.Add("reason", "is required: say why stock changed (it goes into the ledger)")
	case utf8.RuneCountInString(reason) > MaxReasonLen:
		errs.Add("reason", "must be at most %d characters", MaxReasonLen)
	}
	return errs.Err()
}

// Adjust applies delta to on_hand, refusing to go below what is reserved.
func (i *Item) Adjust(delta int64) error {
	next := i.OnHand + delta
	if next > MaxOnHand {
		return validation.Errors{{Field: "delta", Message: fmt.Sprintf("would raise on_hand above %d", MaxOnHand)}}
	}
	if err := i.checkOnHand(next, fmt.Sprintf("delta %d", delta)); err != nil {
		return err
	}
	i.OnHand = next
	return nil
}

// SetOnHand replaces on_hand, refusing a value below what is reserved.
func (i *Item) SetOnHand(onHand int64) error {
	if err := i.checkOnHand(onHand, fmt.Sprintf("on_hand %d", onHand)); err != nil {
		return err
	}
	i.OnHand = onHand
	return nil
}

// Line is a quantity of one SKU an order asks for.
type Line struct {
	SKU      string
	Quantity int64
}

// OrderLine is one line of an order as it arrives in ORDER_CREATED.
type OrderLine struct {
	SKU      string
	Quantity int
}

// SumLines merges an order's lines per SKU and sorts them by SKU, the order
// in which stock rows are locked so that concurrent orders naming the same
// SKUs in any order cannot deadlock. It refuses lines no valid order holds.
func SumLines(lines []OrderLine) ([]Line, error) {
	if len(lines) == 0 {
		return nil, errors.New("order has no lines")
	}
	sums := map[string]int64{}
	for i, l := range lines {
		if !commerce.ValidSKU(l.SKU) {
			return nil, fmt.Errorf("line %d: invalid sku %q", i, l.SKU)
		}
		if !commerce.ValidQuantity(l.Quantity) {
			return nil, fmt.Errorf("line %d: quantity %d out of range", i, l.Quantity)
		}
		sums[l.SKU] += int64(l.Quantity)
	}
	out := make([]Line, 0, len(sums))
	for sku, q := range sums {
		out = append(out, Line{SKU: sku, Quantity: q})
	}
	slices.SortFunc(out, func(a, b Line) int { return strings.Compare(a.SKU, b.SKU) })
	return out, nil
}

// Reasons a line cannot be reserved.
const (
	ShortInsufficientStock = "INSUFFICIENT_STOCK"
	ShortUnknownSKU        = "UNKNOWN_SKU"
)

// Shortfall is a line that cannot be reserved and why.
type Shortfall struct {
	SKU       string
	Requested int64
	Available int64
	Reason    string
}

// Stock is the part of an item reservation arithmetic needs.
type Stock struct {
	OnHand   int64
	Reserved int64
}

// Shortfalls returns the lines stock cannot cover, in the lines' order; an
// order is reservable only when there are none (all-or-nothing). A SKU
// missing from stock is unknown. Lines must be summed per SKU (SumLines).
func Shortfalls(lines []Line, stock map[string]Stock) []Shortfall {
	var short []Shortfall
	for _, l := range lines {
		s, ok := stock[l.SKU]
		switch {
		case !ok:
			short = append(short, Shortfall{SKU: l.SKU, Requested: l.Quantity, Available: 0, Reason: ShortUnknownSKU})
		case s.OnHand-s.Reserved < l.Quantity:
			short = append(short, Shortfall{SKU: l.SKU, Requested: l.Quantity, Available: max(s.OnHand-s.Reserved, 0), Reason: ShortInsufficientStock})
		}
	}
	return short
}

// Reservation requests, cancellations and shipments arrive as order
// events; these read them. A malformed event fails permanently
// (events.IsPermanent): no retry makes it readable.

// ReservationRequest is what ORDER_CREATED asks inventory to reserve: the
// order's lines summed per SKU, in locking order (SumLines).
type ReservationRequest struct {
	OrderID uuid.UUID
	Lines   []Line
}

// ReadReservation reads ORDER_CREATED. An order whose lines no valid order
// holds (no lines, a bad SKU, a quantity out of range) is malformed.
func ReadReservation(ev events.Envelope) (ReservationRequest, error) {
	var d events.OrderCreatedData
	if err := ev.DecodeData(&d); err != nil {
		return ReservationRequest{}, err
	}
	orderID, err := parseOrderID(ev, d.OrderID)
	if err != nil {
		return ReservationRequest{}, err
	}
	raw := make([]OrderLine, len(d.Items))
	for i, it := range d.Items {
		raw[i] = OrderLine{SKU: it.SKU, Quantity: it.Quantity}
	}
	lines, err := SumLines(raw)
	if err != nil {
		return ReservationRequest{}, events.Permanent(fmt.Errorf("%w: ORDER_CREATED %s of order %s: %v", events.ErrMalformed, ev.ID, orderID, err))
	}
	return ReservationRequest{OrderID: orderID, Lines: lines}, nil
}

// Cancellation is what ORDER_CANCELLED tells inventory: which order's hold
// to release, and why.
type Cancellation struct {
	OrderID uuid.UUID
	Reason  string
}

// ReadCancellation reads ORDER_CANCELLED.
func ReadCancellation(ev events.Envelope) (Cancellation, error) {
	var d events.OrderCancelledData
	if err := ev.DecodeData(&d); err != nil {
		return Cancellation{}, err
	}
	orderID, err := parseOrderID(ev, d.OrderID)
	if err != nil {
		return Cancellation{}, err
	}
	return Cancellation{OrderID: orderID, Reason: d.Reason}, nil
}

// ReadShipment reads ORDER_STATUS_UPDATED: shipped is true, with the
// order's id, when the order moved to SHIPPED — the one status change whose
// units leave the warehouse; every other change is none of inventory's
// business.
func ReadShipment(ev events.Envelope) (shipped bool, orderID uuid.UUID, err error) {
	var d events.OrderStatusUpdatedData
	if err := ev.DecodeData(&d); err != nil {
		return false, uuid.Nil, err
	}
	if d.NewStatus != events.StatusShipped {
		return false, uuid.Nil, nil
	}
	orderID, err = parseOrderID(ev, d.OrderID)
	if err != nil {
		return false, uuid.Nil, err
	}
	return true, orderID, nil
}

// parseOrderID reads the order id of an event's data, or its subject when
// the data names none.
func parseOrderID(ev events.Envelope, fromData string) (uuid.UUID, error) {
	raw := fromData
	if raw == "" {
		raw = ev.Subject
	}
	id, err := uuid.Parse(raw)
	if err != nil {
		return uuid.Nil, events.Permanent(fmt.Errorf("%w: %s event %s: order id %q is not a UUID", events.ErrMalformed, ev.Type, ev.ID, raw))
	}
	return id, nil
}

func fieldError(field, message string) error {
	return validation.Errors{{Field: field, Message: message}}
}
