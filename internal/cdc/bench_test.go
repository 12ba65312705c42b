package cdc

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trackops/trackops/internal/cpusteal"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
	"github.com/trackops/trackops/internal/testfix"
)

// benchBroker is the in-process broker, or the one TRACKOPS_TEST_BENCH_BROKERS
// names (to keep the broker's memory out of the benchmark's RSS and its
// CPU out of the cpu-us/change figure). The producer carries the same
// client metrics the app gives every Kafka client.
func benchBroker(b *testing.B) kafka.Options {
	o := kafka.Options{ClientID: "trackops-bench", Metrics: kafka.NewMetrics(prometheus.NewRegistry())}
	if addr := os.Getenv("TRACKOPS_TEST_BENCH_BROKERS"); addr != "" {
		o.Brokers = strings.Split(addr, ",")
		return o
	}
	o.Brokers = kafkatest.Options(kafkatest.New(b)).Brokers
	return o
}

const benchTable = `CREATE TABLE bench (id bigint PRIMARY KEY, customer text NOT NULL, status text NOT NULL,
	amount numeric(12,2) NOT NULL, created timestamptz NOT NULL DEFAULT now(), note text)`

const benchInsert = `INSERT INTO bench (id, customer, status, amount, note)
	SELECT g, 'customer-' || (g % 1000), 'PENDING', (g % 10000) / 100.0, 'note ' || g
	FROM generate_series($1::bigint, $1::bigint + $2 - 1) g`

// BenchmarkStreamToKafka measures change events per second from commit to
// Kafka acknowledgement: b.N rows are committed in one transaction and the
// clock stops when Kafka has acknowledged every event. cpu-us/change is the
// process's CPU time (not wall time) from the commit to the last ack, per
// change: with the broker outside (TRACKOPS_TEST_BENCH_BROKERS) it is the
// connector's own cost. It depends far less on the machine's load than
// events/s, though a busy machine still inflates it (more scheduler work,
// smaller reads from a slower walsender).
//
//	go test ./internal/cdc -run '^$' -bench StreamToKafka -benchtime 1000000x -benchmem
func BenchmarkStreamToKafka(b *testing.B) {
	db := postgrestest.New(b)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, benchTable); err != nil {
		b.Fatal(err)
	}
	raw := rawConfig(b, db, map[string]string{"snapshot.mode": "no_data", "table.include.list": "public.bench", "decimal.handling.mode": DecimalString})
	cfg := parse(b, raw)
	c := NewConnector(cfg, Options{Kafka: benchBroker(b), Logger: testLogger(), TopicPartitions: 3})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	waitStreaming(b, c)

	start := c.stats.events.Load()
	b.ResetTimer()
	b.StopTimer()
	cpu0, steal0 := testfix.SelfCPU(), cpusteal.Read()
	if _, err := db.Pool.Exec(ctx, benchInsert, 1, b.N); err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	target := start + uint64(b.N)
	for {
		if c.stats.events.Load() >= target {
			if _, drained := c.em.Load().tracker.advance(); drained {
				break
			}
		}
		if err := c.em.Load().tracker.failed(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(200 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64((testfix.SelfCPU()-cpu0).Microseconds())/float64(b.N), "cpu-us/change")
	cpusteal.Report(b, steal0) // on a shared host it moves the figures from run to run
}

// BenchmarkPgRecvlogical is the ceiling: PostgreSQL's own pg_recvlogical
// receiving the same pgoutput stream (no decoding, no Kafka) to /dev/null.
func BenchmarkPgRecvlogical(b *testing.B) {
	bin, err := exec.LookPath("pg_recvlogical")
	if err != nil {
		b.Skip("pg_recvlogical not installed")
	}
	db := postgrestest.New(b)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, benchTable); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `CREATE PUBLICATION bench_pub FOR TABLE bench`); err != nil {
		b.Fatal(err)
	}
	slot := uniqueSlot()
	if _, err := db.Pool.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, benchInsert, 1, b.N); err != nil {
		b.Fatal(err)
	}
	var end string
	if err := db.Pool.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&end); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	steal0 := cpusteal.Read()
	cmd := exec.Command(bin, "-d", db.URL, "-S", slot, "--start", "-E", end, "-f", "/dev/null",
		"-o", "proto_version=1", "-o", "publication_names=bench_pub", "--no-loop")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("pg_recvlogical: %v: %s", err, out)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	cpusteal.Report(b, steal0)
}
