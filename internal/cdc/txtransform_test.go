package cdc

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// recordingTransform captures the tables in tables, keeps every transaction
// it is given and derives one record per transaction on derivedTopic
// (value = the transaction id), so a test sees exactly what the engine
// hands a transform. afterAck, when set, runs as the AfterAck.
type recordingTransform struct {
	tables   map[string]bool
	afterAck func(ctx context.Context)

	mu  sync.Mutex
	txs []Transaction
}

const derivedTopic = "derived.events"

func (r *recordingTransform) Captures(schema, table string) bool { return r.tables[schema+"."+table] }

func (r *recordingTransform) Transaction(_ context.Context, tx *Transaction) (Derived, error) {
	r.mu.Lock()
	r.txs = append(r.txs, *tx)
	r.mu.Unlock()
	id := strconv.FormatUint(tx.XID, 10)
	return Derived{Records: []*kgo.Record{{Topic: derivedTopic, Key: []byte(id), Value: []byte(id)}}, AfterAck: r.afterAck}, nil
}

func (r *recordingTransform) transactions() []Transaction {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Transaction(nil), r.txs...)
}

func runTransformConnector(t *testing.T, db *postgrestest.Database, extra map[string]string, tr TxTransform) (*Connector, Config, *kafka.Embedded) {
	t.Helper()
	b := kafkatest.New(t)
	cfg := parse(t, rawConfig(t, db, extra))
	c := NewConnector(cfg, Options{Kafka: kafkatest.Options(b), Logger: testLogger(), TopicPartitions: 1, Transform: tr})
	startConnector(t, c)
	waitStreaming(t, c)
	return c, cfg, b
}

