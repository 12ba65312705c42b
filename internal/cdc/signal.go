package cdc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Signal types: the "type" column of the signaling table, as Debezium names
// them (io.debezium.pipeline.signal.actions).
const (
	SignalExecuteSnapshot = "execute-snapshot"
	SignalStopSnapshot    = "stop-snapshot"
	SignalPauseSnapshot   = "pause-snapshot"
	SignalResumeSnapshot  = "resume-snapshot"
	SignalLog             = "log"
	// The watermarks an incremental snapshot writes around each chunk
	// (OpenIncrementalSnapshotWindow.NAME, CloseIncrementalSnapshotWindow.NAME).
	signalWindowOpen  = "snapshot-window-open"
	signalWindowClose = "snapshot-window-close"
)

// Snapshot types of an execute-snapshot signal (its data's "type").
const (
	SnapshotIncremental = "incremental"
	SnapshotBlocking    = "blocking"
)

// ErrSignalsDisabled is returned for a connector that cannot take signals:
// it has no signal.data.collection, or its source channel is off.
var ErrSignalsDisabled = errors.New("the connector has no signaling table")

// Signal is one row of the signaling table: its three columns in order
// (Debezium's names are id, type and data; any names will do).
type Signal struct {
	ID   string
	Type string
	// Data is the JSON document of the signal's parameters (may be empty).
	Data string
}

// snapshotSignalData is the data of execute-snapshot and stop-snapshot, as
// Debezium's ExecuteSnapshot and StopSnapshot read it.
type snapshotSignalData struct {
	DataCollections      []string              `json:"data-collections,omitempty"`
	Type                 string                `json:"type"`
	AdditionalConditions []additionalCondition `json:"additional-conditions,omitempty"`
	SurrogateKey         string                `json:"surrogate-key,omitempty"`
}

// additionalCondition narrows what an ad-hoc snapshot reads of the tables
// its data-collection regular expression matches: a condition appended to
// the chunk query (incremental), or a whole SELECT (blocking).
type additionalCondition struct {
	DataCollection string `json:"data-collection"`
	Filter         string `json:"filter"`
}

// parseSnapshotData reads a snapshot signal's data. The snapshot type is
// incremental unless it says otherwise, in any letter case; ok is false for
// data that is not JSON or an unknown type (Debezium logs and skips those).
func parseSnapshotData(data string) (d snapshotSignalData, ok bool) {
	if strings.TrimSpace(data) != "" {
		if err := json.Unmarshal([]byte(data), &d); err != nil {
			return d, false
		}
	}
	for i, dc := range d.DataCollections {
		d.DataCollections[i] = strings.TrimSpace(dc)
	}
	d.Type = strings.ToLower(strings.TrimSpace(d.Type))
	switch d.Type {
	case "":
		d.Type = SnapshotIncremental
	case SnapshotIncremental, SnapshotBlocking:
	default:
		return d, false
	}
	return d, true
}

// matchCollections returns the tables whose schema.table one of the
// data-collections regular expressions matches entirely, in the order the
// expressions name them; an expression that does not compile or matches
// nothing is reported in skipped.
func matchCollections(patterns []string, tables []tableName) (matched []tableName, skipped []string) {
	seen := map[tableName]bool{}
	for _, p := range patterns {
		re, err := regexp.Compile("^(?:" + p + ")$")
		if err != nil {
			skipped = append(skipped, p)
			continue
		}
		n := 0
		for _, t := range tables {
			if re.MatchString(t.schema + "." + t.name) {
				n++
				if !seen[t] {
					seen[t] = true
					matched = append(matched, t)
				}
			}
		}
		if n == 0 {
			skipped = append(skipped, p)
		}
	}
	return matched, skipped
}

