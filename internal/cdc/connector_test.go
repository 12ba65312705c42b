package cdc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

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

func testLogger() *slog.Logger {
	if os.Getenv("CDC_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// seedConfig is the seed's trackops-orders-connector configuration (the
// Debezium JSON of the contract) pointed at databaseURL. The tests capture
// tables of TrackOps' schema because every test database has them; the
// engine itself knows no table.
func seedConfig(t testing.TB, databaseURL string) map[string]string {
	t.Helper()
	raw := map[string]string{
		"connector.class":              ConnectorClass,
		"database.server.name":         "trackops_orders",
		"topic.prefix":                 "trackops_orders",
		"table.include.list":           "public.orders,public.order_items",
		"plugin.name":                  "pgoutput",
		"slot.name":                    "debezium_orders",
		"publication.name":             "debezium_publication",
		"publication.autocreate.mode":  PublicationFiltered,
		"decimal.handling.mode":        DecimalString,
		"transforms":                   "route",
		"transforms.route.type":        "org.apache.kafka.connect.transforms.RegexRouter",
		"transforms.route.regex":       "trackops_orders.public.(.*)",
		"transforms.route.replacement": "orders.$1",
	}
	db, err := DatabaseKeys(databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range db {
		raw[k] = v
	}
	if raw["database.user"] == "" {
		raw["database.user"] = "postgres"
	}
	return raw
}

// rawConfig is the seed connector's configuration pointed at db, with a slot
// of its own and fast status updates.
func rawConfig(t testing.TB, db *postgrestest.Database, extra map[string]string) map[string]string {
	t.Helper()
	raw := seedConfig(t, db.URL)
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
	return c, startConnector(t, c)
}

// startConnector runs c until stop is called or the test ends; stop waits
// for Run to return and reports its error.
func startConnector(t testing.TB, c *Connector) (stop func()) {
	t.Helper()
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
	return stop
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

// slotPositions reads the slot's confirmed_flush_lsn and restart_lsn.
func slotPositions(t testing.TB, db *postgrestest.Database, slot string) (confirmed, restart uint64) {
	t.Helper()
	var c, r string
	err := db.Pool.QueryRow(context.Background(),
		`SELECT confirmed_flush_lsn::text, restart_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&c, &r)
	if err != nil {
		t.Fatalf("read slot %s: %v", slot, err)
	}
	cl, _ := pglogrepl.ParseLSN(c)
	rl, _ := pglogrepl.ParseLSN(r)
	return uint64(cl), uint64(rl)
}

func currentWAL(t testing.TB, db *postgrestest.Database) uint64 {
	t.Helper()
	var s string
	if err := db.Pool.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	l, _ := pglogrepl.ParseLSN(s)
	return uint64(l)
}

// waitSlotReleased waits until a stopped connector's slot is free again:
// the server releases it when the old walsender exits, a moment after the
// connection closed. (The manager retries a connector that finds its slot
// active; a test starting a second run at once does not.)
func waitSlotReleased(t testing.TB, db *postgrestest.Database, slot string) {
	t.Helper()
	eventually(t, "slot "+slot+" released", 20*time.Second, func() bool {
		var active bool
		err := db.Pool.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active)
		return err == nil && !active
	})
}

// waitConfirmed waits until slot's confirmed position reaches lsn.
func waitConfirmed(t testing.TB, db *postgrestest.Database, slot string, lsn uint64, what string) {
	t.Helper()
	eventually(t, what, 20*time.Second, func() bool {
		confirmed, _ := slotPositions(t, db, slot)
		return confirmed >= lsn
	})
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newOrderID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func TestSnapshotThenStreamAndNoSecondSnapshot(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := db.Pool.Exec(ctx, insertOrder, newOrderID()); err != nil {
			t.Fatal(err)
		}
	}
	offsets := &MemoryOffsets{}
	cfg := parse(t, rawConfig(t, db, nil)) // snapshot.mode defaults to initial
	c, stop := runConnector(t, cfg, b, offsets)
	waitStreaming(t, c)
	if _, err := db.Pool.Exec(ctx, insertOrder, newOrderID()); err != nil {
		t.Fatal(err)
	}
	recs := kafkatest.Read(t, b, "orders.orders", 4, 20*time.Second)
	if len(recs) != 4 {
		t.Fatalf("got %d records, want 3 snapshot + 1 create", len(recs))
	}
	// Tables are snapshotted in name order: public.order_items (empty) is the
	// first table, so no record is "first"; orders' first row is
	// first_in_data_collection and the final record "last"
	// (RelationalSnapshotChangeEventSource.setSnapshotMarker with
	// firstTable = tableOrder == 1, in debezium-core).
	wantMarkers := []string{"first_in_data_collection", "true", "last"}
	var snapLSN int64
	for i := 0; i < 3; i++ {
		e := decode(t, recs[i])
		if e.Op != "r" || e.Source.Snapshot != wantMarkers[i] || e.Before != nil || e.After["status"] != "PENDING" {
			t.Errorf("snapshot record %d: op %s snapshot %s before %v after %v", i, e.Op, e.Source.Snapshot, e.Before, e.After)
		}
		if i == 0 {
			snapLSN = e.Source.LSN
		} else if e.Source.LSN != snapLSN {
			t.Errorf("snapshot records carry different LSNs: %d and %d", snapLSN, e.Source.LSN)
		}
	}
	last := decode(t, recs[3])
	if last.Op != "c" || last.Source.Snapshot != "false" || last.Source.LSN < snapLSN {
		t.Errorf("streamed record: op %s snapshot %s lsn %d (snapshot lsn %d)", last.Op, last.Source.Snapshot, last.Source.LSN, snapLSN)
	}
	stop()
	waitSlotReleased(t, db, cfg.SlotName)

	// A restart with the same offsets streams on; it does not snapshot again.
	c2, _ := runConnector(t, cfg, b, offsets)
	waitStreaming(t, c2)
	if _, err := db.Pool.Exec(ctx, insertOrder, newOrderID()); err != nil {
		t.Fatal(err)
	}
	recs = kafkatest.Read(t, b, "orders.orders", 5, 20*time.Second)
	if len(recs) != 5 {
		t.Fatalf("got %d records after restart, want 5", len(recs))
	}
	if e := decode(t, recs[4]); e.Op != "c" {
		t.Errorf("after restart got op %s, want c (no second snapshot)", e.Op)
	}
}

// TestSlotNeverConfirmsUnackedEvents holds Kafka's produce acks back and
// checks that the slot does not confirm the transactions waiting for them.
func TestSlotNeverConfirmsUnackedEvents(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ctx := context.Background()
	cfg := parse(t, rawConfig(t, db, map[string]string{"snapshot.mode": "no_data"}))
	c, _ := runConnector(t, cfg, b, nil)
	waitStreaming(t, c)

	if _, err := db.Pool.Exec(ctx, insertOrder, newOrderID()); err != nil {
		t.Fatal(err)
	}
	afterFirst := currentWAL(t, db)
	waitConfirmed(t, db, cfg.SlotName, afterFirst, "first order confirmed")

	cl := b.Cluster()
	release := make(chan struct{})
	cl.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		cl.KeepControl()
		select {
		case <-release:
			cl.DropControl()
			return nil, nil, false
		default:
		}
		cl.SleepControl(func() { <-release })
		return nil, nil, false
	})

	// A test_decoding slot tells the bulk transaction's exact commit end LSN
	// (the WAL is cluster-wide, so "the WAL position before the insert" is
	// no bound: other databases write WAL meanwhile).
	probe := uniqueSlot()
	if _, err := db.Pool.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'test_decoding')`, probe); err != nil {
		t.Fatal(err)
	}
	defer db.Pool.Exec(context.Background(), `SELECT pg_drop_replication_slot($1)`, probe) //nolint:errcheck
	events := c.stats.events.Load()
	// Three orders in one statement: three events of one transaction.
	var xid string
	err := db.Pool.QueryRow(ctx, `WITH ins AS (INSERT INTO orders (id, customer_id, status, total_amount)
		SELECT gen_random_uuid(), 'bulk', 'PENDING', 1 FROM generate_series(1, 3)) SELECT txid_current()::text`).Scan(&xid)
	if err != nil {
		t.Fatal(err)
	}
	var commitText string
	err = db.Pool.QueryRow(ctx, `SELECT lsn::text FROM pg_logical_slot_peek_changes($1, NULL, NULL)
		WHERE xid::text = $2 AND data LIKE 'COMMIT%'`, probe, xid).Scan(&commitText)
	if err != nil {
		t.Fatalf("find commit of transaction %s: %v", xid, err)
	}
	commitLSN, _ := pglogrepl.ParseLSN(commitText)
	afterBulk := currentWAL(t, db)
	eventually(t, "bulk transaction produced", 20*time.Second, func() bool { return c.stats.events.Load() >= events+3 })
	// Give the connector many status intervals (and keepalives) in which a
	// wrong implementation would confirm the unacknowledged transaction.
	time.Sleep(500 * time.Millisecond)
	if confirmed, _ := slotPositions(t, db, cfg.SlotName); confirmed >= uint64(commitLSN) {
		t.Fatalf("slot confirmed %X, the commit (end %X) of a transaction waiting for Kafka acks", confirmed, commitLSN)
	}
	close(release)
	waitConfirmed(t, db, cfg.SlotName, afterBulk, "bulk transaction confirmed after acks")
	if recs := kafkatest.Read(t, b, "orders.orders", 4, 20*time.Second); len(recs) != 4 {
		t.Fatalf("got %d records, want 4", len(recs))
	}
}

// TestRestartMidStreamLosesNothing stops the connector while a writer
// commits single- and multi-row transactions, restarts it, and checks every
// committed row reached Kafka (duplicates allowed: at-least-once).
func TestRestartMidStreamLosesNothing(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE bulk (id int PRIMARY KEY, tx int NOT NULL, pad text)`); err != nil {
		t.Fatal(err)
	}
	offsets := &MemoryOffsets{}
	cfg := parse(t, rawConfig(t, db, map[string]string{"snapshot.mode": "no_data", "table.include.list": "public.bulk"}))
	c1, stop1 := runConnector(t, cfg, b, offsets)
	waitStreaming(t, c1)

	var committed atomic.Int64
	writerDone := make(chan struct{})
	stopWriter := make(chan struct{})
	go func() {
		defer close(writerDone)
		next := 0
		for tx := 0; ; tx++ {
			select {
			case <-stopWriter:
				return
			default:
			}
			rows := 1
			if tx%3 == 0 {
				rows = 400 // many events in one transaction
			}
			_, err := db.Pool.Exec(ctx, `INSERT INTO bulk (id, tx, pad) SELECT g, $2, repeat('x', 50) FROM generate_series($1::int, $1::int + $3 - 1) g`, next, tx, rows)
			if err != nil {
				t.Errorf("writer: %v", err)
				return
			}
			next += rows
			committed.Store(int64(next))
		}
	}()
	eventually(t, "first run mid-stream", 20*time.Second, func() bool { return c1.stats.events.Load() > 1500 })
	stop1()
	waitSlotReleased(t, db, cfg.SlotName)
	c2, _ := runConnector(t, cfg, b, offsets)
	waitStreaming(t, c2)
	eventually(t, "second run streaming changes", 20*time.Second, func() bool { return c2.stats.events.Load() > 500 })
	close(stopWriter)
	<-writerDone
	want := int(committed.Load())

	seen := map[int]bool{}
	total := 0
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics("orders.bulk"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for len(seen) < want && rctx.Err() == nil {
		cl.PollFetches(rctx).EachRecord(func(r *kgo.Record) {
			var key struct{ ID int }
			if err := json.Unmarshal(r.Key, &key); err == nil && r.Value != nil {
				seen[key.ID] = true
				total++
			}
		})
	}
	if len(seen) != want {
		t.Fatalf("%d of %d committed rows reached Kafka", len(seen), want)
	}
	t.Logf("%d rows committed, %d events on Kafka (%d redelivered after the restart)", want, total, total-want)
}

// TestIdleSlotAdvances writes WAL only to a table the connector does not
// capture; the slot must still confirm past it and release the WAL.
func TestIdleSlotAdvances(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE noise (id bigserial PRIMARY KEY, pad text)`); err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, rawConfig(t, db, map[string]string{"snapshot.mode": "no_data"}))
	c, _ := runConnector(t, cfg, b, nil)
	waitStreaming(t, c)
	start := currentWAL(t, db)
	for i := 0; i < 10; i++ {
		if _, err := db.Pool.Exec(ctx, `INSERT INTO noise (pad) SELECT repeat(md5(g::text), 8) FROM generate_series(1, 5000) g`); err != nil {
			t.Fatal(err)
		}
	}
	end := currentWAL(t, db)
	if end-start < 5<<20 {
		t.Fatalf("noise wrote only %d bytes of WAL", end-start)
	}
	waitConfirmed(t, db, cfg.SlotName, end, "slot confirms past the noise")
	// restart_lsn moves at the next running-transactions record; a
	// checkpoint writes one now instead of within 15 s.
	if _, err := db.Pool.Exec(ctx, `CHECKPOINT`); err != nil {
		t.Logf("checkpoint: %v", err)
	}
	eventually(t, "slot releases the noise WAL", 40*time.Second, func() bool {
		_, restart := slotPositions(t, db, cfg.SlotName)
		return restart >= end
	})
	if c.stats.events.Load() != 0 {
		t.Errorf("connector produced %d events for uncaptured writes", c.stats.events.Load())
	}
}
