package dlq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/progress"
	"github.com/trackops/trackops/internal/validation"
)

// DefaultMaxReplays is the loop guard's limit: a record whose lineage was
// replayed this often stays in the DLQ.
const DefaultMaxReplays = 3

// AuditEvent is one operator action on dead letters, for the platform's
// audit log.
type AuditEvent struct {
	// Action is "dlq.replay", "dlq.replay.dry_run", "dlq.replay.blocked" or "dlq.discard".
	Action string
	// Actor is who did it, e.g. "user:alice" or "cli:root".
	Actor string
	// Target names the dead letter, e.g. "dlq_message:42".
	Target string
	// Detail holds the action's particulars.
	Detail map[string]any
	At     time.Time
}

// Auditor receives an AuditEvent for each action; the auth package's audit
// log implements it. Every action is also kept in the dlq_actions table.
type Auditor interface {
	Audit(ctx context.Context, e AuditEvent)
}

// ReplayRequest selects dead letters to replay: one by ID, or those matching
// Topic and/or Fingerprint (the oldest one, or every one with All).
type ReplayRequest struct {
	ID          int64
	Topic       string
	Fingerprint string
	All         bool
	DryRun      bool
	// Actor is recorded in the audit trail.
	Actor string
}

// Validate reports a request that selects nothing sensible.
func (r ReplayRequest) Validate() error {
	var errs validation.Errors
	switch {
	case r.ID < 0:
		errs.Add("id", "must be a positive dead-letter id")
	case r.ID > 0 && (r.Topic != "" || r.Fingerprint != "" || r.All):
		errs.Add("id", "give either an id or a topic/fingerprint filter, not both")
	case r.ID == 0 && r.Topic == "" && r.Fingerprint == "":
		errs.Add("id", "give the id of a dead letter, or a topic (and optionally a fingerprint)")
	}
	return errs.Err()
}

// Replay outcomes of one dead letter.
const (
	OutcomeReplayed    = "replayed"
	OutcomeWouldReplay = "would_replay"
	OutcomeBlocked     = "blocked"
	OutcomeSkipped     = "skipped"
)

// ReplayItem is what happened to one dead letter.
type ReplayItem struct {
	ID            int64  `json:"id"`
	OriginalTopic string `json:"original_topic"`
	Outcome       string `json:"outcome"`
	Reason        string `json:"reason,omitempty"`
	// ReplayCount is the trackops_replay-count header the replayed record
	// carries (or would carry).
	ReplayCount int `json:"replay_count"`
}

// ReplayResult sums up a replay.
type ReplayResult struct {
	DryRun   bool         `json:"dry_run"`
	Matched  int          `json:"matched"`
	Replayed int          `json:"replayed"`
	Blocked  int          `json:"blocked"`
	Skipped  int          `json:"skipped"`
	Items    []ReplayItem `json:"items"`
}

func (r *ReplayResult) add(it ReplayItem) {
	r.Items = append(r.Items, it)
	switch it.Outcome {
	case OutcomeReplayed, OutcomeWouldReplay:
		r.Replayed++
	case OutcomeBlocked:
		r.Blocked++
	case OutcomeSkipped:
		r.Skipped++
	}
}

// Replayer sends dead letters back to their original topics.
type Replayer struct {
	pool       *pgxpool.Pool
	store      *Store
	producer   *kgo.Client
	auditor    Auditor
	maxReplays int
	log        *slog.Logger
	progress   *progress.Tracker
	metrics    *Metrics
}

// ReplayerConfig tunes a Replayer.
type ReplayerConfig struct {
	// MaxReplays is the loop guard's limit (default DefaultMaxReplays).
	MaxReplays int
	// Auditor receives each action; nil only logs (dlq_actions keeps them anyway).
	Auditor Auditor
	Logger  *slog.Logger
	// Progress, if set, is told of each dead letter a replay of --all
	// handles (the CLI's progress bar); the API leaves it nil.
	Progress *progress.Tracker
	// Metrics count the replays; nil counts without exporting.
	Metrics *Metrics
}

