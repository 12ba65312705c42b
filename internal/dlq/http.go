package dlq

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/pagination"
	"github.com/trackops/trackops/internal/validation"
)

// Handlers serve the DLQ's ops endpoints.
type Handlers struct {
	store    *Store
	replayer *Replayer
}

// NewHandlers returns the endpoints over store, replaying with replayer.
func NewHandlers(store *Store, replayer *Replayer) *Handlers {
	return &Handlers{store: store, replayer: replayer}
}

// Routes lists GET /api/v1/ops/dlq and GET /api/v1/ops/dlq/{id} (viewer),
// POST /api/v1/ops/dlq/replay and POST /api/v1/ops/dlq/{id}/discard (admin).
func (h *Handlers) Routes() []httpapi.Route {
	return []httpapi.Route{
		{Method: http.MethodGet, Pattern: "/api/v1/ops/dlq", Role: httpapi.RoleViewer, Handler: h.list},
		{Method: http.MethodGet, Pattern: "/api/v1/ops/dlq/{id}", Role: httpapi.RoleViewer, Handler: h.get},
		{Method: http.MethodPost, Pattern: "/api/v1/ops/dlq/replay", Role: httpapi.RoleAdmin, Handler: h.replay},
		{Method: http.MethodPost, Pattern: "/api/v1/ops/dlq/{id}/discard", Role: httpapi.RoleAdmin, Handler: h.discard},
	}
}

// MessageJSON is a dead letter in API responses. Key and value are text when
// they are valid UTF-8, else base64 (key_encoding/value_encoding say which);
// header values likewise, and Spring's binary partition, offset and
// timestamp headers are shown as numbers.
type MessageJSON struct {
	ID                int64             `json:"id"`
	Topic             string            `json:"topic"`
	Partition         int32             `json:"partition"`
	Offset            int64             `json:"offset"`
	Key               *string           `json:"key"`
	KeyEncoding       string            `json:"key_encoding,omitempty"`
	Value             *string           `json:"value,omitempty"`
	ValuePreview      string            `json:"value_preview,omitempty"`
	ValueEncoding     string            `json:"value_encoding,omitempty"`
	ValueBytes        int               `json:"value_bytes"`
	Headers           map[string]string `json:"headers,omitempty"`
	Timestamp         *time.Time        `json:"timestamp,omitempty"`
	OriginalTopic     string            `json:"original_topic"`
	OriginalPartition *int32            `json:"original_partition"`
	OriginalOffset    *int64            `json:"original_offset"`
	OriginalTimestamp *time.Time        `json:"original_timestamp,omitempty"`
	ConsumerGroup     string            `json:"consumer_group"`
	ExceptionClass    string            `json:"exception_class"`
	ExceptionMessage  string            `json:"exception_message"`
	Stacktrace        string            `json:"stacktrace,omitempty"`
	Attempts          *int              `json:"attempts"`
	Fingerprint       string            `json:"fingerprint"`
	ErrorPattern      string            `json:"error_pattern"`
	ReplayCount       int               `json:"replay_count"`
	Status            string            `json:"status"`
	ReplayBlocked     bool              `json:"replay_blocked"`
	ReceivedAt        time.Time         `json:"received_at"`
	UpdatedAt         time.Time         `json:"updated_at"`
	ReplayedAt        *time.Time        `json:"replayed_at,omitempty"`
	Actions           []Action          `json:"actions,omitempty"`
}

// ToJSON renders m; full includes the whole value, headers and stack trace,
// otherwise a preview of the value.
func ToJSON(m Message, full bool) MessageJSON {
	j := MessageJSON{ID: m.ID, Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, ValueBytes: len(m.Value),
		OriginalTopic: m.OriginalTopic, OriginalPartition: m.OriginalPartition, OriginalOffset: m.OriginalOffset,
		OriginalTimestamp: m.OriginalTimestamp, ConsumerGroup: m.ConsumerGroup, ExceptionClass: m.ExceptionClass,
		ExceptionMessage: m.ExceptionMessage, Attempts: m.Attempts, Fingerprint: m.Fingerprint,
		ErrorPattern: m.ErrorPattern, ReplayCount: m.ReplayCount, Status: m.Status, ReplayBlocked: m.ReplayBlocked,
		ReceivedAt: m.ReceivedAt, UpdatedAt: m.UpdatedAt, ReplayedAt: m.ReplayedAt}
	if !m.Timestamp.IsZero() {
		ts := m.Timestamp
		j.Timestamp = &ts
	}
	if m.Key != nil {
		k, enc := text(m.Key)
		j.Key, j.KeyEncoding = &k, enc
	}
	v, enc := text(m.Value)
	j.ValueEncoding = enc
	if full {
		j.Value = &v
		j.Stacktrace = m.Stacktrace
		j.Headers = map[string]string{}
		for _, h := range m.Headers {
			j.Headers[h.Key] = headerText(h)
		}
	} else {
		j.ValuePreview = truncate(v, 256)
	}
	return j
}

func text(b []byte) (string, string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return fmt.Sprintf("%x", b), "hex"
}

func headerText(h Header) string {
	switch h.Key {
	case kafka.HeaderDLTOriginalPartition, kafka.HeaderDLTOriginalOffset, kafka.HeaderDLTOriginalTimestamp:
		if n := headerIntText(h); n != "" {
			return n
		}
	}
	s, enc := text(h.Value)
	if enc != "" {
		return enc + ":" + s
	}
	return s
}

