package order

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/cdc"
	"github.com/trackops/trackops/internal/commerce"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/logging"
)

// The cdc strategy: TrackOps' own connector captures the order tables, and
// ChangeStream turns each committed transaction into the order events the
// outbox strategy would have written for it.

// ConnectorName is the built-in connector of the cdc strategy.
const ConnectorName = "trackops-orders-connector"

// Change topics of the built-in connector: the seed's RegexRouter turns
// trackops_orders.public.<table> into orders.<table>.
const (
	ChangeTopic        = "orders.orders"
	ItemsChangeTopic   = "orders.order_items"
	HistoryChangeTopic = "orders.order_status_history"
)

// The captured tables.
const (
	tableSchema  = "public"
	ordersTable  = "orders"
	itemsTable   = "order_items"
	historyTable = "order_status_history"
)

// ConnectorConfig is the seed's trackops-orders-connector configuration
// pointed at databaseURL, with two changes: decimal.handling.mode=string,
// because TrackOps' consumers read money as decimal strings, and
// order_status_history captured beside orders and order_items, because its
// rows carry the actor, reason and correlation id of each status change.
func ConnectorConfig(databaseURL string) (map[string]string, error) {
	db, err := cdc.DatabaseKeys(databaseURL)
	if err != nil {
		return nil, err
	}
	cfg := map[string]string{
		"connector.class":              cdc.ConnectorClass,
		"database.server.name":         "trackops_orders",
		"topic.prefix":                 "trackops_orders",
		"table.include.list":           "public.orders,public.order_items,public.order_status_history",
		"plugin.name":                  "pgoutput",
		"slot.name":                    "debezium_orders",
		"publication.name":             "debezium_publication",
		"publication.autocreate.mode":  cdc.PublicationFiltered,
		"decimal.handling.mode":        cdc.DecimalString,
		"transforms":                   "route",
		"transforms.route.type":        "org.apache.kafka.connect.transforms.RegexRouter",
		"transforms.route.regex":       "trackops_orders.public.(.*)",
		"transforms.route.replacement": "orders.$1",
	}
	for k, v := range db {
		cfg[k] = v
	}
	if cfg["database.user"] == "" {
		cfg["database.user"] = "postgres"
	}
	return cfg, nil
}

// ChangeStream is the order domain's cdc.TxTransform. From the rows one
// committed transaction wrote to orders, order_items and
// order_status_history — never from a read of the live tables, which may
// not show the transaction yet or may show a later state — it builds, with
// the outbox's own constructors (CreatedEvent, TransitionEvent):
//
//   - ORDER_CREATED for each inserted order, with the items the same
//     transaction inserted;
//   - ORDER_STATUS_UPDATED or ORDER_CANCELLED for each status change: from
//     the status-history row of the new version (actor, reason, time,
//     correlation id), or — for a change written by hand, without a history
//     row — from the order's before and after images (orders has REPLICA
//     IDENTITY FULL).
//
// Event ids are EventID's, so a transaction streamed again after a crash
// yields the same events. Once Kafka holds them, the cache of each order
// the transaction updated or deleted is refreshed, once per transaction. A
// new order has nothing cached to refresh (as under the outbox strategy,
// CacheTopics): its first read loads it.
type ChangeStream struct {
	refresh *Service
	log     *slog.Logger
}

// NewChangeStream returns the transform. svc refreshes the order cache;
// nil leaves the cache alone.
func NewChangeStream(svc *Service, log *slog.Logger) *ChangeStream {
	if log == nil {
		log = slog.Default()
	}
	return &ChangeStream{refresh: svc, log: log}
}

var _ cdc.TxTransform = (*ChangeStream)(nil)

// Captures implements cdc.TxTransform: the three order tables.
func (cs *ChangeStream) Captures(schema, table string) bool {
	return schema == tableSchema && (table == ordersTable || table == itemsTable || table == historyTable)
}

// Transaction implements cdc.TxTransform.
func (cs *ChangeStream) Transaction(ctx context.Context, tx *cdc.Transaction) (cdc.Derived, error) {
	out := TransactionEvents(ctx, tx)
	for _, p := range out.Skipped {
		cs.log.Warn("order change not turned into an event", "txid", tx.XID, "problem", p)
	}
	var d cdc.Derived
	for _, ev := range out.Events {
		rec, err := eventRecord(ev)
		if err != nil {
			return cdc.Derived{}, err
		}
		d.Records = append(d.Records, rec)
	}
	if cs.refresh != nil && len(out.Changed) > 0 {
		changed := out.Changed
		d.AfterAck = func(ctx context.Context) {
			for _, c := range changed {
				cs.refresh.RefreshCached(ctx, c.ID, c.Version)
			}
		}
	}
	return d, nil
}

