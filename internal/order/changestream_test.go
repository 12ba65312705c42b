package order_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/trackops/trackops/internal/cdc"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/logging"
	"github.com/trackops/trackops/internal/order"
)

// Row images as the replication connection renders them (text format, UTC).

func str(s string) *string { return &s }

const pgTime = "2006-01-02 15:04:05.999999-07"

func ordersRow(id uuid.UUID, status string, version int, at time.Time, cancelReason string) cdc.Row {
	var reason *string
	if cancelReason != "" {
		reason = str(cancelReason)
	}
	return cdc.NewRow(map[string]*string{
		"id": str(id.String()), "customer_id": str("cust-7"), "status": str(status), "currency": str("EUR"),
		"total_amount": str("44.97"), "shipping_address": str(`{"city": "Oslo"}`), "cancel_reason": reason,
		"version": str(strconv.Itoa(version)), "created_at": str(created.Format(pgTime)), "updated_at": str(at.Format(pgTime)),
	})
}

func itemRow(orderID uuid.UUID, line int, sku string, qty int, price string) cdc.Row {
	return cdc.NewRow(map[string]*string{
		"id": str(uuid.NewString()), "order_id": str(orderID.String()), "line_no": str(strconv.Itoa(line)), "sku": str(sku),
		"quantity": str(strconv.Itoa(qty)), "unit_price": str(price), "line_total": str(price),
	})
}

func historyRow(orderID uuid.UUID, from, to, reason, actor string, version int, at time.Time, corr, trace string) cdc.Row {
	opt := func(s string) *string {
		if s == "" {
			return nil
		}
		return str(s)
	}
	return cdc.NewRow(map[string]*string{
		"id": str("1"), "order_id": str(orderID.String()), "from_status": opt(from), "to_status": str(to), "reason": opt(reason),
		"actor": str(actor), "version": str(strconv.Itoa(version)), "changed_at": str(at.Format(pgTime)),
		"correlation_id": opt(corr), "traceparent": opt(trace),
	})
}

func change(op cdc.Op, table string, before, after cdc.Row) cdc.Change {
	return cdc.Change{Op: op, Schema: "public", Table: table, Before: before, After: after}
}

var (
	created = time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)
	later   = created.Add(90 * time.Second)
	commit  = created.Add(3 * time.Minute)
)

const traceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

// placed is the order the creation transactions write, as the service
// holds it before writing (what the outbox's CreatedEvent is built from).
func placed(id uuid.UUID) *order.Order {
	return &order.Order{ID: id, CustomerID: "cust-7", Status: order.StatusPending, Currency: "EUR", TotalAmount: 4497,
		Version: 1, CreatedAt: created, UpdatedAt: created, Items: []order.Item{
			{LineNo: 1, SKU: "SKU-A", Quantity: 2, UnitPrice: 1999},
			{LineNo: 2, SKU: "SKU-B", Quantity: 1, UnitPrice: 499},
		}}
}

