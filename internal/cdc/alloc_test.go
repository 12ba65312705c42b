package cdc

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// allocTable is the table of BenchmarkStreamToKafka, described without a
// database: bigint key, text, numeric(12,2) and timestamptz columns.
func allocTable(t *testing.T) (*Config, *table) {
	t.Helper()
	cfg := parse(t, seedConfig(t, "postgres://postgres@127.0.0.1:5432/allocs"))
	text := columnMeta{oid: oidText, typmod: -1, notNull: true, typeName: "text"}
	meta := tableMeta{columns: map[string]columnMeta{
		"id":       {oid: oidInt8, typmod: -1, notNull: true, pkPos: 1, typeName: "int8"},
		"customer": text,
		"status":   text,
		"amount":   {oid: oidNumeric, typmod: 12<<16 | 2 + 4, notNull: true, typeName: "numeric"},
		"created":  {oid: oidTimestampTZ, typmod: -1, notNull: true, typeName: "timestamptz"},
		"note":     {oid: oidText, typmod: -1, typeName: "text"},
	}}
	names := []string{"id", "customer", "status", "amount", "created", "note"}
	return &cfg, newTable(&cfg, NewMetrics(nil), "alloc-test", "public", "bench", names, meta, nil)
}

func allocChange(tbl *table) *change {
	row := []tupleValue{
		{kind: valueText, data: []byte("42")},
		{kind: valueText, data: []byte("customer-42")},
		{kind: valueText, data: []byte("PENDING")},
		{kind: valueText, data: []byte("0.42")},
		{kind: valueText, data: []byte("2026-01-02 03:04:05.123456+00")},
		{kind: valueText, data: []byte(`note "42"`)},
	}
	return &change{op: 'c', table: tbl, after: row, commitTime: time.Now(), txID: 7, lsn: 1 << 30,
		lastCommitLSN: 1<<30 - 100, snapshot: "false", processed: time.Now()}
}

// TestEncodingAllocatesNoMemoryPerChange guards the encoder's cost per
// change event: key, value and record come from shared chunks and a reused
// scratch buffer, so encoding a change allocates nothing but, every few
// dozen changes, a new chunk (testing.AllocsPerRun floors the average).
func TestEncodingAllocatesNoMemoryPerChange(t *testing.T) {
	cfg, tbl := allocTable(t)
	enc := newRecordEncoder(cfg)
	ch := allocChange(tbl)
	var rec *kgo.Record
	if n := testing.AllocsPerRun(5000, func() { rec = enc.record(ch) }); n > 0 {
		t.Fatalf("encoding a change allocates %v times, want 0 (amortized)", n)
	}

	// What was encoded is the event, and its key and value do not share
	// room: appending to the key leaves the value alone.
	var v struct {
		After  map[string]any `json:"after"`
		Op     string         `json:"op"`
		TsMs   int64          `json:"ts_ms"`
		Source struct {
			LSN uint64 `json:"lsn"`
		} `json:"source"`
	}
	value := string(rec.Value)
	if err := json.Unmarshal(rec.Value, &v); err != nil {
		t.Fatalf("value %s: %v", rec.Value, err)
	}
	if v.Op != "c" || v.After["id"] != float64(42) || v.After["note"] != `note "42"` || v.After["amount"] != "0.42" ||
		v.Source.LSN != 1<<30 || v.TsMs != ch.processed.UnixMilli() {
		t.Fatalf("decoded %+v from %s", v, rec.Value)
	}
	if string(rec.Key) != `{"id":42}` || !rec.Timestamp.Equal(ch.processed) || rec.Topic != tbl.topic {
		t.Fatalf("key %s, timestamp %v, topic %s", rec.Key, rec.Timestamp, rec.Topic)
	}
	_ = append(rec.Key, "XXXXXXXX"...)
	if string(rec.Value) != value {
		t.Fatal("appending to the key changed the value")
	}
	next := enc.record(ch)
	if string(rec.Value) != value || &next.Value[0] == &rec.Value[0] {
		t.Fatal("the next record reused the previous one's bytes")
	}
}

// TestAckPathAllocatesNothingPerRecord guards the produce bookkeeping of a
// change: counting a record in, giving it its transaction's context and
// counting its ack out allocate nothing (the context is made once per
// transaction, the promise once per emitter).
func TestAckPathAllocatesNothingPerRecord(t *testing.T) {
	em := &emitter{}
	em.promise = em.acked
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	tx := em.tracker.begin()
	rec := &kgo.Record{}
	if n := testing.AllocsPerRun(5000, func() {
		em.tracker.add(tx)
		rec.Context = tx.recordContext(base, nil)
		em.promise(rec, nil)
	}); n > 0 {
		t.Fatalf("the ack path allocates %v times per record, want 0", n)
	}
	if got := recordTx(rec); got != tx {
		t.Fatalf("record carries %p, want its transaction %p", got, tx)
	}
	if tx.pending.Load() != 0 || em.tracker.failed() != nil {
		t.Fatalf("pending %d, failed %v", tx.pending.Load(), em.tracker.failed())
	}
	em.tracker.commit(tx, 99)
	if lsn, drained := em.tracker.advance(); lsn != 99 || !drained {
		t.Fatalf("advance = %d, %v; want 99, drained", lsn, drained)
	}

	// A record that brings a context of its own keeps it.
	type own struct{}
	ownCtx := context.WithValue(base, own{}, "trace")
	tx2 := em.tracker.begin()
	ctx := tx2.recordContext(base, ownCtx)
	if ctx.Value(own{}) != "trace" || recordTx(&kgo.Record{Context: ctx}) != tx2 {
		t.Fatal("a record's own context was replaced")
	}
	// A record without a transaction fails the run instead of being lost.
	em.promise(&kgo.Record{}, nil)
	if em.tracker.failed() == nil {
		t.Fatal("an ack without a transaction went unnoticed")
	}
}
