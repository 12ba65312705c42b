package order

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/trackops/trackops/internal/commerce"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/pagination"
	"github.com/trackops/trackops/internal/validation"
)

// Handlers serve the order endpoints of the HTTP API.
type Handlers struct {
	svc    *Service
	bodies bodyMemo
}

// NewHandlers returns the order endpoints over svc.
func NewHandlers(svc *Service) *Handlers { return &Handlers{svc: svc} }

// Routes lists the order endpoints with the role each needs.
func (h *Handlers) Routes() []httpapi.Route {
	return []httpapi.Route{
		{Method: http.MethodPost, Pattern: "/api/v1/orders", Role: httpapi.RoleOperator, Handler: h.create},
		{Method: http.MethodGet, Pattern: "/api/v1/orders", Role: httpapi.RoleViewer, Handler: h.list},
		{Method: http.MethodGet, Pattern: "/api/v1/orders/{id}", Role: httpapi.RoleViewer, Handler: h.get},
		{Method: http.MethodPatch, Pattern: "/api/v1/orders/{id}/status", Role: httpapi.RoleOperator, Handler: h.changeStatus},
		{Method: http.MethodPost, Pattern: "/api/v1/orders/{id}/cancel", Role: httpapi.RoleOperator, Handler: h.cancel},
		{Method: http.MethodGet, Pattern: "/api/v1/orders/{id}/history", Role: httpapi.RoleViewer, Handler: h.history},
	}
}

// ItemJSON is an order line in API responses.
type ItemJSON struct {
	ID        uuid.UUID      `json:"id"`
	SKU       string         `json:"sku"`
	Quantity  int            `json:"quantity"`
	UnitPrice commerce.Money `json:"unit_price"`
	LineTotal commerce.Money `json:"line_total"`
}

// JSON is an order in API responses.
type JSON struct {
	ID              uuid.UUID       `json:"id"`
	CustomerID      string          `json:"customer_id"`
	Status          Status          `json:"status"`
	Items           []ItemJSON      `json:"items,omitempty"`
	TotalAmount     commerce.Money  `json:"total_amount"`
	Currency        string          `json:"currency"`
	ShippingAddress json.RawMessage `json:"shipping_address,omitempty"`
	CancelReason    string          `json:"cancel_reason,omitempty"`
	Version         int             `json:"version"`
	CreatedAt       time.Time       `json:"created_at"`
	UpdatedAt       time.Time       `json:"updated_at"`
}

// ToJSON renders an order for the API.
func ToJSON(o *Order) JSON {
	j := JSON{
		ID: o.ID, CustomerID: o.CustomerID, Status: o.Status, TotalAmount: o.TotalAmount, Currency: o.Currency,
		ShippingAddress: o.ShippingAddress, CancelReason: o.CancelReason, Version: o.Version,
		CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt,
	}
	for _, it := range o.Items {
		j.Items = append(j.Items, ItemJSON{ID: it.ID, SKU: it.SKU, Quantity: it.Quantity, UnitPrice: it.UnitPrice, LineTotal: it.LineTotal})
	}
	return j
}

type createItemRequest struct {
	SKU       string          `json:"sku"`
	Quantity  int             `json:"quantity"`
	UnitPrice json.RawMessage `json:"unit_price"`
}

type createRequest struct {
	CustomerID      string              `json:"customer_id"`
	Currency        string              `json:"currency,omitempty"`
	Items           []createItemRequest `json:"items"`
	ShippingAddress json.RawMessage     `json:"shipping_address,omitempty"`
}

// MaxIdempotencyKeyLen bounds the Idempotency-Key header.
const MaxIdempotencyKeyLen = 255

