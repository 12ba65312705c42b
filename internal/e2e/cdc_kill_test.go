package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// Change topics of the built-in connector.
const (
	ordersTopic = "orders.orders"
	itemsTopic  = "orders.order_items"
)

// changeKey names one committed row change: an orders row at a version, or
// an order_items row (only ever inserted).
type changeKey struct {
	table, id string
	version   int
}

func (k changeKey) String() string { return fmt.Sprintf("%s %s v%d", k.table, k.id, k.version) }

// flushSample is the slot's confirmed_flush_lsn read at one moment and the
// end offsets of the change topics read just after it.
type flushSample struct {
	flushed uint64
	ends    map[string]map[int32]int64 // topic -> partition -> end offset
}

// TestCDCKillMidStream: under the cdc strategy, SIGKILL the process while
// orders are created and updated through the API and by multi-row SQL
// statements, keep writing while it is down, restart it on the same data
// directory, and then:
//
//   - every committed row change — each (id, version) of orders, each
//     order_items id, and every change a second, independent logical
//     decoding slot saw — is on orders.orders / orders.order_items at least
//     once;
//   - the slot never confirmed what Kafka did not hold: for every sample
//     (confirmed_flush_lsn F, then the topics' end offsets E read after it),
//     every change of every transaction whose commit ends at or before F is
//     on Kafka at an offset below E. The reference slot gives each
//     transaction's end LSN, the position the connector confirms.
func TestCDCKillMidStream(t *testing.T) {
	endToEnd(t)
	ctx := context.Background()
	db := postgrestest.New(t)
	cfg, slot := strategyConfig(t, db, "cdc")
	cfg.Extra = append(cfg.Extra, "TRACKOPS_LOG_LEVEL=error")
	p := Start(t, cfg)

	// The reference slot decodes the same WAL with test_decoding; it exists
	// before any load transaction commits. postgrestest drops it with the
	// database.
	refSlot := "ref_" + uniqueSuffix()
	if _, err := db.Pool.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'test_decoding')`, refSlot); err != nil {
		t.Fatal(err)
	}
	sku := "KILL-" + uniqueSuffix()
	mustCall(t, p, http.MethodPut, "/api/v1/inventory/"+sku, `{"name":"plenty","on_hand":1000000}`, http.StatusCreated, nil)

	adm := newAdmin(t, cfg.KafkaAddr)
	samples := startFlushSampler(db, cfg.KafkaAddr, slot)

	// The write load.
	var (
		proc       atomic.Pointer[Process]
		stop       = make(chan struct{})
		wg         sync.WaitGroup
		apiCreated atomic.Int64
		apiUpdated atomic.Int64
		sqlTx      atomic.Int64
	)
	proc.Store(p)
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	for range 6 { // API: create, then cancel (an update) every other order
		wg.Go(func() {
			for i := 0; !stopped(); i++ {
				pr := proc.Load()
				o, code, err := placeOrder(pr, sku, 1+i%3)
				if code != http.StatusCreated {
					if err != nil && code == 0 {
						time.Sleep(50 * time.Millisecond) // down: wait for the restart
					}
					continue
				}
				apiCreated.Add(1)
				if i%2 == 0 {
					if c, _ := call(pr, http.MethodPost, "/api/v1/orders/"+o.ID+"/cancel", `{"reason":"load"}`, nil); c == http.StatusOK {
						apiUpdated.Add(1)
					}
				}
			}
		})
	}
	for w := range 2 { // SQL: multi-row inserts with items, multi-row updates, one transaction each
		wg.Go(func() {
			for i := 0; !stopped(); i++ {
				if err := sqlBatch(ctx, db, fmt.Sprintf("sql-%d-%d", w, i)); err != nil {
					t.Errorf("sql batch: %v", err)
					return
				}
				sqlTx.Add(1)
			}
		})
	}

	// Kill once the connector is streaming under load.
	waitUntil(t, "changes flowing to Kafka", 30*time.Second, func(ctx context.Context) (bool, error) {
		n, err := topicRecords(ctx, adm, ordersTopic)
		return n >= 1500, err
	})
	p.Kill()
	killedAt := time.Now()
	// The SQL writers keep committing while it is down: restart once some
	// transactions went into the WAL with no connector reading it.
	grown := func(what string, counter func() int64, by int64) {
		t.Helper()
		from := counter()
		waitUntil(t, what, 60*time.Second, func(context.Context) (bool, error) { return counter()-from >= by, nil })
	}
	grown("SQL transactions while the process is down", sqlTx.Load, 20)
	p2 := Start(t, cfg)
	proc.Store(p2)
	t.Logf("down for %s", time.Since(killedAt).Round(time.Millisecond))
	// Load continues after the restart: orders through the new process's
	// API and more SQL transactions.
	grown("orders created through the restarted process", apiCreated.Load, 50)
	grown("SQL transactions after the restart", sqlTx.Load, 20)
	close(stop)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// What PostgreSQL committed: the tables' rows, read before the end LSN.
	committed := committedChanges(t, db)
	// The restarted connector catches up on everything since its last
	// confirmed position while the test suite loads the same 2 cores and
	// PostgreSQL: a deadlock guard, not a speed assertion.
	caughtUp := time.Now()
	endText := waitSlotPastNow(t, db, slot, 3*time.Minute)
	t.Logf("slot caught up in %s", time.Since(caughtUp).Round(time.Millisecond))
	samples.stop()
	samples.takeFinal(t, db, adm, slot)
	onKafka := readChanges(t, cfg.KafkaAddr, adm)
	ref := referenceTransactions(t, db, refSlot, endText)

	// 1. Every committed row change is on Kafka at least once.
	for _, k := range committed {
		if _, ok := onKafka.first[k]; !ok {
			t.Errorf("committed change %s is not on Kafka", k)
		}
	}
	refChanges := 0
	for _, tx := range ref {
		for _, k := range tx.changes {
			refChanges++
			if _, ok := onKafka.first[k]; !ok {
				t.Errorf("change %s of transaction %d (end %s) is not on Kafka", k, tx.xid, pglogrepl.LSN(tx.end))
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// 2. The slot never passed what Kafka held.
	all := samples.all()
	checked := 0
	for _, s := range all {
		for _, tx := range ref {
			if tx.end > s.flushed {
				continue
			}
			for _, k := range tx.changes {
				at := onKafka.first[k]
				checked++
				if at.offset >= s.ends[at.topic][at.partition] {
					t.Fatalf("slot confirmed %s, but change %s of transaction %d (end %s) was first written at %s/%d@%d, beyond the end offset %d read after the confirmation",
						pglogrepl.LSN(s.flushed), k, tx.xid, pglogrepl.LSN(tx.end), at.topic, at.partition, at.offset, s.ends[at.topic][at.partition])
				}
			}
		}
	}
	var maxFlushed uint64
	for _, s := range all {
		maxFlushed = max(maxFlushed, s.flushed)
	}
	if checked == 0 {
		t.Fatalf("only %d flush samples, %d change checks: the check proved nothing", len(all), checked)
	}
	t.Logf("load: %d API orders, %d API cancels, %d SQL transactions; %d committed changes (%d in the reference slot), %d records on Kafka (%d duplicates after the restart)",
		apiCreated.Load(), apiUpdated.Load(), sqlTx.Load(), len(committed), refChanges, onKafka.records, onKafka.records-len(onKafka.first))
	t.Logf("%d flush samples, %d (sample, change) checks; highest confirmed_flush_lsn %s, highest source.lsn on Kafka %s",
		len(all), checked, pglogrepl.LSN(maxFlushed), pglogrepl.LSN(onKafka.maxSourceLSN))

	// 3. The order events derived from the change stream: the slot confirmed
	// every transaction, so each order's ORDER_CREATED is on Kafka; a
	// transaction streamed again after the kill yields the same event id.
	createdIDs, records := createdEventIDs(t, cfg.KafkaAddr, adm)
	orders := 0
	for _, k := range committed {
		if k.table != "orders" || k.version != 1 {
			continue
		}
		orders++
		if n := len(createdIDs[k.id]); n != 1 {
			t.Errorf("order %s: %d distinct ORDER_CREATED event ids on Kafka, want 1", k.id, n)
		}
	}
	t.Logf("%d orders, %d ORDER_CREATED records (%d produced again after the kill, same ids)", orders, records, records-len(createdIDs))
	p2.Kill()
}

// sqlBatch commits one transaction of multi-row statements on the captured
// tables: 10 orders with one item each, then an update of up to 10 PENDING
// orders of the batch's own earlier runs (several changes share the
// transaction's commit LSN).
func sqlBatch(ctx context.Context, db *postgrestest.Database, tag string) error {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `WITH o AS (
		INSERT INTO orders (id, customer_id, status, total_amount)
		SELECT gen_random_uuid(), $1 || '-' || g, 'PENDING', 1 FROM generate_series(1, 10) g RETURNING id)
		INSERT INTO order_items (id, order_id, line_no, sku, quantity, unit_price, line_total)
		SELECT gen_random_uuid(), id, 1, 'SQL-ONLY', 1, 1, 1 FROM o`, tag); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE orders SET status = 'PROCESSING'
		WHERE id IN (SELECT id FROM orders WHERE customer_id LIKE 'sql-%' AND status = 'PENDING' ORDER BY created_at LIMIT 10 FOR UPDATE SKIP LOCKED)`); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// committedChanges lists every row change the tables' current state implies:
