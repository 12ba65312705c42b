package cdc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// uniqueSlot returns a cluster-wide unique slot name for one test.
func uniqueSlot() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "cdctest_" + hex.EncodeToString(b)
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// rawConfig is the seed connector's configuration pointed at db, with a slot
// of its own and fast status updates.
func rawConfig(t testing.TB, db *postgrestest.Database, extra map[string]string) map[string]string {
	t.Helper()
	raw, err := OrdersConnectorConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	raw["slot.name"] = uniqueSlot()
	raw["decimal.handling.mode"] = DecimalPrecise
	raw["status.update.interval.ms"] = "50"
	for k, v := range extra {
		if v == "" {
			delete(raw, k)
			continue
		}
		raw[k] = v
	}
	return raw
}

func parse(t testing.TB, raw map[string]string) Config {
	t.Helper()
	cfg, _, err := ParseConfig("test-connector", raw)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runConnector starts a connector in the background; stop cancels it and
// waits for it to return.
func runConnector(t testing.TB, cfg Config, b *kafka.Embedded, offsets OffsetStore) (c *Connector, stop func()) {
	t.Helper()
	c = NewConnector(cfg, Options{Kafka: kafkatest.Options(b), Offsets: offsets, Logger: testLogger(), TopicPartitions: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("connector run: %v", err)
		}
	}
	t.Cleanup(stop)
	return c, stop
}

// waitStreaming waits until the connector streams (or fails the test).
func waitStreaming(t testing.TB, c *Connector) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for c.stats.phase.Load().(string) != "streaming" {
		if time.Now().After(deadline) {
			t.Fatalf("connector did not start streaming (phase %s)", c.stats.phase.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type event struct {
	Before map[string]any `json:"before"`
	After  map[string]any `json:"after"`
	Source struct {
		Version   string `json:"version"`
		Connector string `json:"connector"`
		Name      string `json:"name"`
		TsMs      int64  `json:"ts_ms"`
		Snapshot  string `json:"snapshot"`
		DB        string `json:"db"`
		Sequence  string `json:"sequence"`
		Schema    string `json:"schema"`
		Table     string `json:"table"`
		TxID      int64  `json:"txId"`
		LSN       int64  `json:"lsn"`
		Xmin      *int64 `json:"xmin"`
	} `json:"source"`
	Op   string `json:"op"`
	TsMs int64  `json:"ts_ms"`
}

func decode(t testing.TB, rec *kgo.Record) event {
	t.Helper()
	var e event
	if err := json.Unmarshal(rec.Value, &e); err != nil {
		t.Fatalf("decode %s: %v", rec.Value, err)
	}
	return e
}

const insertOrder = `INSERT INTO orders (id, customer_id, status, total_amount, shipping_address) VALUES ($1, 'c-1', 'PENDING', 42.50, '{"city":"Oslo"}')`

func TestInsertUpdateDeleteStream(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	cfg := parse(t, rawConfig(t, db, map[string]string{"snapshot.mode": "no_data"}))
	c, _ := runConnector(t, cfg, b, nil)
	waitStreaming(t, c)

	ctx := context.Background()
	id := "6f1c7f2e-2a4b-4c1d-9f0e-0a1b2c3d4e5f"
	var insertXid, updateXid, deleteXid int64
	tx, _ := db.Pool.Begin(ctx)
	if _, err := tx.Exec(ctx, insertOrder, id); err != nil {
		t.Fatal(err)
	}
	_ = tx.QueryRow(ctx, `SELECT txid_current()`).Scan(&insertXid)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	tx, _ = db.Pool.Begin(ctx)
	if _, err := tx.Exec(ctx, `UPDATE orders SET status = 'CONFIRMED', version = 2 WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	_ = tx.QueryRow(ctx, `SELECT txid_current()`).Scan(&updateXid)
	_ = tx.Commit(ctx)
	tx, _ = db.Pool.Begin(ctx)
	if _, err := tx.Exec(ctx, `DELETE FROM orders WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	_ = tx.QueryRow(ctx, `SELECT txid_current()`).Scan(&deleteXid)
	_ = tx.Commit(ctx)

	recs := kafkatest.Read(t, b, "orders.orders", 4, 20*time.Second)
	if len(recs) != 4 {
		for _, r := range recs {
			t.Logf("%s %s", r.Key, r.Value)
		}
		t.Fatalf("got %d records on orders.orders, want 4 (c, u, d, tombstone)", len(recs))
	}
	wantKey := `{"id":"` + id + `"}`
	for i, r := range recs {
		if string(r.Key) != wantKey {
			t.Errorf("record %d key = %s, want %s", i, r.Key, wantKey)
		}
	}
	c1, u, d := decode(t, recs[0]), decode(t, recs[1]), decode(t, recs[2])
	if recs[3].Value != nil {
		t.Errorf("4th record should be a tombstone, got %s", recs[3].Value)
	}
	if c1.Op != "c" || u.Op != "u" || d.Op != "d" {
		t.Fatalf("ops = %s %s %s, want c u d", c1.Op, u.Op, d.Op)
	}
	if c1.Before != nil || c1.After["id"] != id || c1.After["status"] != "PENDING" {
		t.Errorf("create: before %v after %v", c1.Before, c1.After)
	}
	if c1.After["shipping_address"] != `{"city": "Oslo"}` {
		t.Errorf("jsonb encoded as %#v, want the document as a string", c1.After["shipping_address"])
	}
	// REPLICA IDENTITY FULL (migration 00030): the whole old row.
	if u.Before["status"] != "PENDING" || u.After["status"] != "CONFIRMED" || u.Before["customer_id"] != "c-1" {
		t.Errorf("update: before %v after %v", u.Before, u.After)
	}
	if d.After != nil || d.Before["id"] != id || d.Before["status"] != "CONFIRMED" {
		t.Errorf("delete: before %v after %v", d.Before, d.After)
	}
	for _, tc := range []struct {
		e   event
		xid int64
	}{{c1, insertXid}, {u, updateXid}, {d, deleteXid}} {
		s := tc.e.Source
		if s.TxID != tc.xid {
			t.Errorf("%s: txId = %d, want %d", tc.e.Op, s.TxID, tc.xid)
		}
		if s.Connector != "postgresql" || s.Name != "trackops_orders" || s.DB != db.Name || s.Schema != "public" || s.Table != "orders" || s.Snapshot != "false" {
			t.Errorf("%s: source = %+v", tc.e.Op, s)
		}
		if s.LSN <= 0 || s.TsMs <= 0 || tc.e.TsMs <= 0 {
			t.Errorf("%s: lsn %d ts_ms %d / %d", tc.e.Op, s.LSN, s.TsMs, tc.e.TsMs)
		}
		var seq []*string
		if err := json.Unmarshal([]byte(s.Sequence), &seq); err != nil || len(seq) != 2 || seq[1] == nil || *seq[1] != strconv.FormatInt(s.LSN, 10) {
			t.Errorf("%s: sequence %q does not end with lsn %d", tc.e.Op, s.Sequence, s.LSN)
		}
	}
	if !(c1.Source.LSN < u.Source.LSN && u.Source.LSN < d.Source.LSN) {
		t.Errorf("lsns not increasing: %d %d %d", c1.Source.LSN, u.Source.LSN, d.Source.LSN)
	}
	// Each change's LSN must lie in its transaction's WAL; compare with the server's view.
	var walLSN string
	_ = db.Pool.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&walLSN)
	cur, _ := pglogrepl.ParseLSN(walLSN)
	if uint64(d.Source.LSN) > uint64(cur) {
		t.Errorf("delete lsn %d beyond the server's WAL end %d", d.Source.LSN, cur)
	}
}

func TestWalLevelErrorMessage(t *testing.T) {
	t.Parallel()
	var err error = &WalLevelError{Level: "replica"}
	want := "wal_level is replica; the cdc strategy needs wal_level=logical: ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL"
	if err.Error() != want {
		t.Fatalf("message = %q, want %q", err, want)
	}
	// The machine's server runs wal_level=logical, so the check passes there.
	db := postgrestest.New(t)
	if err := CheckWalLevel(context.Background(), db.Pool); err != nil {
		t.Fatalf("CheckWalLevel on a logical server: %v", err)
	}
}
