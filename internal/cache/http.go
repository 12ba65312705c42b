package cache

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/validation"
)

// Handlers serve the cache's ops endpoints; Routes lists them with their
// roles for httpapi.NewRouter. The {name} wildcard is read with
// r.PathValue("name").
type Handlers struct {
	settings *Settings
	stores   *Stores
}

// NewHandlers builds the handlers.
func NewHandlers(settings *Settings, stores *Stores) *Handlers {
	return &Handlers{settings: settings, stores: stores}
}

// Routes are the cache's ops endpoints: reading needs operator, changing a
// flag or config value or evicting a key needs admin.
func (h *Handlers) Routes() []httpapi.Route {
	return []httpapi.Route{
		{Method: http.MethodGet, Pattern: "/api/v1/ops/cache", Role: httpapi.RoleOperator, Handler: h.CacheStats},
		{Method: http.MethodGet, Pattern: "/api/v1/ops/flags", Role: httpapi.RoleOperator, Handler: h.ListFlags},
		{Method: http.MethodGet, Pattern: "/api/v1/ops/flags/{name}", Role: httpapi.RoleOperator, Handler: h.GetFlag},
		{Method: http.MethodPut, Pattern: "/api/v1/ops/flags/{name}", Role: httpapi.RoleAdmin, Handler: h.PutFlag},
		{Method: http.MethodGet, Pattern: "/api/v1/ops/config", Role: httpapi.RoleOperator, Handler: h.ListConfig},
		{Method: http.MethodGet, Pattern: "/api/v1/ops/config/{name}", Role: httpapi.RoleOperator, Handler: h.GetConfig},
		{Method: http.MethodPut, Pattern: "/api/v1/ops/config/{name}", Role: httpapi.RoleAdmin, Handler: h.PutConfig},
		{Method: http.MethodPost, Pattern: "/api/v1/ops/cache/evict", Role: httpapi.RoleAdmin, Handler: h.serveEvict},
	}
}

// CacheStats answers GET /api/v1/ops/cache with Stats.
func (h *Handlers) CacheStats(w http.ResponseWriter, r *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, h.stores.Stats(r.Context()))
}

// ListFlags answers GET /api/v1/ops/flags: {"items": [Setting...]}.
func (h *Handlers) ListFlags(w http.ResponseWriter, r *http.Request) { h.list(w, r, KindFlag) }

// GetFlag answers GET /api/v1/ops/flags/{name} with the Setting and an ETag
// of its version.
func (h *Handlers) GetFlag(w http.ResponseWriter, r *http.Request) { h.get(w, r, KindFlag) }

// PutFlag answers PUT /api/v1/ops/flags/{name}: body {"value": <JSON>},
// optional If-Match: <version>; 200 with the new Setting.
func (h *Handlers) PutFlag(w http.ResponseWriter, r *http.Request) { h.put(w, r, KindFlag) }

// ListConfig answers GET /api/v1/ops/config.
func (h *Handlers) ListConfig(w http.ResponseWriter, r *http.Request) { h.list(w, r, KindConfig) }

// GetConfig answers GET /api/v1/ops/config/{name}.
func (h *Handlers) GetConfig(w http.ResponseWriter, r *http.Request) { h.get(w, r, KindConfig) }

// PutConfig answers PUT /api/v1/ops/config/{name}.
func (h *Handlers) PutConfig(w http.ResponseWriter, r *http.Request) { h.put(w, r, KindConfig) }

func (h *Handlers) list(w http.ResponseWriter, r *http.Request, kind string) {
	items, err := h.settings.List(r.Context(), kind)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (h *Handlers) get(w http.ResponseWriter, r *http.Request, kind string) {
	st, err := h.settings.Get(r.Context(), kind, r.PathValue("name"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(st.Version, 10)))
	httpapi.WriteJSON(w, http.StatusOK, st)
}

func (h *Handlers) put(w http.ResponseWriter, r *http.Request, kind string) {
	var ifVersion int64
	if m := strings.TrimSpace(r.Header.Get("If-Match")); m != "" {
		v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(m, "W/"), `"`), 10, 64)
		if err != nil || v <= 0 {
			httpapi.WriteProblem(w, r, http.StatusBadRequest, "If-Match must be the setting's version, a positive integer")
			return
		}
		ifVersion = v
	}
	var body struct {
		Value jsonValue `json:"value"`
	}
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if len(body.Value) == 0 {
		httpapi.WriteValidation(w, r, validation.Errors{{Field: "value", Message: "is required: send {\"value\": <any JSON>}"}})
		return
	}
	actor := httpapi.PrincipalFrom(r.Context()).Actor()
	st, err := h.settings.Set(r.Context(), kind, r.PathValue("name"), []byte(body.Value), actor, ifVersion)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(st.Version, 10)))
	httpapi.WriteJSON(w, http.StatusOK, st)
}

// jsonValue keeps a JSON value as it came, and tells an explicit null
// (which is a value) from an absent field.
type jsonValue []byte

// UnmarshalJSON keeps the raw value.
func (v *jsonValue) UnmarshalJSON(b []byte) error {
	*v = append((*v)[:0], b...)
	return nil
}

func (h *Handlers) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrSettingNotFound):
		httpapi.WriteProblem(w, r, http.StatusNotFound, "no such setting: "+r.PathValue("name"))
	case errors.Is(err, ErrVersionMismatch):
		httpapi.WriteProblem(w, r, http.StatusPreconditionFailed, "the setting changed since the version in If-Match")
	case errors.Is(err, ErrInvalidSetting):
		field := "value"
		if strings.Contains(err.Error(), "name") {
			field = "name"
		}
		httpapi.WriteValidation(w, r, validation.Errors{{Field: field, Message: err.Error()}})
	default:
		httpapi.WriteError(w, r, err)
	}
}
