package cdc

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// The expected values of these tests come from Debezium 2.7:
//   - the signaling table (id, type, data) and the execute-snapshot /
//     stop-snapshot data ("data-collections", "type", "additional-conditions")
//     from the "Sending signals to a Debezium connector" page
//     (documentation/modules/ROOT/pages/configuration/signalling.adoc) and the
//     PostgreSQL connector's "Ad hoc snapshots" / "Incremental snapshots"
//     sections (partials con-connector-incremental-snapshot.adoc,
//     proc-triggering-an-incremental-snapshot-sql.adoc,
//     proc-stopping-an-incremental-snapshot-sql.adoc);
//   - op "r" and source.snapshot "incremental" for incremental reads from the
//     "Incremental snapshot event message" example of that section;
//   - incremental.snapshot.chunk.size 1024 and
//     incremental.snapshot.watermarking.strategy insert_insert / insert_delete
//     from CommonConnectorConfig;
//   - the watermark rows ("<chunk id>-open" snapshot-window-open,
//     "<chunk id>-close" snapshot-window-close) from
//     SignalBasedIncrementalSnapshotChangeEventSource, InsertWindowCloser and
//     DeleteWindowCloser;
//   - the scenarios (snapshotOnly, updates, updatesWithRestart,
//     stopCurrentIncrementalSnapshotWithAllCollectionsAndTakeNewNewIncrementalSnapshotAfterRestart)
//     from AbstractIncrementalSnapshotTest, which IncrementalSnapshotIT of
//     debezium-connector-postgres runs, and BlockingSnapshotIT's;
//   - the blocking snapshot's markers from RelationalSnapshotChangeEventSource.

// snapConfig captures public.snap (and more tables) with the template's
// signaling table, public.debezium_signal.
func snapConfig(t testing.TB, db *postgrestest.Database, extra map[string]string) Config {
	t.Helper()
	raw := map[string]string{
		"snapshot.mode":          "no_data",
		"table.include.list":     "public.snap,public.snap2",
		"signal.data.collection": "public.debezium_signal",
	}
	for k, v := range extra {
		raw[k] = v
	}
	return parse(t, rawConfig(t, db, raw))
}

func createSnapTable(t testing.TB, db *postgrestest.Database, name string, rows int) {
	t.Helper()
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE `+name+` (id int PRIMARY KEY, v bigint NOT NULL, pad text)`); err != nil {
		t.Fatal(err)
	}
	if rows > 0 {
		if _, err := db.Pool.Exec(ctx, `INSERT INTO `+name+` SELECT g, 0, 'row ' || g FROM generate_series(1, $1::int) g`, rows); err != nil {
			t.Fatal(err)
		}
	}
}

func sendSignal(t testing.TB, db *postgrestest.Database, id, typ, data string) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO debezium_signal (id, type, data) VALUES ($1, $2, $3)`, id, typ, data); err != nil {
		t.Fatal(err)
	}
}

// snapEvent is what the tests read of a change event of public.snap.
type snapEvent struct {
	op       string
	id       int
	v        int64
	snapshot string
	offset   int64
}

// readSnapTopic reads every record on topic up to its current end.
func readSnapTopic(t testing.TB, b *kafka.Embedded, topic string) []snapEvent {
	t.Helper()
	// A deadlock guard: a million records take a while on a busy machine.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, topic)
	adm.Close()
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []snapEvent
	for int64(len(out)) < end.Offset && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			out = append(out, decodeSnapEvent(t, r))
		})
	}
	if int64(len(out)) < end.Offset {
		t.Fatalf("read %d of %d records of %s", len(out), end.Offset, topic)
	}
	return out
}

// waitSnapTopic reads topic once it holds at least n records. Kafka orders
// records within a partition only: a marker seen on one topic says nothing
// of another topic's records, whose first produce may still be waiting for
// the topic to be created.
func waitSnapTopic(t testing.TB, b *kafka.Embedded, topic string, n int) []snapEvent {
	t.Helper()
	var evs []snapEvent
	eventually(t, fmt.Sprintf("%d records on %s", n, topic), 30*time.Second, func() bool {
		evs = readSnapTopic(t, b, topic)
		return len(evs) >= n
	})
	return evs
}

func decodeSnapEvent(t testing.TB, r *kgo.Record) snapEvent {
	var key struct {
		ID int `json:"id"`
	}
	if err := json.Unmarshal(r.Key, &key); err != nil {
		t.Fatalf("key %s: %v", r.Key, err)
	}
	e := snapEvent{id: key.ID, offset: r.Offset}
	if r.Value == nil {
		e.op = "tombstone"
		return e
	}
	var v struct {
		Before map[string]any `json:"before"`
		After  map[string]any `json:"after"`
		Source struct {
			Snapshot string `json:"snapshot"`
		} `json:"source"`
		Op string `json:"op"`
	}
	if err := json.Unmarshal(r.Value, &v); err != nil {
		t.Fatalf("value %s: %v", r.Value, err)
	}
	e.op, e.snapshot = v.Op, v.Source.Snapshot
	if v.After != nil {
		e.v = int64(v.After["v"].(float64))
	}
	return e
}

