package ops

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/trackops/trackops/internal/cdc"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/validation"
)

// ConnectPrefix is where the platform API serves the Kafka Connect REST API
// of the CDC connectors, so the console (which may only call its own
// origin) reaches it with the operator's own token.
const ConnectPrefix = "/api/v1/ops/connect"

// ConnectRoutes serves h, the Kafka Connect REST API, under ConnectPrefix:
// GET /api/v1/ops/connect/connectors is GET /connectors, and so on. Reading
// needs the operator role, as on the Connect port; so does validating a
// configuration (it changes nothing); every other change needs admin.
// Answers keep Kafka Connect's shape, errors included.
func ConnectRoutes(h http.Handler) []httpapi.Route {
	strip := http.StripPrefix(ConnectPrefix, h)
	serve := func(w http.ResponseWriter, r *http.Request) { strip.ServeHTTP(w, r) }
	routes := []httpapi.Route{
		{Method: http.MethodPut, Pattern: ConnectPrefix + "/connector-plugins/{plugin}/config/validate", Role: httpapi.RoleOperator, Handler: serve},
	}
	for _, p := range []string{"/connectors", "/connectors/{name}", "/connectors/{name}/{rest...}", "/connector-plugins", "/connector-plugins/{rest...}"} {
		routes = append(routes, httpapi.Route{Method: http.MethodGet, Pattern: ConnectPrefix + p, Role: httpapi.RoleOperator, Handler: serve})
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
			routes = append(routes, httpapi.Route{Method: m, Pattern: ConnectPrefix + p, Role: httpapi.RoleAdmin, Handler: serve})
		}
	}
	return routes
}

// Snapshotter starts and stops ad-hoc snapshots of CDC connectors —
// Debezium's execute-snapshot and stop-snapshot signals: the tables are read
// again and emitted as "r" events, incrementally while streaming goes on,
// or blocking the stream meanwhile.
type Snapshotter interface {
	StartAdhocSnapshot(ctx context.Context, connector string, req SnapshotRequest) (AdhocSnapshot, error)
	// StopAdhocSnapshot stops the connector's incremental snapshot, of the
	// tables named or all of it.
	StopAdhocSnapshot(ctx context.Context, connector string, tables []string) (AdhocSnapshot, error)
}

// AdhocSnapshot is a signal sent to a connector: the snapshot starts (or
// stops) when the connector's stream reaches it.
type AdhocSnapshot struct {
	// ID is the signal's id (the signaling table's id column).
	ID        string   `json:"id"`
	Connector string   `json:"connector"`
	Signal    string   `json:"signal"`
	Type      string   `json:"type"`
	Tables    []string `json:"tables"`
	// StartedAt is when the signal was written.
	StartedAt time.Time `json:"started_at"`
}

// ErrAdhocSnapshotUnsupported is what a Snapshotter returns for a connector
// that cannot take ad-hoc snapshots (no signaling table).
var ErrAdhocSnapshotUnsupported = errors.New("ad-hoc snapshots are not supported")

// ErrNoConnectors is what a Snapshotter returns in a process that does not
// run the CDC connectors (no cdc role).
var ErrNoConnectors = errors.New("this process does not run the cdc role; send the request to a process that does")

// SnapshotPattern is the route of StartAdhocSnapshot (POST) and
// StopAdhocSnapshot (DELETE).
const SnapshotPattern = "/api/v1/ops/cdc/connectors/{name}/snapshots"

// SnapshotRoutes is POST /api/v1/ops/cdc/connectors/{name}/snapshots
// (admin), body {"tables": ["public.orders", ...], "type": "incremental"}:
// 202 with the execute-snapshot signal written; and DELETE on the same path
// (admin), body {"tables": [...]} or none: 202 with the stop-snapshot
// signal. With a nil Snapshotter a valid request is answered 501.
func SnapshotRoutes(s Snapshotter) []httpapi.Route {
	return []httpapi.Route{
		{Method: http.MethodPost, Pattern: SnapshotPattern, Role: httpapi.RoleAdmin,
			Handler: func(w http.ResponseWriter, r *http.Request) { serveSnapshot(w, r, s) }},
		{Method: http.MethodDelete, Pattern: SnapshotPattern, Role: httpapi.RoleAdmin,
			Handler: func(w http.ResponseWriter, r *http.Request) { serveStopSnapshot(w, r, s) }},
	}
}

// SnapshotRequest is the body of the snapshot route.
type SnapshotRequest struct {
	Tables []string `json:"tables"`
	// Type is incremental (the default) or blocking.
	Type string `json:"type,omitempty"`
}

