package inventory

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/trackops/trackops/internal/commerce"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/pagination"
	"github.com/trackops/trackops/internal/validation"
)

// Handlers serve the inventory endpoints of the HTTP API.
type Handlers struct {
	svc *Service
}

// NewHandlers returns the inventory endpoints over svc.
func NewHandlers(svc *Service) *Handlers { return &Handlers{svc: svc} }

// Routes lists the inventory endpoints with the role each needs.
func (h *Handlers) Routes() []httpapi.Route {
	return []httpapi.Route{
		{Method: http.MethodGet, Pattern: "/api/v1/inventory", Role: httpapi.RoleViewer, Handler: h.list},
		{Method: http.MethodGet, Pattern: "/api/v1/inventory/{sku}", Role: httpapi.RoleViewer, Handler: h.get},
		{Method: http.MethodPut, Pattern: "/api/v1/inventory/{sku}", Role: httpapi.RoleOperator, Handler: h.set},
		{Method: http.MethodPost, Pattern: "/api/v1/inventory/{sku}/adjust", Role: httpapi.RoleOperator, Handler: h.adjust},
		{Method: http.MethodGet, Pattern: "/api/v1/inventory/{sku}/reservations", Role: httpapi.RoleViewer, Handler: h.reservations},
	}
}

// ItemJSON is an item in API responses.
type ItemJSON struct {
	SKU       string    `json:"sku"`
	Name      string    `json:"name"`
	OnHand    int64     `json:"on_hand"`
	Reserved  int64     `json:"reserved"`
	Available int64     `json:"available"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ToJSON renders an item for the API.
func ToJSON(it *Item) ItemJSON {
	return ItemJSON{SKU: it.SKU, Name: it.Name, OnHand: it.OnHand, Reserved: it.Reserved, Available: it.Available(),
		Version: it.Version, CreatedAt: it.CreatedAt, UpdatedAt: it.UpdatedAt}
}

// ListJSON is a page of items.
type ListJSON struct {
	Items      []ItemJSON `json:"items"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

// ReservationJSON is a reservation in API responses.
type ReservationJSON struct {
	OrderID   string            `json:"order_id"`
	SKU       string            `json:"sku"`
	Quantity  int64             `json:"quantity"`
	Status    ReservationStatus `json:"status"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
}

// ReservationsJSON is a page of one SKU's reservations.
type ReservationsJSON struct {
	SKU          string            `json:"sku"`
	Reservations []ReservationJSON `json:"reservations"`
	NextCursor   string            `json:"next_cursor,omitempty"`
}

// setRequest is the PUT body. Pointers tell a missing field from a zero.
type setRequest struct {
	Name   *string `json:"name"`
	OnHand *int64  `json:"on_hand"`
}

type adjustRequest struct {
	Delta  *int64 `json:"delta"`
	Reason string `json:"reason"`
}

// pathSKU reads and checks the {sku} path segment.
func pathSKU(w http.ResponseWriter, r *http.Request) (string, bool) {
	sku := r.PathValue("sku")
	if !commerce.ValidSKU(sku) {
		shown := sku
		if len(shown) > 64 {
			shown = shown[:64] + "…"
		}
		httpapi.WriteProblem(w, r, http.StatusBadRequest, fmt.Sprintf(
			"SKU %q is not valid: use 1-64 letters, digits, '.', '-' or '_', starting with a letter or digit", shown))
		return "", false
	}
	return sku, true
}

func (h *Handlers) get(w http.ResponseWriter, r *http.Request) {
	sku, ok := pathSKU(w, r)
	if !ok {
		return
	}
	it, err := h.svc.Get(r.Context(), sku)
	if err != nil {
		writeError(w, r, err, sku)
		return
	}
	w.Header().Set("ETag", etag(it.Version))
	httpapi.WriteJSON(w, http.StatusOK, ToJSON(it))
}

func (h *Handlers) set(w http.ResponseWriter, r *http.Request) {
	sku, ok := pathSKU(w, r)
	if !ok {
		return
	}
	var req setRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if req.OnHand == nil {
		httpapi.WriteValidation(w, r, validation.Errors{{Field: "on_hand", Message: "is required"}})
		return
	}
	it, created, err := h.svc.Set(r.Context(), SetRequest{SKU: sku, Name: req.Name, OnHand: *req.OnHand,
		Actor: httpapi.PrincipalFrom(r.Context()).Actor()})
	if err != nil {
		writeError(w, r, err, sku)
		return
	}
	w.Header().Set("ETag", etag(it.Version))
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/api/v1/inventory/"+url.PathEscape(sku))
	}
	httpapi.WriteJSON(w, status, ToJSON(it))
}

func (h *Handlers) adjust(w http.ResponseWriter, r *http.Request) {
	sku, ok := pathSKU(w, r)
	if !ok {
		return
	}
	var req adjustRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if req.Delta == nil {
		httpapi.WriteValidation(w, r, validation.Errors{{Field: "delta", Message: "is required"}})
		return
	}
	it, err := h.svc.Adjust(r.Context(), AdjustRequest{SKU: sku, Delta: *req.Delta, Reason: req.Reason,
		Actor: httpapi.PrincipalFrom(r.Context()).Actor()})
	if err != nil {
		writeError(w, r, err, sku)
		return
	}
	w.Header().Set("ETag", etag(it.Version))
	httpapi.WriteJSON(w, http.StatusOK, ToJSON(it))
}

func pageLimit(q url.Values, errs *validation.Errors) int {
	return pagination.Limit(q.Get("limit"), pagination.DefaultSize, pagination.MaxSize, errs)
}

func (h *Handlers) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var verrs validation.Errors
	limit := pageLimit(q, &verrs)
	if len(verrs) > 0 {
		httpapi.WriteValidation(w, r, verrs)
		return
	}
	items, next, err := h.svc.List(r.Context(), limit, q.Get("cursor"))
	if err != nil {
		writeError(w, r, err, "")
		return
	}
	out := ListJSON{Items: make([]ItemJSON, 0, len(items)), NextCursor: next}
	for _, it := range items {
		out.Items = append(out.Items, ToJSON(it))
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func (h *Handlers) reservations(w http.ResponseWriter, r *http.Request) {
	sku, ok := pathSKU(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	var verrs validation.Errors
	f := ReservationFilter{SKU: sku, Limit: pageLimit(q, &verrs), Cursor: q.Get("cursor")}
	if s := q.Get("status"); s != "" {
		st, ok := ParseReservationStatus(s)
		if !ok {
			verrs.Add("status", "must be one of reserved, released, committed")
		}
		f.Status = st
	}
	if len(verrs) > 0 {
		httpapi.WriteValidation(w, r, verrs)
		return
	}
	res, next, err := h.svc.Reservations(r.Context(), f)
	if err != nil {
		writeError(w, r, err, sku)
		return
	}
	out := ReservationsJSON{SKU: sku, Reservations: make([]ReservationJSON, 0, len(res)), NextCursor: next}
	for _, rv := range res {
		out.Reservations = append(out.Reservations, ReservationJSON(rv))
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// writeError maps the inventory domain's errors to HTTP statuses.
func writeError(w http.ResponseWriter, r *http.Request, err error, sku string) {
	var conflict *StockConflictError
	switch {
	case errors.Is(err, ErrNotFound):
		httpapi.WriteProblem(w, r, http.StatusNotFound, fmt.Sprintf("inventory item %q not found; create it with PUT /api/v1/inventory/%s", sku, sku))
	case errors.As(err, &conflict):
		httpapi.WriteProblem(w, r, http.StatusConflict, conflict.Error())
	case errors.Is(err, ErrBadCursor):
		httpapi.WriteProblem(w, r, http.StatusBadRequest, "cursor is not one this API issued")
	default:
		httpapi.WriteError(w, r, err)
	}
}