// NewReplayer returns a replayer over the dead letters in pool, publishing
// with producer.
func NewReplayer(pool *pgxpool.Pool, producer *kgo.Client, cfg ReplayerConfig) *Replayer {
	if cfg.MaxReplays <= 0 {
		cfg.MaxReplays = DefaultMaxReplays
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	return &Replayer{pool: pool, store: NewStore(pool), producer: producer, auditor: cfg.Auditor,
		maxReplays: cfg.MaxReplays, log: cfg.Logger, progress: cfg.Progress, metrics: cfg.Metrics}
}

// MaxReplays is the loop guard's limit.
func (r *Replayer) MaxReplays() int { return r.maxReplays }

// Replay replays the dead letters req selects. Only dead letters in status
// new are replayed; one replayed maxReplays times already is refused by the
// loop guard, marked replay_blocked and reported. A dry run reports the same
// outcomes and changes nothing. Each replay is at least once: if the process
// dies between Kafka's acknowledgement and the status update, a later replay
// may send the record again (consumers are idempotent by event id).
func (r *Replayer) Replay(ctx context.Context, req ReplayRequest) (ReplayResult, error) {
	res := ReplayResult{DryRun: req.DryRun, Items: []ReplayItem{}}
	if err := req.Validate(); err != nil {
		return res, err
	}
	if req.Actor == "" {
		req.Actor = "system"
	}
	if req.ID > 0 {
		res.Matched = 1
		it, err := r.replayOne(ctx, req, req.ID)
		if err != nil {
			return res, err
		}
		res.add(it)
		return res, nil
	}
	if req.All && r.progress != nil {
		if c, err := r.store.Count(ctx, Filter{Topic: req.Topic, Fingerprint: req.Fingerprint, Status: StatusNew}); err == nil {
			r.progress.SetTotal(c.Total)
		}
	}
	// Page through the matches oldest first. Each pass only sees rows still
	// new, so replayed rows drop out; blocked or skipped ones are stepped over.
	var after int64
	for {
		limit := 500
		if !req.All {
			limit = 1
		}
		ids, err := r.matching(ctx, req, after, limit)
		if err != nil {
			return res, err
		}
		for _, id := range ids {
			res.Matched++
			it, err := r.replayOne(ctx, req, id)
			if err != nil {
				return res, err
			}
			res.add(it)
			after = id
			if req.All {
				r.progress.Step(fmt.Sprintf("id %d %s", id, it.Outcome))
			}
		}
		if !req.All || len(ids) < limit {
			return res, nil
		}
	}
}

func (r *Replayer) matching(ctx context.Context, req ReplayRequest, afterID int64, limit int) ([]int64, error) {
	args := []any{}
	where := Filter{Topic: req.Topic, Fingerprint: req.Fingerprint, Status: StatusNew}.where(&args)
	args = append(args, afterID, limit)
	rows, err := r.pool.Query(ctx, fmt.Sprintf(`SELECT id FROM dlq_messages WHERE %s AND id > $%d ORDER BY id LIMIT $%d`,
		where, len(args)-1, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("select dead letters to replay: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// replayOne replays one dead letter under a row lock, so two operators
// replaying at once send it once.
func (r *Replayer) replayOne(ctx context.Context, req ReplayRequest, id int64) (ReplayItem, error) {
	it := ReplayItem{ID: id}
	var audit *AuditEvent
	err := postgres.WithTx(ctx, r.pool, func(tx pgx.Tx) error {
		it = ReplayItem{ID: id}
		audit = nil
		rows, err := tx.Query(ctx, `SELECT `+messageColumns+` FROM dlq_messages WHERE id = $1 FOR UPDATE SKIP LOCKED`, id)
		if err != nil {
			return err
		}
		m, err := pgx.CollectExactlyOneRow(rows, scanMessage)
		if errors.Is(err, pgx.ErrNoRows) {
			if _, gerr := r.store.Get(ctx, id); errors.Is(gerr, ErrNotFound) {
				return ErrNotFound
			}
			it.Outcome, it.Reason = OutcomeSkipped, "being replayed by someone else right now"
			return nil
		}
		if err != nil {
			return err
		}
		it.OriginalTopic = m.OriginalTopic
		it.ReplayCount = m.ReplayCount + 1
		target := fmt.Sprintf("dlq_message:%d", id)
		switch {
		case m.Status != StatusNew:
			it.Outcome, it.Reason = OutcomeSkipped, "status is "+m.Status
			return nil
		case m.ReplayCount >= r.maxReplays:
			it.Outcome = OutcomeBlocked
			it.Reason = fmt.Sprintf("loop guard: already replayed %d times (limit %d); fix the cause, then discard it or replay by hand", m.ReplayCount, r.maxReplays)
			if req.DryRun {
				return nil
			}
			r.metrics.replays.WithLabelValues(m.OriginalTopic, OutcomeBlocked).Inc()
			detail := map[string]any{"replay_count": m.ReplayCount, "max_replays": r.maxReplays}
			if _, err := tx.Exec(ctx, `UPDATE dlq_messages SET replay_blocked = true, updated_at = now() WHERE id = $1`, id); err != nil {
				return err
			}
			audit = &AuditEvent{Action: "dlq.replay.blocked", Actor: req.Actor, Target: target, Detail: detail}
			return insertAction(ctx, tx, id, "replay_blocked", req.Actor, detail)
		case req.DryRun:
			it.Outcome = OutcomeWouldReplay
			return nil
		}
		rec := ReplayRecord(m)
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = r.producer.ProduceSync(pctx, rec).FirstErr()
		cancel()
		if err != nil {
			return fmt.Errorf("replay dead letter %d to %s: %w", id, m.OriginalTopic, err)
		}
		r.metrics.replays.WithLabelValues(m.OriginalTopic, OutcomeReplayed).Inc()
		it.Outcome = OutcomeReplayed
		if _, err := tx.Exec(ctx, `UPDATE dlq_messages SET status = 'replayed', replay_count = replay_count + 1,
				replayed_at = now(), updated_at = now() WHERE id = $1`, id); err != nil {
			return err
		}
		detail := map[string]any{"original_topic": m.OriginalTopic, "replay_count": it.ReplayCount,
			"dlq_topic": m.Topic, "dlq_partition": m.Partition, "dlq_offset": m.Offset}
		audit = &AuditEvent{Action: "dlq.replay", Actor: req.Actor, Target: target, Detail: detail}
		return insertAction(ctx, tx, id, "replay", req.Actor, detail)
	})
	if err != nil {
		return it, err
	}
	if req.DryRun && it.Outcome != "" {
		audit = &AuditEvent{Action: "dlq.replay.dry_run", Actor: req.Actor, Target: fmt.Sprintf("dlq_message:%d", id),
			Detail: map[string]any{"outcome": it.Outcome, "reason": it.Reason}}
	}
	if audit != nil {
		r.audit(ctx, *audit)
	}
	return it, nil
}

// Discard marks a dead letter as dealt with; it is kept for the record but
// no longer offered for replay.
func (r *Replayer) Discard(ctx context.Context, id int64, actor, reason string) error {
	detail := map[string]any{"reason": reason}
	err := postgres.WithTx(ctx, r.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE dlq_messages SET status = 'discarded', updated_at = now() WHERE id = $1 AND status = 'new'`, id)
		if err != nil {
			return fmt.Errorf("discard dead letter: %w", err)
		}
		if tag.RowsAffected() == 0 {
			if _, err := r.store.Get(ctx, id); err != nil {
				return err
			}
			return fmt.Errorf("dead letter %d is not new: %w", id, ErrNotNew)
		}
		return insertAction(ctx, tx, id, "discard", actor, detail)
	})
	if err != nil {
		return err
	}
	r.audit(ctx, AuditEvent{Action: "dlq.discard", Actor: actor, Target: fmt.Sprintf("dlq_message:%d", id), Detail: detail})
	return nil
}

// ErrNotNew means the dead letter was already replayed or discarded.
var ErrNotNew = errors.New("dead letter already replayed or discarded")

func (r *Replayer) audit(ctx context.Context, e AuditEvent) {
	e.At = time.Now().UTC()
	r.log.InfoContext(ctx, "dead-letter action", "action", e.Action, "actor", e.Actor, "target", e.Target, "detail", e.Detail)
	if r.auditor != nil {
		r.auditor.Audit(ctx, e)
	}
}

// ReplayRecord is the record a replay of m publishes: the original topic,
// key and value, the original headers without the dead-letter ones, and
// trackops_replay-count one higher than m's.
func ReplayRecord(m Message) *kgo.Record {
	rec := &kgo.Record{Topic: m.OriginalTopic, Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		if strings.HasPrefix(h.Key, "kafka_dlt-") || h.Key == kafka.HeaderDLTAttempts || h.Key == HeaderReplayCount {
			continue
		}
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: HeaderReplayCount, Value: []byte(strconv.Itoa(m.ReplayCount + 1))})
	return rec
}
