package cdc

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
)

// OrdersChangeTopic is the routed topic of the orders table's change events
// (the seed's RegexRouter turns trackops_orders.public.orders into it).
const OrdersChangeTopic = "orders.orders"

// eventIDSpace is the UUIDv5 namespace of event ids derived from changes.
var eventIDSpace = uuid.MustParse("4f7c1d2e-8b1a-5c3e-9d6f-2a7b8c9d0e1f")

// TransformerOptions configure an OrderTransformer.
type TransformerOptions struct {
	// OnOrderChange, when set, is called after every change of an order row
	// has been handled (events published), e.g. to invalidate a cache.
	// version is the row's version after the change (before it, for deletes).
	OnOrderChange func(ctx context.Context, orderID string, version int)
	// Logger receives skipped-record notices.
	Logger *slog.Logger
}

// OrderTransformer turns change events of the orders table into the
// application events the outbox strategy publishes — ORDER_CREATED,
// ORDER_STATUS_UPDATED, ORDER_CANCELLED — in the same CloudEvents form, so
// consumers cannot tell which strategy runs. Event ids are derived from the
// order id, event type and version, so a redelivered change publishes the
// same event again (consumers dedupe by id).
//
// It reads change events of TrackOps' connector and of an external Debezium
// (JSON converter, with or without schemas). Snapshot records ("r") publish
// nothing: they describe orders that already exist, not a change.
type OrderTransformer struct {
	pool     *pgxpool.Pool
	producer *kgo.Client
	opts     TransformerOptions
	log      *slog.Logger
}

// NewOrderTransformer returns a transformer reading order items and status
// history from pool and publishing with producer.
func NewOrderTransformer(pool *pgxpool.Pool, producer *kgo.Client, opts TransformerOptions) *OrderTransformer {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &OrderTransformer{pool: pool, producer: producer, opts: opts, log: opts.Logger.With("component", "cdc-transformer")}
}

// Handle is a kafka.Handler for the orders change topic.
func (t *OrderTransformer) Handle(ctx context.Context, rec *kgo.Record) error {
	if len(bytes.TrimSpace(rec.Value)) == 0 || string(bytes.TrimSpace(rec.Value)) == "null" {
		return nil // tombstone
	}
	ce, err := decodeChange(rec.Value)
	if err != nil {
		return kafka.Permanent(fmt.Errorf("%w: change event: %v", events.ErrMalformed, err))
	}
	if ce.Source.Table != "" && ce.Source.Table != "orders" {
		return nil
	}
	var evs []events.Event
	var orderID string
	var version int
	switch ce.Op {
	case "c":
		o, err := ce.order(ce.After)
		if err != nil {
			return kafka.Permanent(err)
		}
		orderID, version = o.id, o.version
		ev, err := t.created(ctx, o)
		if err != nil {
			return err
		}
		evs = append(evs, ev)
	case "u":
		after, err := ce.order(ce.After)
		if err != nil {
			return kafka.Permanent(err)
		}
		orderID, version = after.id, after.version
		var before *orderRow
		if ce.Before != nil {
			if b, err := ce.order(ce.Before); err == nil && b.status != "" {
				before = &b
			}
		}
		if evs, err = t.transitions(ctx, before, after); err != nil {
			return err
		}
	case "d":
		if b, err := ce.order(ce.Before); err == nil {
			orderID, version = b.id, b.version
		}
	case "r", "t":
	default:
		return kafka.Permanent(fmt.Errorf("%w: change event op %q", events.ErrMalformed, ce.Op))
	}
	for _, ev := range evs {
		if err := t.publish(ctx, ev); err != nil {
			return err
		}
	}
	if t.opts.OnOrderChange != nil && orderID != "" {
		t.opts.OnOrderChange(ctx, orderID, version)
	}
	return nil
}

// publish writes ev as the outbox relay does: CloudEvents value, key = order id.
func (t *OrderTransformer) publish(ctx context.Context, ev events.Event) error {
	value, err := ev.Marshal()
	if err != nil {
		return kafka.Permanent(err)
	}
	rec := &kgo.Record{Topic: ev.Topic(), Key: []byte(ev.AggregateID()), Value: value}
	for k, v := range ev.Headers() {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	if err := t.producer.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("publish %s of order %s: %w", ev.Type, ev.AggregateID(), err)
	}
	return nil
}