// waitSnapshotState waits until the connector's ad-hoc snapshot is in state.
func waitSnapshotState(t testing.TB, c *Connector, state string, timeout time.Duration) *SnapshotProgress {
	t.Helper()
	var p *SnapshotProgress
	eventually(t, "snapshot "+state, timeout, func() bool {
		p = c.stats.snapshot.Load()
		return p != nil && p.State == state
	})
	return p
}

// markEnd inserts row -1 into snap and waits until its event reaches
// orders.snap: the stream has caught up with everything committed before.
func markEnd(t testing.TB, db *postgrestest.Database, b *kafka.Embedded) {
	t.Helper()
	from := endOffset(t, b, "orders.snap")
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO snap (id, v) VALUES (-1, 0)`); err != nil {
		t.Fatal(err)
	}
	waitForKey(t, b, "orders.snap", -1, from)
}

// endOffset is the end offset of partition 0 of topic.
func endOffset(t testing.TB, b *kafka.Embedded, topic string) int64 {
	t.Helper()
	adm, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ends, err := kadm.NewClient(adm).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	return max(end.Offset, 0)
}

// waitForKey waits until a record with key id reaches topic at or after
// offset from.
func waitForKey(t testing.TB, b *kafka.Embedded, topic string, id int, from int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(from)}}), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a deadlock guard
	defer cancel()
	want := []byte(`{"id":` + strconv.Itoa(id) + `}`)
	for ctx.Err() == nil {
		found := false
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if string(r.Key) == string(want) {
				found = true
			}
		})
		if found {
			return
		}
	}
	t.Fatalf("record with key %s never reached %s", want, topic)
}

// checkTopicAgainstTable verifies the topic's story of every row: the last
// event of each key is the row as the table holds it (or its deletion), and
// no event of a row carries an older version than one before it — in
// particular no snapshot read follows, with a stale value, a change of the
// same row (each change sets v to a larger value).
func checkTopicAgainstTable(t testing.TB, db *postgrestest.Database, events []snapEvent, table string) {
	t.Helper()
	type state struct {
		v       int64
		deleted bool
		seen    bool
	}
	last := map[int]*state{}
	violations := 0
	for _, e := range events {
		s := last[e.id]
		if s == nil {
			s = &state{}
			last[e.id] = s
		}
		switch e.op {
		case "tombstone":
			continue
		case "d":
			s.deleted, s.seen = true, true
			continue
		case "r":
			if s.seen && (s.deleted || e.v < s.v) {
				if violations++; violations <= 5 {
					t.Errorf("row %d: snapshot read (v=%d) at offset %d after a newer change (v=%d, deleted %v)", e.id, e.v, e.offset, s.v, s.deleted)
				}
			}
		default:
			if s.seen && !s.deleted && e.v < s.v {
				t.Errorf("row %d: %s event v=%d at offset %d after v=%d", e.id, e.op, e.v, e.offset, s.v)
			}
		}
		s.v, s.deleted, s.seen = e.v, false, true
	}
	rows, err := db.Pool.Query(context.Background(), `SELECT id, v FROM `+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	inTable := map[int]int64{}
	for rows.Next() {
		var id int
		var v int64
		if err := rows.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		inTable[id] = v
	}
	wrong := 0
	for id, v := range inTable {
		s := last[id]
		if s == nil || s.deleted || s.v != v {
			if wrong++; wrong <= 5 {
				t.Errorf("row %d is v=%d in the table, the topic ends with %+v", id, v, s)
			}
		}
	}
	for id, s := range last {
		if _, ok := inTable[id]; !ok && !s.deleted {
			if wrong++; wrong <= 5 {
				t.Errorf("row %d is not in the table, the topic ends with v=%d", id, s.v)
			}
		}
	}
	if wrong > 0 || violations > 0 {
		t.Fatalf("%d rows end wrong on the topic, %d stale reads (of %d rows, %d events)", wrong, violations, len(inTable), len(events))
	}
}

// TestIncrementalSnapshotWhileStreaming is issue 13's test: a table
// snapshotted incrementally while changes stream into it at 1,000 a second;
// every row's final state is right on the topic, no read is stale, and the
// connector holds one chunk at a time. make test uses 50,000 rows;
// TRACKOPS_CDC_SNAPSHOT_ROWS=1000000 (make test-cdc-snapshot-1m) runs the
// million.
func TestIncrementalSnapshotWhileStreaming(t *testing.T) {
	t.Parallel()
	rowCount := 50_000
	if v := os.Getenv("TRACKOPS_CDC_SNAPSHOT_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("TRACKOPS_CDC_SNAPSHOT_ROWS=%q: want a number of rows", v)
		}
		rowCount = n
	}
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ctx := context.Background()
	createSnapTable(t, db, "snap", rowCount)
	if _, err := db.Pool.Exec(ctx, `ANALYZE snap`); err != nil {
		t.Fatal(err)
	}
	cfg := snapConfig(t, db, nil) // Debezium's defaults: 1024 rows a chunk, insert_insert
	if cfg.IncrementalChunkSize != 1024 || cfg.WatermarkStrategy != WatermarkInsertInsert {
		t.Fatalf("defaults: chunk size %d, strategy %s; Debezium's are 1024 and insert_insert", cfg.IncrementalChunkSize, cfg.WatermarkStrategy)
	}
	c, _ := runConnector(t, cfg, b, &MemoryOffsets{})
	waitStreaming(t, c)

	// The writer: every 10 ms one transaction with the changes due at 1,000
	// a second (updates of random rows, deletes, inserts of new rows), each
	// setting v to the next value of a counter, so a row's versions only
	// grow.
	var (
		changes  atomic.Int64
		stop     = make(chan struct{})
		finished = make(chan struct{})
		begun    = time.Now()
	)
	go func() {
		defer close(finished)
		rng := rand.New(rand.NewPCG(1, 2))
		next := int64(1)
		nextID := rowCount + 1
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			due := min(int(time.Since(begun).Milliseconds())-int(changes.Load()), 100)
			if due <= 0 {
				continue
			}
			tx, err := db.Pool.Begin(ctx)
			if err != nil {
				t.Errorf("writer: %v", err)
				return
			}
			for i := 0; i < due; i++ {
				next++
				switch r := rng.IntN(10); {
				case r < 7:
					_, err = tx.Exec(ctx, `UPDATE snap SET v = $2 WHERE id = $1`, 1+rng.IntN(rowCount), next)
				case r < 8:
					_, err = tx.Exec(ctx, `DELETE FROM snap WHERE id = $1`, 1+rng.IntN(rowCount))
				default:
					_, err = tx.Exec(ctx, `INSERT INTO snap (id, v, pad) VALUES ($1, $2, 'new')`, nextID, next)
					nextID++
				}
				if err != nil {
					_ = tx.Rollback(ctx)
					t.Errorf("writer: %v", err)
					return
				}
			}
			if err := tx.Commit(ctx); err != nil {
				t.Errorf("writer: %v", err)
				return
			}
			changes.Add(int64(due))
		}
	}()

	started := time.Now()
	sendSignal(t, db, "ad-hoc-1", SignalExecuteSnapshot, `{"data-collections": ["public.snap"], "type": "incremental"}`)
	p := waitSnapshotState(t, c, "completed", 10*time.Minute)
	took := time.Since(started)
	close(stop)
	<-finished
	rate := float64(changes.Load()) / time.Since(begun).Seconds()
	// A last row tells when the stream has caught up.
	markEnd(t, db, b)

	events := readSnapTopic(t, b, "orders.snap")
	reads := 0
	for _, e := range events {
		if e.op == "r" {
			reads++
			if e.snapshot != "incremental" {
				t.Fatalf("snapshot read with source.snapshot %q, want incremental", e.snapshot)
			}
		}
	}
	checkTopicAgainstTable(t, db, events, "snap")
	if p.RowsRead < int64(rowCount)*9/10 || p.TablesDone != 1 || p.Chunks < int64(rowCount/cfg.IncrementalChunkSize) {
		t.Errorf("progress at the end: %+v", p)
	}
	if w := c.stats.maxWindow.Load(); w > int64(cfg.IncrementalChunkSize) {
		t.Errorf("the connector held %d snapshot rows at once, more than a chunk (%d)", w, cfg.IncrementalChunkSize)
	}
	t.Logf("%d rows snapshotted in %s (%d chunks, %d reads emitted, %d dropped by the window) while %d changes streamed (%.0f/s)",
		rowCount, took.Round(time.Millisecond), p.Chunks, reads, p.RowsDeduplicated, changes.Load(), rate)
}

// TestIncrementalSnapshotWindowDeduplication changes rows of a chunk after
// it was read and before its high watermark: the update and the delete
// stream, and the window drops the rows, so no stale read follows them
// (DBLog's algorithm as AbstractIncrementalSnapshotChangeEventSource runs it:
// "Any matching READ events in the buffer are dropped").
func TestIncrementalSnapshotWindowDeduplication(t *testing.T) {
	t.Parallel()
	for _, strategy := range []string{WatermarkInsertInsert, WatermarkInsertDelete} {
		t.Run(strategy, func(t *testing.T) {
			t.Parallel()
			db := postgrestest.New(t)
			b := kafkatest.New(t)
			ctx := context.Background()
			createSnapTable(t, db, "snap", 10)
			cfg := snapConfig(t, db, map[string]string{"incremental.snapshot.chunk.size": "4",
				"incremental.snapshot.watermarking.strategy": strategy})
			c := NewConnector(cfg, Options{Kafka: kafkatest.Options(b), Logger: testLogger(), TopicPartitions: 1})
			var once sync.Once
			var firstChunk [][]string
			c.chunkHook = func(ctx context.Context, table string, keys [][]string) {
				once.Do(func() {
					firstChunk = keys
					// Inside the window: after the chunk's read, before its
					// high watermark.
					if _, err := db.Pool.Exec(ctx, `UPDATE snap SET v = 100 WHERE id = 2`); err != nil {
						t.Error(err)
					}
					if _, err := db.Pool.Exec(ctx, `DELETE FROM snap WHERE id = 3`); err != nil {
						t.Error(err)
					}
				})
			}
			startConnector(t, c)
			waitStreaming(t, c)
			sendSignal(t, db, "ad-hoc-1", SignalExecuteSnapshot, `{"data-collections": ["public\\.snap"]}`)
			waitSnapshotState(t, c, "completed", time.Minute)
			markEnd(t, db, b)

			if fmt.Sprint(firstChunk) != "[[1] [2] [3] [4]]" {
				t.Fatalf("first chunk %v, want rows 1-4 (4 rows a chunk, primary-key order)", firstChunk)
			}
			events := readSnapTopic(t, b, "orders.snap")
			var got []string
			for _, e := range events {
				got = append(got, fmt.Sprintf("%s%d", e.op, e.id))
			}
			// The changes stream as they happen; the first window's rows 2
			// and 3 are dropped; 1 and 4 are read after the changes, then
			// the next chunks; finally the row that marks the end.
			want := "[u2 d3 tombstone3 r1 r4 r5 r6 r7 r8 r9 r10 c-1]"
			if fmt.Sprint(got) != want {
				t.Fatalf("events %v\nwant   %v", got, want)
			}
			checkTopicAgainstTable(t, db, events, "snap")
			if p := c.stats.snapshot.Load(); p.RowsDeduplicated != 2 || p.RowsRead != 10 || p.Chunks != 3 {
				t.Errorf("progress %+v: want 2 rows dropped, 10 read, 3 chunks", p)
			}
			// The watermarks are rows of the signaling table, as Debezium
			// writes them: "<chunk id>-open" / "-close" (insert_insert), or
			// the open row inserted then deleted (insert_delete).
			var open, closed int
			err := db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE type = 'snapshot-window-open' AND id LIKE '%-open'),
				count(*) FILTER (WHERE type = 'snapshot-window-close' AND id LIKE '%-close') FROM debezium_signal`).Scan(&open, &closed)
			if err != nil {
				t.Fatal(err)
			}
			switch strategy {
			case WatermarkInsertInsert:
				if open != 4 || closed != 4 { // 3 chunks and the empty read that ends the table
					t.Errorf("signaling table holds %d open and %d close watermarks, want 4 and 4", open, closed)
				}
			case WatermarkInsertDelete:
				if open != 0 || closed != 0 {
					t.Errorf("insert_delete left %d open and %d close watermarks, want none", open, closed)
				}
			}
		})
	}
}

