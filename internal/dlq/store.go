package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/postgres"
)

// ErrNotFound means no dead letter has the requested id.
var ErrNotFound = errors.New("dead letter not found")

// Store keeps recorded dead letters in PostgreSQL.
type Store struct {
	db postgres.Querier
}

// NewStore returns a store over db (a pool).
func NewStore(db postgres.Querier) *Store { return &Store{db: db} }

// Insert records m unless its (topic, partition, offset) is already
// recorded; it reports the row's id and whether this call inserted it.
func (s *Store) Insert(ctx context.Context, m Message) (id int64, inserted bool, err error) {
	headers, err := json.Marshal(m.Headers)
	if err != nil {
		return 0, false, fmt.Errorf("encode dead-letter headers: %w", err)
	}
	var ts *time.Time
	if !m.Timestamp.IsZero() {
		ts = &m.Timestamp
	}
	err = s.db.QueryRow(ctx, `INSERT INTO dlq_messages (topic, partition, "offset", key, value, headers, record_timestamp,
			original_topic, original_partition, original_offset, original_timestamp, consumer_group,
			exception_class, exception_message, stacktrace, attempts, fingerprint, error_pattern, replay_count)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
		ON CONFLICT ON CONSTRAINT dlq_messages_record_key DO NOTHING
		RETURNING id`,
		m.Topic, m.Partition, m.Offset, m.Key, m.Value, headers, ts,
		m.OriginalTopic, m.OriginalPartition, m.OriginalOffset, m.OriginalTimestamp, m.ConsumerGroup,
		m.ExceptionClass, m.ExceptionMessage, m.Stacktrace, m.Attempts, m.Fingerprint, m.ErrorPattern, m.ReplayCount,
	).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		err = s.db.QueryRow(ctx, `SELECT id FROM dlq_messages WHERE topic = $1 AND partition = $2 AND "offset" = $3`,
			m.Topic, m.Partition, m.Offset).Scan(&id)
		if err != nil {
			return 0, false, fmt.Errorf("look up recorded dead letter: %w", err)
		}
		return id, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("record dead letter: %w", err)
	}
	return id, true, nil
}

// Filter selects dead letters. Empty fields match everything.
type Filter struct {
	// Topic matches the dead-letter topic or the original topic, so both
	// "ORDER_CREATED" and "ORDER_CREATED.dlq" work.
	Topic       string
	Fingerprint string
	Status      string
	// Since keeps dead letters received at or after it.
	Since time.Time
	// BeforeID continues a listing (newest first) below this id.
	BeforeID int64
	// Limit caps the rows (default 100, at most 1000).
	Limit int
}

func (f Filter) where(args *[]any) string {
	var conds []string
	add := func(cond string, v any) {
		*args = append(*args, v)
		conds = append(conds, strings.ReplaceAll(cond, "?", fmt.Sprintf("$%d", len(*args))))
	}
	if f.Topic != "" {
		add("(topic = ? OR original_topic = ?)", f.Topic)
	}
	if f.Fingerprint != "" {
		add("fingerprint = ?", f.Fingerprint)
	}
	if f.Status != "" {
		add("status = ?", f.Status)
	}
	if !f.Since.IsZero() {
		add("received_at >= ?", f.Since)
	}
	if len(conds) == 0 {
		return "true"
	}
	return strings.Join(conds, " AND ")
}

const messageColumns = `id, topic, partition, "offset", key, value, headers, record_timestamp, original_topic,
	original_partition, original_offset, original_timestamp, consumer_group, exception_class, exception_message,
	stacktrace, attempts, fingerprint, error_pattern, replay_count, status, replay_blocked, received_at, updated_at, replayed_at`

func scanMessage(row pgx.CollectableRow) (Message, error) {
	var (
		m       Message
		headers []byte
		ts      *time.Time
	)
	err := row.Scan(&m.ID, &m.Topic, &m.Partition, &m.Offset, &m.Key, &m.Value, &headers, &ts, &m.OriginalTopic,
		&m.OriginalPartition, &m.OriginalOffset, &m.OriginalTimestamp, &m.ConsumerGroup, &m.ExceptionClass,
		&m.ExceptionMessage, &m.Stacktrace, &m.Attempts, &m.Fingerprint, &m.ErrorPattern, &m.ReplayCount,
		&m.Status, &m.ReplayBlocked, &m.ReceivedAt, &m.UpdatedAt, &m.ReplayedAt)
	if err != nil {
		return m, err
	}
	if ts != nil {
		m.Timestamp = *ts
	}
	if err := json.Unmarshal(headers, &m.Headers); err != nil {
		return m, fmt.Errorf("decode dead-letter headers: %w", err)
	}
	return m, nil
}

