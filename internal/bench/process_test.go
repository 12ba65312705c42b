package bench

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestWithDatabase: a scenario's database replaces the one the base
// connection string names, and nothing else: a user called like the
// database (postgres://postgres@…/postgres) keeps its name.
func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct{ conn, want string }{
		{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:5432/bench_1?sslmode=disable"},
		{"postgresql://app:secret@db.internal/app", "postgresql://app:secret@db.internal/bench_1"},
		{"postgres://127.0.0.1:5432?sslmode=disable", "postgres://127.0.0.1:5432/bench_1?sslmode=disable"},
		{"postgres:///test?host=/var/run/postgresql", "postgres:///bench_1?host=/var/run/postgresql"},
		{"host=127.0.0.1 user=postgres dbname=postgres", "host=127.0.0.1 user=postgres dbname=postgres dbname=bench_1"},
	} {
		got := withDatabase(tc.conn, "bench_1")
		if got != tc.want {
			t.Errorf("withDatabase(%q) = %q, want %q", tc.conn, got, tc.want)
		}
		cfg, err := pgx.ParseConfig(got)
		if err != nil {
			t.Fatalf("%q: %v", got, err)
		}
		if cfg.Database != "bench_1" {
			t.Errorf("%q connects to database %q", got, cfg.Database)
		}
		if orig, _ := pgx.ParseConfig(tc.conn); orig.User != cfg.User {
			t.Errorf("%q connects as %q, the base as %q", got, cfg.User, orig.User)
		}
	}
}

// TestPostgresCPUCountsTheRightSessions: the CPU figures read every session
// of the scenario's database (the process under test names none of its
// own), and the relay's fixed-rate figure leaves out only the harness's.
func TestPostgresCPUCountsTheRightSessions(t *testing.T) {
	ctx := context.Background()
	db, err := CreateDatabase(ctx, postgrestest.AdminURL(), "trackops_test_cpu")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Drop(context.WithoutCancel(ctx))
	process, err := postgres.Connect(ctx, db.URL) // as the process under test connects
	if err != nil {
		t.Fatal(err)
	}
	defer process.Close()
	var processPid, harnessPid int
	if err := process.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&processPid); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&harnessPid); err != nil {
		t.Fatal(err)
	}
	all, except := postgresCPU(ctx, db), postgresCPUExcept(ctx, db, harnessApp)
	if _, ok := all[processPid]; !ok {
		t.Errorf("postgresCPU misses the process's session %d: %v", processPid, all)
	}
	if _, ok := all[harnessPid]; !ok {
		t.Errorf("postgresCPU misses the harness's session %d: %v", harnessPid, all)
	}
	if _, ok := except[processPid]; !ok {
		t.Errorf("postgresCPUExcept misses the process's session %d: %v", processPid, except)
	}
	if _, ok := except[harnessPid]; ok {
		t.Errorf("postgresCPUExcept counts the harness's session %d", harnessPid)
	}
}