// headerIntText renders one of Spring's integer headers as decimal, or ""
// when it is not an integer.
func headerIntText(h Header) string {
	if n, err := strconv.ParseInt(string(h.Value), 10, 64); err == nil {
		return strconv.FormatInt(n, 10)
	}
	switch len(h.Value) {
	case 4:
		return strconv.FormatInt(int64(int32(uint32(h.Value[0])<<24|uint32(h.Value[1])<<16|uint32(h.Value[2])<<8|uint32(h.Value[3]))), 10)
	case 8:
		var n uint64
		for _, b := range h.Value {
			n = n<<8 | uint64(b)
		}
		return strconv.FormatInt(int64(n), 10)
	}
	return ""
}

// ListJSON is the body of GET /api/v1/ops/dlq.
type ListJSON struct {
	Counts     Counts        `json:"counts"`
	Groups     []Group       `json:"groups"`
	Messages   []MessageJSON `json:"messages"`
	NextCursor string        `json:"next_cursor,omitempty"`
}

// ParseFilter reads the list filters from query parameters: topic,
// fingerprint, status, since (RFC 3339 time or a duration such as 1h),
// limit and cursor.
func ParseFilter(q map[string][]string, now time.Time) (Filter, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return strings.TrimSpace(v[0])
		}
		return ""
	}
	var errs validation.Errors
	f := Filter{Topic: get("topic"), Fingerprint: get("fingerprint"), Status: get("status"), Limit: 100}
	switch f.Status {
	case "", StatusNew, StatusReplayed, StatusDiscarded:
	default:
		errs.Add("status", "must be new, replayed or discarded")
	}
	if s := get("since"); s != "" {
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			f.Since = t
		} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
			f.Since = now.Add(-d)
		} else {
			errs.Add("since", "must be an RFC 3339 time (2026-01-02T15:04:05Z) or a duration such as 30m or 24h")
		}
	}
	f.Limit = pagination.Limit(get("limit"), f.Limit, 1000, &errs)
	if s := get("cursor"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			errs.Add("cursor", "must be the next_cursor of a previous page")
		}
		f.BeforeID = n
	}
	return f, errs.Err()
}

func (h *Handlers) list(w http.ResponseWriter, r *http.Request) {
	f, err := ParseFilter(r.URL.Query(), time.Now())
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	out, err := h.store.Page(r.Context(), f)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

// Page is one page of dead letters matching f with the counts and
// fingerprint groups of every match (not just this page): the one source
// of GET /api/v1/ops/dlq and `trackops dlq list --json`, so the two cannot
// disagree.
func (s *Store) Page(ctx context.Context, f Filter) (ListJSON, error) {
	msgs, err := s.List(ctx, f)
	if err != nil {
		return ListJSON{}, err
	}
	all := f
	all.BeforeID = 0
	groups, err := s.Groups(ctx, all)
	if err != nil {
		return ListJSON{}, err
	}
	counts, err := s.Count(ctx, all)
	if err != nil {
		return ListJSON{}, err
	}
	out := ListJSON{Counts: counts, Groups: groups, Messages: make([]MessageJSON, 0, len(msgs))}
	if out.Groups == nil {
		out.Groups = []Group{}
	}
	for _, m := range msgs {
		out.Messages = append(out.Messages, ToJSON(m, false))
	}
	if len(msgs) == f.Limit {
		out.NextCursor = strconv.FormatInt(msgs[len(msgs)-1].ID, 10)
	}
	return out, nil
}

func (h *Handlers) get(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	m, err := h.store.Get(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		httpapi.WriteProblem(w, r, http.StatusNotFound, fmt.Sprintf("dead letter %d not found", id))
		return
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	j := ToJSON(m, true)
	if j.Actions, err = h.store.Actions(r.Context(), id); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, j)
}

type replayBody struct {
	ID          int64  `json:"id"`
	Topic       string `json:"topic"`
	Fingerprint string `json:"fingerprint"`
	All         bool   `json:"all"`
	DryRun      bool   `json:"dry_run"`
}

func (h *Handlers) replay(w http.ResponseWriter, r *http.Request) {
	var body replayBody
	if err := httpapi.DecodeJSON(r, &body); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	req := ReplayRequest{ID: body.ID, Topic: strings.TrimSpace(body.Topic), Fingerprint: strings.TrimSpace(body.Fingerprint),
		All: body.All, DryRun: body.DryRun, Actor: httpapi.PrincipalFrom(r.Context()).Actor()}
	if err := req.Validate(); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	res, err := h.replayer.Replay(r.Context(), req)
	if errors.Is(err, ErrNotFound) {
		httpapi.WriteProblem(w, r, http.StatusNotFound, fmt.Sprintf("dead letter %d not found", req.ID))
		return
	}
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, res)
}

type discardBody struct {
	Reason string `json:"reason"`
}

func (h *Handlers) discard(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var body discardBody
	if err := httpapi.DecodeOptionalJSON(r, &body); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	err := h.replayer.Discard(r.Context(), id, httpapi.PrincipalFrom(r.Context()).Actor(), body.Reason)
	switch {
	case errors.Is(err, ErrNotFound):
		httpapi.WriteProblem(w, r, http.StatusNotFound, fmt.Sprintf("dead letter %d not found", id))
	case errors.Is(err, ErrNotNew):
		httpapi.WriteProblem(w, r, http.StatusConflict, err.Error())
	case err != nil:
		httpapi.WriteError(w, r, err)
	default:
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"id": id, "status": StatusDiscarded})
	}
}

func pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		httpapi.WriteProblem(w, r, http.StatusBadRequest, "the dead-letter id must be a positive whole number")
		return 0, false
	}
	return id, true
}