// OrderEventID is the id of the order event of type typ that the change to
// version of the order produces: the same change always yields the same id,
// which is also how the order journey finds the events of an order under
// the cdc strategy.
func OrderEventID(orderID, typ string, version int) string {
	return uuid.NewSHA1(eventIDSpace, []byte(orderID+"/"+typ+"/"+strconv.Itoa(version))).String()
}

// newEvent is events.New with an id derived from (order, type, version) and
// the change's own time, so the same change always yields the same event.
func newEvent(typ, orderID string, version int, at time.Time, data any) (events.Event, error) {
	ev, err := events.New(typ, events.AggregateOrder, orderID, data, "")
	if err != nil {
		return events.Event{}, err
	}
	id := OrderEventID(orderID, typ, version)
	ev.ID, ev.CorrelationID = id, id
	if !at.IsZero() {
		ev.Time = at.UTC()
	}
	return ev, nil
}

func (t *OrderTransformer) created(ctx context.Context, o orderRow) (events.Event, error) {
	rows, err := t.pool.Query(ctx, `SELECT sku, quantity, unit_price::text FROM order_items WHERE order_id = $1 ORDER BY line_no`, o.id)
	if err != nil {
		return events.Event{}, fmt.Errorf("read items of order %s: %w", o.id, err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (events.OrderItem, error) {
		var it events.OrderItem
		err := r.Scan(&it.SKU, &it.Quantity, &it.UnitPrice)
		return it, err
	})
	if err != nil {
		return events.Event{}, fmt.Errorf("read items of order %s: %w", o.id, err)
	}
	if items == nil {
		items = []events.OrderItem{}
	}
	return newEvent(events.OrderCreated, o.id, o.version, o.createdAt, events.OrderCreatedData{
		OrderID: o.id, CustomerID: o.customerID, Status: o.status, Items: items,
		TotalAmount: o.total, Currency: o.currency, Version: o.version, CreatedAt: o.createdAt,
	})
}

type historyRow struct {
	from, to, reason, actor string
	version                 int
	at                      time.Time
}

// transitions publishes one event per status change the update made. The
// status history (written in the same transaction) supplies the actor and
// reason and covers several transitions folded into one row update.
func (t *OrderTransformer) transitions(ctx context.Context, before *orderRow, after orderRow) ([]events.Event, error) {
	from := after.version
	if before != nil {
		if before.version >= after.version {
			return nil, nil // no new version: not a status change
		}
		from = before.version + 1
	}
	rows, err := t.pool.Query(ctx, `SELECT coalesce(from_status, ''), to_status, coalesce(reason, ''), actor, version, changed_at
FROM order_status_history WHERE order_id = $1 AND version BETWEEN $2 AND $3 ORDER BY version, id`, after.id, from, after.version)
	if err != nil {
		return nil, fmt.Errorf("read status history of order %s: %w", after.id, err)
	}
	hist, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (historyRow, error) {
		var h historyRow
		err := r.Scan(&h.from, &h.to, &h.reason, &h.actor, &h.version, &h.at)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("read status history of order %s: %w", after.id, err)
	}
	if len(hist) == 0 {
		// Written outside the order service: derive the change from the images.
		if before == nil || before.status == after.status {
			return nil, nil
		}
		hist = []historyRow{{from: before.status, to: after.status, reason: after.cancelReason, version: after.version, at: after.updatedAt}}
	}
	var out []events.Event
	for _, h := range hist {
		var (
			ev  events.Event
			err error
		)
		if h.to == "CANCELLED" {
			ev, err = newEvent(events.OrderCancelled, after.id, h.version, h.at, events.OrderCancelledData{
				OrderID: after.id, PreviousStatus: h.from, Reason: h.reason, Actor: h.actor, Version: h.version, CancelledAt: h.at,
			})
		} else {
			ev, err = newEvent(events.OrderStatusUpdated, after.id, h.version, h.at, events.OrderStatusUpdatedData{
				OrderID: after.id, OldStatus: h.from, NewStatus: h.to, Reason: h.reason, Actor: h.actor, Version: h.version, UpdatedAt: h.at,
			})
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

// changeEvent is a Debezium change event value, with or without schema.
type changeEvent struct {
	Before map[string]json.RawMessage `json:"before"`
	After  map[string]json.RawMessage `json:"after"`
	Source struct {
		Table string `json:"table"`
	} `json:"source"`
	Op string `json:"op"`
	// scales are numeric columns' scales from the schema, when present.
	scales map[string]int
}

func decodeChange(value []byte) (*changeEvent, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(value, &top); err != nil {
		return nil, err
	}
	body := value
	scales := map[string]int{}
	if payload, ok := top["payload"]; ok {
		if _, hasOp := top["op"]; !hasOp {
			body = payload
			if schema, ok := top["schema"]; ok {
				collectScales(schema, scales)
			}
		}
	}
	var ce changeEvent
	if err := json.Unmarshal(body, &ce); err != nil {
		return nil, err
	}
	if ce.Op == "" {
		return nil, errors.New("no op")
	}
	ce.scales = scales
	return &ce, nil
}

// collectScales finds Decimal fields' scale parameters in a Connect schema.
func collectScales(schema json.RawMessage, out map[string]int) {
	var s struct {
		Field      string            `json:"field"`
		Parameters map[string]string `json:"parameters"`
		Fields     []json.RawMessage `json:"fields"`
	}
	if json.Unmarshal(schema, &s) != nil {
		return
	}
	if sc, ok := s.Parameters["scale"]; ok && s.Field != "" {
		if n, err := strconv.Atoi(sc); err == nil {
			out[s.Field] = n
		}
	}
	for _, f := range s.Fields {
		collectScales(f, out)
	}
}

// orderRow is the orders columns the events need.
type orderRow struct {
	id, customerID, status, currency, total, cancelReason string
	version                                               int
	createdAt, updatedAt                                  time.Time
}

func (ce *changeEvent) order(img map[string]json.RawMessage) (orderRow, error) {
	if img == nil {
		return orderRow{}, fmt.Errorf("%w: change event without a row image", events.ErrMalformed)
	}
	var o orderRow
	str := func(k string) string {
		var s string
		_ = json.Unmarshal(img[k], &s)
		return s
	}
	o.id = str("id")
	if o.id == "" {
		return orderRow{}, fmt.Errorf("%w: change event without order id", events.ErrMalformed)
	}
	o.customerID, o.status, o.currency, o.cancelReason = str("customer_id"), str("status"), strings.TrimSpace(str("currency")), str("cancel_reason")
	if v, ok := img["version"]; ok {
		_ = json.Unmarshal(v, &o.version)
	}
	o.total = decimalText(img["total_amount"], ce.scaleOf("total_amount", 2))
	o.createdAt = timeValue(img["created_at"])
	o.updatedAt = timeValue(img["updated_at"])
	return o, nil
}

func (ce *changeEvent) scaleOf(field string, def int) int {
	if s, ok := ce.scales[field]; ok {
		return s
	}
	return def
}

var decimalRe = regexp.MustCompile(`^-?\d+(\.\d+)?$`)

// decimalText reads a numeric in any decimal.handling.mode: a decimal
// string, a double, Connect's Decimal (base64 unscaled integer) or
// Debezium's VariableScaleDecimal.
func decimalText(raw json.RawMessage, scale int) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if decimalRe.MatchString(s) {
			return s
		}
		if b, err := base64.StdEncoding.DecodeString(s); err == nil {
			return unscaledText(b, scale)
		}
		return s
	}
	var f float64
	if json.Unmarshal(raw, &f) == nil {
		return strconv.FormatFloat(f, 'f', scale, 64)
	}
	var vs struct {
		Scale int    `json:"scale"`
		Value string `json:"value"`
	}
	if json.Unmarshal(raw, &vs) == nil {
		if b, err := base64.StdEncoding.DecodeString(vs.Value); err == nil {
			return unscaledText(b, vs.Scale)
		}
	}
	return ""
}

// unscaledText renders a big-endian two's-complement unscaled integer.
func unscaledText(b []byte, scale int) string {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	s := n.String()
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	if scale > 0 {
		for len(s) <= scale {
			s = "0" + s
		}
		s = s[:len(s)-scale] + "." + s[len(s)-scale:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// timeValue reads a timestamptz as ZonedTimestamp (ISO string) or, from a
// connector set up otherwise, epoch micros or millis.
func timeValue(raw json.RawMessage) time.Time {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err == nil {
			return t.UTC()
		}
		return time.Time{}
	}
	var n int64
	if json.Unmarshal(raw, &n) == nil {
		if n > 1e14 { // micros
			return time.UnixMicro(n).UTC()
		}
		return time.UnixMilli(n).UTC()
	}
	return time.Time{}
}