// List returns dead letters matching f, newest first.
func (s *Store) List(ctx context.Context, f Filter) ([]Message, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 1000)
	var args []any
	where := f.where(&args)
	if f.BeforeID > 0 {
		args = append(args, f.BeforeID)
		where += fmt.Sprintf(" AND id < $%d", len(args))
	}
	args = append(args, f.Limit)
	rows, err := s.db.Query(ctx, `SELECT `+messageColumns+` FROM dlq_messages WHERE `+where+
		fmt.Sprintf(` ORDER BY id DESC LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return pgx.CollectRows(rows, scanMessage)
}

// Get returns one dead letter.
func (s *Store) Get(ctx context.Context, id int64) (Message, error) {
	rows, err := s.db.Query(ctx, `SELECT `+messageColumns+` FROM dlq_messages WHERE id = $1`, id)
	if err != nil {
		return Message{}, fmt.Errorf("get dead letter: %w", err)
	}
	m, err := pgx.CollectExactlyOneRow(rows, scanMessage)
	if errors.Is(err, pgx.ErrNoRows) {
		return Message{}, ErrNotFound
	}
	return m, err
}

// Group is the dead letters sharing one fingerprint.
type Group struct {
	Fingerprint    string    `json:"fingerprint"`
	ErrorPattern   string    `json:"error_pattern"`
	ExceptionClass string    `json:"exception_class"`
	Topics         []string  `json:"topics"`
	Count          int64     `json:"count"`
	New            int64     `json:"new"`
	FirstSeen      time.Time `json:"first_seen"`
	LastSeen       time.Time `json:"last_seen"`
	SampleID       int64     `json:"sample_id"`
	SampleMessage  string    `json:"sample_message"`
}

// Groups counts dead letters matching f by fingerprint, largest group first.
func (s *Store) Groups(ctx context.Context, f Filter) ([]Group, error) {
	var args []any
	where := f.where(&args)
	rows, err := s.db.Query(ctx, `SELECT fingerprint, min(error_pattern), min(exception_class),
			array_agg(DISTINCT topic ORDER BY topic), count(*), count(*) FILTER (WHERE status = 'new'),
			min(received_at), max(received_at), max(id),
			(array_agg(exception_message ORDER BY id DESC))[1]
		FROM dlq_messages WHERE `+where+`
		GROUP BY fingerprint ORDER BY count(*) DESC, max(id) DESC LIMIT 200`, args...)
	if err != nil {
		return nil, fmt.Errorf("group dead letters: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Group, error) {
		var g Group
		err := row.Scan(&g.Fingerprint, &g.ErrorPattern, &g.ExceptionClass, &g.Topics, &g.Count, &g.New,
			&g.FirstSeen, &g.LastSeen, &g.SampleID, &g.SampleMessage)
		return g, err
	})
}

// ByKey returns the dead letters whose record key is key (for TrackOps'
// events, an order id), oldest first, with their audit trails, at most 200.
func (s *Store) ByKey(ctx context.Context, key []byte) ([]Message, map[int64][]Action, error) {
	rows, err := s.db.Query(ctx, `SELECT `+messageColumns+` FROM dlq_messages WHERE key = $1 ORDER BY id LIMIT 200`, key)
	if err != nil {
		return nil, nil, fmt.Errorf("dead letters by key: %w", err)
	}
	msgs, err := pgx.CollectRows(rows, scanMessage)
	if err != nil || len(msgs) == 0 {
		return msgs, nil, err
	}
	ids := make([]int64, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	rows, err = s.db.Query(ctx, `SELECT id, message_id, action, actor, detail, at FROM dlq_actions
		WHERE message_id = ANY($1) ORDER BY id`, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("dead-letter actions: %w", err)
	}
	acts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Action, error) {
		var a Action
		err := row.Scan(&a.ID, &a.MessageID, &a.Action, &a.Actor, &a.Detail, &a.At)
		return a, err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("dead-letter actions: %w", err)
	}
	byMsg := map[int64][]Action{}
	for _, a := range acts {
		byMsg[a.MessageID] = append(byMsg[a.MessageID], a)
	}
	return msgs, byMsg, nil
}

// HeaderValue returns the value of the first header named key, or "".
func (m Message) HeaderValue(key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Counts are dead letters by status.
type Counts struct {
	Total     int64 `json:"total"`
	New       int64 `json:"new"`
	Replayed  int64 `json:"replayed"`
	Discarded int64 `json:"discarded"`
	Blocked   int64 `json:"replay_blocked"`
}

// Count summarises dead letters matching f (the health indicator's details).
func (s *Store) Count(ctx context.Context, f Filter) (Counts, error) {
	var args []any
	where := f.where(&args)
	var c Counts
	err := s.db.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE status = 'new'),
			count(*) FILTER (WHERE status = 'replayed'), count(*) FILTER (WHERE status = 'discarded'),
			count(*) FILTER (WHERE replay_blocked AND status = 'new')
		FROM dlq_messages WHERE `+where, args...).Scan(&c.Total, &c.New, &c.Replayed, &c.Discarded, &c.Blocked)
	if err != nil {
		return Counts{}, fmt.Errorf("count dead letters: %w", err)
	}
	return c, nil
}

// Action is one entry of a dead letter's audit trail.
type Action struct {
	ID        int64          `json:"id"`
	MessageID int64          `json:"message_id"`
	Action    string         `json:"action"`
	Actor     string         `json:"actor"`
	Detail    map[string]any `json:"detail"`
	At        time.Time      `json:"at"`
}

// Actions returns the audit trail of one dead letter, oldest first.
func (s *Store) Actions(ctx context.Context, messageID int64) ([]Action, error) {
	rows, err := s.db.Query(ctx, `SELECT id, message_id, action, actor, detail, at FROM dlq_actions
		WHERE message_id = $1 ORDER BY id`, messageID)
	if err != nil {
		return nil, fmt.Errorf("dead-letter actions: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Action, error) {
		var a Action
		err := row.Scan(&a.ID, &a.MessageID, &a.Action, &a.Actor, &a.Detail, &a.At)
		return a, err
	})
}

func insertAction(ctx context.Context, db postgres.Querier, messageID int64, action, actor string, detail map[string]any) error {
	if detail == nil {
		detail = map[string]any{}
	}
	_, err := db.Exec(ctx, `INSERT INTO dlq_actions (message_id, action, actor, detail) VALUES ($1, $2, $3, $4)`,
		messageID, action, actor, detail)
	if err != nil {
		return fmt.Errorf("record dead-letter action: %w", err)
	}
	return nil
}
