package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/postgres"
)

const (
	sagaRate = 200
	sagaSKUs = 50
)

// runSaga: orders created over HTTP at a fixed rate, each timed from its
// creation to its CONFIRMED history entry (ORDER_CREATED through the relay,
// the inventory reservation, INVENTORY_RESERVED back through the relay, the
// saga's confirmation). The floor is the messaging alone: the same number
// of Kafka hops (produce -> consume -> produce -> consume) at the same rate
// on the same broker.
func runSaga(ctx context.Context, cfg Config) Result {
	res := Result{Description: fmt.Sprintf("order -> CONFIRMED latency with orders created over HTTP at %d/s over %d SKUs, vs the messaging floor: two chained Kafka hops with franz-go at the same rate on the same broker", sagaRate, sagaSKUs)}
	r, err := setUp(ctx, cfg, "saga", nil)
	if err != nil {
		return failed(res, err)
	}
	defer r.tearDown()
	var trackops Measure
	inv := r.api.seedInventory(ctx, sagaSKUs, 10_000_000)
	if len(inv) >= 12 && inv[:12] == "unavailable:" {
		res.Status, res.Unavailable = StatusUnavailable, inv[13:]
		trackops = Measure{Unavailable: inv}
		cfg.logf("saga", "%s; measuring the floor only", inv)
	} else {
		// The process's first orders pay for its start (consumers joining
		// their groups, pools growing): a warm-up, left out of the figures.
		cfg.logf("saga", "warm-up %s, then orders at %d/s for %s", warmUp, sagaRate, cfg.Phase)
		lc := LoadConfig{Target: r.proc.HTTP, Token: r.token, Rate: sagaRate, Duration: warmUp, SKUs: sagaSKUs, Mix: Mix{Create: 1}}
		if _, err := RunLoad(ctx, lc); err != nil {
			return failed(res, err)
		}
		waitNoPending(ctx, r, time.Minute)
		since := time.Now()
		lc.Duration = cfg.Phase
		load, err := RunLoad(ctx, lc)
		if err != nil {
			return failed(res, err)
		}
		pending := waitNoPending(ctx, r, time.Minute)
		trackops, err = confirmLatency(ctx, r, since)
		if err != nil {
			return failed(res, err)
		}
		trackops.Errors = int(load.Requests) - trackops.Count
		res.Notes = append(res.Notes, fmt.Sprintf("%d orders created (status codes %s), %d confirmed, %d still PENDING after the wait",
			load.Requests, formatCodes(load.StatusCodes), trackops.Count, pending))
		cfg.logf("saga", "p50 %.1fms p99 %.1fms", trackops.Latency.P50, trackops.Latency.P99)
		if hops, err := sagaHops(ctx, r.db.Pool, since); err != nil {
			res.Notes = append(res.Notes, "hops not read: "+err.Error())
		} else {
			res.Notes = append(res.Notes, formatHops(hops))
		}
		if split, err := sagaSplit(ctx, r.db.Pool, since); err != nil {
			res.Notes = append(res.Notes, "hops not split: "+err.Error())
		} else {
			res.Notes = append(res.Notes, split)
		}
	}
	floor, err := twoHops(ctx, r.proc.KafkaAddr, sagaRate, cfg.Phase)
	if err != nil {
		return failed(res, err)
	}
	cfg.logf("saga", "floor p50 %.1fms p99 %.1fms", floor.Latency.P50, floor.Latency.P99)
	res.Comparisons = append(res.Comparisons, latencyComparison(fmt.Sprintf("order -> CONFIRMED at %d orders/s", sagaRate), trackops, floor))
	res.PeakRSSBytes = r.peakRSS()
	res.Notes = append(res.Notes, r.notes...)
	return res
}