// eventRecord is the Kafka record of ev, as the outbox relay publishes it:
// key = order id, CloudEvents value, the event's headers.
func eventRecord(ev events.Event) (*kgo.Record, error) {
	value, err := ev.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encode %s of order %s: %w", ev.Type, ev.AggregateID(), err)
	}
	rec := &kgo.Record{Topic: ev.Topic(), Key: []byte(ev.AggregateID()), Value: value}
	hs := ev.Headers()
	keys := make([]string, 0, len(hs))
	for k := range hs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: []byte(hs[k])})
	}
	return rec, nil
}

// TxEvents are the order events of one transaction.
type TxEvents struct {
	// Events in the order the transaction made the changes.
	Events []events.Event
	// Changed are the orders the transaction updated or deleted, each at
	// its last version (a deleted order at its version + 1, as the cache
	// wants). Orders it inserted are not: nothing can be cached for them
	// yet, unless the same transaction also updated them.
	Changed []ChangedOrder
	// Skipped describes changes no event could be built from.
	Skipped []string
}

// ChangedOrder is an order a transaction changed and its version after it.
type ChangedOrder struct {
	ID      uuid.UUID
	Version int
}

// historyKey finds the status-history row of one order version.
type historyKey struct {
	order   uuid.UUID
	version int
}

// historyRow is a status-history row with what the events carry besides
// the HistoryEntry: the request's correlation id and trace context.
type historyRow struct {
	HistoryEntry
	correlationID, traceParent string
}

// TransactionEvents builds the order events of one committed transaction
// from its rows alone (plain Go, no I/O).
func TransactionEvents(ctx context.Context, tx *cdc.Transaction) TxEvents {
	var out TxEvents
	items := map[uuid.UUID][]Item{}
	history := map[historyKey]historyRow{}
	for _, ch := range tx.Changes {
		if ch.Schema != tableSchema || ch.Op != cdc.OpCreate {
			continue
		}
		switch ch.Table {
		case itemsTable:
			orderID, it, err := itemFromRow(ch.After)
			if err != nil {
				out.Skipped = append(out.Skipped, fmt.Sprintf("order_items row at %d: %v", ch.LSN, err))
				continue
			}
			items[orderID] = append(items[orderID], it)
		case historyTable:
			orderID, h, err := historyFromRow(ch.After)
			if err != nil {
				out.Skipped = append(out.Skipped, fmt.Sprintf("order_status_history row at %d: %v", ch.LSN, err))
				continue
			}
			history[historyKey{orderID, h.Version}] = h
		}
	}

	changed := map[uuid.UUID]int{}
	var changedOrder []uuid.UUID
	touch := func(id uuid.UUID, version int) {
		if v, ok := changed[id]; !ok {
			changedOrder = append(changedOrder, id)
		} else if v > version {
			return
		}
		changed[id] = version
	}
	add := func(ev events.Event, err error, h historyRow) {
		if err != nil {
			out.Skipped = append(out.Skipped, err.Error())
			return
		}
		ev.TraceParent = h.traceParent
		out.Events = append(out.Events, ev)
	}
	for _, ch := range tx.Changes {
		if ch.Schema != tableSchema || ch.Table != ordersTable {
			continue
		}
		switch ch.Op {
		case cdc.OpCreate:
			o, err := orderFromRow(ch.After)
			if err != nil {
				out.Skipped = append(out.Skipped, fmt.Sprintf("orders insert at %d: %v", ch.LSN, err))
				continue
			}
			o.Items = items[o.ID]
			sort.SliceStable(o.Items, func(i, j int) bool { return o.Items[i].LineNo < o.Items[j].LineNo })
			h := history[historyKey{o.ID, o.Version}]
			ev, err := CreatedEvent(withCorrelation(ctx, h), o)
			add(ev, err, h)
		case cdc.OpUpdate:
			after, err := orderFromRow(ch.After)
			if err != nil {
				out.Skipped = append(out.Skipped, fmt.Sprintf("orders update at %d: %v", ch.LSN, err))
				continue
			}
			touch(after.ID, after.Version)
			h, ok := history[historyKey{after.ID, after.Version}]
			if !ok {
				// Written without the order service (psql): the images say
				// what changed; no actor, and the commit is when.
				before, err := orderFromRow(ch.Before)
				if err != nil || before.Status == after.Status {
					continue // not a status change (or no old image to tell)
				}
				h.HistoryEntry = HistoryEntry{FromStatus: before.Status, ToStatus: after.Status, Version: after.Version,
					ChangedAt: tx.CommitTime.UTC().Truncate(time.Microsecond)}
				if after.Status == StatusCancelled {
					h.Reason = after.CancelReason
				}
			} else if h.FromStatus == h.ToStatus {
				continue
			}
			ev, err := TransitionEvent(withCorrelation(ctx, h), after, h.HistoryEntry)
			add(ev, err, h)
		case cdc.OpDelete:
			if before, err := orderFromRow(ch.Before); err == nil {
				touch(before.ID, before.Version+1)
			}
		}
	}
	for _, id := range changedOrder {
		out.Changed = append(out.Changed, ChangedOrder{ID: id, Version: changed[id]})
	}
	return out
}