// TestIncrementalSnapshotResumesAfterRestart stops the connector in the
// middle of an incremental snapshot and starts it again with the offsets
// in cdc_offsets: the snapshot resumes after the last chunk Kafka holds
// (AbstractIncrementalSnapshotTest.updatesWithRestart), no row is missing.
func TestIncrementalSnapshotResumesAfterRestart(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ctx := context.Background()
	const rows = 3000
	createSnapTable(t, db, "snap", rows)
	cfg := snapConfig(t, db, map[string]string{"incremental.snapshot.chunk.size": "100"})
	offsets := PostgresOffsets{Pool: db.Pool}
	c1, stop1 := runConnector(t, cfg, b, offsets)
	waitStreaming(t, c1)
	sendSignal(t, db, "ad-hoc-1", SignalExecuteSnapshot, `{"data-collections": ["public.snap"], "type": "INCREMENTAL"}`)
	var saved *IncrementalSnapshot
	eventually(t, "a few chunks recorded in cdc_offsets", time.Minute, func() bool {
		off, _, err := offsets.LoadOffsets(ctx, cfg.Name)
		if err != nil {
			t.Fatal(err)
		}
		saved = off.Incremental
		return saved.Running() && saved.Chunks >= 3
	})
	for i := 1; i <= 3; i++ { // changes before the restart
		if _, err := db.Pool.Exec(ctx, `UPDATE snap SET v = $2 WHERE id = $1`, i*700, i); err != nil {
			t.Fatal(err)
		}
	}
	stop1()
	waitSlotReleased(t, db, cfg.SlotName)
	off, _, err := offsets.LoadOffsets(ctx, cfg.Name)
	if err != nil {
		t.Fatal(err)
	}
	if !off.Incremental.Running() || off.Incremental.Collections[0].ID != "public.snap" || len(off.Incremental.PrimaryKey) != 1 {
		t.Fatalf("offsets after the stop: %+v", off.Incremental)
	}
	resumeAfter, _ := strconv.Atoi(off.Incremental.PrimaryKey[0])
	before := len(readSnapTopic(t, b, "orders.snap"))

	c2, _ := runConnector(t, cfg, b, offsets)
	waitStreaming(t, c2)
	for i := 4; i <= 6; i++ { // and after
		if _, err := db.Pool.Exec(ctx, `UPDATE snap SET v = $2 WHERE id = $1`, i*400, i); err != nil {
			t.Fatal(err)
		}
	}
	waitSnapshotState(t, c2, "completed", time.Minute)
	markEnd(t, db, b)
	events := readSnapTopic(t, b, "orders.snap")
	checkTopicAgainstTable(t, db, events, "snap")
	firstAfter := 0
	for _, e := range events[before:] {
		if e.op == "r" {
			firstAfter = e.id
			break
		}
	}
	if resumeAfter < 300 || firstAfter != resumeAfter+1 {
		t.Fatalf("the restarted connector read first row %d; the offsets said the snapshot was past row %d", firstAfter, resumeAfter)
	}
	// The completion reaches cdc_offsets with the next committed position,
	// once Kafka has acknowledged what precedes it: shortly after, not at
	// once.
	eventually(t, "cdc_offsets recording the snapshot as complete", time.Minute, func() bool {
		off, _, err := offsets.LoadOffsets(ctx, cfg.Name)
		if err != nil {
			t.Fatal(err)
		}
		return !off.Incremental.Running()
	})
}