// TestTransformSeesCommittedTransactions: the transform gets each committed
// transaction once, whole, with the row images of the tables it asked for
// only, in WAL order, with the same txId, LSNs and commit time as the
// change events; transactions of other tables never reach it.
func TestTransformSeesCommittedTransactions(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE wanted (id int PRIMARY KEY, note text, big text);
		ALTER TABLE wanted REPLICA IDENTITY FULL;
		CREATE TABLE other (id int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	tr := &recordingTransform{tables: map[string]bool{"public.wanted": true}}
	c, _, _ := runTransformConnector(t, db, map[string]string{"snapshot.mode": "no_data", "table.include.list": `public\.wanted,public\.other`}, tr)

	// One transaction over both tables, one of the other table alone, and
	// one updating and deleting rows of the wanted one (the TOASTed "big"
	// column unchanged by the update must come from the old image).
	big := fmt.Sprintf("%0*d", 9000, 7)
	var xid1, xid3 uint64
	tx, _ := db.Pool.Begin(ctx)
	_, _ = tx.Exec(ctx, `INSERT INTO wanted VALUES (1, 'one', $1), (2, NULL, 'b')`, big)
	_, _ = tx.Exec(ctx, `INSERT INTO other VALUES (1)`)
	_ = tx.QueryRow(ctx, `SELECT txid_current()`).Scan(&xid1)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO other SELECT generate_series(2, 50)`); err != nil {
		t.Fatal(err)
	}
	tx, _ = db.Pool.Begin(ctx)
	_, _ = tx.Exec(ctx, `UPDATE wanted SET note = 'uno' WHERE id = 1`)
	_, _ = tx.Exec(ctx, `DELETE FROM wanted WHERE id = 2`)
	_ = tx.QueryRow(ctx, `SELECT txid_current()`).Scan(&xid3)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	eventually(t, "two transactions transformed", 20*time.Second, func() bool { return len(tr.transactions()) >= 2 })
	got := tr.transactions()
	if len(got) != 2 || got[0].XID != xid1 || got[1].XID != xid3 {
		t.Fatalf("transform got %d transactions (%v); want %d and %d, not the other table's", len(got), got, xid1, xid3)
	}
	first, second := got[0], got[1]
	if len(first.Changes) != 2 || len(second.Changes) != 2 {
		t.Fatalf("changes %d and %d, want 2 and 2 (the other table's row left out)", len(first.Changes), len(second.Changes))
	}
	text := func(r Row, col string) string {
		v, ok := r.Text(col)
		if !ok {
			return "<none>"
		}
		return v
	}
	c0, c1 := first.Changes[0], first.Changes[1]
	if c0.Op != OpCreate || c0.Schema != "public" || c0.Table != "wanted" || !c0.Before.Empty() || text(c0.After, "id") != "1" || text(c0.After, "big") != big {
		t.Errorf("first insert: %+v", c0)
	}
	if v, ok := c1.After.Value("note"); !ok || !v.Null || text(c1.After, "id") != "2" {
		t.Errorf("second insert: note %+v", v)
	}
	u, d := second.Changes[0], second.Changes[1]
	if u.Op != OpUpdate || text(u.Before, "note") != "one" || text(u.After, "note") != "uno" || text(u.After, "big") != big {
		t.Errorf("update: before note %q, after note %q, after big len %d", text(u.Before, "note"), text(u.After, "note"), len(text(u.After, "big")))
	}
	if d.Op != OpDelete || !d.After.Empty() || text(d.Before, "id") != "2" {
		t.Errorf("delete: %+v", d)
	}
	for _, tx := range got {
		if tx.CommitTime.IsZero() || tx.BeginLSN == 0 || tx.CommitLSN < tx.BeginLSN || tx.EndLSN <= tx.CommitLSN ||
			tx.Changes[0].LSN < tx.BeginLSN || tx.Changes[1].LSN <= tx.Changes[0].LSN || tx.Changes[1].LSN > tx.CommitLSN {
			t.Errorf("transaction %d positions: begin %d, changes %d %d, commit %d, end %d", tx.XID, tx.BeginLSN,
				tx.Changes[0].LSN, tx.Changes[1].LSN, tx.CommitLSN, tx.EndLSN)
		}
	}
	// The change events agree on txId and position.
	var recs []*kgo.Record
	for _, r := range readTopic(t, c, "orders.wanted", 5) {
		if r.Value != nil { // not the delete's tombstone
			recs = append(recs, r)
		}
	}
	for i, r := range recs {
		ev := decode(t, r)
		want := first
		if i >= 2 {
			want = second
		}
		if uint64(ev.Source.TxID) != want.XID || uint64(ev.Source.LSN) != want.Changes[i%2].LSN || ev.Source.TsMs != want.CommitTime.UnixMilli() {
			t.Errorf("change event %d: txId %d lsn %d ts %d; transform saw %d %d %d", i, ev.Source.TxID, ev.Source.LSN, ev.Source.TsMs,
				want.XID, want.Changes[i%2].LSN, want.CommitTime.UnixMilli())
		}
	}
	derived := readTopic(t, c, derivedTopic, 2)
	if string(derived[0].Value) != strconv.FormatUint(xid1, 10) || string(derived[1].Value) != strconv.FormatUint(xid3, 10) {
		t.Errorf("derived records %s, %s", derived[0].Value, derived[1].Value)
	}
}

// readTopic reads n records of topic from the connector's broker.
func readTopic(t *testing.T, c *Connector, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.opts.Kafka.Brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	if len(out) != n {
		t.Fatalf("%s: %d records, want %d", topic, len(out), n)
	}
	return out
}

// TestHugeTransactionOfOtherTablesIsNotBuffered: a transaction of 200,000
// rows of a captured table the transform does not ask for streams through
// without the engine holding any of its rows; the transform is not called.
func TestHugeTransactionOfOtherTablesIsNotBuffered(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE wanted (id int PRIMARY KEY); CREATE TABLE bulk (id int PRIMARY KEY, pad text)`); err != nil {
		t.Fatal(err)
	}
	tr := &recordingTransform{tables: map[string]bool{"public.wanted": true}}
	c, _, _ := runTransformConnector(t, db, map[string]string{"snapshot.mode": "no_data", "table.include.list": `public\.wanted,public\.bulk`}, tr)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO wanted VALUES (1), (2), (3)`); err != nil {
		t.Fatal(err)
	}
	const rows = 200_000
	if _, err := db.Pool.Exec(ctx, `INSERT INTO bulk SELECT g, 'x' FROM generate_series(1, $1) g`, rows); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO wanted VALUES (4)`); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the bulk rows and the last insert streamed", 120*time.Second, func() bool {
		return c.stats.events.Load() >= rows+4 && len(tr.transactions()) == 2
	})
	if got := c.stats.maxBuffered.Load(); got != 3 {
		t.Fatalf("at most %d changes were held for the transform; want 3 (the first transaction's), none of the bulk rows", got)
	}
	if txs := tr.transactions(); len(txs[0].Changes) != 3 || len(txs[1].Changes) != 1 {
		t.Fatalf("transform saw %d and %d changes, want 3 and 1", len(txs[0].Changes), len(txs[1].Changes))
	}
}

