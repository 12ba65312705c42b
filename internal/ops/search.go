package ops

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/pagination"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/validation"
)

// Search serves the console's order and stock searches: what an operator
// would otherwise type into pgAdmin. They read the orders and stock tables
// and change nothing; orders and stock are changed through their own APIs.
type Search struct {
	db postgres.Querier
}

// NewSearch returns the searches over db.
func NewSearch(db postgres.Querier) *Search { return &Search{db: db} }

// Routes are GET /api/v1/ops/orders and GET /api/v1/ops/stock, for every
// role that may read orders and stock.
func (s *Search) Routes() []httpapi.Route {
	return []httpapi.Route{
		{Method: http.MethodGet, Pattern: "/api/v1/ops/orders", Role: httpapi.RoleViewer, Handler: s.serveOrders},
		{Method: http.MethodGet, Pattern: "/api/v1/ops/stock", Role: httpapi.RoleViewer, Handler: s.serveStock},
	}
}

// OrderQuery selects orders.
type OrderQuery struct {
	CustomerID string
	Status     string
	// SKU keeps orders with a line of this SKU.
	SKU string
	// CreatedFrom and CreatedTo bound created_at: [from, to).
	CreatedFrom, CreatedTo time.Time
	Limit                  int
	Cursor                 string
}

