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

	"github.com/trackops/trackops/internal/validation"
)

// Status is where an order is in its life.
type Status string

// Order statuses.
const (
	StatusPending    Status = "PENDING"
	StatusConfirmed  Status = "CONFIRMED"
	StatusProcessing Status = "PROCESSING"
	StatusShipped    Status = "SHIPPED"
	StatusDelivered  Status = "DELIVERED"
	StatusCancelled  Status = "CANCELLED"
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
	ErrNotFound            = errors.New("order not found")
	ErrIllegalTransition   = errors.New("illegal status transition")
	ErrVersionMismatch     = errors.New("order version does not match")
	ErrIdempotencyConflict = errors.New("idempotency key was used with a different request")
)

// Cancellation reasons the platform itself sets.
const (
	ReasonOutOfStock = "OUT_OF_STOCK"
)

// Item is one line of an order.
type Item struct {
	ID        uuid.UUID
	LineNo    int
	SKU       string
	Quantity  int
	UnitPrice Money
	LineTotal Money
}

// Order is the order aggregate.
type Order struct {
	ID              uuid.UUID
	CustomerID      string
	Status          Status
	Currency        string
	TotalAmount     Money
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
	MaxQuantity    = 10_000
	MaxUnitPrice   = Money(100_000_000_00) // 100 million in major units
	MaxCustomerLen = 100
	MaxReasonLen   = 500
	MaxAddressLen  = 4096
)

var (
	skuPattern      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)
)

// ValidSKU reports whether s is a well-formed SKU: 1–64 letters, digits,
// dots, dashes or underscores, starting with a letter or digit.
func ValidSKU(s string) bool { return skuPattern.MatchString(s) }

// NewItem is one requested line of a new order.
type NewItem struct {
	SKU       string
	Quantity  int
	UnitPrice Money
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
	case c == "":
		errs.Add("customer_id", "is required")
	case utf8.RuneCountInString(c) > MaxCustomerLen:
		errs.Add("customer_id", "must be at most %d characters", MaxCustomerLen)
	case strings.ContainsFunc(c, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		errs.Add("customer_id", "must not contain control characters")
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
	for i, it := range n.Items {
		f := fmt.Sprintf("items[%d]", i)
		if !ValidSKU(it.SKU) {
			errs.Add(f+".sku", "must be 1-64 letters, digits, '.', '-' or '_', starting with a letter or digit")
		}
		if it.Quantity < 1 || it.Quantity > MaxQuantity {
			errs.Add(f+".quantity", "must be between 1 and %d", MaxQuantity)
		}
		if it.UnitPrice < 0 || it.UnitPrice > MaxUnitPrice {
			errs.Add(f+".unit_price", "must be between 0 and %s", MaxUnitPrice)
		}
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
		line := it.UnitPrice * Money(it.Quantity)
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
func (o *Order) Transition(to Status, reason, actor string, now time.Time) (HistoryEntry, error) {
	if !CanTransition(o.Status, to) {
		return HistoryEntry{}, fmt.Errorf("%w: %s -> %s", ErrIllegalTransition, o.Status, to)
	}
	if utf8.RuneCountInString(reason) > MaxReasonLen {
		return HistoryEntry{}, validation.Errors{{Field: "reason", Message: fmt.Sprintf("must be at most %d characters", MaxReasonLen)}}
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