// TestSlotNeverConfirmsUnackedDerivedRecords extends
// TestSlotNeverConfirmsUnackedEvents to a transform's output: while Kafka
// holds back the acks of the derived records, the slot does not confirm
// the transaction, although its change event is written; nor while the
// transform's AfterAck runs, although every record is acknowledged. Each
// hold lasts many status updates (counted, not timed).
func TestSlotNeverConfirmsUnackedDerivedRecords(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	releaseAfter := make(chan struct{})
	afterStarted := make(chan struct{}, 10)
	var holdAfter sync.Once
	tr := &recordingTransform{tables: map[string]bool{"public.orders": true}}
	tr.afterAck = func(context.Context) {
		afterStarted <- struct{}{}
		holdAfter.Do(func() { <-releaseAfter }) // hold the first transaction's only
	}
	c, cfg, b := runTransformConnector(t, db, map[string]string{"snapshot.mode": "no_data"}, tr)

	// 1. AfterAck holds confirmation though Kafka has every record.
	if _, err := db.Pool.Exec(ctx, insertOrder, newOrderID()); err != nil {
		t.Fatal(err)
	}
	<-afterStarted
	commit1 := tr.transactions()[0].EndLSN // where the slot is confirmed to
	_ = readTopic(t, c, derivedTopic, 1)
	waitStatusUpdates(t, c, 5)
	if confirmed, _ := slotPositions(t, db, cfg.SlotName); confirmed >= commit1 {
		t.Fatalf("slot confirmed %X while the transaction's AfterAck (commit end %X) was still running", confirmed, commit1)
	}
	close(releaseAfter)
	waitConfirmed(t, db, cfg.SlotName, commit1, "transaction confirmed once AfterAck returned")

	// 2. Unacknowledged derived records hold confirmation.
	// Produce v13 names topics by id.
	adm, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	details, err := kadm.NewClient(adm).ListTopics(ctx, derivedTopic)
	adm.Close()
	if err != nil || details[derivedTopic].Err != nil {
		t.Fatalf("topic id of %s: %v %v", derivedTopic, err, details[derivedTopic].Err)
	}
	derivedID := details[derivedTopic].ID
	cl := b.Cluster()
	release := make(chan struct{})
	cl.ControlKey(kmsg.Produce.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cl.KeepControl()
		select {
		case <-release:
			cl.DropControl()
			return nil, nil, false
		default:
		}
		for _, tp := range req.(*kmsg.ProduceRequest).Topics {
			if tp.Topic == derivedTopic || tp.TopicID == derivedID {
				cl.SleepControl(func() { <-release })
			}
		}
		return nil, nil, false
	})
	derivedBefore := c.stats.derived.Load()
	if _, err := db.Pool.Exec(ctx, insertOrder, newOrderID()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "second transaction derived", 20*time.Second, func() bool { return c.stats.derived.Load() > derivedBefore })
	commit2 := tr.transactions()[1].EndLSN
	waitStatusUpdates(t, c, 5)
	if confirmed, _ := slotPositions(t, db, cfg.SlotName); confirmed >= commit2 {
		t.Fatalf("slot confirmed %X past a transaction (commit end %X) whose derived record Kafka has not acknowledged", confirmed, commit2)
	}
	close(release)
	waitConfirmed(t, db, cfg.SlotName, commit2, "transaction confirmed after the derived record's ack")
	_ = readTopic(t, c, derivedTopic, 2)
}

// waitStatusUpdates waits until the connector has sent n more standby
// status updates: n chances to confirm what it must not.
func waitStatusUpdates(t *testing.T, c *Connector, n uint64) {
	t.Helper()
	from := c.stats.statusSent.Load()
	eventually(t, "status updates sent", 20*time.Second, func() bool { return c.stats.statusSent.Load() >= from+n })
}

// TestBuiltinKeepsItsTransform: the built-in connector's transform survives
// what the REST API can do to it — a new configuration (PUT), a restart, a
// pause and resume — so its derived records never silently stop.
func TestBuiltinKeepsItsTransform(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	b := kafkatest.New(t)
	m := NewManager(db.Pool, ManagerOptions{Kafka: kafkatest.Options(b), Logger: testLogger(), TopicPartitions: 1})
	t.Cleanup(m.Close)
	tr := &recordingTransform{tables: map[string]bool{"public.orders": true}}
	raw := rawConfig(t, db, map[string]string{"snapshot.mode": "no_data"})
	if err := m.RunBuiltin("builtin", raw, WithTransform(tr)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	raw2 := copyMap(raw)
	raw2["heartbeat.interval.ms"] = "60000"
	if _, created, _, err := m.Put(ctx, "builtin", raw2); err != nil || created {
		t.Fatalf("put: %v (created %v)", err, created)
	}
	if err := m.Restart("builtin"); err != nil {
		t.Fatal(err)
	}
	if err := m.Pause(ctx, "builtin"); err != nil {
		t.Fatal(err)
	}
	if err := m.Resume(ctx, "builtin"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "connector streaming", 20*time.Second, func() bool {
		m.mu.Lock()
		e := m.entries["builtin"]
		m.mu.Unlock()
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.connector != nil && e.connector.stats.phase.Load() == "streaming"
	})
	if _, err := db.Pool.Exec(ctx, insertOrder, newOrderID()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the transform saw the insert", 20*time.Second, func() bool { return len(tr.transactions()) == 1 })
}