// OrderRow is an order in search results.
type OrderRow struct {
	ID          uuid.UUID `json:"id"`
	CustomerID  string    `json:"customer_id"`
	Status      string    `json:"status"`
	TotalAmount string    `json:"total_amount"`
	Currency    string    `json:"currency"`
	Lines       int       `json:"lines"`
	Version     int       `json:"version"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

var statuses = map[string]bool{"PENDING": true, "CONFIRMED": true, "PROCESSING": true, "SHIPPED": true, "DELIVERED": true, "CANCELLED": true}

// Orders returns a page of matching orders, newest first, and the cursor of
// the next page ("" on the last). Pages are keyed on (created_at, id) like
// the orders API, so they stay stable while orders are added.
func (s *Search) Orders(ctx context.Context, q OrderQuery) ([]OrderRow, string, error) {
	where := []string{"true"}
	var args []any
	arg := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	if q.CustomerID != "" {
		where = append(where, "o.customer_id = "+arg(q.CustomerID))
	}
	if q.Status != "" {
		where = append(where, "o.status = "+arg(q.Status))
	}
	if q.SKU != "" {
		where = append(where, "EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id AND i.sku = "+arg(q.SKU)+")")
	}
	if !q.CreatedFrom.IsZero() {
		where = append(where, "o.created_at >= "+arg(q.CreatedFrom))
	}
	if !q.CreatedTo.IsZero() {
		where = append(where, "o.created_at < "+arg(q.CreatedTo))
	}
	if q.Cursor != "" {
		at, id, err := pagination.Decode(q.Cursor)
		if err != nil {
			return nil, "", validation.Errors{{Field: "cursor", Message: "is not a cursor this API returned"}}
		}
		where = append(where, fmt.Sprintf("(o.created_at, o.id) < (%s, %s)", arg(at), arg(id)))
	}
	rows, err := s.db.Query(ctx, `SELECT o.id, o.customer_id, o.status, o.total_amount::text, o.currency,
			(SELECT count(*) FROM order_items i WHERE i.order_id = o.id), o.version, o.created_at, o.updated_at
		FROM orders o WHERE `+strings.Join(where, " AND ")+`
		ORDER BY o.created_at DESC, o.id DESC LIMIT `+arg(q.Limit+1), args...)
	if err != nil {
		return nil, "", fmt.Errorf("search orders: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (OrderRow, error) {
		var o OrderRow
		err := r.Scan(&o.ID, &o.CustomerID, &o.Status, &o.TotalAmount, &o.Currency, &o.Lines, &o.Version, &o.CreatedAt, &o.UpdatedAt)
		return o, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("search orders: %w", err)
	}
	out, next := pagination.Page(out, q.Limit, func(o OrderRow) (time.Time, uuid.UUID) { return o.CreatedAt, o.ID })
	return out, next, nil
}

// StockRow is one SKU's stock in search results.
type StockRow struct {
	SKU       string    `json:"sku"`
	Name      string    `json:"name"`
	OnHand    int64     `json:"on_hand"`
	Reserved  int64     `json:"reserved"`
	Available int64     `json:"available"`
	Version   int64     `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Stock returns a page of SKUs whose SKU or name contains text (case
// insensitive; all SKUs when text is empty), by SKU, and the cursor of the
// next page.
func (s *Search) Stock(ctx context.Context, text string, limit int, cur string) ([]StockRow, string, error) {
	after := ""
	if cur != "" {
		b, err := base64.RawURLEncoding.DecodeString(cur)
		if err != nil || len(b) < 2 || b[0] != 's' {
			return nil, "", validation.Errors{{Field: "cursor", Message: "is not a cursor this API returned"}}
		}
		after = string(b[1:])
	}
	like := "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(text) + "%"
	rows, err := s.db.Query(ctx, `SELECT sku, name, on_hand, reserved, version, updated_at FROM inventory_items
		WHERE ($1 = '' OR sku ILIKE $2 OR name ILIKE $2) AND sku > $3
		ORDER BY sku LIMIT $4`, text, like, after, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("search stock: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (StockRow, error) {
		var st StockRow
		err := r.Scan(&st.SKU, &st.Name, &st.OnHand, &st.Reserved, &st.Version, &st.UpdatedAt)
		st.Available = st.OnHand - st.Reserved
		return st, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("search stock: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte("s" + out[len(out)-1].SKU))
	}
	return out, next, nil
}

// ParseOrderQuery reads customer_id, status, sku, created_from, created_to
// (RFC 3339), limit and cursor.
func ParseOrderQuery(q map[string][]string) (OrderQuery, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return strings.TrimSpace(v[0])
		}
		return ""
	}
	var errs validation.Errors
	oq := OrderQuery{CustomerID: get("customer_id"), Status: strings.ToUpper(get("status")), SKU: get("sku"), Cursor: get("cursor")}
	if oq.Status != "" && !statuses[oq.Status] {
		errs.Add("status", "must be one of PENDING, CONFIRMED, PROCESSING, SHIPPED, DELIVERED, CANCELLED")
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"created_from", &oq.CreatedFrom}, {"created_to", &oq.CreatedTo}} {
		if v := get(f.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				errs.Add(f.name, "must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
			}
			*f.dst = t
		}
	}
	if !oq.CreatedFrom.IsZero() && !oq.CreatedTo.IsZero() && !oq.CreatedFrom.Before(oq.CreatedTo) {
		errs.Add("created_to", "must be after created_from")
	}
	if len(oq.CustomerID) > 200 || len(oq.SKU) > 64 || len(oq.Cursor) > 200 {
		errs.Add("query", "parameter too long")
	}
	oq.Limit = pagination.Limit(get("limit"), pagination.DefaultSize, pagination.MaxSize, &errs)
	return oq, errs.Err()
}

func (s *Search) serveOrders(w http.ResponseWriter, r *http.Request) {
	q, err := ParseOrderQuery(r.URL.Query())
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	rows, next, err := s.Orders(r.Context(), q)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if rows == nil {
		rows = []OrderRow{}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"orders": rows, "next_cursor": next})
}

func (s *Search) serveStock(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var errs validation.Errors
	text := strings.TrimSpace(q.Get("q"))
	if len(text) > 100 {
		errs.Add("q", "must be at most 100 characters")
	}
	limit := pagination.Limit(q.Get("limit"), pagination.DefaultSize, pagination.MaxSize, &errs)
	if err := errs.Err(); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	rows, next, err := s.Stock(r.Context(), text, limit, q.Get("cursor"))
	var verrs validation.Errors
	if errors.As(err, &verrs) {
		httpapi.WriteValidation(w, r, verrs)
		return
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if rows == nil {
		rows = []StockRow{}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"items": rows, "next_cursor": next})
}
