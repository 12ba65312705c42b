package inventory

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/pagination"
	"github.com/trackops/trackops/internal/postgres"
)

// store holds the inventory SQL. Its methods take a Querier so one
// transaction can run several of them with the inbox claim and outbox write.
type store struct{}

const itemColumns = `sku, name, on_hand, reserved, version, created_at, updated_at`

func scanItem(row pgx.Row) (*Item, error) {
	var it Item
	err := row.Scan(&it.SKU, &it.Name, &it.OnHand, &it.Reserved, &it.Version, &it.CreatedAt, &it.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	return &it, err
}

// get reads an item; forUpdate locks its row until the transaction ends.
func (store) get(ctx context.Context, q postgres.Querier, sku string, forUpdate bool) (*Item, error) {
	sql := `SELECT ` + itemColumns + ` FROM inventory_items WHERE sku = $1`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	it, err := scanItem(q.QueryRow(ctx, sql, sku))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("get inventory item %s: %w", sku, err)
	}
	return it, err
}

// insert creates an item unless its SKU exists; it reports whether it did.
func (store) insert(ctx context.Context, q postgres.Querier, it *Item) (bool, error) {
	tag, err := q.Exec(ctx, `INSERT INTO inventory_items (sku, name, on_hand, reserved, version, created_at, updated_at)
		VALUES ($1, $2, $3, 0, $4, $5, $5) ON CONFLICT (sku) DO NOTHING`, it.SKU, it.Name, it.OnHand, it.Version, it.UpdatedAt)
	if err != nil {
		return false, fmt.Errorf("insert inventory item %s: %w", it.SKU, err)
	}
	return tag.RowsAffected() == 1, nil
}

// save writes an item's name and on_hand with its new version.
func (store) save(ctx context.Context, q postgres.Querier, it *Item) error {
	_, err := q.Exec(ctx, `UPDATE inventory_items SET name = $2, on_hand = $3, version = $4, updated_at = $5 WHERE sku = $1`,
		it.SKU, it.Name, it.OnHand, it.Version, it.UpdatedAt)
	if err != nil {
		return fmt.Errorf("save inventory item %s: %w", it.SKU, err)
	}
	return nil
}

// ledgerEntry is one row of the on_hand ledger.
type ledgerEntry struct {
	SKU             string
	Delta           int64
	Reason          string
	Actor           string
	OrderID         *uuid.UUID
	ResultingOnHand int64
	At              time.Time
}

