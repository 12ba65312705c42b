package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// line is one item as ORDER_CREATED carries it.
type line struct {
	SKU       string `json:"sku"`
	Quantity  int    `json:"quantity"`
	UnitPrice string `json:"unit_price"`
}

// TestCDCManyMultiItemOrders places 200 concurrent orders of 3 to 5 lines
// each over scarce stock on the real binary under the cdc strategy. Every
// order must end CONFIRMED or CANCELLED, its ORDER_CREATED must carry
// exactly its lines (one event id per order), its saga transition must be
// on Kafka with the saga as actor, and no .dlq topic may hold a record.
//
// Ten more orders are written in SQL, each followed at once by a second
// transaction deleting its lines: an event read back from the live tables
// instead of built from the creating transaction would see no lines (or,
// racing, lines not yet visible — what loadgen found), be dead-lettered as
// "order has no lines" and leave the order PENDING.
func TestCDCManyMultiItemOrders(t *testing.T) {
	endToEnd(t)
	const (
		apiOrders = 200
		sqlOrders = 10
		onHand    = 40
	)
	db := postgrestest.New(t)
	cfg, _ := strategyConfig(t, db, "cdc")
	p := Start(t, cfg)
	ctx := context.Background()
	prefix := "MULTI-" + uniqueSuffix()
	var skus []string
	for i := range 8 {
		sku := fmt.Sprintf("%s-%d", prefix, i)
		skus = append(skus, sku)
		mustCall(t, p, http.MethodPut, "/api/v1/inventory/"+sku, fmt.Sprintf(`{"name":"scarce","on_hand":%d}`, onHand), http.StatusCreated, nil)
	}

	var mu sync.Mutex
	want := map[string][]line{} // order id -> its lines, in line order
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range apiOrders {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			perm := rng.Perm(len(skus))[:3+rng.IntN(3)]
			var lines []line
			for _, k := range perm {
				lines = append(lines, line{SKU: skus[k], Quantity: 1 + rng.IntN(3), UnitPrice: fmt.Sprintf("%d.%02d", 1+rng.IntN(50), rng.IntN(100))})
			}
			body, _ := json.Marshal(map[string]any{"customer_id": fmt.Sprintf("cust-%d", i), "items": lines})
			<-start
			var o apiOrder
			code, err := call(p, http.MethodPost, "/api/v1/orders", string(body), &o)
			if code != http.StatusCreated {
				t.Errorf("order %d: %d %v", i, code, err)
				return
			}
			mu.Lock()
			want[o.ID] = lines
			mu.Unlock()
		})
	}
	close(start)
	for i := range sqlOrders {
		id, lines := sqlOrderThenDropLines(t, db, skus, i)
		mu.Lock() // the API orders' goroutines write want meanwhile
		want[id] = lines
		mu.Unlock()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	defer func() {
		if t.Failed() {
			for _, l := range strings.Split(p.Log.String(), "\n") {
				if strings.Contains(l, `"WARN"`) || strings.Contains(l, `"ERROR"`) {
					t.Log(l)
				}
			}
		}
	}()
	waitUntil(t, "every order decided", 120*time.Second, func(ctx context.Context) (bool, error) {
		var pending int
		err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE status = 'PENDING'`).Scan(&pending)
		return err == nil && pending == 0, err
	})
	final := map[string]string{}
	rows, err := db.Pool.Query(ctx, `SELECT id::text, status FROM orders`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, status string
		if err := rows.Scan(&id, &status); err != nil {
			t.Fatal(err)
		}
		final[id] = status
	}
	rows.Close()
	outcomes := map[string]int{}
	for id := range want {
		outcomes[final[id]]++
		if s := final[id]; s != "CONFIRMED" && s != "CANCELLED" {
			t.Errorf("order %s ended %q", id, s)
		}
	}
	if outcomes["CONFIRMED"] == 0 || outcomes["CANCELLED"] == 0 {
		t.Errorf("outcomes %v: the stock should let some orders through and not others", outcomes)
	}

	adm := newAdmin(t, cfg.KafkaAddr)
	// ORDER_CREATED: one event id per order, carrying exactly its lines.
	created := map[string]map[string][]line{} // order -> event id -> lines
	for _, r := range readTopicToEnd(t, cfg.KafkaAddr, adm, "ORDER_CREATED") {
		var ev struct {
			ID   string `json:"id"`
			Data struct {
				OrderID string `json:"order_id"`
				Items   []line `json:"items"`
			} `json:"data"`
		}
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatalf("ORDER_CREATED %s: %v", r.Value, err)
		}
		if created[ev.Data.OrderID] == nil {
			created[ev.Data.OrderID] = map[string][]line{}
		}
		created[ev.Data.OrderID][ev.ID] = ev.Data.Items
	}
	for id, lines := range want {
		evs := created[id]
		if len(evs) != 1 {
			t.Errorf("order %s: %d distinct ORDER_CREATED events, want 1", id, len(evs))
		}
		for evID, got := range evs {
			if !reflect.DeepEqual(got, lines) {
				t.Errorf("order %s: ORDER_CREATED %s carries %v, want %v", id, evID, got, lines)
			}
		}
	}

	// The saga's transition of each order, with its actor from the history row.
	// The change stream publishes an order's decision after its commit, so
	// the last decisions may reach Kafka a moment after the database shows
	// no PENDING order: read the topics again until every order's decision
	// is there, for 30 s at most, then compare.
	sagaDecisions := func() map[string]string {
		decided := map[string]string{}
		for _, topic := range []string{"ORDER_STATUS_UPDATED", "ORDER_CANCELLED"} {
			for _, r := range readTopicToEnd(t, cfg.KafkaAddr, adm, topic) {
				var ev struct {
					Data struct {
						OrderID   string `json:"order_id"`
						NewStatus string `json:"new_status"`
						Actor     string `json:"actor"`
						Version   int    `json:"version"`
					} `json:"data"`
				}
				if err := json.Unmarshal(r.Value, &ev); err != nil {
					t.Fatal(err)
				}
				if ev.Data.Version == 2 && ev.Data.Actor == "system:order-saga" {
					status := ev.Data.NewStatus
					if topic == "ORDER_CANCELLED" {
						status = "CANCELLED"
					}
					decided[ev.Data.OrderID] = status
				}
			}
		}
		return decided
	}
	decided := sagaDecisions()
	for deadline := time.Now().Add(30 * time.Second); len(decided) < len(want) && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		decided = sagaDecisions()
	}
	for id := range want {
		if decided[id] != final[id] {
			t.Errorf("order %s is %s, its saga event says %q", id, final[id], decided[id])
		}
	}

	// No dead letters anywhere.
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var dlqs []string
	for _, name := range topics.Names() {
		if strings.HasSuffix(name, ".dlq") {
			dlqs = append(dlqs, name)
		}
	}
	if len(dlqs) == 0 {
		t.Fatal("no .dlq topics to check")
	}
	ends, err := adm.ListEndOffsets(ctx, dlqs...)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			t.Errorf("%s[%d] holds %d dead letters", o.Topic, o.Partition, o.Offset)
		}
	})
	t.Logf("%d orders: %v; %d .dlq topics empty", len(want), outcomes, len(dlqs))
}

// sqlOrderThenDropLines writes an order with three lines in one
// transaction, as an import script might, and deletes the lines in the
// next; it returns the order's id and the lines it was created with.
func sqlOrderThenDropLines(t *testing.T, db *postgrestest.Database, skus []string, i int) (string, []line) {
	t.Helper()
	ctx := context.Background()
	lines := []line{{skus[i%len(skus)], 1, "2.00"}, {skus[(i+1)%len(skus)], 2, "3.50"}, {skus[(i+2)%len(skus)], 1, "10.00"}}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	var id string
	if err := tx.QueryRow(ctx, `INSERT INTO orders (id, customer_id, status, total_amount) VALUES (gen_random_uuid(), $1, 'PENDING', 19.00) RETURNING id::text`,
		fmt.Sprintf("sql-%d", i)).Scan(&id); err != nil {
		t.Fatal(err)
	}
	for n, l := range lines {
		if _, err := tx.Exec(ctx, `INSERT INTO order_items (id, order_id, line_no, sku, quantity, unit_price, line_total)
			VALUES (gen_random_uuid(), $1, $2, $3, $4::int, $5::numeric, $5::numeric * $4::int)`, id, n+1, l.SKU, l.Quantity, l.UnitPrice); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `DELETE FROM order_items WHERE order_id = $1`, id); err != nil {
		t.Fatal(err)
	}
	return id, lines
}

// readTopicToEnd reads every record of topic up to its end offsets now.
func readTopicToEnd(t *testing.T, brokers string, adm *kadm.Client, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: partitions %v not read to their end", topic, remaining)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := remaining[r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
			if r.Offset < ends[topic][r.Partition].Offset {
				out = append(out, r)
			}
		})
	}
	return out
}