// TestStopSnapshot sends stop-snapshot while a chunk of the first of two
// tables is in flight, for that table only; then, for a second snapshot,
// without data-collections (the whole snapshot), as Debezium's
// StopSnapshot reads them.
func TestStopSnapshot(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	createSnapTable(t, db, "snap", 50)
	createSnapTable(t, db, "snap2", 30)
	cfg := snapConfig(t, db, map[string]string{"incremental.snapshot.chunk.size": "10"})
	c := NewConnector(cfg, Options{Kafka: kafkatest.Options(b), Logger: testLogger(), TopicPartitions: 1})
	var chunks atomic.Int32
	stopAt := map[int32]string{
		2: `{"data-collections": ["public.snap"], "type": "incremental"}`, // second chunk of snap
		8: `{"type": "incremental"}`,                                      // everything, in the second snapshot
	}
	c.chunkHook = func(ctx context.Context, table string, keys [][]string) {
		if data, ok := stopAt[chunks.Add(1)]; ok {
			if _, err := db.Pool.Exec(ctx, `INSERT INTO debezium_signal VALUES ($1, 'stop-snapshot', $2)`, fmt.Sprint("stop-", chunks.Load()), data); err != nil {
				t.Error(err)
			}
		}
	}
	startConnector(t, c)
	waitStreaming(t, c)
	sendSignal(t, db, "ad-hoc-1", SignalExecuteSnapshot, `{"data-collections": ["public.snap", "public.snap2"]}`)
	p := waitSnapshotState(t, c, "completed", time.Minute)
	if p.TablesDone != 1 || p.TablesTotal != 1 || p.RowsRead != 30+10 {
		t.Errorf("after stopping snap: %+v; want snap2 read whole (30 rows) after snap's first chunk (10)", p)
	}
	markEnd(t, db, b)
	reads := map[string]int{}
	for topic, n := range map[string]int{"orders.snap": 1, "orders.snap2": 30} {
		for _, e := range waitSnapTopic(t, b, topic, n) {
			if e.op == "r" {
				reads[topic]++
			}
		}
	}
	// The stop came while snap's second chunk was in flight: it is dropped.
	if reads["orders.snap"] != 10 || reads["orders.snap2"] != 30 {
		t.Fatalf("reads %v: want 10 of snap (its first chunk) and 30 of snap2", reads)
	}

	// A second snapshot stopped as a whole during its third chunk.
	sendSignal(t, db, "ad-hoc-2", SignalExecuteSnapshot, `{"data-collections": ["public.snap2"]}`)
	p = waitSnapshotState(t, c, "stopped", time.Minute)
	if p.RowsRead != 20 || len(p.Tables) != 0 {
		t.Errorf("stopped snapshot's progress %+v: want 20 rows read (two chunks), no table left", p)
	}
	if n := chunks.Load(); n != 8 {
		t.Errorf("%d chunks read in all; want 8 (none after the stop)", n)
	}
}