func withCorrelation(ctx context.Context, h historyRow) context.Context {
	if h.correlationID == "" {
		return ctx
	}
	return logging.WithCorrelationID(ctx, h.correlationID)
}

// orderFromRow reads an orders row image.
func orderFromRow(r cdc.Row) (*Order, error) {
	if r.Empty() {
		return nil, fmt.Errorf("no row image")
	}
	var (
		o   Order
		err error
	)
	idText, _ := r.Text("id")
	if o.ID, err = uuid.Parse(idText); err != nil {
		return nil, fmt.Errorf("id %q: %w", idText, err)
	}
	o.CustomerID, _ = r.Text("customer_id")
	status, _ := r.Text("status")
	o.Status = Status(status)
	currency, _ := r.Text("currency")
	o.Currency = strings.TrimSpace(currency)
	if total, ok := r.Text("total_amount"); ok {
		if o.TotalAmount, err = commerce.ParseMoney(total); err != nil {
			return nil, fmt.Errorf("order %s total_amount %q: %w", o.ID, total, err)
		}
	}
	if addr, ok := r.Text("shipping_address"); ok {
		o.ShippingAddress = json.RawMessage(addr)
	}
	o.CancelReason, _ = r.Text("cancel_reason")
	if o.Version, err = intColumn(r, "version"); err != nil {
		return nil, fmt.Errorf("order %s: %w", o.ID, err)
	}
	o.CreatedAt, _ = timeColumn(r, "created_at")
	o.UpdatedAt, _ = timeColumn(r, "updated_at")
	return &o, nil
}

// itemFromRow reads an order_items row image.
func itemFromRow(r cdc.Row) (uuid.UUID, Item, error) {
	var (
		it  Item
		err error
	)
	orderText, _ := r.Text("order_id")
	orderID, err := uuid.Parse(orderText)
	if err != nil {
		return uuid.Nil, Item{}, fmt.Errorf("order_id %q: %w", orderText, err)
	}
	idText, _ := r.Text("id")
	it.ID, _ = uuid.Parse(idText)
	it.SKU, _ = r.Text("sku")
	if it.LineNo, err = intColumn(r, "line_no"); err != nil {
		return uuid.Nil, Item{}, err
	}
	if it.Quantity, err = intColumn(r, "quantity"); err != nil {
		return uuid.Nil, Item{}, err
	}
	for col, m := range map[string]*commerce.Money{"unit_price": &it.UnitPrice, "line_total": &it.LineTotal} {
		if v, ok := r.Text(col); ok {
			if *m, err = commerce.ParseMoney(v); err != nil {
				return uuid.Nil, Item{}, fmt.Errorf("%s %q: %w", col, v, err)
			}
		}
	}
	return orderID, it, nil
}

// historyFromRow reads an order_status_history row image.
func historyFromRow(r cdc.Row) (uuid.UUID, historyRow, error) {
	var h historyRow
	orderText, _ := r.Text("order_id")
	orderID, err := uuid.Parse(orderText)
	if err != nil {
		return uuid.Nil, h, fmt.Errorf("order_id %q: %w", orderText, err)
	}
	from, _ := r.Text("from_status")
	to, _ := r.Text("to_status")
	h.FromStatus, h.ToStatus = Status(from), Status(to)
	h.Reason, _ = r.Text("reason")
	h.Actor, _ = r.Text("actor")
	if h.Version, err = intColumn(r, "version"); err != nil {
		return uuid.Nil, h, err
	}
	h.ChangedAt, _ = timeColumn(r, "changed_at")
	h.correlationID, _ = r.Text("correlation_id")
	h.traceParent, _ = r.Text("traceparent")
	return orderID, h, nil
}

func intColumn(r cdc.Row, col string) (int, error) {
	v, ok := r.Text(col)
	if !ok {
		return 0, fmt.Errorf("%s is missing", col)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s %q: %w", col, v, err)
	}
	return n, nil
}

// timeLayouts read timestamptz in PostgreSQL's ISO output; the replication
// connection runs in UTC, so the offset is "+00".
var timeLayouts = []string{"2006-01-02 15:04:05.999999999-07", "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999999-07:00:00"}

func timeColumn(r cdc.Row, col string) (time.Time, bool) {
	v, ok := r.Text(col)
	if !ok {
		return time.Time{}, false
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}
