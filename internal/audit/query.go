package audit

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/pagination"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/validation"
)

// Filter selects audit rows; empty fields match everything.
type Filter struct {
	Actor string
	// Action is "METHOD route", as the action column holds it.
	Action string
	// Target is a prefix of the request path (the resource acted on).
	Target  string
	Method  string
	Route   string
	Outcome string
	Status  int
	Since   time.Time
	Until   time.Time
	// Limit is the page size (1–500, default 50).
	Limit int
	// Cursor continues after the last row of a previous page.
	Cursor string
}

// Page is a page of rows, newest first.
type Page struct {
	Items      []Entry `json:"items"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

// Reader reads the audit log.
type Reader struct{ pool postgres.Querier }

// NewReader reads the audit log through pool (a pool, or a read router
// such as postgres.Reads that sends the reads to a replica).
func NewReader(pool postgres.Querier) *Reader { return &Reader{pool: pool} }

// List returns one page of rows matching f, newest first. Pages are keyed
// by row id, so rows written meanwhile never shift or repeat a page.
func (rd *Reader) List(ctx context.Context, f Filter) (Page, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	var (
		where []string
		args  []any
	)
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Cursor != "" {
		id, err := decodeCursor(f.Cursor)
		if err != nil {
			return Page{}, err
		}
		add("id < $%d", id)
	}
	if f.Actor != "" {
		add("actor = $%d", f.Actor)
	}
	if f.Action != "" {
		add("action = $%d", f.Action)
	}
	if f.Target != "" {
		add("starts_with(target, $%d)", f.Target)
	}
	if f.Method != "" {
		add("method = $%d", f.Method)
	}
	if f.Route != "" {
		add("route = $%d", f.Route)
	}
	if f.Outcome != "" {
		add("outcome = $%d", f.Outcome)
	}
	if f.Status != 0 {
		add("status = $%d", f.Status)
	}
	if !f.Since.IsZero() {
		add("at >= $%d", f.Since)
	}
	if !f.Until.IsZero() {
		add("at < $%d", f.Until)
	}
	sql := `SELECT id, at, actor, principal_id, principal_kind, action, method, route, target, status, outcome,
		request_id, client_ip, duration_ms FROM audit_log`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, f.Limit+1)
	sql += fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(args))
	rows, err := rd.pool.Query(ctx, sql, args...)
	if err != nil {
		return Page{}, fmt.Errorf("read audit log: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Entry, error) {
		var e Entry
		err := row.Scan(&e.ID, &e.At, &e.Actor, &e.PrincipalID, &e.PrincipalKind, &e.Action, &e.Method, &e.Route,
			&e.Target, &e.Status, &e.Outcome, &e.RequestID, &e.ClientIP, &e.DurationMS)
		return e, err
	})
	if err != nil {
		return Page{}, fmt.Errorf("read audit log: %w", err)
	}
	p := Page{Items: items}
	if len(items) > f.Limit {
		p.Items = items[:f.Limit]
		p.NextCursor = encodeCursor(p.Items[f.Limit-1].ID)
	}
	if p.Items == nil {
		p.Items = []Entry{}
	}
	return p, nil
}

func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("a" + strconv.FormatInt(id, 10)))
}

func decodeCursor(c string) (int64, error) {
	bad := validation.Errors{{Field: "cursor", Message: "is not a cursor this API returned"}}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 2 || b[0] != 'a' {
		return 0, bad
	}
	id, err := strconv.ParseInt(string(b[1:]), 10, 64)
	if err != nil || id < 1 {
		return 0, bad
	}
	return id, nil
}

// ParseFilter reads a Filter from query parameters actor, action, target
// (a path prefix), method, route, outcome, status, since, until (RFC 3339),
// limit and cursor.
func ParseFilter(q map[string][]string) (Filter, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	var errs validation.Errors
	f := Filter{Actor: get("actor"), Action: get("action"), Target: get("target"), Method: strings.ToUpper(get("method")),
		Route: get("route"), Outcome: get("outcome"), Cursor: get("cursor")}
	switch f.Outcome {
	case "", OutcomeSuccess, OutcomeDenied, OutcomeRejected, OutcomeError:
	default:
		errs.Add("outcome", "must be success, denied, rejected or error")
	}
	if len(f.Actor) > 200 || len(f.Route) > 300 || len(f.Method) > 10 || len(f.Cursor) > 64 || len(f.Action) > 320 || len(f.Target) > 500 {
		errs.Add("query", "parameter too long")
	}
	if v := get("status"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 || n > 599 {
			errs.Add("status", "must be an HTTP status code")
		}
		f.Status = n
	}
	f.Limit = pagination.Limit(get("limit"), f.Limit, 500, &errs)
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := get(t.name); v != "" {
			ts, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				errs.Add(t.name, "must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
			}
			*t.dst = ts
		}
	}
	if f.Cursor != "" {
		if _, err := decodeCursor(f.Cursor); err != nil {
			errs.Add("cursor", "is not a cursor this API returned")
		}
	}
	return f, errs.Err()
}

// Routes is GET /api/v1/ops/audit, for admins.
func (rd *Reader) Routes() []httpapi.Route {
	return []httpapi.Route{{Method: http.MethodGet, Pattern: "/api/v1/ops/audit", Role: httpapi.RoleAdmin, Handler: rd.handleList}}
}

func (rd *Reader) handleList(w http.ResponseWriter, r *http.Request) {
	f, err := ParseFilter(r.URL.Query())
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	page, err := rd.List(r.Context(), f)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, page)
}