// conditionFor is the filter of the first additional condition whose
// data-collection matches schema.table (case-insensitively, as Debezium
// compiles it), or "".
func conditionFor(conds []additionalCondition, id string) string {
	for _, c := range conds {
		re, err := regexp.Compile("(?i)^(?:" + c.DataCollection + ")$")
		if err == nil && re.MatchString(id) {
			return c.Filter
		}
	}
	return ""
}

// SnapshotRequest is an ad-hoc snapshot asked for outside the database
// (the REST API): written to the connector's signaling table as the
// execute-snapshot signal a user would insert.
type SnapshotRequest struct {
	// Tables are schema.table names, taken literally.
	Tables []string
	// Type is incremental (the default) or blocking.
	Type string
}

// executeSnapshotSignal is the signal for r, with a fresh id.
func executeSnapshotSignal(r SnapshotRequest) (Signal, error) {
	typ := strings.ToLower(strings.TrimSpace(r.Type))
	if typ == "" {
		typ = SnapshotIncremental
	}
	if typ != SnapshotIncremental && typ != SnapshotBlocking {
		return Signal{}, fmt.Errorf("snapshot type %q: want incremental or blocking", r.Type)
	}
	d := snapshotSignalData{Type: typ}
	for _, t := range r.Tables {
		d.DataCollections = append(d.DataCollections, regexp.QuoteMeta(strings.TrimSpace(t)))
	}
	b, err := json.Marshal(d)
	if err != nil {
		return Signal{}, err
	}
	return Signal{ID: "adhoc-" + uuid.NewString()[:8], Type: SignalExecuteSnapshot, Data: string(b)}, nil
}

// stopSnapshotSignal is the stop-snapshot signal of the incremental
// snapshot of tables (all of it when tables is empty).
func stopSnapshotSignal(tables []string) Signal {
	d := snapshotSignalData{Type: SnapshotIncremental}
	for _, t := range tables {
		d.DataCollections = append(d.DataCollections, regexp.QuoteMeta(strings.TrimSpace(t)))
	}
	b, _ := json.Marshal(d)
	return Signal{ID: "adhoc-" + uuid.NewString()[:8], Type: SignalStopSnapshot, Data: string(b)}
}

// execer is what writing a signal needs of a connection or pool.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// writeSignal inserts sig into the signaling table of cfg, positionally as
// Debezium writes its watermarks (INSERT INTO <table> VALUES (?, ?, ?)).
func writeSignal(ctx context.Context, db execer, cfg *Config, sig Signal) error {
	var data any
	if sig.Data != "" {
		data = sig.Data
	}
	_, err := db.Exec(ctx, "INSERT INTO "+cfg.signalTableSQL()+" VALUES ($1, $2, $3)", sig.ID, sig.Type, data)
	if err != nil {
		return fmt.Errorf("write %s signal to %s.%s: %w", sig.Type, cfg.SignalSchema, cfg.SignalTable, err)
	}
	return nil
}

// deleteSignal removes the signaling table's row id (the close watermark
// of the insert_delete strategy).
func deleteSignal(ctx context.Context, db execer, cfg *Config, id string) error {
	_, err := db.Exec(ctx, "DELETE FROM "+cfg.signalTableSQL()+" WHERE "+pgx.Identifier{"id"}.Sanitize()+" = $1", id)
	if err != nil {
		return fmt.Errorf("delete watermark %s from %s.%s: %w", id, cfg.SignalSchema, cfg.SignalTable, err)
	}
	return nil
}

func (c *Config) signalTableSQL() string {
	return pgx.Identifier{c.SignalSchema, c.SignalTable}.Sanitize()
}

// signalOf reads a signaling table row: the first three columns are id,
// type and data, whatever their names.
func signalOf(vals []tupleValue) (Signal, bool) {
	if len(vals) < 2 || vals[0].kind != valueText || vals[1].kind != valueText {
		return Signal{}, false
	}
	s := Signal{ID: string(vals[0].data), Type: string(vals[1].data)}
	if len(vals) > 2 && vals[2].kind == valueText {
		s.Data = string(vals[2].data)
	}
	return s, true
}