var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*\.[A-Za-z_][A-Za-z0-9_$]*$`)

// Validate checks the table list and the type.
func (s SnapshotRequest) Validate() error {
	var errs validation.Errors
	if len(s.Tables) == 0 {
		errs.Add("tables", "name at least one table as schema.table, e.g. public.orders")
	}
	checkTables(&errs, s.Tables)
	switch strings.ToLower(s.Type) {
	case "", cdc.SnapshotIncremental, cdc.SnapshotBlocking:
	default:
		errs.Add("type", "must be incremental or blocking")
	}
	return errs.Err()
}

func checkTables(errs *validation.Errors, tables []string) {
	for i, t := range tables {
		if !tableName.MatchString(strings.TrimSpace(t)) {
			errs.Add(fmt.Sprintf("tables[%d]", i), "must be schema.table, e.g. public.orders")
		}
	}
}

func serveSnapshot(w http.ResponseWriter, r *http.Request, s Snapshotter) {
	var req SnapshotRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if err := req.Validate(); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	name := r.PathValue("name")
	if s == nil {
		httpapi.WriteProblem(w, r, http.StatusNotImplemented, "ad-hoc snapshots are not available in this version of TrackOps yet; "+
			"to read the tables again, re-create the connector with snapshot.mode=initial and a new slot name")
		return
	}
	snap, err := s.StartAdhocSnapshot(r.Context(), name, req)
	writeSnapshotResult(w, r, name, snap, err)
}

func serveStopSnapshot(w http.ResponseWriter, r *http.Request, s Snapshotter) {
	var req struct {
		Tables []string `json:"tables"`
	}
	if r.ContentLength != 0 {
		if err := httpapi.DecodeJSON(r, &req); err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
	}
	var errs validation.Errors
	checkTables(&errs, req.Tables)
	if err := errs.Err(); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	name := r.PathValue("name")
	if s == nil {
		httpapi.WriteProblem(w, r, http.StatusNotImplemented, "ad-hoc snapshots are not available in this version of TrackOps")
		return
	}
	snap, err := s.StopAdhocSnapshot(r.Context(), name, req.Tables)
	writeSnapshotResult(w, r, name, snap, err)
}

func writeSnapshotResult(w http.ResponseWriter, r *http.Request, name string, snap AdhocSnapshot, err error) {
	var cfgErr *cdc.ConfigError
	switch {
	case errors.Is(err, cdc.ErrNotFound):
		httpapi.WriteProblem(w, r, http.StatusNotFound, fmt.Sprintf("connector %q does not exist", name))
	case errors.Is(err, ErrNoConnectors):
		httpapi.WriteProblem(w, r, http.StatusNotFound, err.Error())
	case errors.Is(err, cdc.ErrSignalsDisabled), errors.Is(err, ErrAdhocSnapshotUnsupported):
		httpapi.WriteProblem(w, r, http.StatusConflict, err.Error())
	case errors.As(err, &cfgErr):
		httpapi.WriteProblem(w, r, http.StatusUnprocessableEntity, strings.Join(cfgErr.Problems, "; "))
	case err != nil:
		httpapi.WriteError(w, r, err)
	default:
		httpapi.WriteJSON(w, http.StatusAccepted, snap)
	}
}

// ManagerSnapshots is the Snapshotter of the connectors m runs: it writes
// the signals to each connector's signaling table.
func ManagerSnapshots(m *cdc.Manager) Snapshotter { return managerSnapshots{m} }

type managerSnapshots struct{ m *cdc.Manager }

func (s managerSnapshots) StartAdhocSnapshot(ctx context.Context, connector string, req SnapshotRequest) (AdhocSnapshot, error) {
	sig, err := s.m.ExecuteSnapshot(ctx, connector, cdc.SnapshotRequest{Tables: req.Tables, Type: req.Type})
	if err != nil {
		return AdhocSnapshot{}, err
	}
	typ := strings.ToLower(req.Type)
	if typ == "" {
		typ = cdc.SnapshotIncremental
	}
	return AdhocSnapshot{ID: sig.ID, Connector: connector, Signal: sig.Type, Type: typ, Tables: req.Tables, StartedAt: time.Now().UTC()}, nil
}

func (s managerSnapshots) StopAdhocSnapshot(ctx context.Context, connector string, tables []string) (AdhocSnapshot, error) {
	sig, err := s.m.StopSnapshot(ctx, connector, tables)
	if err != nil {
		return AdhocSnapshot{}, err
	}
	if tables == nil {
		tables = []string{}
	}
	return AdhocSnapshot{ID: sig.ID, Connector: connector, Signal: sig.Type, Type: cdc.SnapshotIncremental, Tables: tables, StartedAt: time.Now().UTC()}, nil
}

// NoConnectors is the Snapshotter of a process without the cdc role.
type NoConnectors struct{}

// StartAdhocSnapshot implements Snapshotter.
func (NoConnectors) StartAdhocSnapshot(context.Context, string, SnapshotRequest) (AdhocSnapshot, error) {
	return AdhocSnapshot{}, ErrNoConnectors
}

// StopAdhocSnapshot implements Snapshotter.
func (NoConnectors) StopAdhocSnapshot(context.Context, string, []string) (AdhocSnapshot, error) {
	return AdhocSnapshot{}, ErrNoConnectors
}
