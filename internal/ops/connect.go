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

// Snapshotter starts an ad-hoc snapshot of some tables of a running CDC
// connector — Debezium's execute-snapshot signal: the tables are read again
// and emitted as "r" events while streaming goes on.
type Snapshotter interface {
	StartAdhocSnapshot(ctx context.Context, connector string, tables []string) (AdhocSnapshot, error)
}

// AdhocSnapshot is a started ad-hoc snapshot.
type AdhocSnapshot struct {
	ID        string    `json:"id"`
	Connector string    `json:"connector"`
	Tables    []string  `json:"tables"`
	StartedAt time.Time `json:"started_at"`
}

// ErrAdhocSnapshotUnsupported is what a Snapshotter returns for a connector
// that cannot take ad-hoc snapshots.
var ErrAdhocSnapshotUnsupported = errors.New("ad-hoc snapshots are not supported")

// SnapshotPattern is the route of StartAdhocSnapshot.
const SnapshotPattern = "/api/v1/ops/cdc/connectors/{name}/snapshots"

// SnapshotRoutes is POST /api/v1/ops/cdc/connectors/{name}/snapshots
// (admin), body {"tables": ["public.orders", ...]}: 202 with the started
// snapshot. With a nil Snapshotter — this version of TrackOps cannot take
// ad-hoc snapshots yet — a valid request is answered 501 Not Implemented.
func SnapshotRoutes(s Snapshotter) []httpapi.Route {
	return []httpapi.Route{{Method: http.MethodPost, Pattern: SnapshotPattern, Role: httpapi.RoleAdmin,
		Handler: func(w http.ResponseWriter, r *http.Request) { serveSnapshot(w, r, s) }}}
}

// SnapshotRequest is the body of the snapshot route.
type SnapshotRequest struct {
	Tables []string `json:"tables"`
}

var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*\.[A-Za-z_][A-Za-z0-9_$]*$`)

// Validate checks the table list.
func (s SnapshotRequest) Validate() error {
	var errs validation.Errors
	if len(s.Tables) == 0 {
		errs.Add("tables", "name at least one table as schema.table, e.g. public.orders")
	}
	for i, t := range s.Tables {
		if !tableName.MatchString(strings.TrimSpace(t)) {
			errs.Add(fmt.Sprintf("tables[%d]", i), "must be schema.table, e.g. public.orders")
		}
	}
	return errs.Err()
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
	snap, err := s.StartAdhocSnapshot(r.Context(), name, req.Tables)
	switch {
	case errors.Is(err, cdc.ErrNotFound):
		httpapi.WriteProblem(w, r, http.StatusNotFound, fmt.Sprintf("connector %q does not exist", name))
	case errors.Is(err, ErrAdhocSnapshotUnsupported):
		httpapi.WriteProblem(w, r, http.StatusNotImplemented, err.Error())
	case err != nil:
		httpapi.WriteError(w, r, err)
	default:
		httpapi.WriteJSON(w, http.StatusAccepted, snap)
	}
}