func (h *Handlers) create(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	n, verrs := req.toNewOrder()
	key := r.Header.Get("Idempotency-Key")
	if len(key) > MaxIdempotencyKeyLen {
		verrs.Add("Idempotency-Key", "must be at most %d characters", MaxIdempotencyKeyLen)
	} else {
		verrs.Text("Idempotency-Key", key) // stored with the order: text PostgreSQL accepts
	}
	if len(verrs) > 0 {
		httpapi.WriteValidation(w, r, verrs)
		return
	}
	fingerprint, _ := json.Marshal(req) // canonical: whitespace and key order do not matter
	principal := httpapi.PrincipalFrom(r.Context())
	res, err := h.svc.Create(r.Context(), CreateRequest{
		Order: n, IdempotencyKey: key, Scope: principal.ID, Fingerprint: fingerprint, Actor: principal.Actor(),
		Render: func(o *Order) ([]byte, error) { return json.Marshal(ToJSON(o)) },
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/orders/"+res.Order.ID.String())
	w.Header().Set("ETag", etag(res.Order.Version))
	w.Header().Set("Content-Type", "application/json")
	if res.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(res.Body)
}

func (req createRequest) toNewOrder() (NewOrder, validation.Errors) {
	var verrs validation.Errors
	n := NewOrder{CustomerID: req.CustomerID, Currency: req.Currency, ShippingAddress: req.ShippingAddress}
	for i, it := range req.Items {
		var price commerce.Money
		if len(it.UnitPrice) == 0 || string(it.UnitPrice) == "null" {
			verrs.Add(fmt.Sprintf("items[%d].unit_price", i), "is required")
		} else if err := price.UnmarshalJSON(it.UnitPrice); err != nil {
			verrs.Add(fmt.Sprintf("items[%d].unit_price", i), "%v", err)
		}
		n.Items = append(n.Items, NewItem{SKU: it.SKU, Quantity: it.Quantity, UnitPrice: price})
	}
	if err := n.Validate(); err != nil {
		var more validation.Errors
		if errors.As(err, &more) {
			verrs = append(verrs, more...)
		}
	}
	return n, verrs
}

func (h *Handlers) get(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	o, err := h.svc.Get(r.Context(), id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	body, err := h.bodies.get(o)
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", etag(o.Version))
	httpapi.WriteJSONBody(w, http.StatusOK, body)
}

// bodyMemo remembers the body of GET /api/v1/orders/{id} per order at its
// latest version read here. A version of an order never changes, so neither
// does its JSON: a hot order is encoded once per version instead of once per
// read. It is bounded by starting afresh when full.
type bodyMemo struct {
	mu sync.RWMutex
	m  map[uuid.UUID]memoBody
}

type memoBody struct {
	version int
	body    []byte
}

const bodyMemoMax = 10_000

func (b *bodyMemo) get(o *Order) ([]byte, error) {
	b.mu.RLock()
	e, ok := b.m[o.ID]
	b.mu.RUnlock()
	if ok && e.version == o.Version {
		return e.body, nil
	}
	body, err := json.Marshal(ToJSON(o))
	if err != nil {
		return nil, fmt.Errorf("encode order: %w", err)
	}
	body = append(body, '\n')
	b.mu.Lock()
	if b.m == nil || len(b.m) >= bodyMemoMax {
		b.m = make(map[uuid.UUID]memoBody)
	}
	if cur, ok := b.m[o.ID]; !ok || cur.version < o.Version {
		b.m[o.ID] = memoBody{version: o.Version, body: body}
	}
	b.mu.Unlock()
	return body, nil
}

// ListJSON is a page of orders.
type ListJSON struct {
	Orders     []JSON `json:"orders"`
	NextCursor string `json:"next_cursor,omitempty"`
}

func (h *Handlers) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var verrs validation.Errors
	f := ListFilter{CustomerID: q.Get("customer_id"), Cursor: q.Get("cursor"), Limit: pagination.DefaultSize}
	if s := q.Get("status"); s != "" {
		st, ok := ParseStatus(s)
		if !ok {
			verrs.Add("status", "must be one of PENDING, CONFIRMED, PROCESSING, SHIPPED, DELIVERED, CANCELLED")
		}
		f.Status = st
	}
	f.Limit = pagination.Limit(q.Get("limit"), pagination.DefaultSize, pagination.MaxSize, &verrs)
	if len(verrs) > 0 {
		httpapi.WriteValidation(w, r, verrs)
		return
	}
	orders, next, err := h.svc.List(r.Context(), f)
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := ListJSON{Orders: make([]JSON, 0, len(orders)), NextCursor: next}
	for _, o := range orders {
		out.Orders = append(out.Orders, ToJSON(o))
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

type statusRequest struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

func (h *Handlers) changeStatus(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var req statusRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	var verrs validation.Errors
	to, valid := ParseStatus(req.Status)
	if !valid {
		verrs.Add("status", "must be one of CONFIRMED, PROCESSING, SHIPPED, DELIVERED, CANCELLED")
	}
	var expect *int
	if m := r.Header.Get("If-Match"); m != "" {
		v, err := parseETag(m)
		if err != nil {
			verrs.Add("If-Match", "must be the order's version, e.g. 3 or \"3\"")
		}
		expect = &v
	}
	if len(verrs) > 0 {
		httpapi.WriteValidation(w, r, verrs)
		return
	}
	o, err := h.svc.ChangeStatus(r.Context(), id, to, req.Reason, httpapi.PrincipalFrom(r.Context()).Actor(), expect)
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", etag(o.Version))
	httpapi.WriteJSON(w, http.StatusOK, ToJSON(o))
}

type cancelRequest struct {
	Reason string `json:"reason"`
}

func (h *Handlers) cancel(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var req cancelRequest
	if err := httpapi.DecodeOptionalJSON(r, &req); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	o, err := h.svc.Cancel(r.Context(), id, req.Reason, httpapi.PrincipalFrom(r.Context()).Actor())
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", etag(o.Version))
	httpapi.WriteJSON(w, http.StatusOK, ToJSON(o))
}

// HistoryJSON is an order's status history.
type HistoryJSON struct {
	OrderID uuid.UUID      `json:"order_id"`
	History []HistoryEntry `json:"history"`
}

func (h *Handlers) history(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	hist, err := h.svc.History(r.Context(), id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, HistoryJSON{OrderID: id, History: hist})
}

func pathID(w http.ResponseWriter, r *http.Request) (uuid.UUID, bool) {
	raw := r.PathValue("id")
	id, err := uuid.Parse(raw)
	if err != nil || len(raw) != 36 {
		httpapi.WriteProblem(w, r, http.StatusBadRequest, fmt.Sprintf("order id %q is not a UUID", truncate(raw, 64)))
		return uuid.Nil, false
	}
	return id, true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func etag(version int) string { return `"` + strconv.Itoa(version) + `"` }

func parseETag(s string) (int, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "W/")
	return strconv.Atoi(strings.Trim(s, `"`))
}

// writeError maps the order domain's errors to HTTP statuses.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		httpapi.WriteProblem(w, r, http.StatusNotFound, "order not found")
	case errors.Is(err, ErrIllegalTransition):
		httpapi.WriteProblem(w, r, http.StatusConflict, err.Error())
	case errors.Is(err, ErrVersionMismatch):
		httpapi.WriteProblem(w, r, http.StatusPreconditionFailed, err.Error())
	case errors.Is(err, ErrIdempotencyConflict):
		httpapi.WriteProblem(w, r, http.StatusUnprocessableEntity, "Idempotency-Key was already used with a different request body")
	case errors.Is(err, ErrBadCursor):
		httpapi.WriteProblem(w, r, http.StatusBadRequest, "cursor is not one this API issued")
	default:
		httpapi.WriteError(w, r, err)
	}
}