// each order at every version from 1 to its current one (the row-version
// trigger bumps it by one on each change), and each order item.
func committedChanges(t *testing.T, db *postgrestest.Database) []changeKey {
	t.Helper()
	var out []changeKey
	rows, err := db.Pool.Query(context.Background(), `SELECT 'orders', id::text, version FROM orders
		UNION ALL SELECT 'order_items', id::text, 0 FROM order_items`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var k changeKey
		if err := rows.Scan(&k.table, &k.id, &k.version); err != nil {
			t.Fatal(err)
		}
		if k.table == "order_items" {
			out = append(out, k)
			continue
		}
		for v := 1; v <= k.version; v++ {
			out = append(out, changeKey{table: k.table, id: k.id, version: v})
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// refTx is one transaction the reference slot decoded: its id, end LSN
// (what a connector confirms once it holds the transaction) and its changes
// of the captured tables.
type refTx struct {
	xid     uint64
	end     uint64
	changes []changeKey
}

var (
	refTable   = regexp.MustCompile(`^table public\.(orders|order_items): (INSERT|UPDATE|DELETE): (.*)$`)
	refID      = regexp.MustCompile(`(?:^| )id\[uuid\]:'([0-9a-f-]{36})'`)
	refVersion = regexp.MustCompile(`(?:^| )version\[integer\]:(\d+)`)
)

// referenceTransactions reads what the test_decoding slot saw up to upTo.
func referenceTransactions(t *testing.T, db *postgrestest.Database, slot, upTo string) []refTx {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT lsn::text, xid::text::bigint, data
		FROM pg_logical_slot_peek_changes($1, $2::pg_lsn, NULL, 'include-xids', '1', 'skip-empty-xacts', '1')`, slot, upTo)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []refTx
	var cur *refTx
	for rows.Next() {
		var lsn, data string
		var xid uint64
		if err := rows.Scan(&lsn, &xid, &data); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(data, "BEGIN"):
			cur = &refTx{xid: xid}
		case strings.HasPrefix(data, "COMMIT"):
			if cur == nil {
				t.Fatalf("reference slot: COMMIT without BEGIN at %s", lsn)
			}
			cur.end = parseLSN(t, lsn)
			if len(cur.changes) > 0 {
				out = append(out, *cur)
			}
			cur = nil
		default:
			m := refTable.FindStringSubmatch(data)
			if m == nil || cur == nil {
				continue
			}
			if m[2] == "DELETE" {
				t.Fatalf("unexpected delete in the load: %s", data)
			}
			tuple := m[3]
			if i := strings.Index(tuple, "new-tuple: "); i >= 0 {
				tuple = tuple[i+len("new-tuple: "):]
			}
			k := changeKey{table: m[1]}
			if id := refID.FindStringSubmatch(tuple); id != nil {
				k.id = id[1]
			}
			if m[1] == "orders" {
				v := refVersion.FindStringSubmatch(tuple)
				if v == nil {
					t.Fatalf("reference slot: no version in %s", data)
				}
				k.version, _ = strconv.Atoi(v[1])
			}
			if k.id == "" {
				t.Fatalf("reference slot: no id in %s", data)
			}
			cur.changes = append(cur.changes, k)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("the reference slot decoded no transaction of the captured tables")
	}
	return out
}

// kafkaPos is where a record sits.
type kafkaPos struct {
	topic     string
	partition int32
	offset    int64
}

// kafkaChanges are the change records of both topics.
type kafkaChanges struct {
	first        map[changeKey]kafkaPos // first copy of each change
	records      int
	maxSourceLSN uint64
}

// readChanges reads both change topics from the start up to their current
// end offsets.
func readChanges(t *testing.T, brokers string, adm *kadm.Client) kafkaChanges {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, ordersTopic, itemsTopic)
	if err != nil {
		t.Fatal(err)
	}
	remaining := map[string]map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			if remaining[o.Topic] == nil {
				remaining[o.Topic] = map[int32]int64{}
			}
			remaining[o.Topic][o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(ordersTopic, itemsTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := kafkaChanges{first: map[changeKey]kafkaPos{}}
	pending := func() bool {
		for _, ps := range remaining {
			if len(ps) > 0 {
				return true
			}
		}
		return false
	}
	for pending() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading the change topics: still missing %v", remaining)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := remaining[r.Topic][r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining[r.Topic], r.Partition)
			}
			if len(r.Value) == 0 {
				return
			}
			var ev struct {
				Op     string         `json:"op"`
				After  map[string]any `json:"after"`
				Source struct {
					LSN uint64 `json:"lsn"`
				} `json:"source"`
			}
			if err := json.Unmarshal(r.Value, &ev); err != nil {
				t.Fatalf("change record %s/%d@%d: %v", r.Topic, r.Partition, r.Offset, err)
			}
			out.records++
			out.maxSourceLSN = max(out.maxSourceLSN, ev.Source.LSN)
			if ev.Op != "c" && ev.Op != "u" {
				return // snapshot reads are not changes
			}
			k := changeKey{id: fmt.Sprint(ev.After["id"])}
			if r.Topic == ordersTopic {
				k.table = "orders"
				v, _ := ev.After["version"].(float64)
				k.version = int(v)
			} else {
				k.table = "order_items"
			}
			if _, seen := out.first[k]; !seen {
				out.first[k] = kafkaPos{topic: r.Topic, partition: r.Partition, offset: r.Offset}
			}
		})
	}
	return out
}

func newAdmin(t *testing.T, brokers string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RetryTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// topicRecords sums a topic's end offsets.
func topicRecords(ctx context.Context, adm *kadm.Client, topic string) (int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n, nil
}

// waitSlotPastNow waits until slot has confirmed the server's current WAL
// insert position, and returns that position.
func waitSlotPastNow(t *testing.T, db *postgrestest.Database, slot string, timeout time.Duration) string {
	t.Helper()
	var endText string
	if err := db.Pool.QueryRow(context.Background(), `SELECT pg_current_wal_insert_lsn()::text`).Scan(&endText); err != nil {
		t.Fatal(err)
	}
	end := parseLSN(t, endText)
	waitUntil(t, "slot confirmed past "+endText, timeout, func(ctx context.Context) (bool, error) {
		f, err := slotFlushed(ctx, db, slot)
		return f >= end, err
	})
	return endText
}

// createdEventIDs reads the ORDER_CREATED topic to its end and returns the
// distinct event ids of each order and the number of records.
func createdEventIDs(t *testing.T, brokers string, adm *kadm.Client) (map[string]map[string]bool, int) {
	t.Helper()
	ids := map[string]map[string]bool{}
	records := 0
	for _, r := range readTopicToEnd(t, brokers, adm, "ORDER_CREATED") {
		var ev struct {
			ID   string `json:"id"`
			Data struct {
				OrderID string `json:"order_id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		if ids[ev.Data.OrderID] == nil {
			ids[ev.Data.OrderID] = map[string]bool{}
		}
		ids[ev.Data.OrderID][ev.ID] = true
		records++
	}
	return ids, records
}

func slotFlushed(ctx context.Context, db *postgrestest.Database, slot string) (uint64, error) {
	var s *string
	if err := db.Pool.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&s); err != nil || s == nil {
		return 0, err
	}
	lsn, err := pglogrepl.ParseLSN(*s)
	return uint64(lsn), err
}

