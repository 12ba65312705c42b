package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres"
)

const (
	relayBacklog = 20000
	relayRate    = 1000
)

// runRelay: outbox -> Kafka acked. A backlog written before the relay starts
// measures the drain rate; events committed one per transaction at a fixed
// rate measure the latency. The ceiling is franz-go producing the same
// records straight to the same broker.
func runRelay(ctx context.Context, cfg Config) Result {
	res := Result{Description: fmt.Sprintf("outbox -> Kafka: drain of a %d-event backlog (acknowledged, durable, recorded in the ledger), and commit -> Kafka acknowledgement latency at %d events/s (one per transaction), vs franz-go producing the same records directly to the same broker", relayBacklog, relayRate)}
	r := &rig{}
	defer r.tearDown()
	var err error
	if r.db, err = CreateDatabase(ctx, cfg.DatabaseURL, "trackops_bench_relay"); err != nil {
		return failed(res, err)
	}
	if r.redis, err = StartRedis(); err != nil {
		return failed(res, err)
	}
	cfg.logf("relay", "writing a backlog of %d events", relayBacklog)
	if err := writeBacklog(ctx, r.db, relayBacklog); err != nil {
		return failed(res, err)
	}
	// Only the relay role: nothing else writes to the outbox or reads Kafka.
	pg0 := postgresCPU(ctx, r.db)
	if err := r.start(ctx, cfg, nil, "--roles", "relay"); err != nil {
		return failed(res, err)
	}
	cfg.logf("relay", "draining")
	if err := waitDrained(ctx, r.db, 3*time.Minute); err != nil {
		return failed(res, err)
	}
	// CPU per drained event, a figure a loaded machine distorts far less
	// than the rate: the process from its start (startup included) and the
	// database's backends (the relay's sessions, this loop's cheap polls,
	// the health check at startup, autovacuum after the backlog's inserts).
	cpu, pg := processCPU(r.proc.Pid()), cpuDelta(pg0, postgresCPU(ctx, r.db))
	drain, err := drainRate(ctx, r.db)
	if err != nil {
		return failed(res, err)
	}
	cfg.logf("relay", "drained at %.0f events/s; fixed rate %d/s for %s", drain.Throughput, relayRate, cfg.Phase)
	drainCPU := fmt.Sprintf("backlog drain CPU per event: TrackOps process %.1f µs (embedded broker and startup included), PostgreSQL backends of the database %.1f µs (the relay's sessions, the harness's polls, autovacuum)",
		usPerEvent(float64(cpu), relayBacklog), usPerEvent(pg, relayBacklog))

	phaseStart := time.Now()
	fixedCPU0, fixedPG0 := processCPU(r.proc.Pid()), postgresCPUExcept(ctx, r.db, harnessApp)
	var insertErrs atomic.Int64
	var inserted atomic.Int64
	paced(ctx, relayRate, cfg.Phase, func(ctx context.Context, i int) {
		o := placeOrder(int64(i))
		conn, err := r.db.Pool.Acquire(ctx)
		if err == nil {
			// The event is stamped (created_at) with a connection in
			// hand, so pool waits are not in the figure.
			var ev events.Event
			if ev, err = order.CreatedEvent(ctx, o); err == nil {
				err = postgres.WithTx(ctx, conn, func(tx pgx.Tx) error {
					// The load's own commits need not wait for a WAL
					// flush (a busy disk would cap the offered rate); the
					// relay still sees each row at its commit.
					if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
						return err
					}
					return outbox.Write(ctx, tx, ev)
				})
			}
			conn.Release()
		}
		if err != nil {
			insertErrs.Add(1)
		} else {
			inserted.Add(1)
		}
	})
	offered := float64(inserted.Load()) / time.Since(phaseStart).Seconds()
	if err := waitDrained(ctx, r.db, time.Minute); err != nil {
		return failed(res, err)
	}
	fixedCPU := usPerEvent(float64(processCPU(r.proc.Pid())-fixedCPU0), int(inserted.Load()))
	fixedPG := usPerEvent(cpuDelta(fixedPG0, postgresCPUExcept(ctx, r.db, harnessApp)), int(inserted.Load()))
	cfg.logf("relay", "fixed-rate CPU per event: TrackOps %.0f µs, PostgreSQL (the relay's sessions) %.0f µs", fixedCPU, fixedPG)
	fixed, err := publishLatency(ctx, r.db, phaseStart, "acked_at")
	if err != nil {
		return failed(res, err)
	}
	fixed.Errors = int(insertErrs.Load())
	recorded, err := publishLatency(ctx, r.db, phaseStart, "published_at")
	if err != nil {
		return failed(res, err)
	}
	cfg.logf("relay", "fixed rate: p50 %.1fms p99 %.1fms to the ack; p50 %.1fms p99 %.1fms to durable and recorded",
		fixed.Latency.P50, fixed.Latency.P99, recorded.Latency.P50, recorded.Latency.P99)

	// The ceiling: the same records, produced straight to the same broker.
	producer, err := kafka.NewProducer(kafka.Options{Brokers: []string{r.proc.KafkaAddr}, ClientID: "bench-ceiling"})
	if err != nil {
		return failed(res, err)
	}
	defer producer.Close()
	backlog, err := loadRecords(ctx, r.db, time.Time{}, phaseStart)
	if err != nil {
		return failed(res, err)
	}
	directDrain := produceAll(ctx, producer, backlog)
	cfg.logf("relay", "direct produce of the backlog: %.0f records/s", directDrain.Throughput)
	phase, err := loadRecords(ctx, r.db, phaseStart, time.Now().Add(time.Hour))
	if err != nil {
		return failed(res, err)
	}
	directFixed := producePaced(ctx, producer, phase, relayRate)
	cfg.logf("relay", "direct produce at %d/s: p50 %.1fms p99 %.1fms", relayRate, directFixed.Latency.P50, directFixed.Latency.P99)

	res.Comparisons = append(res.Comparisons,
		throughputComparison(fmt.Sprintf("backlog drain (%d events)", relayBacklog), drain, directDrain),
		latencyComparison(fmt.Sprintf("latency at %d events/s", relayRate), fixed, directFixed))
	res.PeakRSSBytes = r.peakRSS()
	res.Notes = append(r.notes, fmt.Sprintf("fixed-rate phase: %d events committed (%.0f/s achieved of %d/s offered)", inserted.Load(), offered, relayRate),
		"relay latency is the outbox row's created_at (stamped just before its commit) to its ledger row's acked_at, the time the relay received Kafka's acknowledgement; the ceiling's is produce call to ack. Neither waits for an fsync",
		fmt.Sprintf("commit -> durable and recorded (the ledger row's published_at, after the embedded broker's group commit, TRACKOPS_KAFKA_DURABILITY=group): p50 %.2f ms, p99 %.2f ms, max %.2f ms",
			recorded.Latency.P50, recorded.Latency.P99, recorded.Latency.Max),
		drainCPU,
		fmt.Sprintf("fixed-rate phase CPU per event: TrackOps process %.1f µs, PostgreSQL backends of the database other than the harness's inserting sessions %.1f µs (the relay's reads and ledger commits)", fixedCPU, fixedPG))
	return res
}

