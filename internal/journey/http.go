package journey

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/google/uuid"

	"github.com/trackops/trackops/internal/httpapi"
)

// Routes is GET /api/v1/orders/{id}/journey, for every role that may read
// orders.
func (b *Builder) Routes() []httpapi.Route {
	return []httpapi.Route{{Method: http.MethodGet, Pattern: "/api/v1/orders/{id}/journey", Role: httpapi.RoleViewer, Handler: b.serve}}
}

func (b *Builder) serve(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("id")
	id, err := uuid.Parse(raw)
	if err != nil || len(raw) != 36 {
		if len(raw) > 64 {
			raw = raw[:64] + "…"
		}
		httpapi.WriteProblem(w, r, http.StatusBadRequest, fmt.Sprintf("order id %q is not a UUID", raw))
		return
	}
	j, err := b.Build(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		httpapi.WriteProblem(w, r, http.StatusNotFound, "order not found")
		return
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, j)
}
