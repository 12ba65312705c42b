package outbox_test

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/testfix"
)

// cost measures what a drain costs besides wall-clock time, which a loaded
// machine makes meaningless: CPU of this process (relay, franz-go and the
// embedded broker), CPU of the PostgreSQL sessions named app (read from
// /proc: the server runs on this machine in tests; COST_DEBUG=1 logs them one
// by one), and the WAL the server wrote meanwhile (server-wide: other
// databases' writes count too, so it is an upper bound on a shared server).
type cost struct {
	pool   *pgxpool.Pool
	app    string
	cpu    int64 // this process, microseconds
	pg     map[int]int64
	walLSN string
}

// startCost starts measuring; app names the sessions (application_name)
// whose CPU counts, "" for every session of the database.
func startCost(tb testing.TB, pool *pgxpool.Pool, app string) *cost {
	tb.Helper()
	c := &cost{pool: pool, app: app, cpu: testfix.SelfCPU().Microseconds(), pg: backendCPU(tb, pool, app)}
	if err := pool.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&c.walLSN); err != nil {
		tb.Fatal(err)
	}
	return c
}

// report adds per-event metrics for n events.
func (c *cost) report(b *testing.B, n int) {
	b.Helper()
	cpu := testfix.SelfCPU().Microseconds() - c.cpu
	var pg int64
	for pid, t := range backendCPU(b, c.pool, c.app) {
		pg += t - c.pg[pid]
		if os.Getenv("COST_DEBUG") != "" { // which session spent what
			var app, typ, q string
			_ = c.pool.QueryRow(context.Background(), `SELECT coalesce(application_name,''), coalesce(backend_type,''), left(coalesce(query,''), 60) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&app, &typ, &q)
			b.Logf("pid %d %s %s: %d µs (%q)", pid, app, typ, t-c.pg[pid], q)
		}
	}
	var wal int64
	if err := c.pool.QueryRow(context.Background(), `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint`, c.walLSN).Scan(&wal); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(cpu)/float64(n), "go-cpu-µs/event")
	b.ReportMetric(float64(pg)/float64(n), "pg-cpu-µs/event")
	b.ReportMetric(float64(wal)/float64(n), "wal-B/event")
}

// appPool opens a pool on url whose sessions carry application_name app.
func appPool(tb testing.TB, url, app string) *pgxpool.Pool {
	tb.Helper()
	p, err := postgres.Connect(context.Background(), url+"&application_name="+app)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	return p
}

// backendCPU reads, from /proc, the CPU in microseconds of every backend
// serving pool's database (the server runs on this machine in tests) for
// application app ("" for all).
func backendCPU(tb testing.TB, pool *pgxpool.Pool, app string) map[int]int64 {
	tb.Helper()
	rows, err := pool.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE datname = current_database()
		AND ($1 = '' OR application_name = $1)`, app)
	if err != nil {
		tb.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		tb.Fatal(err)
	}
	out := map[int]int64{}
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[int(pid)] = (u + st) * 10_000 // USER_HZ = 100
	}
	return out
}

func benchLogger() *slog.Logger {
	if os.Getenv("COST_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return quiet
}
