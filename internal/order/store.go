package order

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/logging"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/pagination"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/tracing"
)

// Store persists orders in PostgreSQL. Its methods take a Querier so the
// service can run several of them, plus the outbox write, in one transaction.
type Store struct{}

const orderColumns = `id, customer_id, status, currency, (total_amount * 100)::bigint, shipping_address,
	coalesce(cancel_reason, ''), version, created_at, updated_at`

func scanOrder(row pgx.Row) (*Order, error) {
	var o Order
	var status string
	var addr []byte
	err := row.Scan(&o.ID, &o.CustomerID, &status, &o.Currency, &o.TotalAmount, &addr, &o.CancelReason,
		&o.Version, &o.CreatedAt, &o.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	o.Status = Status(status)
	o.ShippingAddress = addr
	return &o, nil
}

// Insert writes a new order with its items and first history entry, and
// evs (its outbox events) in the same round trip. The history rows keep
// ctx's correlation id and trace context, which the change stream needs to
// build events like the outbox's.
func (Store) Insert(ctx context.Context, q postgres.Querier, o *Order, actor string, evs ...events.Event) error {
	b := &pgx.Batch{}
	var addr any
	if len(o.ShippingAddress) > 0 {
		addr = string(o.ShippingAddress)
	}
	b.Queue(`INSERT INTO orders (id, customer_id, status, currency, total_amount, shipping_address, version, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5::numeric / 100, $6::jsonb, $7, $8, $9)`,
		o.ID, o.CustomerID, string(o.Status), o.Currency, int64(o.TotalAmount), addr, o.Version, o.CreatedAt, o.UpdatedAt)
	for _, it := range o.Items {
		b.Queue(`INSERT INTO order_items (id, order_id, line_no, sku, quantity, unit_price, line_total)
			VALUES ($1, $2, $3, $4, $5, $6::numeric / 100, $7::numeric / 100)`,
			it.ID, o.ID, it.LineNo, it.SKU, it.Quantity, int64(it.UnitPrice), int64(it.LineTotal))
	}
	b.Queue(`INSERT INTO order_status_history (order_id, from_status, to_status, reason, actor, version, changed_at, correlation_id, traceparent)
		VALUES ($1, NULL, $2, NULL, $3, $4, $5, nullif($6, ''), nullif($7, ''))`, o.ID, string(o.Status), actor, o.Version, o.CreatedAt,
		logging.CorrelationID(ctx), tracing.TraceParent(ctx))
	if err := sendWithEvents(ctx, q, b, evs); err != nil {
		return fmt.Errorf("insert order: %w", err)
	}
	return nil
}

// sendWithEvents adds the inserts of evs to b and sends it: a change and its
// outbox events in one round trip.
func sendWithEvents(ctx context.Context, q postgres.Querier, b *pgx.Batch, evs []events.Event) error {
	if err := outbox.Queue(ctx, b, evs...); err != nil {
		return err
	}
	return q.SendBatch(ctx, b).Close()
}

// Get reads an order with its items; forUpdate locks the order row until the
// transaction ends.
func (st Store) Get(ctx context.Context, q postgres.Querier, id uuid.UUID, forUpdate bool) (*Order, error) {
	// The order and its items in one round trip: every cache miss and
	// every cache refresh after a change reads both.
	var o *Order
	b := &pgx.Batch{}
	st.queueGet(b, id, forUpdate, &o)
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return nil, getError(id, err)
	}
	return o, nil
}

// queueGet queues Get's statements on b, for a caller that sends others
// before them in the same round trip; *o is the order once b's results are
// read, and reading them fails with ErrNotFound when there is none.
func (Store) queueGet(b *pgx.Batch, id uuid.UUID, forUpdate bool, o **Order) {
	sql := `SELECT ` + orderColumns + ` FROM orders WHERE id = $1`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	b.Queue(sql, id).QueryRow(func(row pgx.Row) error {
		var err error
		*o, err = scanOrder(row)
		return err
	})
	// Not run when the order's row is missing: a batch stops at its first
	// failed callback.
	b.Queue(itemsSQL, id).Query(func(rows pgx.Rows) error {
		items, err := pgx.CollectRows(rows, scanItem)
		if err != nil {
			return fmt.Errorf("get order items: %w", err)
		}
		(*o).Items = items
		return nil
	})
}

// getError wraps the error of reading order id, keeping ErrNotFound bare.
func getError(id uuid.UUID, err error) error {
	if errors.Is(err, ErrNotFound) {
		return err
	}
	return fmt.Errorf("get order %s: %w", id, err)
}

