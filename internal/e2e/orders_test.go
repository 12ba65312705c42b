package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// endToEnd marks t as an end-to-end test: skipped under -short, run in
// parallel with the others.
func endToEnd(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end")
	}
	t.Parallel()
	watchSlow(t)
}

func newConfig(t *testing.T, db *postgrestest.Database) Config {
	return Config{
		DatabaseURL: db.URL,
		DataDir:     t.TempDir(),
		HTTPAddr:    FreeAddr(t),
		KafkaAddr:   FreeAddr(t),
		ConnectAddr: FreeAddr(t),
	}
}

func createOrder(p *Process, i int) (string, int, error) {
	body := fmt.Sprintf(`{"customer_id":"cust-%d","items":[{"sku":"SKU-%d","quantity":1,"unit_price":"9.99"}]}`, i%50, i%7)
	resp, err := p.Do(http.MethodPost, "/api/v1/orders", body)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	var o struct {
		ID string `json:"id"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&o)
	return o.ID, resp.StatusCode, nil
}

// orderCreatedIDs reads every ORDER_CREATED record and returns the order id
// of each, keyed by id, with how often it appeared.
func orderCreatedIDs(t *testing.T, brokers string, want int) map[string]int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(events.OrderCreated),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids := map[string]int{}
	total := 0
	for total < want && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			env, err := events.Decode(r.Value)
			if err != nil {
				t.Errorf("undecodable record: %v", err)
				return
			}
			if string(r.Key) != env.Subject || kafka.Header(r, events.HeaderEventType) != events.OrderCreated {
				t.Errorf("record key %q, event_type %q for order %s", r.Key, kafka.Header(r, events.HeaderEventType), env.Subject)
			}
			ids[env.Subject]++
			total++
		})
	}
	// Drain a little longer to catch duplicates beyond want.
	short, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	cl.PollFetches(short).EachRecord(func(r *kgo.Record) { ids[string(r.Key)]++ })
	return ids
}

func waitOutboxDrained(t *testing.T, db *postgrestest.Database, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var pending int
		if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_status WHERE NOT processed`).Scan(&pending); err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d outbox events still unpublished", pending)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestThousandConcurrentOrders: 1,000 orders created concurrently over HTTP
// give exactly 1,000 ORDER_CREATED records with distinct order ids, keyed by
// order id, and every outbox row marked published.
func TestThousandConcurrentOrders(t *testing.T) {
	endToEnd(t)
	db := postgrestest.New(t)
	cfg := newConfig(t, db)
	p := Start(t, cfg)
	const n = 1000
	var wg sync.WaitGroup
	var next atomic.Int64
	created := make([]string, n)
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				id, code, err := createOrder(p, i)
				if err != nil || code != http.StatusCreated {
					t.Errorf("order %d: %d %v", i, code, err)
					return
				}
				created[i] = id
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	waitOutboxDrained(t, db, 60*time.Second)
	ids := orderCreatedIDs(t, cfg.KafkaAddr, n)
	if len(ids) != n {
		t.Fatalf("%d distinct orders on ORDER_CREATED, want %d", len(ids), n)
	}
	for _, id := range created {
		if ids[id] != 1 {
			t.Fatalf("order %s appears %d times on ORDER_CREATED, want exactly once", id, ids[id])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if code, err := p.Stop(ctx); err != nil || code != 0 {
		t.Fatalf("graceful stop: exit %d, %v", code, err)
	}
}

// TestKillDuringLoadLosesNoEvent: SIGKILL while orders are being created,
// then restart on the same data: every order committed in PostgreSQL has
// its ORDER_CREATED event on Kafka (duplicates allowed, never a loss).
func TestKillDuringLoadLosesNoEvent(t *testing.T) {
	endToEnd(t)
	db := postgrestest.New(t)
	cfg := newConfig(t, db)
	p := Start(t, cfg)

	const killAfter = 300
	stop, reached := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	var accepted atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, code, err := createOrder(p, w*100000+i); err == nil && code == http.StatusCreated {
					if accepted.Add(1) == killAfter {
						close(reached) // exactly one creator sees the count reach it
					}
				} else if err != nil {
					return // the process is gone
				}
			}
		})
	}
	creatorsDone := make(chan struct{})
	go func() { wg.Wait(); close(creatorsDone) }()
	select {
	case <-reached:
	case <-creatorsDone:
		t.Fatalf("every creator stopped after %d accepted orders, before %d:\n%s", accepted.Load(), killAfter, p.Log.String())
	case <-time.After(2 * time.Minute): // a deadlock guard, not a speed assertion
		close(stop)
		t.Fatalf("only %d of %d orders accepted within 2 minutes", accepted.Load(), killAfter)
	}
	p.Kill()
	close(stop)
	wg.Wait()

	p2 := Start(t, cfg)
	waitOutboxDrained(t, db, 60*time.Second)
	var committed []string
	rows, err := db.Pool.Query(context.Background(), `SELECT id::text FROM orders`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		committed = append(committed, id)
	}
	rows.Close()
	if int64(len(committed)) < accepted.Load() {
		t.Fatalf("%d orders in PostgreSQL but %d were acknowledged", len(committed), accepted.Load())
	}
	ids := orderCreatedIDs(t, cfg.KafkaAddr, len(committed))
	for _, id := range committed {
		if ids[id] == 0 {
			t.Fatalf("committed order %s has no ORDER_CREATED record (%d of %d orders on Kafka)", id, len(ids), len(committed))
		}
	}
	t.Logf("%d acknowledged, %d committed, all on Kafka", accepted.Load(), len(committed))
	p2.Kill()
}
