package cdc

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Incremental snapshots, as Debezium takes them (DDD-3, DBLog's watermark
// algorithm): a table is read in chunks of incremental.snapshot.chunk.size
// rows in primary-key order while the stream goes on. For each chunk the
// connector
//
//  1. writes the low watermark, a snapshot-window-open row, to the
//     signaling table;
//  2. reads the chunk into a buffer (the window);
//  3. writes the high watermark, a snapshot-window-close row (or, with
//     insert_delete, deletes the open row).
//
// When the stream reaches the low watermark the window opens: every change
// of the table streamed from then on removes its key from the buffer (the
// change is newer than what the chunk read). When it reaches the high
// watermark the rows left in the buffer are emitted as read events
// (op "r", source.snapshot "incremental") and the next chunk is read. So no
// read ever follows, with an older value, a change of the same row.
//
// One gap of the method is closed too: a transaction can be in the WAL
// before the low watermark and still be invisible to the chunk's query
// (PostgreSQL makes a commit visible a moment after writing its record).
// The chunk query records the transactions in progress in its snapshot;
// their changes deduplicate the window wherever the stream meets them.
//
// Everything runs on the stream's goroutine, so the buffer holds one chunk
// at a time. The progress (tables left, last key emitted, maximum key) is
// kept with the connector's offsets once Kafka holds the chunk's records,
// so a restarted connector resumes with the chunk after the last one Kafka
// has.

// IncrementalSnapshot is an incremental snapshot's state as the offsets
// keep it (the field names are those of Debezium's offsets). Collections
// is empty when no snapshot runs; the rest then only remembers the last
// signal applied.
type IncrementalSnapshot struct {
	Collections []SnapshotCollection `json:"incremental_snapshot_collections"`
	// PrimaryKey is the chunk key of the last row emitted from the current
	// table (text values); reading resumes after it.
	PrimaryKey []string `json:"incremental_snapshot_primary_key,omitempty"`
	// MaximumKey is the current table's largest chunk key when its reading
	// began; rows inserted above it are streamed anyway.
	MaximumKey []string `json:"incremental_snapshot_maximum_key,omitempty"`
	// CorrelationID is the id of the signal that started the snapshot.
	CorrelationID string `json:"incremental_snapshot_correlation_id,omitempty"`
	// SignalLSN is the position of the last signal applied: a signal the
	// slot sends again after a restart is not applied twice.
	SignalLSN uint64 `json:"signal_lsn,omitempty"`
	Paused    bool   `json:"paused,omitempty"`

	// Progress, for status and the console.
	StartedAt         time.Time `json:"started_at,omitzero"`
	TablesTotal       int       `json:"tables_total,omitempty"`
	TablesDone        int       `json:"tables_done,omitempty"`
	Chunks            int64     `json:"chunks,omitempty"`
	TableRowsRead     int64     `json:"table_rows_read,omitempty"`
	TableRowsEstimate int64     `json:"table_rows_estimate,omitempty"`
	RowsRead          int64     `json:"rows_read,omitempty"`
}

// SnapshotCollection is one table an incremental snapshot reads.
type SnapshotCollection struct {
	// ID is schema.table.
	ID                  string `json:"incremental_snapshot_collections_id"`
	AdditionalCondition string `json:"incremental_snapshot_collections_additional_condition,omitempty"`
	SurrogateKey        string `json:"incremental_snapshot_collections_surrogate_key,omitempty"`
}

// Running reports whether tables are left to read.
func (s *IncrementalSnapshot) Running() bool { return s != nil && len(s.Collections) > 0 }

func (s *IncrementalSnapshot) clone() *IncrementalSnapshot {
	if s == nil {
		return nil
	}
	c := *s
	c.Collections = slices.Clone(s.Collections)
	c.PrimaryKey = slices.Clone(s.PrimaryKey)
	c.MaximumKey = slices.Clone(s.MaximumKey)
	return &c
}

// SnapshotProgress is an ad-hoc snapshot's progress as status shows it.
type SnapshotProgress struct {
	// Type is incremental or blocking.
	Type string `json:"type"`
	// State is running, paused, completed or stopped.
	State string `json:"state"`
	// SignalID is the id of the signal that started it.
	SignalID string `json:"signal_id,omitempty"`
	// CurrentTable is the table being read; Tables those still to read,
	// the current one first.
	CurrentTable string   `json:"current_table,omitempty"`
	Tables       []string `json:"tables"`
	TablesTotal  int      `json:"tables_total"`
	TablesDone   int      `json:"tables_done"`
	// ChunkSize is incremental.snapshot.chunk.size; Chunks the chunks read.
	ChunkSize int   `json:"chunk_size,omitempty"`
	Chunks    int64 `json:"chunks"`
	// TableRowsRead and TableRowsEstimate are the current table's rows read
	// so far and its estimated total (pg_class.reltuples, or a count).
	TableRowsRead     int64 `json:"table_rows_read"`
	TableRowsEstimate int64 `json:"table_rows_estimate"`
	// RowsRead counts the rows read from every table; RowsDeduplicated the
	// rows dropped from windows because the stream carried a newer change.
	RowsRead         int64     `json:"rows_read"`
	RowsDeduplicated int64     `json:"rows_deduplicated"`
	StartedAt        time.Time `json:"started_at,omitzero"`
	// UpdatedAt is when the figures last changed.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// ProgressOf is how far the incremental snapshot in s has got, as the
// offsets record it (nil when none runs): for `trackops cdc status`, which
// reads the offsets without a running connector.
func ProgressOf(s *IncrementalSnapshot) *SnapshotProgress {
	if !s.Running() {
		return nil
	}
	p := &SnapshotProgress{Type: SnapshotIncremental, State: "running", SignalID: s.CorrelationID,
		CurrentTable: s.Collections[0].ID, TablesTotal: s.TablesTotal, TablesDone: s.TablesDone, Chunks: s.Chunks,
		TableRowsRead: s.TableRowsRead, TableRowsEstimate: s.TableRowsEstimate, RowsRead: s.RowsRead, StartedAt: s.StartedAt}
	if s.Paused {
		p.State = "paused"
	}
	for _, c := range s.Collections {
		p.Tables = append(p.Tables, c.ID)
	}
	return p
}

// incremental runs the incremental snapshots of one stream.
type incremental struct {
	c   *Connector
	em  *emitter
	off *Offsets // the stream's offsets; off.Incremental is the durable state

	state IncrementalSnapshot // the live state

	// The chunk in flight: its id (empty when none), whether the stream
	// has passed its low watermark, its rows and where it ends.
	chunkID  string
	open     bool
	window   []windowRow
	index    map[string]int
	chunkEnd []string
	// inProgress are the transactions running when the chunk was read.
	inProgress map[uint32]struct{}
	cur        *chunkTable
	keyBuf     []byte

	// pending are states to persist once Kafka holds their transaction.
	pending []pendingState

	deduplicated int64
	lastState    string // completed or stopped, once the snapshot ended
}

type windowRow struct {
	key  string
	vals []tupleValue
	gone bool
}

// chunkTable is the table a snapshot reads.
type chunkTable struct {
	id     string // schema.table
	name   tableName
	t      *table
	cols   string // the select list
	keyIdx []int  // chunk key columns (positions in t.columns)
	keySQL string // the chunk key columns, quoted, comma-separated
	desc   string // ORDER BY of the maximum key
	filter string
}

type pendingState struct {
	track *txTrack // nil: no records to wait for
	state *IncrementalSnapshot
}

func newIncremental(c *Connector, em *emitter, off *Offsets) *incremental {
	e := &incremental{c: c, em: em, off: off, index: map[string]int{}}
	if off.Incremental != nil {
		e.state = *off.Incremental.clone()
	}
	e.publish()
	return e
}

// resume reads the next chunk of a snapshot the offsets say is running
// (Debezium's init after a restart).
func (e *incremental) resume(ctx context.Context, st *streamState) error {
	if !e.state.Running() || e.state.Paused {
		return nil
	}
	e.c.log.Info("resuming incremental snapshot", "table", e.state.Collections[0].ID, "after_key", e.state.PrimaryKey,
		"tables_left", len(e.state.Collections))
	return e.readChunk(ctx, st)
}

// signal applies a row inserted into the signaling table.
func (e *incremental) signal(ctx context.Context, st *streamState, sig Signal, lsn uint64) error {
	switch sig.Type {
	case signalWindowOpen:
		if e.chunkID != "" && strings.HasPrefix(sig.ID, e.chunkID) {
			e.open = true
		}
		return nil
	case signalWindowClose:
		if e.chunkID != "" && strings.HasPrefix(sig.ID, e.chunkID) && e.c.cfg.WatermarkStrategy == WatermarkInsertInsert {
			return e.closeWindow(ctx, st, lsn)
		}
		return nil
	}
	if !e.c.cfg.SignalChannels["source"] {
		e.c.log.Debug("signal ignored: the source channel is not in signal.enabled.channels", "id", sig.ID, "type", sig.Type)
		return nil
	}
	if lsn <= e.state.SignalLSN {
		return nil // applied before the restart
	}
	log := e.c.log.With("signal", sig.ID, "type", sig.Type)
	switch sig.Type {
	case SignalExecuteSnapshot:
		return e.execute(ctx, st, sig, lsn, log)
	case SignalStopSnapshot:
		return e.stop(ctx, st, sig, lsn, log)
	case SignalPauseSnapshot:
		if e.state.Running() && !e.state.Paused {
			log.Info("incremental snapshot paused")
			e.state.Paused = true
		}
	case SignalResumeSnapshot:
		if e.state.Running() && e.state.Paused {
			log.Info("incremental snapshot resumed")
			e.state.Paused = false
			if e.chunkID == "" {
				if err := e.readChunk(ctx, st); err != nil {
					return err
				}
			}
		}
	case SignalLog:
		var d struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal([]byte(sig.Data), &d)
		log.Info("signal: "+d.Message, "lsn", lsnText(lsn))
	default:
		log.Warn("signal of an unknown type ignored")
		return nil
	}
	e.state.SignalLSN = lsn
	e.push(st)
	return nil
}

// execute applies execute-snapshot.
func (e *incremental) execute(ctx context.Context, st *streamState, sig Signal, lsn uint64, log *slog.Logger) error {
	d, ok := parseSnapshotData(sig.Data)
	if !ok || len(d.DataCollections) == 0 {
		log.Warn("execute-snapshot signal without data-collections, or of an unknown type, ignored", "data", sig.Data)
		e.state.SignalLSN = lsn
		e.push(st)
		return nil
	}
	tables, err := e.c.capturedTables(ctx, e.em.meta)
	if err != nil {
		return err
	}
	matched, skipped := matchCollections(d.DataCollections, tables)
	if len(skipped) > 0 {
		log.Warn("data-collections match no captured table", "data-collections", skipped)
	}
	e.state.SignalLSN = lsn
	switch d.Type {
	case SnapshotBlocking:
		log.Info("blocking snapshot requested", "tables", len(matched))
		if err := e.c.blockingSnapshot(ctx, e.em, st, matched, d, sig.ID, lsn); err != nil {
			return err
		}
		e.push(st)
		return nil
	}
	if e.c.cfg.ReadOnly {
		log.Warn("incremental snapshot refused: read.only=true forbids writing its watermarks to the signaling table")
		e.push(st)
		return nil
	}
	wasRunning := e.state.Running()
	if !wasRunning {
		e.state = IncrementalSnapshot{SignalLSN: lsn, CorrelationID: sig.ID, StartedAt: time.Now().UTC()}
		e.lastState = ""
		e.deduplicated = 0
	}
	added := 0
	for _, t := range matched {
		id := t.schema + "." + t.name
		if slices.ContainsFunc(e.state.Collections, func(c SnapshotCollection) bool { return c.ID == id }) {
			continue
		}
		e.state.Collections = append(e.state.Collections, SnapshotCollection{ID: id,
			AdditionalCondition: conditionFor(d.AdditionalConditions, id), SurrogateKey: d.SurrogateKey})
		added++
	}
	e.state.TablesTotal += added
	log.Info("incremental snapshot requested", "tables", added, "chunk_size", e.c.cfg.IncrementalChunkSize)
	if !wasRunning && e.state.Running() {
		e.c.metrics.snapshotRunning.WithLabelValues(e.c.cfg.Name, SnapshotIncremental).Set(1)
		if err := e.readChunk(ctx, st); err != nil {
			return err
		}
	}
	e.push(st)
	return nil
}

// stop applies stop-snapshot: the whole incremental snapshot, or some of
// its tables (data-collections).
func (e *incremental) stop(ctx context.Context, st *streamState, sig Signal, lsn uint64, log *slog.Logger) error {
	d, ok := parseSnapshotData(sig.Data)
	e.state.SignalLSN = lsn
	defer e.push(st)
	if ok && d.Type == SnapshotBlocking {
		log.Warn("stop-snapshot of a blocking snapshot ignored: only incremental snapshots can be stopped")
		return nil
	}
	if !e.state.Running() {
		log.Info("stop-snapshot: no incremental snapshot is running")
		return nil
	}
	if len(d.DataCollections) == 0 {
		log.Info("incremental snapshot stopped", "tables_left", len(e.state.Collections))
		e.discardChunk()
		e.state.Collections = nil
		e.finish("stopped")
		return nil
	}
	var res []*regexp.Regexp
	for _, p := range d.DataCollections {
		if re, err := regexp.Compile("^(?:" + p + ")$"); err == nil {
			res = append(res, re)
		}
	}
	current := e.state.Collections[0].ID
	kept := e.state.Collections[:0]
	var removed []string
	for _, c := range e.state.Collections {
		if slices.ContainsFunc(res, func(re *regexp.Regexp) bool { return re.MatchString(c.ID) }) {
			removed = append(removed, c.ID)
			continue
		}
		kept = append(kept, c)
	}
	e.state.Collections = kept
	e.state.TablesTotal -= len(removed)
	log.Info("tables removed from the incremental snapshot", "tables", removed)
	if len(kept) == 0 || kept[0].ID != current {
		// The current table went: its chunk in flight is dropped and the
		// next table starts from its beginning.
		e.discardChunk()
		e.state.PrimaryKey, e.state.MaximumKey, e.state.TableRowsRead, e.state.TableRowsEstimate = nil, nil, 0, 0
		if !e.state.Running() {
			e.finish("stopped")
			return nil
		}
		if !e.state.Paused {
			return e.readChunk(ctx, st)
		}
	}
	return nil
}

// discardChunk forgets the chunk in flight (its watermarks, when the stream
// meets them, no longer match).
func (e *incremental) discardChunk() {
	e.chunkID, e.open, e.inProgress, e.cur = "", false, nil, nil
	e.clearWindow()
}

func (e *incremental) clearWindow() {
	clear(e.window)
	e.window = e.window[:0]
	clear(e.index)
}

// finish ends the snapshot (completed or stopped).
func (e *incremental) finish(how string) {
	e.lastState = how
	e.c.metrics.snapshotRunning.WithLabelValues(e.c.cfg.Name, SnapshotIncremental).Set(0)
	e.c.log.Info("incremental snapshot "+how, "tables", e.state.TablesDone, "rows", e.state.RowsRead,
		"took", time.Since(e.state.StartedAt).Round(time.Millisecond))
}

// observe deduplicates the window with a streamed change of table t.
func (e *incremental) observe(st *streamState, t *table, before, after []tupleValue) {
	if len(e.window) == 0 || e.cur == nil || t.name != e.cur.t.name || t.schema != e.cur.t.schema || len(t.key) == 0 {
		return
	}
	if !e.open {
		if _, ok := e.inProgress[uint32(st.txID)]; !ok {
			return
		}
	}
	for _, vals := range [2][]tupleValue{before, after} {
		if vals == nil {
			continue
		}
		e.keyBuf = appendRowKey(e.keyBuf[:0], t, vals)
		if i, ok := e.index[string(e.keyBuf)]; ok && !e.window[i].gone {
			e.window[i].gone = true
			e.deduplicated++
			e.c.metrics.snapshotDeduplicated.WithLabelValues(e.c.cfg.Name, e.cur.id).Inc()
		}
	}
}

// truncated drops the window when its table is truncated: none of its rows
// exist any more.
func (e *incremental) truncated(t *table) {
	if e.cur != nil && len(e.window) > 0 && t.name == e.cur.t.name && t.schema == e.cur.t.schema {
		for i := range e.window {
			e.window[i].gone = true
		}
	}
}

// closeWindow is the high watermark: the window's remaining rows are
// emitted, then the next chunk is read.
func (e *incremental) closeWindow(ctx context.Context, st *streamState, lsn uint64) error {
	e.chunkID, e.open, e.inProgress = "", false, nil
	if e.cur != nil {
		track := e.c.txOf(e.em, st)
		now := time.Now()
		for _, r := range e.window {
			if r.gone {
				continue
			}
			e.em.emitOne(&change{op: 'r', table: e.cur.t, after: r.vals, commitTime: now, txID: st.txID, lsn: lsn,
				lastCommitLSN: st.lastCommitLSN, snapshot: "incremental"}, track)
		}
		n := int64(len(e.window))
		e.state.PrimaryKey = e.chunkEnd
		e.state.Chunks++
		e.state.TableRowsRead += n
		e.state.RowsRead += n
		e.c.metrics.snapshotRowsRead.WithLabelValues(e.c.cfg.Name, e.cur.id, SnapshotIncremental).Add(float64(n))
		e.c.metrics.snapshotChunks.WithLabelValues(e.c.cfg.Name, e.cur.id).Inc()
	}
	e.clearWindow()
	if e.state.Running() && !e.state.Paused {
		if err := e.readChunk(ctx, st); err != nil {
			return err
		}
	}
	e.push(st)
	return nil
}

// readChunk writes the low watermark, reads the next chunk into the window
// and writes the high watermark. Tables that are gone, keyless or read to
// their end are passed over.
func (e *incremental) readChunk(ctx context.Context, st *streamState) error {
	if !e.state.Running() || e.state.Paused {
		return nil
	}
	cfg := &e.c.cfg
	e.chunkID = uuid.NewString()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	// Debezium's SignalMetadata: the window's open (and close) time.
	if err := writeSignal(ctx, e.em.meta, cfg, Signal{ID: e.chunkID + "-open", Type: signalWindowOpen,
		Data: `{"openWindowTimestamp": "` + now + `"}`}); err != nil {
		return err
	}
	for e.state.Running() {
		coll := e.state.Collections[0]
		if e.cur == nil || e.cur.id != coll.ID {
			ct, err := e.prepare(ctx, coll)
			if err != nil {
				return err
			}
			if ct == nil {
				e.nextTable()
				continue
			}
			e.cur = ct
		}
		if e.state.MaximumKey == nil {
			maxKey, err := e.maximumKey(ctx)
			if err != nil {
				return err
			}
			if maxKey == nil {
				e.c.log.Info("incremental snapshot: table is empty", "table", coll.ID)
				e.nextTable()
				continue
			}
			e.state.MaximumKey = maxKey
		}
		if err := e.readWindow(ctx); err != nil {
			return err
		}
		if len(e.window) == 0 {
			e.nextTable()
			continue
		}
		break
	}
	e.publish()
	if h := e.c.chunkHook; h != nil && len(e.window) > 0 {
		h(ctx, e.cur.id, e.windowKeys())
	}
	if cfg.WatermarkStrategy == WatermarkInsertDelete {
		return deleteSignal(ctx, e.em.meta, cfg, e.chunkID+"-open")
	}
	return writeSignal(ctx, e.em.meta, cfg, Signal{ID: e.chunkID + "-close", Type: signalWindowClose,
		Data: `{"openWindowTimestamp": "` + now + `", "closeWindowTimestamp": "` + time.Now().UTC().Format(time.RFC3339Nano) + `"}`})
}

// signalDelete sees a row deleted from the signaling table: with
// insert_delete, the deletion of the open watermark closes its window.
func (e *incremental) signalDelete(ctx context.Context, st *streamState, t *table, before []tupleValue, lsn uint64) error {
	if e.c.cfg.WatermarkStrategy != WatermarkInsertDelete || e.chunkID == "" || len(before) == 0 {
		return nil
	}
	if before[0].kind == valueText && string(before[0].data) == e.chunkID+"-open" {
		return e.closeWindow(ctx, st, lsn)
	}
	return nil
}

// nextTable moves on from a table read to its end (or passed over).
func (e *incremental) nextTable() {
	done := e.state.Collections[0].ID
	e.state.Collections = e.state.Collections[1:]
	e.state.TablesDone++
	e.state.PrimaryKey, e.state.MaximumKey, e.state.TableRowsRead, e.state.TableRowsEstimate = nil, nil, 0, 0
	e.cur = nil
	e.c.log.Info("incremental snapshot: table read", "table", done, "tables_left", len(e.state.Collections))
	if !e.state.Running() {
		e.finish("completed")
	}
}

// prepare loads the table coll names; nil (with a warning) when it cannot
// be read incrementally: gone, or without a key.
func (e *incremental) prepare(ctx context.Context, coll SnapshotCollection) (*chunkTable, error) {
	schema, name, _ := strings.Cut(coll.ID, ".")
	conn, err := e.em.meta.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("incremental snapshot connection: %w", err)
	}
	defer conn.Release()
	m, err := loadTableMeta(ctx, conn.Conn(), schema, name)
	if err != nil {
		e.c.log.Warn("incremental snapshot: table skipped", "table", coll.ID, "err", err)
		return nil, nil
	}
	t := newTable(&e.c.cfg, e.c.metrics, e.c.cfg.Name, schema, name, m.order, m, nil)
	ct := &chunkTable{id: coll.ID, name: tableName{schema, name}, t: t, filter: coll.AdditionalCondition}
	if coll.SurrogateKey != "" {
		i := slices.Index(m.order, coll.SurrogateKey)
		if i < 0 {
			e.c.log.Warn("incremental snapshot: table skipped, it has no such surrogate-key column", "table", coll.ID, "surrogate-key", coll.SurrogateKey)
			return nil, nil
		}
		ct.keyIdx = []int{i}
	} else {
		// As Debezium's getQueryColumns: the message key (the primary key,
		// or message.key.columns).
		ct.keyIdx = slices.Clone(t.key)
	}
	if len(ct.keyIdx) == 0 || len(t.key) == 0 {
		// Debezium: "Incremental snapshot for table '{}' skipped cause the
		// table has no primary keys". The message key deduplicates the
		// window, so a surrogate-key alone does not do either.
		e.c.log.Warn("incremental snapshot: table skipped, it has no primary key (or message.key.columns)", "table", coll.ID)
		return nil, nil
	}
	cols := make([]string, len(m.order))
	for i, n := range m.order {
		cols[i] = pgx.Identifier{n}.Sanitize()
	}
	ct.cols = strings.Join(cols, ", ")
	keys := make([]string, len(ct.keyIdx))
	desc := make([]string, len(ct.keyIdx))
	for i, idx := range ct.keyIdx {
		keys[i] = cols[idx]
		desc[i] = cols[idx] + " DESC"
	}
	ct.keySQL, ct.desc = strings.Join(keys, ", "), strings.Join(desc, ", ")
	if t.outbox == nil {
		e.em.ensureTopic(ctx, t.topic)
	}
	if e.state.TableRowsEstimate == 0 {
		e.state.TableRowsEstimate = e.estimate(ctx, conn.Conn(), ct)
		e.c.metrics.snapshotRowsEstimated.WithLabelValues(e.c.cfg.Name, coll.ID).Set(float64(e.state.TableRowsEstimate))
	}
	e.c.log.Info("incremental snapshot: reading table", "table", coll.ID, "rows_estimated", e.state.TableRowsEstimate)
	return ct, nil
}

// estimate is the table's row count as the planner knows it, or counted
// when the table was never analysed or a filter applies.
func (e *incremental) estimate(ctx context.Context, conn *pgx.Conn, ct *chunkTable) int64 {
	var n float64
	if ct.filter == "" {
		err := conn.QueryRow(ctx, `SELECT reltuples FROM pg_class WHERE oid = $1::regclass`, ct.name.String()).Scan(&n)
		if err == nil && n > 0 {
			return int64(n)
		}
	}
	q := "SELECT count(*) FROM " + ct.name.String()
	if ct.filter != "" {
		q += " WHERE " + ct.filter
	}
	var c int64
	if err := conn.QueryRow(ctx, q).Scan(&c); err != nil {
		e.c.log.Warn("incremental snapshot: cannot count the table's rows", "table", ct.id, "err", err)
	}
	return c
}

// maximumKey is the chunk key of the table's last row (nil when empty).
func (e *incremental) maximumKey(ctx context.Context) ([]string, error) {
	ct := e.cur
	q := "SELECT " + ct.keySQL + " FROM " + ct.name.String()
	if ct.filter != "" {
		q += " WHERE " + ct.filter
	}
	q += " ORDER BY " + ct.desc + " LIMIT 1"
	rows, err := e.em.meta.Query(ctx, q, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, fmt.Errorf("incremental snapshot of %s: maximum key: %w", ct.id, err)
	}
	defer rows.Close()
	var out []string
	if rows.Next() {
		for _, v := range rows.RawValues() {
			out = append(out, string(v))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("incremental snapshot of %s: maximum key: %w", ct.id, err)
	}
	return out, nil
}

// readWindow reads the chunk after state.PrimaryKey, up to the maximum
// key, into the window, with the transactions in progress in its snapshot.
func (e *incremental) readWindow(ctx context.Context) error {
	ct := e.cur
	e.clearWindow()
	var args []any
	ph := func(vals []string) string {
		p := make([]string, len(vals))
		for i, v := range vals {
			args = append(args, v)
			p[i] = "$" + strconv.Itoa(len(args))
		}
		return strings.Join(p, ", ")
	}
	var conds []string
	if e.state.PrimaryKey != nil {
		conds = append(conds, "("+ct.keySQL+") > ("+ph(e.state.PrimaryKey)+")")
	}
	conds = append(conds, "("+ct.keySQL+") <= ("+ph(e.state.MaximumKey)+")")
	if ct.filter != "" {
		conds = append(conds, "("+ct.filter+")")
	}
	q := "SELECT " + ct.cols + " FROM " + ct.name.String() + " WHERE " + strings.Join(conds, " AND ") +
		" ORDER BY " + ct.keySQL + " LIMIT " + strconv.Itoa(e.c.cfg.IncrementalChunkSize)

	conn, err := e.em.meta.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("incremental snapshot connection: %w", err)
	}
	defer conn.Release()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("incremental snapshot of %s: %w", ct.id, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	// The transaction's first statement fixes its snapshot: the
	// transactions it lists as in progress are those the chunk cannot see.
	xrows, err := tx.Query(ctx, `SELECT txid_snapshot_xip(txid_current_snapshot())`)
	if err != nil {
		return fmt.Errorf("incremental snapshot of %s: %w", ct.id, err)
	}
	e.inProgress = map[uint32]struct{}{}
	for xrows.Next() {
		var x int64
		if err := xrows.Scan(&x); err == nil {
			e.inProgress[uint32(x)] = struct{}{}
		}
	}
	xrows.Close()
	if err := xrows.Err(); err != nil {
		return fmt.Errorf("incremental snapshot of %s: %w", ct.id, err)
	}
	rows, err := tx.Query(ctx, q, append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...)
	if err != nil {
		return fmt.Errorf("incremental snapshot of %s: %w", ct.id, err)
	}
	var last []tupleValue
	for rows.Next() {
		vals := copyRow(rows.RawValues())
		key := string(appendRowKey(nil, ct.t, vals))
		e.index[key] = len(e.window)
		e.window = append(e.window, windowRow{key: key, vals: vals})
		last = vals
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("incremental snapshot of %s: %w", ct.id, err)
	}
	if n := int64(len(e.window)); n > e.c.stats.maxWindow.Load() {
		e.c.stats.maxWindow.Store(n)
	}
	if last != nil {
		e.chunkEnd = make([]string, len(ct.keyIdx))
		for i, idx := range ct.keyIdx {
			e.chunkEnd[i] = string(last[idx].data)
		}
	}
	return tx.Commit(ctx)
}

// windowKeys lists the chunk keys of the window's rows (for tests).
func (e *incremental) windowKeys() [][]string {
	out := make([][]string, len(e.window))
	for i, r := range e.window {
		k := make([]string, len(e.cur.keyIdx))
		for j, idx := range e.cur.keyIdx {
			k[j] = string(r.vals[idx].data)
		}
		out[i] = k
	}
	return out
}

// appendRowKey appends a row's message key (the values of t.key) in a form
// that compares equal exactly when the key values do.
func appendRowKey(b []byte, t *table, vals []tupleValue) []byte {
	for _, idx := range t.key {
		if idx >= len(vals) || vals[idx].kind != valueText {
			b = append(b, 0xff)
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(vals[idx].data)))
		b = append(b, vals[idx].data...)
	}
	return b
}

// push records the state to persist once Kafka holds the records of the
// transaction being streamed (st.tx), and publishes the progress.
func (e *incremental) push(st *streamState) {
	e.pending = append(e.pending, pendingState{track: st.tx, state: e.state.clone()})
	e.publish()
}

// persist saves, before the slot is confirmed to flush, the newest state
// whose transaction is at or before flush. It returns the position that
// may be confirmed: flush, or confirmed when the save failed (the slot
// must not pass a snapshot's progress that is not recorded).
func (e *incremental) persist(ctx context.Context, flush, confirmed uint64) uint64 {
	due := -1
	for i, p := range e.pending {
		if p.track != nil && (!p.track.closed.Load() || p.track.endLSN > flush) {
			break
		}
		due = i
	}
	if due < 0 {
		return flush
	}
	off := *e.off
	off.Incremental = e.pending[due].state
	off.FlushedLSN = flush
	if err := e.c.opts.Offsets.SaveOffsets(ctx, e.c.cfg.Name, off); err != nil {
		e.c.log.Warn("incremental snapshot progress not saved; slot not advanced", "err", err)
		return confirmed
	}
	*e.off = off
	n := copy(e.pending, e.pending[due+1:])
	clear(e.pending[n:])
	e.pending = e.pending[:n]
	return flush
}

// publish makes the progress visible to Status.
func (e *incremental) publish() {
	s := &e.state
	if !s.Running() && e.lastState == "" {
		// No incremental snapshot has run: leave a blocking snapshot's
		// progress in place.
		e.c.metrics.snapshotRemainingTables.WithLabelValues(e.c.cfg.Name).Set(0)
		return
	}
	p := ProgressOf(s)
	if p == nil { // ended: keep the last figures with how it ended
		p = &SnapshotProgress{Type: SnapshotIncremental, State: e.lastState, SignalID: s.CorrelationID, Tables: []string{},
			TablesTotal: s.TablesTotal, TablesDone: s.TablesDone, Chunks: s.Chunks, RowsRead: s.RowsRead, StartedAt: s.StartedAt}
	}
	p.ChunkSize = e.c.cfg.IncrementalChunkSize
	p.RowsDeduplicated = e.deduplicated
	p.UpdatedAt = time.Now().UTC()
	e.c.stats.snapshot.Store(p)
	e.c.metrics.snapshotRemainingTables.WithLabelValues(e.c.cfg.Name).Set(float64(len(s.Collections)))
}