// outboxEvent is what the outbox strategy writes for the same change: the
// same constructor, with the request's correlation id and trace context.
func outboxEvent(t *testing.T, corr string, build func(ctx context.Context) (events.Event, error)) events.Event {
	t.Helper()
	ctx := context.Background()
	if corr != "" {
		ctx = logging.WithCorrelationID(ctx, corr)
	}
	ev, err := build(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestTransactionEvents builds the order events of hand-made transactions
// and compares each, whole (id, time, correlation id, data), with the event
// the outbox strategy writes for the same change.
func TestTransactionEvents(t *testing.T) {
	t.Parallel()
	id := uuid.MustParse("0b6f6a5e-7f43-4c1e-9a52-6f1e3c7d2a10")
	o := placed(id)
	at := func(status order.Status, version int, ts time.Time, reason string) *order.Order {
		c := *o
		c.Status, c.Version, c.UpdatedAt, c.CancelReason = status, version, ts, reason
		return &c
	}
	type want struct {
		events  []events.Event
		changed []order.ChangedOrder
		skipped int
	}
	tests := []struct {
		name    string
		changes []cdc.Change
		want    want
	}{
		{
			name: "creation with items (out of line order) and the first history row",
			changes: []cdc.Change{
				change(cdc.OpCreate, "orders", cdc.Row{}, ordersRow(id, "PENDING", 1, created, "")),
				change(cdc.OpCreate, "order_items", cdc.Row{}, itemRow(id, 2, "SKU-B", 1, "4.99")),
				change(cdc.OpCreate, "order_items", cdc.Row{}, itemRow(id, 1, "SKU-A", 2, "19.99")),
				change(cdc.OpCreate, "order_status_history", cdc.Row{}, historyRow(id, "", "PENDING", "", "api:alice", 1, created, "corr-create", traceParent)),
			},
			want: want{events: []events.Event{withTrace(outboxEvent(t, "corr-create", func(ctx context.Context) (events.Event, error) {
				return order.CreatedEvent(ctx, o)
			}), traceParent)}},
		},
		{
			name: "created and confirmed in one transaction: both events, the cache refreshed at the last version",
			changes: []cdc.Change{
				change(cdc.OpCreate, "orders", cdc.Row{}, ordersRow(id, "PENDING", 1, created, "")),
				change(cdc.OpCreate, "order_items", cdc.Row{}, itemRow(id, 2, "SKU-B", 1, "4.99")),
				change(cdc.OpCreate, "order_items", cdc.Row{}, itemRow(id, 1, "SKU-A", 2, "19.99")),
				change(cdc.OpUpdate, "orders", ordersRow(id, "PENDING", 1, created, ""), ordersRow(id, "CONFIRMED", 2, later, "")),
			},
			want: want{events: []events.Event{
				outboxEvent(t, "", func(ctx context.Context) (events.Event, error) { return order.CreatedEvent(ctx, o) }),
				outboxEvent(t, "", func(ctx context.Context) (events.Event, error) {
					return order.TransitionEvent(ctx, at(order.StatusConfirmed, 2, later, ""), order.HistoryEntry{
						FromStatus: order.StatusPending, ToStatus: order.StatusConfirmed, Version: 2, ChangedAt: commit})
				}),
			}, changed: []order.ChangedOrder{{ID: id, Version: 2}}},
		},
		{
			name: "status change with its history row: actor, reason and time from the row",
			changes: []cdc.Change{
				change(cdc.OpUpdate, "orders", ordersRow(id, "PENDING", 1, created, ""), ordersRow(id, "CONFIRMED", 2, later, "")),
				change(cdc.OpCreate, "order_status_history", cdc.Row{}, historyRow(id, "PENDING", "CONFIRMED", "reserved", order.SagaActor, 2, later, "corr-saga", "")),
			},
			want: want{events: []events.Event{outboxEvent(t, "corr-saga", func(ctx context.Context) (events.Event, error) {
				return order.TransitionEvent(ctx, at(order.StatusConfirmed, 2, later, ""), order.HistoryEntry{
					FromStatus: order.StatusPending, ToStatus: order.StatusConfirmed, Reason: "reserved", Actor: order.SagaActor, Version: 2, ChangedAt: later})
			})}, changed: []order.ChangedOrder{{ID: id, Version: 2}}},
		},
		{
			name: "update written by hand (psql), no history row: from the before and after images, at the commit",
			changes: []cdc.Change{
				change(cdc.OpUpdate, "orders", ordersRow(id, "CONFIRMED", 2, later, ""), ordersRow(id, "PROCESSING", 3, later, "")),
			},
			want: want{events: []events.Event{outboxEvent(t, "", func(ctx context.Context) (events.Event, error) {
				return order.TransitionEvent(ctx, at(order.StatusProcessing, 3, later, ""), order.HistoryEntry{
					FromStatus: order.StatusConfirmed, ToStatus: order.StatusProcessing, Version: 3, ChangedAt: commit})
			})}, changed: []order.ChangedOrder{{ID: id, Version: 3}}},
		},
		{
			name: "cancellation written by hand: ORDER_CANCELLED with the row's cancel_reason",
			changes: []cdc.Change{
				change(cdc.OpUpdate, "orders", ordersRow(id, "PENDING", 1, created, ""), ordersRow(id, "CANCELLED", 2, created, "fraud")),
			},
			want: want{events: []events.Event{outboxEvent(t, "", func(ctx context.Context) (events.Event, error) {
				return order.TransitionEvent(ctx, at(order.StatusCancelled, 2, created, "fraud"), order.HistoryEntry{
					FromStatus: order.StatusPending, ToStatus: order.StatusCancelled, Reason: "fraud", Version: 2, ChangedAt: commit})
			})}, changed: []order.ChangedOrder{{ID: id, Version: 2}}},
		},
		{
			name: "cancellation through the service",
			changes: []cdc.Change{
				change(cdc.OpUpdate, "orders", ordersRow(id, "CONFIRMED", 2, later, ""), ordersRow(id, "CANCELLED", 3, later, "customer asked")),
				change(cdc.OpCreate, "order_status_history", cdc.Row{}, historyRow(id, "CONFIRMED", "CANCELLED", "customer asked", "api:bob", 3, later, "corr-cancel", traceParent)),
			},
			want: want{events: []events.Event{withTrace(outboxEvent(t, "corr-cancel", func(ctx context.Context) (events.Event, error) {
				return order.TransitionEvent(ctx, at(order.StatusCancelled, 3, later, "customer asked"), order.HistoryEntry{
					FromStatus: order.StatusConfirmed, ToStatus: order.StatusCancelled, Reason: "customer asked", Actor: "api:bob", Version: 3, ChangedAt: later})
			}), traceParent)}, changed: []order.ChangedOrder{{ID: id, Version: 3}}},
		},
		{
			name: "two transitions in one transaction: two events in order, the cache refreshed once at the last version",
			changes: []cdc.Change{
				change(cdc.OpUpdate, "orders", ordersRow(id, "CONFIRMED", 2, later, ""), ordersRow(id, "PROCESSING", 3, later, "")),
				change(cdc.OpCreate, "order_status_history", cdc.Row{}, historyRow(id, "CONFIRMED", "PROCESSING", "", "api:ops", 3, later, "corr-x", "")),
				change(cdc.OpUpdate, "orders", ordersRow(id, "PROCESSING", 3, later, ""), ordersRow(id, "SHIPPED", 4, later, "")),
				change(cdc.OpCreate, "order_status_history", cdc.Row{}, historyRow(id, "PROCESSING", "SHIPPED", "", "api:ops", 4, later, "corr-x", "")),
			},
			want: want{events: []events.Event{
				outboxEvent(t, "corr-x", func(ctx context.Context) (events.Event, error) {
					return order.TransitionEvent(ctx, at(order.StatusProcessing, 3, later, ""), order.HistoryEntry{
						FromStatus: order.StatusConfirmed, ToStatus: order.StatusProcessing, Actor: "api:ops", Version: 3, ChangedAt: later})
				}),
				outboxEvent(t, "corr-x", func(ctx context.Context) (events.Event, error) {
					return order.TransitionEvent(ctx, at(order.StatusShipped, 4, later, ""), order.HistoryEntry{
						FromStatus: order.StatusProcessing, ToStatus: order.StatusShipped, Actor: "api:ops", Version: 4, ChangedAt: later})
				}),
			}, changed: []order.ChangedOrder{{ID: id, Version: 4}}},
		},
		{
			name: "a transaction of other tables only",
			changes: []cdc.Change{
				{Op: cdc.OpCreate, Schema: "public", Table: "inventory_items", After: cdc.NewRow(map[string]*string{"sku": str("SKU-A")})},
				{Op: cdc.OpCreate, Schema: "audit", Table: "orders", After: ordersRow(id, "PENDING", 1, created, "")},
			},
		},
		{
			name: "items added to an existing order: no ORDER_CREATED",
			changes: []cdc.Change{
				change(cdc.OpCreate, "order_items", cdc.Row{}, itemRow(id, 3, "SKU-C", 1, "1.00")),
			},
		},
		{
			name: "an update that changes no status: no event, the cache refreshed",
			changes: []cdc.Change{
				change(cdc.OpUpdate, "orders", ordersRow(id, "CONFIRMED", 2, later, ""), ordersRow(id, "CONFIRMED", 3, later, "")),
			},
			want: want{changed: []order.ChangedOrder{{ID: id, Version: 3}}},
		},
		{
			name: "a delete: no event, the cache invalidated past the deleted version",
			changes: []cdc.Change{
				change(cdc.OpDelete, "orders", ordersRow(id, "DELIVERED", 5, later, ""), cdc.Row{}),
			},
			want: want{changed: []order.ChangedOrder{{ID: id, Version: 6}}},
		},
		{
			name: "a row no event can be built from is reported, the rest goes on",
			changes: []cdc.Change{
				change(cdc.OpCreate, "orders", cdc.Row{}, cdc.NewRow(map[string]*string{"id": str("not-a-uuid"), "version": str("1")})),
				change(cdc.OpUpdate, "orders", ordersRow(id, "PENDING", 1, created, ""), ordersRow(id, "CANCELLED", 2, created, "fraud")),
			},
			want: want{skipped: 1, events: []events.Event{outboxEvent(t, "", func(ctx context.Context) (events.Event, error) {
				return order.TransitionEvent(ctx, at(order.StatusCancelled, 2, created, "fraud"), order.HistoryEntry{
					FromStatus: order.StatusPending, ToStatus: order.StatusCancelled, Reason: "fraud", Version: 2, ChangedAt: commit})
			})}, changed: []order.ChangedOrder{{ID: id, Version: 2}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := order.TransactionEvents(context.Background(), &cdc.Transaction{XID: 900, CommitTime: commit, Changes: tc.changes})
			if len(got.Skipped) != tc.want.skipped {
				t.Errorf("skipped %v, want %d", got.Skipped, tc.want.skipped)
			}
			if !reflect.DeepEqual(got.Changed, tc.want.changed) {
				t.Errorf("changed %v, want %v", got.Changed, tc.want.changed)
			}
			if len(got.Events) != len(tc.want.events) {
				t.Fatalf("%d events, want %d: %+v", len(got.Events), len(tc.want.events), got.Events)
			}
			for i, ev := range got.Events {
				assertSameEvent(t, ev, tc.want.events[i])
			}
		})
	}
}

func withTrace(ev events.Event, tp string) events.Event {
	ev.TraceParent = tp
	return ev
}

// assertSameEvent compares two events whole: every envelope attribute, the
// data field by field, the aggregate and the trace context.
func assertSameEvent(t *testing.T, got, want events.Event) {
	t.Helper()
	if got.ID != want.ID || got.Type != want.Type || got.Subject != want.Subject || got.Source != want.Source ||
		got.SpecVersion != want.SpecVersion || got.DataContentType != want.DataContentType || !got.Time.Equal(want.Time) ||
		got.CorrelationID != want.CorrelationID || got.AggregateType != want.AggregateType || got.TraceParent != want.TraceParent {
		t.Errorf("envelope\n got %+v (trace %q)\nwant %+v (trace %q)", got.Envelope, got.TraceParent, want.Envelope, want.TraceParent)
	}
	var g, w map[string]any
	if err := json.Unmarshal(got.Data, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want.Data, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s data\n got %s\nwant %s", got.Type, got.Data, want.Data)
	}
}

func TestChangeStreamCapturesTheOrderTables(t *testing.T) {
	t.Parallel()
	cs := order.NewChangeStream(nil, nil)
	for table, want := range map[string]bool{
		"public.orders": true, "public.order_items": true, "public.order_status_history": true,
		"public.inventory_items": false, "public.outbox_events": false, "audit.orders": false,
	} {
		schema, name, _ := strings.Cut(table, ".")
		if got := cs.Captures(schema, name); got != want {
			t.Errorf("Captures(%s) = %v, want %v", table, got, want)
		}
	}
}
