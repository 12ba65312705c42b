package inventory_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/app/apptest"
	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/inventory"
	"github.com/trackops/trackops/internal/order"
)

// BenchmarkOrderToConfirmed places orders at a fixed rate (open model: a
// new order every 1/rate seconds whether or not earlier ones finished)
// through the whole loop on the embedded broker — create + outbox, relay,
// inventory reservation + outbox, relay, saga confirmation — and reports
// the latency from an order's creation to its CONFIRMED transition, both
// timestamps taken by the same process.
//
//	go test -run '^$' -bench OrderToConfirmed -benchtime 1x ./internal/inventory/
func BenchmarkOrderToConfirmed(b *testing.B) {
	for _, rate := range []int{20, 50, 200} {
		b.Run(fmt.Sprintf("rate=%d/s", rate), func(b *testing.B) {
			for b.Loop() {
				benchConfirmLatency(b, rate, 5*time.Second)
			}
		})
	}
}

func benchConfirmLatency(b *testing.B, rate int, d time.Duration) {
	p := apptest.Start(b, apptest.Options{WaitTimeout: 5 * time.Minute}) // a slow machine queues; the figures say so
	const skus = 100
	for i := range skus {
		p.SetStock(b, fmt.Sprintf("LAT-%03d", i), inventory.MaxOnHand)
	}
	n := int(d.Seconds() * float64(rate))
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		<-tick.C
		wg.Go(func() {
			sku := fmt.Sprintf("LAT-%03d", rand.IntN(skus))
			if _, err := p.PlaceOrderErr(context.Background(), order.NewItem{SKU: sku, Quantity: 1, UnitPrice: 100}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	p.WaitSettled(b)
	rows, err := p.DB.Pool.Query(context.Background(), `SELECT extract(epoch FROM h.changed_at - o.created_at)
		FROM orders o JOIN order_status_history h ON h.order_id = o.id AND h.to_status = 'CONFIRMED'`)
	if err != nil {
		b.Fatal(err)
	}
	var lat []float64
	for rows.Next() {
		var s float64
		if err := rows.Scan(&s); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, s*1000)
	}
	if len(lat) != n {
		b.Fatalf("%d of %d orders confirmed", len(lat), n)
	}
	slices.Sort(lat)
	pct := func(q float64) float64 { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.90), "p90-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(lat[len(lat)-1], "max-ms")
	b.ReportMetric(float64(n), "orders")

	// Where the time goes, median per stage: the outbox row of
	// ORDER_CREATED waiting for the relay (published_at is when the relay
	// recorded it, after Kafka's ack and the broker's durability), the
	// inventory consumer deciding it, the relay again for
	// INVENTORY_RESERVED, and the saga confirming.
	var relay1, reserve, relay2, saga float64
	err = p.DB.Pool.QueryRow(context.Background(), `SELECT
		percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM c.published_at - o.created_at)),
		percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM io.created_at - c.published_at)),
		percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM r.published_at - io.created_at)),
		percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM h.changed_at - r.published_at))
		FROM orders o
		JOIN outbox_status c ON c.aggregate_id = o.id::text AND c.event_type = 'ORDER_CREATED'
		JOIN inventory_orders io ON io.order_id = o.id
		JOIN outbox_status r ON r.aggregate_id = o.id::text AND r.event_type = 'INVENTORY_RESERVED'
		JOIN order_status_history h ON h.order_id = o.id AND h.to_status = 'CONFIRMED'`).Scan(&relay1, &reserve, &relay2, &saga)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(relay1*1000, "relay1-p50-ms")
	b.ReportMetric(reserve*1000, "reserve-p50-ms")
	b.ReportMetric(relay2*1000, "relay2-p50-ms")
	b.ReportMetric(saga*1000, "saga-p50-ms")
}

// BenchmarkBackloggedReservations publishes a backlog of ORDER_CREATED
// records, then starts the inventory consumer and reports how many orders
// per second it decides (reserve or fail, each with its inbox row, locks,
// reservations and outbox event in one transaction), measured between the
// first and the last decision so the group join is not counted.
//
//	go test -run '^$' -bench BackloggedReservations -benchtime 1x ./internal/inventory/
func BenchmarkBackloggedReservations(b *testing.B) {
	for _, c := range []struct {
		name    string
		skus, n int
	}{{"skus=100", 100, 5000}, {"hot-sku", 1, 2000}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				benchBacklog(b, c.n, c.skus)
			}
		})
	}
}

func benchBacklog(b *testing.B, n, skus int) {
	p := apptest.Start(b, apptest.Options{NoConsumers: true, WaitTimeout: 5 * time.Minute})
	for i := range skus {
		p.SetStock(b, fmt.Sprintf("BL-%03d", i), inventory.MaxOnHand)
	}
	recs := make([]*kgo.Record, 0, n)
	for range n {
		id := uuid.NewString()
		var items []events.OrderItem
		for range 1 + rand.IntN(3) {
			items = append(items, events.OrderItem{SKU: fmt.Sprintf("BL-%03d", rand.IntN(skus)), Quantity: 1 + rand.IntN(3), UnitPrice: "1.00"})
		}
		ev, err := events.New(events.OrderCreated, events.AggregateOrder, id, events.OrderCreatedData{OrderID: id, Status: "PENDING", Items: items}, "")
		if err != nil {
			b.Fatal(err)
		}
		v, _ := ev.Marshal()
		rec := &kgo.Record{Topic: events.OrderCreated, Key: []byte(id), Value: v}
		for k, hv := range ev.Headers() {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: []byte(hv)})
		}
		recs = append(recs, rec)
	}
	if err := p.Producer.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	var inflight, maxInflight, busyNs, calls atomic.Int64
	h := p.Inventory.Handler(inventory.ConsumerGroup)
	p.StartConsumer(b, inventory.ConsumerGroup, inventory.ConsumedTopics, func(ctx context.Context, ev events.Envelope) error {
		n := inflight.Add(1)
		for {
			m := maxInflight.Load()
			if n <= m || maxInflight.CompareAndSwap(m, n) {
				break
			}
		}
		t0 := time.Now()
		err := h(ctx, ev)
		busyNs.Add(int64(time.Since(t0)))
		calls.Add(1)
		inflight.Add(-1)
		return err
	})
	p.WaitFor(b, "backlog decided", func(ctx context.Context) (bool, error) {
		var done int
		err := p.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM inventory_orders`).Scan(&done)
		return done == n, err
	})
	var secs float64
	var lines int
	if err := p.DB.Pool.QueryRow(context.Background(), `SELECT extract(epoch FROM max(created_at) - min(created_at)),
		(SELECT count(*) FROM reservations) FROM inventory_orders`).Scan(&secs, &lines); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n-1)/secs, "orders/s")
	b.ReportMetric(float64(lines)/secs, "lines/s")
	// Handler time and concurrency explain the rate: one transaction (one
	// WAL flush) per event, at most one event per partition at a time.
	b.ReportMetric(float64(busyNs.Load())/float64(max(calls.Load(), 1))/1e6, "handler-ms")
	b.ReportMetric(float64(maxInflight.Load()), "max-in-flight")
	if r := p.Inventory.TxRetries(); r > 0 {
		b.ReportMetric(float64(r), "tx-retries")
	}
}