// TestBlockingSnapshot: execute-snapshot with type blocking stops the
// stream, reads the tables as the initial snapshot does (op "r" with
// RelationalSnapshotChangeEventSource's markers: first /
// last_in_data_collection for the first table, first_in_data_collection /
// last for the last) and resumes the stream (BlockingSnapshotIT).
func TestBlockingSnapshot(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ctx := context.Background()
	createSnapTable(t, db, "snap", 3)
	createSnapTable(t, db, "snap2", 2)
	cfg := snapConfig(t, db, nil)
	c, _ := runConnector(t, cfg, b, &MemoryOffsets{})
	waitStreaming(t, c)
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A change in the signal's own transaction streams before the snapshot.
	// (Row 3, the last: a full-table read returns rows in storage order,
	// where an updated row moves to the end.)
	if _, err := tx.Exec(ctx, `UPDATE snap SET v = 5 WHERE id = 3`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO debezium_signal VALUES ('blocking-1', 'execute-snapshot', '{"data-collections": ["public.snap.*"], "type": "blocking"}')`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	p := waitSnapshotState(t, c, "completed", time.Minute)
	if p.Type != SnapshotBlocking || p.TablesDone != 2 || p.RowsRead != 5 {
		t.Errorf("progress %+v", p)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE snap SET v = 6 WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	eventually(t, "stream after the snapshot", 30*time.Second, func() bool {
		evs := readSnapTopic(t, b, "orders.snap")
		return len(evs) > 0 && evs[len(evs)-1].op == "u"
	})
	var got []string
	for _, e := range readSnapTopic(t, b, "orders.snap") {
		got = append(got, fmt.Sprintf("%s%d:%s", e.op, e.id, e.snapshot))
	}
	if want := "[u3:false r1:first r2:true r3:last_in_data_collection u1:false]"; fmt.Sprint(got) != want {
		t.Errorf("orders.snap: %v\nwant %v", got, want)
	}
	got = nil
	for _, e := range waitSnapTopic(t, b, "orders.snap2", 2) {
		got = append(got, fmt.Sprintf("%s%d:%s", e.op, e.id, e.snapshot))
	}
	if want := "[r1:first_in_data_collection r2:last]"; fmt.Sprint(got) != want {
		t.Errorf("orders.snap2: %v\nwant %v", got, want)
	}
}

// TestSignalTableIsCapturedAndUnknownSignalsAreHarmless: the signaling
// table is captured like an included table (Debezium adds
// signal.data.collection to its table filter), its rows are change events
// of its own topic, and a signal Debezium does not know is logged and
// skipped.
func TestSignalTableIsCapturedAndUnknownSignalsAreHarmless(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	createSnapTable(t, db, "snap", 0)
	cfg := snapConfig(t, db, map[string]string{"publication.autocreate.mode": PublicationFiltered})
	c, _ := runConnector(t, cfg, b, nil)
	waitStreaming(t, c)
	sendSignal(t, db, "x-1", "no-such-signal", "")
	sendSignal(t, db, "x-2", SignalLog, `{"message": "hello"}`)
	recs := kafkatest.Read(t, b, "orders.debezium_signal", 2, 30*time.Second)
	if len(recs) != 2 {
		t.Fatalf("got %d records on the signaling table's topic, want 2", len(recs))
	}
	e := decode(t, recs[1])
	if e.Op != "c" || e.After["id"] != "x-2" || e.After["type"] != "log" || string(recs[1].Key) != `{"id":"x-2"}` {
		t.Errorf("signal row event: %s %s", recs[1].Key, recs[1].Value)
	}
	var tables []string
	rows, err := db.Pool.Query(context.Background(), `SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1`, cfg.PublicationName)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		tables = append(tables, s)
	}
	if fmt.Sprint(tables) != "[public.debezium_signal public.snap]" {
		t.Errorf("filtered publication holds %v, want the signaling table too", tables)
	}
	if p := c.stats.snapshot.Load(); p != nil {
		t.Errorf("no snapshot was asked for, progress %+v", p)
	}
}

func TestSignalDataParsing(t *testing.T) {
	t.Parallel()
	// Debezium's AbstractSnapshotSignal: the type defaults to incremental and
	// is read in any letter case; an unknown type skips the signal.
	for data, want := range map[string]string{
		`{"data-collections": ["a.b"]}`:                        "incremental",
		`{"data-collections": ["a.b"], "type": "INCREMENTAL"}`: "incremental",
		`{"data-collections": ["a.b"], "type": "blocking"}`:    "blocking",
		`{"data-collections": ["a.b"], "type": "snapshot"}`:    "",
		`not json`: "",
		``:         "incremental",
	} {
		d, ok := parseSnapshotData(data)
		if got := map[bool]string{true: d.Type, false: ""}[ok]; got != want {
			t.Errorf("%s: type %q, want %q", data, got, want)
		}
	}
	tables := []tableName{{"public", "orders"}, {"public", "order_items"}, {"inventory", "orders"}}
	m, skipped := matchCollections([]string{"public.order.*", "inventory\\.orders", "nope.x", "("}, tables)
	if fmt.Sprint(m) != `["public"."orders" "public"."order_items" "inventory"."orders"]` || fmt.Sprint(skipped) != "[nope.x (]" {
		t.Errorf("matched %v skipped %v", m, skipped)
	}
	if f := conditionFor([]additionalCondition{{"PUBLIC.ORDERS", "status = 'NEW'"}}, "public.orders"); f != "status = 'NEW'" {
		t.Errorf("additional condition %q: Debezium matches data-collection case-insensitively", f)
	}
	for in, want := range map[string]string{
		"public.debezium_signal": "public debezium_signal", `"My Schema"."a.b"`: "My Schema a.b",
		"nodot": "", "a.b.c": "", ".x": "",
	} {
		s, tb, ok := splitTableName(in)
		if got := map[bool]string{true: s + " " + tb, false: ""}[ok]; got != want {
			t.Errorf("splitTableName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSignalConfig: the signal and incremental snapshot keys with Debezium's
// defaults (CommonConnectorConfig: signal.enabled.channels "source",
// incremental.snapshot.chunk.size 1024, incremental.snapshot.watermarking.strategy
// insert_insert; RelationalDatabaseConnectorConfig: read.only false).
func TestSignalConfig(t *testing.T) {
	t.Parallel()
	base := func() map[string]string {
		raw := seedConfig(t, "postgres://postgres@db:5432/shop")
		raw["signal.data.collection"] = "public.debezium_signal"
		return raw
	}
	cfg, warnings, err := ParseConfig("n", base())
	if err != nil || len(warnings) != 0 {
		t.Fatalf("%v %v", err, warnings)
	}
	if cfg.SignalSchema != "public" || cfg.SignalTable != "debezium_signal" || !cfg.SignalChannels["source"] ||
		cfg.IncrementalChunkSize != 1024 || cfg.WatermarkStrategy != WatermarkInsertInsert || cfg.ReadOnly {
		t.Errorf("defaults: %+v", cfg)
	}
	if !cfg.captures("public", "debezium_signal") || cfg.captures("public", "inventory_items") {
		t.Error("the signaling table must be captured like an included table, and only it")
	}
	raw := base()
	raw["signal.enabled.channels"] = "source,jmx"
	raw["read.only"] = "true"
	raw["incremental.snapshot.watermarking.strategy"] = "INSERT_DELETE"
	cfg, warnings, err = ParseConfig("n", raw)
	if err != nil || len(warnings) != 2 || cfg.WatermarkStrategy != WatermarkInsertDelete || !cfg.ReadOnly {
		t.Errorf("jmx channel and read.only should warn: %v %q %+v", err, warnings, cfg.WatermarkStrategy)
	}
	for key, value := range map[string]string{
		"signal.data.collection":                     "debezium_signal",
		"incremental.snapshot.chunk.size":            "0",
		"incremental.snapshot.watermarking.strategy": "insert_update",
		"read.only": "perhaps",
	} {
		raw := base()
		raw[key] = value
		if _, _, err := ParseConfig("n", raw); !IsConfigError(err) {
			t.Errorf("%s=%s: want a configuration error, got %v", key, value, err)
		}
	}
}

// TestKafkaSignalChannel sends execute-snapshot on the Kafka channel as
// AbstractIncrementalSnapshotTest.sendExecuteSnapshotKafkaSignal does: key
// the topic.prefix, value {"type":"execute-snapshot","data":{...}} on
// <topic.prefix>-signal (KafkaSignalChannel's default topic); a record with
// another key is skipped. The channel's position is committed for group
// kafka-signal.
func TestKafkaSignalChannel(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ctx := context.Background()
	createSnapTable(t, db, "snap", 30)
	cfg := snapConfig(t, db, map[string]string{"signal.enabled.channels": "source,kafka", "incremental.snapshot.chunk.size": "10"})
	if cfg.SignalKafkaTopic != "trackops_orders-signal" || cfg.SignalKafkaGroup != "kafka-signal" {
		t.Fatalf("signal topic %q group %q", cfg.SignalKafkaTopic, cfg.SignalKafkaGroup)
	}
	c, _ := runConnector(t, cfg, b, &MemoryOffsets{})
	waitStreaming(t, c)
	p, err := kafka.NewProducer(kafkatest.Options(b))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, r := range []*kgo.Record{
		{Key: []byte("someone_else"), Value: []byte(`{"type":"execute-snapshot","data": {"data-collections": ["public.snap2"]}}`)},
		{Key: []byte("trackops_orders"), Value: []byte(`{"type":"execute-snapshot","data": {"data-collections": ["public.snap"], "type": "INCREMENTAL"}}`)},
	} {
		r.Topic, r.Partition = cfg.SignalKafkaTopic, 0
		if err := p.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	prog := waitSnapshotState(t, c, "completed", time.Minute)
	if prog.RowsRead != 30 || prog.TablesTotal != 1 || prog.SignalID != "kafka-1" {
		t.Errorf("progress %+v: want public.snap read on the signal at offset 1", prog)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM debezium_signal WHERE type = 'execute-snapshot'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d execute-snapshot rows relayed (%v), want 1", n, err)
	}
	eventually(t, "channel position committed", 20*time.Second, func() bool {
		offs, err := kadm.NewClient(p).FetchOffsets(ctx, "kafka-signal")
		if err != nil {
			return false
		}
		o, ok := offs.Lookup(cfg.SignalKafkaTopic, 0)
		return ok && o.At == 2
	})
}

// TestIncrementalSnapshotProgressWaitsForKafka: once the broker stops
// making records durable (the embedded broker's barrier refuses), the
// snapshot goes on reading chunks but the offsets record none of them, nor
// does the slot move; the connector is then stopped as a crash would leave
// it, and the restarted connector reads those chunks again from the last
// recorded one, so no row is missing.
func TestIncrementalSnapshotProgressWaitsForKafka(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ctx := context.Background()
	createSnapTable(t, db, "snap", 5000)
	cfg := snapConfig(t, db, map[string]string{"incremental.snapshot.chunk.size": "10"})
	offsets := PostgresOffsets{Pool: db.Pool}
	barrier := &refusingBarrier{}
	barrier.allowed.Store(true)
	opts := kafkatest.Options(b)
	opts.Durability = barrier
	c1 := NewConnector(cfg, Options{Kafka: opts, Offsets: offsets, Logger: testLogger(), TopicPartitions: 1})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c1.Run(runCtx) }()
	waitStreaming(t, c1)
	sendSignal(t, db, "ad-hoc-1", SignalExecuteSnapshot, `{"data-collections": ["public.snap"]}`)
	saved := func() *IncrementalSnapshot {
		off, _, err := offsets.LoadOffsets(ctx, cfg.Name)
		if err != nil {
			t.Fatal(err)
		}
		return off.Incremental
	}
	eventually(t, "chunks recorded", time.Minute, func() bool { s := saved(); return s != nil && s.Chunks >= 3 })
	barrier.allowed.Store(false)
	readWhenRefused := c1.stats.snapshot.Load().Chunks
	eventually(t, "chunks read while the broker refuses durability", time.Minute, func() bool {
		return c1.stats.snapshot.Load().Chunks >= readWhenRefused+10
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("connector run: %v", err)
	}
	read := c1.stats.snapshot.Load()
	after := saved()
	if !after.Running() || after.Chunks < 3 || after.Chunks > readWhenRefused {
		t.Fatalf("offsets record %d chunks; %d were read when the broker stopped making records durable, %d in all",
			after.Chunks, readWhenRefused, read.Chunks)
	}
	waitSlotReleased(t, db, cfg.SlotName)

	c2, _ := runConnector(t, cfg, b, offsets)
	waitStreaming(t, c2)
	waitSnapshotState(t, c2, "completed", 5*time.Minute)
	markEnd(t, db, b)
	checkTopicAgainstTable(t, db, readSnapTopic(t, b, "orders.snap"), "snap")
}

// TestIncrementalSnapshotKeys: a table without a primary key is read in the
// order of its message.key.columns (Debezium's getQueryColumns uses the key
// mapper, as IncrementalSnapshotIT's insertsWithoutPks does with
// "s1.a42:pk1,pk2,pk3,pk4"), a composite key chunks by row value, and a
// table with neither is skipped ("Incremental snapshot for table '{}'
// skipped cause the table has no primary keys").
func TestIncrementalSnapshotKeys(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ctx := context.Background()
	for _, q := range []string{
		`CREATE TABLE a4 (pk1 int, pk2 int, aa int, PRIMARY KEY (pk1, pk2))`,
		`INSERT INTO a4 SELECT g / 3, g % 3, g FROM generate_series(0, 20) g`,
		`CREATE TABLE a42 (pk1 int NOT NULL, pk2 int NOT NULL, aa int)`,
		`INSERT INTO a42 SELECT g / 3, g % 3, g FROM generate_series(0, 20) g`,
		`CREATE TABLE nokey (aa int)`,
		`INSERT INTO nokey SELECT g FROM generate_series(1, 5) g`,
	} {
		if _, err := db.Pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	cfg := snapConfig(t, db, map[string]string{"table.include.list": "public.a4,public.a42,public.nokey",
		"message.key.columns": "public.a42:pk1,pk2", "incremental.snapshot.chunk.size": "4"})
	c, _ := runConnector(t, cfg, b, &MemoryOffsets{})
	waitStreaming(t, c)
	sendSignal(t, db, "ad-hoc-1", SignalExecuteSnapshot, `{"data-collections": ["public.a4", "public.a42", "public.nokey"]}`)
	p := waitSnapshotState(t, c, "completed", time.Minute)
	if p.TablesDone != 3 || p.RowsRead != 42 {
		t.Errorf("progress %+v: want 3 tables done, 21 rows of each keyed table read", p)
	}
	for _, topic := range []string{"orders.a4", "orders.a42"} {
		recs := kafkatest.Read(t, b, topic, 21, 30*time.Second)
		var keys []string
		for _, r := range recs {
			keys = append(keys, string(r.Key))
		}
		if len(keys) != 21 || keys[0] != `{"pk1":0,"pk2":0}` || keys[4] != `{"pk1":1,"pk2":1}` || keys[20] != `{"pk1":6,"pk2":2}` {
			t.Errorf("%s keys %v: want all 21 rows in key order", topic, keys)
		}
	}
}

// TestPauseAndResumeSnapshot sends pause-snapshot while a chunk is in
// flight and resume-snapshot later, with the empty data
// AbstractIncrementalSnapshotTest.sendPauseSignal / sendResumeSignal use:
// the chunk in flight completes, no chunk is read while paused, and the
// snapshot goes on from there when resumed.
func TestPauseAndResumeSnapshot(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	createSnapTable(t, db, "snap", 50)
	cfg := snapConfig(t, db, map[string]string{"incremental.snapshot.chunk.size": "10"})
	c := NewConnector(cfg, Options{Kafka: kafkatest.Options(b), Logger: testLogger(), TopicPartitions: 1})
	var chunks atomic.Int32
	c.chunkHook = func(ctx context.Context, table string, keys [][]string) {
		if chunks.Add(1) == 2 {
			if _, err := db.Pool.Exec(ctx, `INSERT INTO debezium_signal VALUES ('test-pause', 'pause-snapshot', '')`); err != nil {
				t.Error(err)
			}
		}
	}
	startConnector(t, c)
	waitStreaming(t, c)
	sendSignal(t, db, "ad-hoc-1", SignalExecuteSnapshot, `{"data-collections": ["public.snap"]}`)
	eventually(t, "paused after the chunk in flight", time.Minute, func() bool {
		p := c.stats.snapshot.Load()
		return p != nil && p.State == "paused" && p.Chunks == 2
	})
	// The stream goes on while paused: a change reaches the topic, and no
	// chunk was read meanwhile.
	markEnd(t, db, b)
	if n := chunks.Load(); n != 2 {
		t.Fatalf("%d chunks read while paused, want 2", n)
	}
	sendSignal(t, db, "test-resume", SignalResumeSnapshot, "")
	p := waitSnapshotState(t, c, "completed", time.Minute)
	if p.RowsRead != 50 || chunks.Load() != 5 {
		t.Errorf("after resuming: %+v, %d chunks; want 50 rows in 5 chunks", p, chunks.Load())
	}
}