func queueLedger(b *pgx.Batch, e ledgerEntry) {
	b.Queue(`INSERT INTO inventory_adjustments (sku, delta, reason, actor, order_id, resulting_on_hand, at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, e.SKU, e.Delta, e.Reason, e.Actor, e.OrderID, e.ResultingOnHand, e.At)
}

func (store) addLedger(ctx context.Context, q postgres.Querier, e ledgerEntry) error {
	b := &pgx.Batch{}
	queueLedger(b, e)
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("record inventory adjustment of %s: %w", e.SKU, err)
	}
	return nil
}

// list returns a page of items by SKU and the cursor of the next page.
func (store) list(ctx context.Context, q postgres.Querier, limit int, cursor string) ([]*Item, string, error) {
	after := ""
	if cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || !strings.HasPrefix(string(raw), "sku:") {
			return nil, "", ErrBadCursor
		}
		after = strings.TrimPrefix(string(raw), "sku:")
	}
	rows, err := q.Query(ctx, `SELECT `+itemColumns+` FROM inventory_items WHERE sku > $1 ORDER BY sku LIMIT $2`, after, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("list inventory: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*Item, error) { return scanItem(row) })
	if err != nil {
		return nil, "", fmt.Errorf("list inventory: %w", err)
	}
	next := ""
	if len(items) > limit {
		items = items[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte("sku:" + items[limit-1].SKU))
	}
	return items, next, nil
}

// ErrBadCursor means a pagination cursor was not one the API issued.
var ErrBadCursor = pagination.ErrBadCursor

// ReservationFilter selects a page of one SKU's reservations, newest first.
type ReservationFilter struct {
	SKU    string
	Status ReservationStatus // "" for every status
	Limit  int
	Cursor string
}

func (store) reservations(ctx context.Context, q postgres.Querier, f ReservationFilter) ([]Reservation, string, error) {
	where := []string{"sku = $1"}
	args := []any{f.SKU}
	arg := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	if f.Status != "" {
		where = append(where, "status = "+arg(string(f.Status)))
	}
	if f.Cursor != "" {
		at, id, err := pagination.Decode(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		where = append(where, fmt.Sprintf("(created_at, order_id) < (%s, %s)", arg(at), arg(id)))
	}
	rows, err := q.Query(ctx, `SELECT order_id, sku, quantity, status, created_at, updated_at FROM reservations WHERE `+
		strings.Join(where, " AND ")+` ORDER BY created_at DESC, order_id DESC LIMIT `+arg(f.Limit+1), args...)
	if err != nil {
		return nil, "", fmt.Errorf("list reservations: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Reservation, error) {
		var r Reservation
		var id uuid.UUID
		var status string
		err := row.Scan(&id, &r.SKU, &r.Quantity, &status, &r.CreatedAt, &r.UpdatedAt)
		r.OrderID, r.Status = id.String(), ReservationStatus(status)
		return r, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list reservations: %w", err)
	}
	out, next := pagination.Page(out, f.Limit, func(r Reservation) (time.Time, uuid.UUID) {
		return r.CreatedAt, uuid.MustParse(r.OrderID)
	})
	return out, next, nil
}

// lockStockSQL locks the rows of the given (sorted) SKUs in that order and
// returns their stock; unknown SKUs are absent. ORDER BY ... FOR UPDATE
// locks rows as the sorted scan returns them, which is what keeps
// concurrent multi-SKU reservations free of deadlocks.
const lockStockSQL = `SELECT sku, on_hand, reserved FROM inventory_items WHERE sku = ANY($1) ORDER BY sku FOR UPDATE`

// readStock collects the result of lockStockSQL.
func readStock(rows pgx.Rows) (map[string]Stock, error) {
	defer rows.Close()
	stock := map[string]Stock{}
	for rows.Next() {
		var sku string
		var s Stock
		if err := rows.Scan(&sku, &s.OnHand, &s.Reserved); err != nil {
			return nil, fmt.Errorf("lock stock: %w", err)
		}
		stock[sku] = s
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("lock stock: %w", err)
	}
	return stock, nil
}

// orderState is inventory's view of an order (table inventory_orders).
type orderState string

const (
	orderReserved  orderState = "reserved"
	orderFailed    orderState = "failed"
	orderReleased  orderState = "released"
	orderCommitted orderState = "committed"
	// orderCancelled is the tombstone of an order cancelled before its
	// reservation was attempted.
	orderCancelled orderState = "cancelled"
)

// startOrderSQL records that the order's reservation is being decided,
// taking the order's row lock. No row inserted means inventory has seen the
// order before (already decided, or cancelled first): nothing may be
// reserved.
const startOrderSQL = `INSERT INTO inventory_orders (order_id, state, created_at, updated_at) VALUES ($1, 'failed', $2, $2)
	ON CONFLICT (order_id) DO NOTHING`

// lockOrder returns the order's state, locking its row, or "" when
// inventory has not seen the order.
func (store) lockOrder(ctx context.Context, q postgres.Querier, orderID uuid.UUID) (orderState, error) {
	var st string
	err := q.QueryRow(ctx, `SELECT state FROM inventory_orders WHERE order_id = $1 FOR UPDATE`, orderID).Scan(&st)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("lock order %s: %w", orderID, err)
	}
	return orderState(st), nil
}

// heldLines returns the order's reservations still held, sorted by SKU
// (the lock order), locking them.
func (store) heldLines(ctx context.Context, q postgres.Querier, orderID uuid.UUID) ([]Line, error) {
	rows, err := q.Query(ctx, `SELECT sku, quantity FROM reservations WHERE order_id = $1 AND status = 'reserved' ORDER BY sku FOR UPDATE`, orderID)
	if err != nil {
		return nil, fmt.Errorf("read reservations of order %s: %w", orderID, err)
	}
	lines, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Line, error) {
		var l Line
		err := row.Scan(&l.SKU, &l.Quantity)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("read reservations of order %s: %w", orderID, err)
	}
	return lines, nil
}
