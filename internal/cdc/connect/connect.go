// Package connect serves the Kafka Connect REST API over TrackOps' CDC
// connectors, so tools and scripts written for a Debezium deployment on
// Kafka Connect (curl against :8083, Kafka UI, connector JSON files) work
// unchanged.
package connect

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/trackops/trackops/internal/cdc"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/validation"
)

// KafkaConnectVersion is the Kafka Connect version GET / reports.
const KafkaConnectVersion = "3.7.0"

// Handler is the REST API.
type Handler struct {
	m       *cdc.Manager
	log     *slog.Logger
	version string
	mux     *http.ServeMux
}

// NewHandler serves m's connectors. version is TrackOps' version, reported as
// the commit in GET /.
func NewHandler(m *cdc.Manager, version string, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.Default()
	}
	h := &Handler{m: m, log: log, version: version, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /{$}", h.root)
	h.mux.HandleFunc("GET /connectors", h.list)
	h.mux.HandleFunc("POST /connectors", h.create)
	h.mux.HandleFunc("GET /connectors/{name}", h.get)
	h.mux.HandleFunc("DELETE /connectors/{name}", h.delete)
	h.mux.HandleFunc("GET /connectors/{name}/config", h.getConfig)
	h.mux.HandleFunc("PUT /connectors/{name}/config", h.putConfig)
	h.mux.HandleFunc("GET /connectors/{name}/status", h.status)
	h.mux.HandleFunc("POST /connectors/{name}/restart", h.restart)
	h.mux.HandleFunc("PUT /connectors/{name}/pause", h.pause)
	h.mux.HandleFunc("PUT /connectors/{name}/resume", h.resume)
	h.mux.HandleFunc("GET /connectors/{name}/tasks", h.tasks)
	h.mux.HandleFunc("GET /connectors/{name}/tasks/{task}/status", h.taskStatus)
	h.mux.HandleFunc("POST /connectors/{name}/tasks/{task}/restart", h.restart)
	h.mux.HandleFunc("GET /connectors/{name}/topics", h.topics)
	h.mux.HandleFunc("GET /connector-plugins", h.plugins)
	h.mux.HandleFunc("PUT /connector-plugins/{plugin}/config/validate", h.validate)
	return h
}

// ServeHTTP implements http.Handler; unmatched routes answer Kafka
// Connect's JSON error shape.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := h.mux.Handler(r); pattern == "" {
		// A path served for other methods is Kafka Connect's (JAX-RS) 405.
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, p := h.mux.Handler(probe); p != "" {
				writeError(w, http.StatusMethodNotAllowed, "HTTP 405 Method Not Allowed")
				return
			}
		}
		writeError(w, http.StatusNotFound, "HTTP 404 Not Found")
		return
	}
	// A connector name or query value PostgreSQL cannot store as text
	// (NUL, not UTF-8) is the client's error, not the server's.
	if errs := httpapi.CheckRequestText(r); len(errs) > 0 {
		writeError(w, http.StatusBadRequest, errs.Error())
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) root(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{
		"version":          KafkaConnectVersion,
		"commit":           h.version,
		"kafka_cluster_id": "trackops",
	})
}

// list answers GET /connectors, with ?expand=status and ?expand=info as
// Kafka Connect supports them.
func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	names := h.m.Names()
	expand := r.URL.Query()["expand"]
	if len(expand) == 0 {
		writeJSON(w, http.StatusOK, names)
		return
	}
	out := map[string]map[string]any{}
	for _, n := range names {
		item := map[string]any{}
		for _, x := range expand {
			switch x {
			case "status":
				if st, err := h.statusBody(w, r, n); err == nil {
					item["status"] = st
				}
			case "info":
				if info, err := h.m.Get(n); err == nil {
					item["info"] = info
				}
			}
		}
		out[n] = item
	}
	writeJSON(w, http.StatusOK, out)
}

type createRequest struct {
	Name   string    `json:"name"`
	Config configMap `json:"config"`
}

// configMap accepts numbers and booleans as values too, as Kafka Connect's
// Jackson binding does, and keeps them as strings.
type configMap map[string]string

