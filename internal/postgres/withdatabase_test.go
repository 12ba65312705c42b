package postgres_test

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/postgres"
)

// TestWithDatabase: the database replaces the one the base connection
// string names, and nothing else: a user called like the database
// (postgres://postgres@…/postgres) keeps its name.
func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct{ conn, want string }{
		{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:5432/bench_1?sslmode=disable"},
		{"postgresql://app:secret@db.internal/app", "postgresql://app:secret@db.internal/bench_1"},
		{"postgres://127.0.0.1:5432?sslmode=disable", "postgres://127.0.0.1:5432/bench_1?sslmode=disable"},
		{"postgres:///test?host=/var/run/postgresql", "postgres:///bench_1?host=/var/run/postgresql"},
		{"host=127.0.0.1 user=postgres dbname=postgres", "host=127.0.0.1 user=postgres dbname=postgres dbname=bench_1"},
	} {
		got := postgres.WithDatabase(tc.conn, "bench_1")
		if got != tc.want {
			t.Errorf("WithDatabase(%q) = %q, want %q", tc.conn, got, tc.want)
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