func parseLSN(t *testing.T, s string) uint64 {
	t.Helper()
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(lsn)
}

// flushSampler records flushSamples until stopped. A sample whose end
// offsets cannot be read (the broker is down with the process) is dropped.
type flushSampler struct {
	mu         sync.Mutex
	samples    []flushSample
	quit, done chan struct{}
}

func startFlushSampler(db *postgrestest.Database, brokers string, slot string) *flushSampler {
	s := &flushSampler{quit: make(chan struct{}), done: make(chan struct{})}
	// A client of its own, made anew after a failure: the broker restarts
	// with the process, and samples after the restart are the ones that
	// check the resumed stream.
	var cl *kgo.Client
	adm := func() *kadm.Client {
		if cl == nil {
			cl, _ = kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RetryTimeout(3*time.Second))
		}
		if cl == nil {
			return nil
		}
		return kadm.NewClient(cl)
	}
	reset := func() {
		if cl != nil {
			cl.Close()
			cl = nil
		}
	}
	go func() {
		defer close(s.done)
		defer reset()
		for {
			select {
			case <-s.quit:
				return
			case <-time.After(20 * time.Millisecond):
			}
			// Generous: on a busy machine these queries take a while, and a
			// sample that times out is a sample lost.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			f, err := slotFlushed(ctx, db, slot)
			if err != nil || f == 0 {
				cancel()
				continue
			}
			a := adm()
			if a == nil {
				cancel()
				continue
			}
			ends, err := a.ListEndOffsets(ctx, ordersTopic, itemsTopic)
			cancel()
			if err != nil || ends.Error() != nil {
				reset()
				continue
			}
			s.add(f, ends)
		}
	}()
	return s
}

