package cdc

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
	"github.com/trackops/trackops/internal/tracing"
)

// TestBlockIsReusedOnlyAfterEveryRecordIsReleased: a block goes back to
// the pool only when each record carved from it has been released and the
// encoder has moved on; until then its records' bytes stay as encoded.
func TestBlockIsReusedOnlyAfterEveryRecordIsReleased(t *testing.T) {
	cfg, tbl := allocTable(t)
	enc := newRecordEncoder(cfg)
	ch := allocChange(tbl)
	first := enc.record(ch)
	blk := first.Context.(*blockContext).block
	recs := []*kgo.Record{first}
	for enc.blk == blk {
		recs = append(recs, enc.record(ch))
	}
	recs = recs[:len(recs)-1] // the last one opened the next block
	if len(recs) != blockRecords {
		t.Fatalf("%d records carved from a block, want %d", len(recs), blockRecords)
	}
	want := string(first.Value)
	for _, r := range recs[1:] {
		releaseRecord(r)
	}
	if blk.n != blockRecords || string(first.Value) != want {
		t.Fatalf("block emptied with a record unreleased (n=%d, value %q)", blk.n, first.Value)
	}
	releaseRecord(first)
	if blk.n != 0 || len(blk.buf) != 0 || blk.live.Load() != 0 {
		t.Fatalf("block not emptied after its last release: n=%d, %d bytes, live %d", blk.n, len(blk.buf), blk.live.Load())
	}

	// A hook may wrap a record's Context (tracing does): its transaction
	// and block are found through the wrapper.
	wrapped := enc.record(ch)
	tx := &txTrack{}
	wrapped.Context.(*blockContext).tx = tx
	held := wrapped.Context.(*blockContext).block.live.Load()
	wrapped.Context = context.WithValue(wrapped.Context, struct{ hook int }{}, "span")
	if recordTx(wrapped) != tx {
		t.Fatal("the transaction of a record whose Context a hook wrapped was lost")
	}
	releaseRecord(wrapped)
	if got := enc.blk.live.Load(); got != held-1 {
		t.Fatalf("releasing a wrapped record left the block's holds at %d, want %d", got, held-1)
	}

	// A tombstone's key is its own: releasing the delete leaves it intact.
	del := enc.record(&change{op: 'd', table: tbl, before: ch.after, commitTime: ch.commitTime, txID: 8, lsn: 1 << 31,
		snapshot: "false", processed: ch.processed})
	tomb := enc.tombstone(del)
	if tomb.Value != nil || string(tomb.Key) != string(del.Key) || &tomb.Key[0] == &del.Key[0] {
		t.Fatalf("tombstone key %q (shared %v), value %q", tomb.Key, &tomb.Key[0] == &del.Key[0], tomb.Value)
	}
}

// TestLargeTransactionsArriveIntact streams transactions large enough for
// the paced, buffered reads and for blocks to be reused while records are
// still being encoded, with values of many sizes (some larger than a
// block), deletes and their tombstones, and checks every record's key and
// value against the row it came from.
//
// With tracing on, the producer's tracing hook replaces each record's
// Context with one of its own that wraps the connector's: the record's
// transaction and block are still found through it.
func TestLargeTransactionsArriveIntact(t *testing.T) {
	t.Parallel()
	for _, traced := range []bool{false, true} {
		t.Run(fmt.Sprintf("traced=%v", traced), func(t *testing.T) {
			t.Parallel()
			largeTransactionsArriveIntact(t, traced)
		})
	}
}

func largeTransactionsArriveIntact(t *testing.T, traced bool) {
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE big (id bigint PRIMARY KEY, note text NOT NULL); ALTER TABLE big REPLICA IDENTITY FULL`); err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, rawConfig(t, db, map[string]string{"snapshot.mode": "no_data", "table.include.list": "public.big"}))
	kopts := kafkatest.Options(b)
	if traced {
		// Spans go to a closed port; export failures are only logged.
		p, err := tracing.Setup(ctx, tracing.Options{Endpoint: "http://127.0.0.1:1/v1/traces", Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
		kopts.Extra = p.KafkaOpts()
	}
	c := NewConnector(cfg, Options{Kafka: kopts, Logger: testLogger(), TopicPartitions: 1})
	startConnector(t, c)
	waitStreaming(t, c)

	// Row g's note is g%97 copies of "n<g>;", and every 500th is 12 KB.
	noteOf := func(id int) string {
		if id%500 == 0 {
			return strings.Repeat("L", 12<<10)
		}
		return strings.Repeat("n"+strconv.Itoa(id)+";", id%97)
	}
	const rows, deleted = 6000, 700
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO big SELECT g, CASE WHEN g % 500 = 0 THEN repeat('L', 12 * 1024)
		ELSE repeat('n' || g || ';', g % 97) END FROM generate_series(1, $1) g`, rows); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM big WHERE id <= $1`, deleted); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// A second transaction, encoded into blocks the first one released.
	if _, err := db.Pool.Exec(ctx, `UPDATE big SET note = note || '!' WHERE id > $1 AND id <= $2`, rows-2500, rows); err != nil {
		t.Fatal(err)
	}

	topic := "orders.big" // the seed configuration routes public tables to orders.<table>
	want := rows + 2*deleted + 2500
	recs := kafkatest.Read(t, b, topic, want, 60*time.Second)
	if len(recs) != want {
		t.Fatalf("%d records on %s, want %d", len(recs), topic, want)
	}
	// Inserts come in order; deletes and updates in the order the server
	// scanned the rows, so those are checked as sets.
	deletes, updates := map[int]bool{}, map[int]bool{}
	for i, r := range recs {
		var id int
		if _, err := fmt.Sscanf(string(r.Key), `{"id":%d}`, &id); err != nil {
			t.Fatalf("record %d: key %q: %v", i, r.Key, err)
		}
		switch {
		case i < rows:
			e := decode(t, r)
			if e.Op != "c" || id != i+1 || e.After["id"] != float64(id) || e.After["note"] != noteOf(id) {
				t.Fatalf("record %d (key %d): op %s after.id %v note %.40q…", i, id, e.Op, e.After["id"], e.After["note"])
			}
		case i < rows+2*deleted && (i-rows)%2 == 1: // the tombstone after each delete
			if r.Value != nil || string(r.Key) != string(recs[i-1].Key) {
				t.Fatalf("record %d: tombstone key %s after a delete of %s, value %.40q", i, r.Key, recs[i-1].Key, r.Value)
			}
		case i < rows+2*deleted:
			e := decode(t, r)
			if e.Op != "d" || id > deleted || deletes[id] || e.Before["id"] != float64(id) || e.Before["note"] != noteOf(id) {
				t.Fatalf("record %d (key %d): op %s before.id %v note %.40q…", i, id, e.Op, e.Before["id"], e.Before["note"])
			}
			deletes[id] = true
		default:
			e := decode(t, r)
			if e.Op != "u" || id <= rows-2500 || updates[id] || e.After["note"] != noteOf(id)+"!" || e.Before["note"] != noteOf(id) {
				t.Fatalf("record %d (key %d): op %s note %.40q…", i, id, e.Op, e.After["note"])
			}
			updates[id] = true
		}
	}
	if len(deletes) != deleted || len(updates) != 2500 {
		t.Fatalf("%d rows deleted and %d updated, want %d and 2500", len(deletes), len(updates), deleted)
	}
}