func waitNoPending(ctx context.Context, r *rig, limit time.Duration) int {
	deadline := time.Now().Add(limit)
	for {
		var n int
		if err := r.db.Pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE status = 'PENDING'`).Scan(&n); err != nil || n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// confirmLatency reads the creation -> CONFIRMED time of each order created
// since then and confirmed from its history (both stamped by the TrackOps
// process's clock).
func confirmLatency(ctx context.Context, r *rig, since time.Time) (Measure, error) {
	rows, err := r.db.Pool.Query(ctx, `SELECT (extract(epoch FROM h.changed_at - o.created_at) * 1e6)::bigint
		FROM orders o JOIN order_status_history h ON h.order_id = o.id AND h.to_status = 'CONFIRMED'
		WHERE o.created_at >= $1`, since)
	if err != nil {
		return Measure{}, err
	}
	us, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return Measure{}, err
	}
	d := make([]time.Duration, len(us))
	for i, u := range us {
		d[i] = time.Duration(u) * time.Microsecond
	}
	l := summarize(d)
	return Measure{What: "trackops: order created -> CONFIRMED (outbox, relay, inventory reservation, relay, saga)", Count: l.Count, Latency: &l}, nil
}

// sagaHop is how long after their creation confirmed orders reached one
// step of the saga.
type sagaHop struct {
	step     string
	p50, p99 float64 // milliseconds; NaN when no order recorded the step
}

// sagaHopsSQL times each confirmed order's steps from its creation: its
// ORDER_CREATED acknowledged by Kafka (the relay's ledger), inventory's
// reservation begun, INVENTORY_RESERVED acknowledged, CONFIRMED. Every
// stamp is taken by the TrackOps process's clock or PostgreSQL's, on one
// machine.
//
// The acknowledgements are read in one pass over the outbox and its ledger:
// a lateral subquery per order let the planner scan the whole ledger once
// per order (fresh tables, no statistics), tens of seconds after a run.
const sagaHopsSQL = `WITH acked AS (
	SELECT e.aggregate_id, min(p.acked_at) FILTER (WHERE e.event_type = $1) AS created,
		min(p.acked_at) FILTER (WHERE e.event_type = $2) AS reserved
	FROM outbox_events e JOIN outbox_published p ON p.seq = e.seq
	WHERE e.event_type IN ($1, $2) GROUP BY e.aggregate_id),
t AS (
	SELECT extract(epoch FROM acked.created - o.created_at) * 1000 AS created_acked,
		extract(epoch FROM io.created_at - o.created_at) * 1000 AS reserving,
		extract(epoch FROM acked.reserved - o.created_at) * 1000 AS reserved_acked,
		extract(epoch FROM h.changed_at - o.created_at) * 1000 AS confirmed
	FROM orders o
	JOIN order_status_history h ON h.order_id = o.id AND h.to_status = 'CONFIRMED'
	LEFT JOIN inventory_orders io ON io.order_id = o.id
	LEFT JOIN acked ON acked.aggregate_id = o.id::text
	WHERE o.created_at >= $3)
SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY created_acked),
	percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY reserving),
	percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY reserved_acked),
	percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY confirmed)