func (c *configMap) UnmarshalJSON(b []byte) error {
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	out := make(configMap, len(raw))
	for k, v := range raw {
		switch x := v.(type) {
		case string:
			out[k] = x
		case nil:
			out[k] = ""
		case map[string]any, []any:
			return fmt.Errorf("config value of %q must be a string", k)
		default:
			out[k] = fmt.Sprint(x)
		}
	}
	*c = out
	return nil
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Name == "" {
		req.Name = req.Config["name"]
	}
	if req.Config == nil {
		writeError(w, http.StatusBadRequest, "Connector config is required")
		return
	}
	info, warnings, err := h.m.Create(r.Context(), req.Name, req.Config)
	h.logWarnings(req.Name, warnings)
	if err != nil {
		h.writeManagerError(w, req.Name, err)
		return
	}
	w.Header().Set("Location", "/connectors/"+info.Name)
	writeJSON(w, http.StatusCreated, info)
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	info, err := h.m.Get(name)
	if err != nil {
		h.writeManagerError(w, name, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (h *Handler) getConfig(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	info, err := h.m.Get(name)
	if err != nil {
		h.writeManagerError(w, name, err)
		return
	}
	writeJSON(w, http.StatusOK, info.Config)
}

func (h *Handler) putConfig(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var raw configMap
	if !decodeBody(w, r, &raw) {
		return
	}
	info, created, warnings, err := h.m.Put(r.Context(), name, raw)
	h.logWarnings(name, warnings)
	if err != nil {
		h.writeManagerError(w, name, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
		w.Header().Set("Location", "/connectors/"+name)
	}
	writeJSON(w, code, info)
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := h.m.Delete(r.Context(), name); err != nil {
		h.writeManagerError(w, name, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type taskState struct {
	ID       int    `json:"id"`
	State    string `json:"state"`
	WorkerID string `json:"worker_id"`
	Trace    string `json:"trace,omitempty"`
}

type stateBody struct {
	State    string `json:"state"`
	WorkerID string `json:"worker_id"`
	Trace    string `json:"trace,omitempty"`
}

type statusBody struct {
	Name      string      `json:"name"`
	Connector stateBody   `json:"connector"`
	Tasks     []taskState `json:"tasks"`
	Type      string      `json:"type"`
}

// statusBody is Kafka Connect's status of a connector, the same on every
// process of the cluster: the state on the process streaming it (the
// holder of its lease) and that process's worker_id, for the connector and
// its one task. A process standing by answers with the active process's
// state and worker_id — in Kafka Connect terms the connector and its task
// run on another worker — so stock clients read it as they read any
// Connect cluster; Kafka Connect's states have no STANDBY. Which part the
// answering process plays is in the X-Trackops-Worker-Id and
// X-Trackops-Worker-Role headers and in TrackOps' own reports.
func (h *Handler) statusBody(w http.ResponseWriter, r *http.Request, name string) (statusBody, error) {
	cs, err := h.m.ClusterState(r.Context(), name)
	if err != nil {
		return statusBody{}, err
	}
	w.Header().Set("X-Trackops-Worker-Id", cs.WorkerID)
	w.Header().Set("X-Trackops-Worker-Role", cs.Role)
	// One task does the work (Debezium's tasks.max=1), so its state and
	// failure are also the connector's.
	return statusBody{
		Name:      name,
		Connector: stateBody{State: cs.State, WorkerID: cs.ActiveWorkerID, Trace: cs.Trace},
		Tasks:     []taskState{{ID: 0, State: cs.State, WorkerID: cs.ActiveWorkerID, Trace: cs.Trace}},
		Type:      "source",
	}, nil
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	st, err := h.statusBody(w, r, name)
	if err != nil {
		h.writeManagerError(w, name, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *Handler) taskStatus(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	st, err := h.statusBody(w, r, name)
	if err != nil {
		h.writeManagerError(w, name, err)
		return
	}
	if r.PathValue("task") != "0" {
		writeError(w, http.StatusNotFound, "Task "+r.PathValue("task")+" not found for connector "+name)
		return
	}
	writeJSON(w, http.StatusOK, st.Tasks[0])
}

// restart answers POST /connectors/{name}/restart: 204, or 202 with the
// status when includeTasks=true (Kafka Connect's KIP-745 form).
func (h *Handler) restart(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if r.URL.Query().Get("onlyFailed") == "true" {
		if cs, err := h.m.ClusterState(r.Context(), name); err == nil && cs.State != cdc.StateFailed {
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	if err := h.m.Restart(name); err != nil {
		h.writeManagerError(w, name, err)
		return
	}
	if r.URL.Query().Get("includeTasks") == "true" {
		st, _ := h.statusBody(w, r, name)
		writeJSON(w, http.StatusAccepted, st)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) pause(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := h.m.Pause(r.Context(), name); err != nil {
		h.writeManagerError(w, name, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (h *Handler) resume(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := h.m.Resume(r.Context(), name); err != nil {
		h.writeManagerError(w, name, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (h *Handler) tasks(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	info, err := h.m.Get(name)
	if err != nil {
		h.writeManagerError(w, name, err)
		return
	}
	writeJSON(w, http.StatusOK, []map[string]any{{"id": cdc.TaskID{Connector: name, Task: 0}, "config": info.Config}})
}

func (h *Handler) topics(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	st, err := h.m.StatusOf(r.Context(), name)
	if err != nil {
		h.writeManagerError(w, name, err)
		return
	}
	topics := st.Topics
	if topics == nil {
		topics = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{name: map[string]any{"topics": topics}})
}

func (h *Handler) plugins(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, []map[string]string{{"class": cdc.ConnectorClass, "type": "source", "version": cdc.DebeziumVersion}})
}

// validate answers Kafka Connect's config validation with one entry per
// problem found.
func (h *Handler) validate(w http.ResponseWriter, r *http.Request) {
	var raw configMap
	if !decodeBody(w, r, &raw) {
		return
	}
	_, _, err := cdc.ParseConfig(raw["name"], raw)
	var problems []string
	var ce *cdc.ConfigError
	if errors.As(err, &ce) {
		problems = ce.Problems
	}
	configs := []map[string]any{}
	for _, p := range problems {
		key := p
		if i := strings.IndexAny(p, "= "); i > 0 {
			key = p[:i]
		}
		configs = append(configs, map[string]any{"value": map[string]any{"name": key, "errors": []string{p}}})
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": cdc.ConnectorClass, "error_count": len(problems), "groups": []string{"Common"}, "configs": configs})
}

func (h *Handler) logWarnings(name string, warnings []string) {
	for _, w := range warnings {
		h.log.Warn(w, "connector", name)
	}
}

func (h *Handler) writeManagerError(w http.ResponseWriter, name string, err error) {
	switch {
	case errors.Is(err, cdc.ErrNotFound):
		writeError(w, http.StatusNotFound, "Connector "+name+" not found")
	case errors.Is(err, cdc.ErrExists):
		writeError(w, http.StatusConflict, "Connector "+name+" already exists")
	case cdc.IsConfigError(err):
		writeError(w, http.StatusBadRequest, err.Error())
	case postgres.IsUnavailable(err):
		w.Header().Set("Retry-After", strconv.Itoa(httpapi.RetryAfterUnavailable))
		writeError(w, http.StatusServiceUnavailable, "the database is unavailable; retry in a few seconds")
	case postgres.IsDataException(err):
		writeError(w, http.StatusBadRequest, "the request holds a value that cannot be stored (SQLSTATE "+postgres.SQLState(err)+")")
	default:
		h.log.Error("connect api", "connector", name, "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

// maxBody bounds a request body when no router limits it (tests); a
// connector configuration is a few kilobytes.
const maxBody = 1 << 20

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", tooBig.Limit))
		return false
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "could not read request body: "+err.Error())
		return false
	}
	if p := validation.RawJSONProblem(body); p != "" {
		writeError(w, http.StatusBadRequest, "Request body "+p)
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeError(w, http.StatusBadRequest, "Request body is not valid JSON for this endpoint: "+err.Error())
		return false
	}
	return true
}

// writeError writes Kafka Connect's error body: {"error_code", "message"}.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"error_code": code, "message": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