const itemsSQL = `SELECT id, line_no, sku, quantity, (unit_price * 100)::bigint, (line_total * 100)::bigint
	FROM order_items WHERE order_id = $1 ORDER BY line_no`

func scanItem(row pgx.CollectableRow) (Item, error) {
	var it Item
	err := row.Scan(&it.ID, &it.LineNo, &it.SKU, &it.Quantity, &it.UnitPrice, &it.LineTotal)
	return it, err
}

// SaveTransitions writes the status changes made by Order.Transition (the
// order's row and a history entry each) and evs (their outbox events) in
// one round trip.
func (Store) SaveTransitions(ctx context.Context, q postgres.Querier, o *Order, changes []HistoryEntry, evs ...events.Event) error {
	b := &pgx.Batch{}
	for _, h := range changes {
		b.Queue(`UPDATE orders SET status = $2, version = $3, updated_at = $4, cancel_reason = nullif($5, '') WHERE id = $1`,
			o.ID, string(o.Status), o.Version, o.UpdatedAt, o.CancelReason)
		b.Queue(`INSERT INTO order_status_history (order_id, from_status, to_status, reason, actor, version, changed_at, correlation_id, traceparent)
			VALUES ($1, $2, $3, nullif($4, ''), $5, $6, $7, nullif($8, ''), nullif($9, ''))`,
			o.ID, string(h.FromStatus), string(h.ToStatus), h.Reason, h.Actor, h.Version, h.ChangedAt,
			logging.CorrelationID(ctx), tracing.TraceParent(ctx))
	}
	if err := sendWithEvents(ctx, q, b, evs); err != nil {
		return fmt.Errorf("save status change of order %s: %w", o.ID, err)
	}
	return nil
}

// Hold reports the stock an order holds. Inventory's decision about each
// order is its row in inventory_orders (same database): 'reserved' and
// 'committed' hold stock; 'failed', 'released', 'cancelled' or no row hold
// none.
func (Store) Hold(ctx context.Context, q postgres.Querier, id uuid.UUID) (Hold, error) {
	var state string
	err := q.QueryRow(ctx, `SELECT state FROM inventory_orders WHERE order_id = $1`, id).Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) {
		return HoldNone, nil
	}
	if err != nil {
		return HoldNone, fmt.Errorf("read stock held by order %s: %w", id, err)
	}
	switch Hold(state) {
	case HoldReserved, HoldCommitted:
		return Hold(state), nil
	}
	return HoldNone, nil
}

// History lists an order's status changes, oldest first.
func (Store) History(ctx context.Context, q postgres.Querier, id uuid.UUID) ([]HistoryEntry, error) {
	rows, err := q.Query(ctx, `SELECT coalesce(from_status, ''), to_status, coalesce(reason, ''), actor, version, changed_at
		FROM order_status_history WHERE order_id = $1 ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("order history: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (HistoryEntry, error) {
		var h HistoryEntry
		var from, to string
		err := row.Scan(&from, &to, &h.Reason, &h.Actor, &h.Version, &h.ChangedAt)
		h.FromStatus, h.ToStatus = Status(from), Status(to)
		return h, err
	})
}

// ListFilter selects a page of orders, newest first.
type ListFilter struct {
	CustomerID string
	Status     Status
	Limit      int
	Cursor     string
}

// ErrBadCursor means the pagination cursor was not one the API issued.
var ErrBadCursor = pagination.ErrBadCursor

// List returns a page of orders (without items) and the cursor of the next
// page, "" on the last one. It pages by keyset on (created_at, id), so pages
// stay stable while orders are added.
func (Store) List(ctx context.Context, q postgres.Querier, f ListFilter) ([]*Order, string, error) {
	where := []string{"true"}
	var args []any
	arg := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	if f.CustomerID != "" {
		where = append(where, "customer_id = "+arg(f.CustomerID))
	}
	if f.Status != "" {
		where = append(where, "status = "+arg(string(f.Status)))
	}
	if f.Cursor != "" {
		at, id, err := pagination.Decode(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		where = append(where, fmt.Sprintf("(created_at, id) < (%s, %s)", arg(at), arg(id)))
	}
	sql := `SELECT ` + orderColumns + ` FROM orders WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY created_at DESC, id DESC LIMIT ` + arg(f.Limit+1)
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list orders: %w", err)
	}
	defer rows.Close()
	var out []*Order
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list orders: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list orders: %w", err)
	}
	out, next := pagination.Page(out, f.Limit, func(o *Order) (time.Time, uuid.UUID) { return o.CreatedAt, o.ID })
	return out, next, nil
}

// Count returns the number of orders (for health details).
func (Store) Count(ctx context.Context, q postgres.Querier) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&n)
	return n, err
}