FROM t`

// sagaHops says where a saga run's latency builds up: each step's p50 and
// p99 from the creation of the orders created since then.
func sagaHops(ctx context.Context, db postgres.Querier, since time.Time) ([]sagaHop, error) {
	// Each column is [p50, p99], or NULL when no order recorded the step.
	var p [4][]float64
	err := db.QueryRow(ctx, sagaHopsSQL, events.OrderCreated, events.InventoryReserved, since).Scan(&p[0], &p[1], &p[2], &p[3])
	if err != nil {
		return nil, fmt.Errorf("saga hops: %w", err)
	}
	hops := []sagaHop{{step: events.OrderCreated + " acknowledged"}, {step: "reservation begun"},
		{step: events.InventoryReserved + " acknowledged"}, {step: "CONFIRMED"}}
	for i := range hops {
		hops[i].p50, hops[i].p99 = math.NaN(), math.NaN()
		if len(p[i]) == 2 {
			hops[i].p50, hops[i].p99 = p[i][0], p[i][1]
		}
	}
	return hops, nil
}

func formatHops(hops []sagaHop) string {
	parts := make([]string, len(hops))
	for i, h := range hops {
		parts[i] = fmt.Sprintf("%s %.1f / %.1f ms", h.step, h.p50, h.p99)
	}
	return "where the time goes, from each order's creation (p50 / p99): " + strings.Join(parts, ", ")
}

// sagaSplitSQL splits each confirmed order's time into the seven hops
// between its stamps and its transactions' commits (PostgreSQL's commit
// timestamps): the order's transaction, from its creation to its commit;
// the relay, from that commit to ORDER_CREATED acknowledged; inventory's
// consumer, to the reservation begun; the reservation's transaction, to its
// commit; the relay again, to INVENTORY_RESERVED acknowledged; the order
// consumer and the saga, to CONFIRMED stamped; and that change's commit.
// For each hop: p50, p99, and its mean over the slowest 2 % of orders (by
// creation -> CONFIRMED), which tells whether a slow order waited in one hop
// or a little in each. PostgreSQL takes a commit's timestamp as the commit
// begins, before its WAL flush: a hop that ends at a commit leaves the flush
// out, and the hop that starts there has it. The outbox keeps the writing
// transaction's id in its xid column (rows are updated afterwards, so xmin
// is no longer it); history rows are never updated.
const sagaSplitSQL = `WITH ev AS (
	SELECT e.aggregate_id,
		min(pg_xact_commit_timestamp(xid(e.xid))) FILTER (WHERE e.event_type = $1) AS created_committed,
		min(p.acked_at) FILTER (WHERE e.event_type = $1) AS created_acked,
		min(pg_xact_commit_timestamp(xid(e.xid))) FILTER (WHERE e.event_type = $2) AS reserved_committed,
		min(p.acked_at) FILTER (WHERE e.event_type = $2) AS reserved_acked
	FROM outbox_events e JOIN outbox_published p ON p.seq = e.seq
	WHERE e.event_type IN ($1, $2) GROUP BY e.aggregate_id),
t AS (
	SELECT extract(epoch FROM h.changed_at - o.created_at)::float8 AS total, ARRAY[
		extract(epoch FROM ev.created_committed - o.created_at),
		extract(epoch FROM ev.created_acked - ev.created_committed),
		extract(epoch FROM io.created_at - ev.created_acked),
		extract(epoch FROM ev.reserved_committed - io.created_at),
		extract(epoch FROM ev.reserved_acked - ev.reserved_committed),
		extract(epoch FROM h.changed_at - ev.reserved_acked),
		extract(epoch FROM pg_xact_commit_timestamp(h.xmin) - h.changed_at)]::float8[] AS hops
	FROM orders o
	JOIN order_status_history h ON h.order_id = o.id AND h.to_status = 'CONFIRMED'
	JOIN inventory_orders io ON io.order_id = o.id
	JOIN ev ON ev.aggregate_id = o.id::text
	WHERE o.created_at >= $3),
slow AS (SELECT percentile_cont(0.98) WITHIN GROUP (ORDER BY total) AS from_total FROM t)
SELECT u.i, percentile_cont(0.5) WITHIN GROUP (ORDER BY u.hop) * 1000, percentile_cont(0.99) WITHIN GROUP (ORDER BY u.hop) * 1000,
	avg(u.hop) FILTER (WHERE t.total >= slow.from_total) * 1000
