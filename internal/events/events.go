// Package events is the contract the parts of TrackOps talk through: the
// application events' types, the Kafka topics they travel on, their
// CloudEvents 1.0 JSON encoding and payloads, and what a handler of them is
// (Handler) and how it says a failure is permanent (Permanent). It names no
// transport: the Kafka consumer runner adapts records to it.
//
// Every event is published to the topic named like its type, keyed by its
// aggregate id, so all events of one order land on one partition in order.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Event types; each is also the name of the Kafka topic it is published to.
const (
	OrderCreated               = "ORDER_CREATED"
	OrderStatusUpdated         = "ORDER_STATUS_UPDATED"
	OrderCancelled             = "ORDER_CANCELLED"
	InventoryReserved          = "INVENTORY_RESERVED"
	InventoryReservationFailed = "INVENTORY_RESERVATION_FAILED"
	InventoryReleased          = "INVENTORY_RELEASED"
)

// AllTypes lists every application event type, which is also every
// application topic.
var AllTypes = []string{
	OrderCreated, OrderStatusUpdated, OrderCancelled,
	InventoryReserved, InventoryReservationFailed, InventoryReleased,
}

// DLQSuffix is appended to a topic's name to form its dead-letter topic.
const DLQSuffix = ".dlq"

// Kafka header names carried by every application event.
const (
	HeaderEventType     = "event_type"
	HeaderEventID       = "event_id"
	HeaderCorrelationID = "correlation_id"
	HeaderTraceParent   = "traceparent"
	HeaderContentType   = "content-type"
)

// Aggregate types.
const (
	AggregateOrder     = "order"
	AggregateInventory = "inventory"
)

// Source is the CloudEvents source attribute of events TrackOps emits.
const Source = "/trackops"

// SpecVersion is the CloudEvents version TrackOps speaks.
const SpecVersion = "1.0"

// ContentType is the datacontenttype of every event's data.
const ContentType = "application/json"

// Envelope is a CloudEvents 1.0 event in structured JSON mode.
type Envelope struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	CorrelationID   string          `json:"correlationid,omitempty"`
	Data            json.RawMessage `json:"data"`
}

// Event is an application event ready to be written to the outbox or Kafka.
type Event struct {
	Envelope
	// AggregateType names what AggregateID identifies, e.g. "order".
	AggregateType string
	// TraceParent is the W3C trace context of the request that caused it.
	TraceParent string
}

// AggregateID is the id the event is about; it is the Kafka record key.
func (e Event) AggregateID() string { return e.Subject }

// Topic is the Kafka topic the event is published to.
func (e Event) Topic() string { return e.Type }

// New builds an event of type typ about aggregate id, with data encoded as
// JSON. The correlation id ties it to the request or event that caused it.
func New(typ, aggregateType, aggregateID string, data any, correlationID string) (Event, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s data: %w", typ, err)
	}
	id := uuid.New().String()
	if correlationID == "" {
		correlationID = id
	}
	return Event{
		Envelope: Envelope{
			SpecVersion:     SpecVersion,
			ID:              id,
			Source:          Source,
			Type:            typ,
			Subject:         aggregateID,
			Time:            time.Now().UTC(),
			DataContentType: ContentType,
			CorrelationID:   correlationID,
			Data:            raw,
		},
		AggregateType: aggregateType,
	}, nil
}

// Marshal encodes the CloudEvents envelope, the Kafka record value.
func (e Event) Marshal() ([]byte, error) { return json.Marshal(e.Envelope) }

// Headers returns the Kafka headers that travel with the event.
func (e Event) Headers() map[string]string {
	h := map[string]string{
		HeaderEventType:     e.Type,
		HeaderEventID:       e.ID,
		HeaderCorrelationID: e.CorrelationID,
		HeaderContentType:   "application/cloudevents+json",
	}
	if e.TraceParent != "" {
		h[HeaderTraceParent] = e.TraceParent
	}
	return h
}

// ErrMalformed marks a record that can never be decoded as an event; such a
// record belongs in the dead-letter topic at once, not after retries.
var ErrMalformed = errors.New("malformed event")

// Decode parses a CloudEvents JSON record value and checks the attributes
// consumers rely on.
func Decode(value []byte) (Envelope, error) {
	var env Envelope
	if err := json.Unmarshal(value, &env); err != nil {
		return Envelope{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch {
	case env.SpecVersion != SpecVersion:
		return Envelope{}, fmt.Errorf("%w: specversion %q, want %q", ErrMalformed, env.SpecVersion, SpecVersion)
	case env.ID == "":
		return Envelope{}, fmt.Errorf("%w: missing id", ErrMalformed)
	case env.Type == "":
		return Envelope{}, fmt.Errorf("%w: missing type", ErrMalformed)
	case env.Subject == "":
		return Envelope{}, fmt.Errorf("%w: missing subject", ErrMalformed)
	case len(env.Data) == 0 || string(env.Data) == "null":
		return Envelope{}, fmt.Errorf("%w: missing data", ErrMalformed)
	}
	return env, nil
}

// DecodeData decodes the event's data into v, reporting ErrMalformed when it
// does not fit.
func (e Envelope) DecodeData(v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("%w: %s data: %v", ErrMalformed, e.Type, err)
	}
	return nil
}