func (s *flushSampler) stop() { close(s.quit); <-s.done }

// takeFinal adds one sample taken once the slot confirmed the end of the
// load, so every transaction is checked against Kafka at least once even
// when a busy machine let few samples through while the load ran.
func (s *flushSampler) takeFinal(t *testing.T, db *postgrestest.Database, adm *kadm.Client, slot string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f, err := slotFlushed(ctx, db, slot)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, ordersTopic, itemsTopic)
	if err != nil || ends.Error() != nil {
		t.Fatalf("end offsets: %v %v", err, ends.Error())
	}
	s.add(f, ends)
}

// add records a sample: the slot's confirmed flush position and the end
// offsets read after it.
func (s *flushSampler) add(flushed uint64, ends kadm.ListedOffsets) {
	smp := flushSample{flushed: flushed, ends: map[string]map[int32]int64{}}
	ends.Each(func(o kadm.ListedOffset) {
		if smp.ends[o.Topic] == nil {
			smp.ends[o.Topic] = map[int32]int64{}
		}
		smp.ends[o.Topic][o.Partition] = o.Offset
	})
	s.mu.Lock()
	s.samples = append(s.samples, smp)
	s.mu.Unlock()
}

func (s *flushSampler) all() []flushSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]flushSample(nil), s.samples...)
}