func placeOrder(i int64) *order.Order {
	_, n := orderRequest(i, 100)
	o, _ := order.Place(n, time.Now().UTC().Truncate(time.Microsecond))
	return o
}

// writeBacklog writes n ORDER_CREATED events, 1,000 per transaction.
func writeBacklog(ctx context.Context, db *Database, n int) error {
	for written := 0; written < n; {
		batch := min(1000, n-written)
		err := postgres.WithTx(ctx, db.Pool, func(tx pgx.Tx) error {
			evs := make([]events.Event, batch)
			for i := range batch {
				ev, err := order.CreatedEvent(ctx, placeOrder(int64(written+i)))
				if err != nil {
					return err
				}
				evs[i] = ev
			}
			return outbox.Write(ctx, tx, evs...)
		})
		if err != nil {
			return fmt.Errorf("write backlog: %w", err)
		}
		written += batch
	}
	return nil
}

func waitDrained(ctx context.Context, db *Database, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		// The cheap question while the relay works; the counts once at the
		// end (counting a large backlog repeatedly would load the very
		// database the relay reads).
		drained, err := outbox.Drained(ctx, db.Pool)
		if err != nil {
			return err
		}
		if drained {
			st, err := outbox.ReadStats(ctx, db.Pool)
			if err != nil {
				return err
			}
			if st.Failed > 0 {
				return fmt.Errorf("the relay gave up on %d events", st.Failed)
			}
			return nil
		}
		if time.Now().After(deadline) {
			st, _ := outbox.ReadStats(ctx, db.Pool)
			return fmt.Errorf("outbox not drained after %s: %d events pending", limit, st.Pending)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// drainRate is events published per second between the first and the last
// time the relay recorded events in its ledger; the first commit's events
// are left out because their own publishing time is not inside that span.
func drainRate(ctx context.Context, db *Database) (Measure, error) {
	var total, first int
	var span float64
	err := db.Pool.QueryRow(ctx, `WITH t AS (SELECT min(published_at) AS lo, max(published_at) AS hi FROM outbox_published)
		SELECT count(*), count(*) FILTER (WHERE published_at = t.lo), extract(epoch FROM t.hi - t.lo)::float8
		FROM outbox_published, t GROUP BY t.lo, t.hi`).Scan(&total, &first, &span)
	if err != nil {
		return Measure{}, fmt.Errorf("drain rate: %w", err)
	}
	m := Measure{What: "trackops relay: read in commit order, produce, wait for acks and durability, record in the ledger", Count: total}
	if span > 0 {
		m.Throughput = round3(float64(total-first) / span)
	}
	return m, nil
}

// publishLatency is each event's created_at to column of its ledger row:
// acked_at (Kafka acknowledged) or published_at (durable and recorded).
func publishLatency(ctx context.Context, db *Database, since time.Time, column string) (Measure, error) {
	rows, err := db.Pool.Query(ctx, `SELECT (extract(epoch FROM p.`+column+` - o.created_at) * 1e6)::bigint
		FROM outbox_events o JOIN outbox_published p ON p.seq = o.seq WHERE o.created_at >= $1`, since)
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
	what := fmt.Sprintf("trackops relay: commit -> Kafka acknowledgement at %d/s", relayRate)
	if column == "published_at" {
		what = fmt.Sprintf("trackops relay: commit -> durable and recorded at %d/s", relayRate)
	}
	return Measure{What: what, Count: l.Count, Latency: &l, Throughput: round3(float64(l.Count) / time.Since(since).Seconds())}, nil
}

// loadRecords reads the outbox rows created in [from, to) as the Kafka
// records the relay made of them.
func loadRecords(ctx context.Context, db *Database, from, to time.Time) ([]*kgo.Record, error) {
	rows, err := db.Pool.Query(ctx, `SELECT topic, aggregate_id, event_data, headers FROM outbox_events
		WHERE created_at >= $1 AND created_at < $2 ORDER BY seq`, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*kgo.Record
	for rows.Next() {
		var topic, key, value string
		var headers map[string]string
		if err := rows.Scan(&topic, &key, &value, &headers); err != nil {
			return nil, err
		}
		rec := &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(value)}
		for k, v := range headers {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}

func cloneRecord(r *kgo.Record) *kgo.Record {
	return &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: r.Headers}
}

// produceAll produces every record at once and measures first send to
// last acknowledgement, with a warm producer: a first few records go out
// and are acknowledged before the clock starts (connection, metadata,
// producer id), as the relay's drain rate leaves out its start too (it
// counts from its first recorded batch).
func produceAll(ctx context.Context, producer *kgo.Client, recs []*kgo.Record) Measure {
	produceAndWait(ctx, producer, recs[:min(len(recs), 100)])
	start := time.Now()
	errs := produceAndWait(ctx, producer, recs)
	elapsed := time.Since(start)
	ok := len(recs) - errs
	return Measure{What: "franz-go (idempotent, acks=all, warmed up) producing the same records directly", Count: ok, Errors: errs,
		Throughput: round3(float64(ok) / elapsed.Seconds())}
}

// produceAndWait produces every record at once and returns, once all are
// acknowledged, how many failed.
func produceAndWait(ctx context.Context, producer *kgo.Client, recs []*kgo.Record) int {
	var wg sync.WaitGroup
	var errs atomic.Int64
	for _, r := range recs {
		wg.Add(1)
		producer.Produce(ctx, cloneRecord(r), func(_ *kgo.Record, err error) {
			if err != nil {
				errs.Add(1)
			}
			wg.Done()
		})
	}
	wg.Wait()
	return int(errs.Load())
}

// producePaced produces the records at rate a second and measures each
// from its produce call to its acknowledgement.
func producePaced(ctx context.Context, producer *kgo.Client, recs []*kgo.Record, rate int) Measure {
	var rec Recorder
	var errs atomic.Int64
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i, r := range recs {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		wg.Add(1)
		t0 := time.Now()
		producer.Produce(ctx, cloneRecord(r), func(_ *kgo.Record, err error) {
			if err != nil {
				errs.Add(1)
			} else {
				rec.Add(time.Since(t0))
			}
			wg.Done()
		})
	}
	wg.Wait()
	l := rec.Summary()
	return Measure{What: fmt.Sprintf("franz-go producing the same records directly at %d/s: produce -> ack", rate), Count: l.Count,
		Errors: int(errs.Load()), Latency: &l, Throughput: round3(float64(l.Count) / time.Since(start).Seconds())}
}