FROM t, slow, unnest(t.hops) WITH ORDINALITY AS u(hop, i)
GROUP BY u.i ORDER BY u.i`

// sagaSplitHops names sagaSplitSQL's hops, in its order.
var sagaSplitHops = []string{"order transaction", "relay " + events.OrderCreated, "inventory consumer",
	"reservation transaction", "relay " + events.InventoryReserved, "order consumer and saga", "confirmation commit"}

// splitHop is one hop of sagaSplitSQL, in milliseconds: its p50 and p99,
// and its mean over the slowest orders.
type splitHop struct {
	sagaHop
	slow float64
}

// sagaSplit reads each hop of the orders created since then, or says why
// it cannot: the split needs the server's commit timestamps.
func sagaSplit(ctx context.Context, db postgres.Querier, since time.Time) (string, error) {
	var on bool
	if err := db.QueryRow(ctx, `SELECT current_setting('track_commit_timestamp')::bool`).Scan(&on); err != nil {
		return "", fmt.Errorf("saga split: %w", err)
	}
	if !on {
		return "each hop's own time is not split: PostgreSQL records no commit timestamps (track_commit_timestamp is off)", nil
	}
	hops, err := readSplit(ctx, db, since)
	if err != nil {
		return "", err
	}
	if len(hops) == 0 {
		return "each hop's own time is not split: no order was confirmed", nil
	}
	return formatSplit(hops), nil
}

func readSplit(ctx context.Context, db postgres.Querier, since time.Time) ([]splitHop, error) {
	rows, err := db.Query(ctx, sagaSplitSQL, events.OrderCreated, events.InventoryReserved, since)
	if err != nil {
		return nil, fmt.Errorf("saga split: %w", err)
	}
	defer rows.Close()
	var hops []splitHop
	for rows.Next() {
		var (
			i             int
			p50, p99, slo *float64 // NULL where no order has both stamps
		)
		if err := rows.Scan(&i, &p50, &p99, &slo); err != nil {
			return nil, fmt.Errorf("saga split: %w", err)
		}
		if i < 1 || i > len(sagaSplitHops) {
			return nil, fmt.Errorf("saga split: hop %d", i)
		}
		hops = append(hops, splitHop{sagaHop: sagaHop{step: sagaSplitHops[i-1], p50: orNaN(p50), p99: orNaN(p99)}, slow: orNaN(slo)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("saga split: %w", err)
	}
	return hops, nil
}

func orNaN(f *float64) float64 {
	if f == nil {
		return math.NaN()
	}
	return *f
}

func formatSplit(hops []splitHop) string {
	parts := make([]string, len(hops))
	for i, h := range hops {
		parts[i] = fmt.Sprintf("%s %.1f / %.1f / %.1f ms", h.step, h.p50, h.p99, h.slow)
	}
	return "each hop on its own, from PostgreSQL's commit timestamps (p50 / p99 / mean in the slowest 2 % of orders): " + strings.Join(parts, ", ")
}

// twoHops produces stamped records to one topic, a forwarder consumes and
// produces them to a second topic, and a reader times their arrival there.
func twoHops(ctx context.Context, broker string, rate int, d time.Duration) (Measure, error) {
	suffix := fmt.Sprint(time.Now().UnixNano())
	hop1, hop2 := "bench.hop1."+suffix, "bench.hop2."+suffix
	producer, err := kafka.NewProducer(kafka.Options{Brokers: []string{broker}, ClientID: "bench-floor"})
	if err != nil {
		return Measure{}, err
	}
	defer producer.Close()
	if err := kafka.EnsureTopics(ctx, producer, 3, hop1, hop2); err != nil {
		return Measure{}, err
	}
	consumer := func(topic string) (*kgo.Client, error) {
		return kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	}
	fwd, err := consumer(hop1)
	if err != nil {
		return Measure{}, err
	}
	defer fwd.Close()
	reader, err := consumer(hop2)
	if err != nil {
		return Measure{}, err
	}
	defer reader.Close()
	n := int(float64(rate) * d.Seconds())
	cctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	go func() {
		for cctx.Err() == nil {
			fs := fwd.PollFetches(cctx)
			fs.EachRecord(func(rec *kgo.Record) {
				producer.Produce(cctx, &kgo.Record{Topic: hop2, Key: rec.Key, Value: rec.Value}, nil)
			})
		}
	}()
	var rec Recorder
	var wg sync.WaitGroup
	wg.Go(func() {
		for rec.Count() < n && cctx.Err() == nil {
			fs := reader.PollFetches(cctx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				if len(r.Value) == 8 {
					rec.Add(now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(r.Value)))))
				}
			})
		}
	})
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		v := binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
		producer.Produce(ctx, &kgo.Record{Topic: hop1, Key: []byte(fmt.Sprint(i)), Value: v}, nil)
	}
	wg.Wait()
	l := rec.Summary()
	return Measure{What: "franz-go: produce -> consume -> produce -> consume (two hops, acks=all)", Count: l.Count, Errors: n - l.Count, Latency: &l}, nil
}
