package cache

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Handlers serve the cache's ops endpoints. Mount them (admin only for PUT):
//
//	GET /api/v1/ops/cache            CacheStats
//	GET /api/v1/ops/flags            ListFlags
//	GET /api/v1/ops/flags/{name}     GetFlag
//	PUT /api/v1/ops/flags/{name}     PutFlag
//	GET /api/v1/ops/config           ListConfig
//	GET /api/v1/ops/config/{name}    GetConfig
//	PUT /api/v1/ops/config/{name}    PutConfig
//
// The {name} wildcard is read with r.PathValue("name").
type Handlers struct {
	settings *Settings
	stores   *Stores
	// Actor names who made a change, for updated_by; set it to read the
	// authenticated principal. Default: "api".
	Actor func(*http.Request) string
}

// NewHandlers builds the handlers.
func NewHandlers(settings *Settings, stores *Stores) *Handlers {
	return &Handlers{settings: settings, stores: stores}
}

// CacheStats answers GET /api/v1/ops/cache with Stats.
func (h *Handlers) CacheStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.stores.Stats(r.Context()))
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
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (h *Handlers) get(w http.ResponseWriter, r *http.Request, kind string) {
	st, err := h.settings.Get(r.Context(), kind, r.PathValue("name"))
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(st.Version, 10)))
	writeJSON(w, http.StatusOK, st)
}

func (h *Handlers) put(w http.ResponseWriter, r *http.Request, kind string) {
	var ifVersion int64
	if m := strings.TrimSpace(r.Header.Get("If-Match")); m != "" {
		v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(m, "W/"), `"`), 10, 64)
		if err != nil || v <= 0 {
			writeProblem(w, http.StatusBadRequest, "Invalid If-Match", "If-Match must be the setting's version, a positive integer", nil)
			return
		}
		ifVersion = v
	}
	var body struct {
		Value json.RawMessage `json:"value"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxSettingBytes+1024))
	if err := dec.Decode(&body); err != nil {
		writeProblem(w, http.StatusBadRequest, "Malformed JSON body", err.Error(), nil)
		return
	}
	if len(body.Value) == 0 {
		writeProblem(w, http.StatusBadRequest, "Validation failed", "the body must be {\"value\": <JSON>}",
			[]fieldError{{Field: "value", Message: "is required"}})
		return
	}
	actor := "api"
	if h.Actor != nil {
		if a := h.Actor(r); a != "" {
			actor = a
		}
	}
	st, err := h.settings.Set(r.Context(), kind, r.PathValue("name"), body.Value, actor, ifVersion)
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(st.Version, 10)))
	writeJSON(w, http.StatusOK, st)
}

func (h *Handlers) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrSettingNotFound):
		writeProblem(w, http.StatusNotFound, "Setting not found", err.Error(), nil)
	case errors.Is(err, ErrVersionMismatch):
		writeProblem(w, http.StatusPreconditionFailed, "Version mismatch", "the setting changed since the version in If-Match", nil)
	case errors.Is(err, ErrInvalidSetting):
		field := "value"
		if strings.Contains(err.Error(), "name") {
			field = "name"
		}
		writeProblem(w, http.StatusBadRequest, "Validation failed", err.Error(), []fieldError{{Field: field, Message: err.Error()}})
	default:
		writeProblem(w, http.StatusInternalServerError, "Internal error", "the setting could not be read or written", nil)
	}
}

// fieldError is one entry of a problem's errors[].
type fieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// writeProblem writes an RFC 9457 problem. Local until the shared HTTP
// package provides one.
func writeProblem(w http.ResponseWriter, status int, title, detail string, errs []fieldError) {
	p := map[string]any{"type": "about:blank", "title": title, "status": status, "detail": detail}
	if len(errs) > 0 {
		p["errors"] = errs
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
