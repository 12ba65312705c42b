package postgres_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestConcurrentMigrateOnAFreshDatabase is three `trackops migrate` (or
// `run`) processes started at once on a database that does not exist yet:
// each may find it missing and try to create it, and PostgreSQL answers the
// losers with 42P04 or with 23505 on pg_database_datname_index. Every one
// must succeed. Several rounds make the narrow race likely to be hit.
func TestConcurrentMigrateOnAFreshDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for round := 0; round < 3; round++ {
		_, url := postgrestest.Unused(t, "trackops_test_fresh")
		start := make(chan struct{})
		errs := make([]error, 3)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() {
				<-start
				if errs[i] = postgres.EnsureDatabase(ctx, url); errs[i] == nil {
					errs[i] = postgres.Migrate(ctx, url)
				}
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, migrate %d of 3: %v", round, i+1, err)
			}
		}
		pool, err := postgres.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		err = pool.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&n)
		pool.Close()
		if err != nil {
			t.Fatalf("round %d: the migrated database has no orders table: %v", round, err)
		}
	}
}

// TestConnectErrorsSayWhatToDo checks the one-line messages for a server
// that is not there and a login it refuses.
func TestConnectErrorsSayWhatToDo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, err := postgres.Connect(ctx, "postgres://postgres@127.0.0.1:1/trackops?sslmode=disable")
	want := "cannot reach PostgreSQL at 127.0.0.1:1 (connection refused); is it running?"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("dead server: %v, want %q", err, want)
	}
	err = postgres.EnsureDatabase(ctx, postgres.WithDatabase("postgres://nobody_here:pw@127.0.0.1:5432/postgres?sslmode=disable", "x"))
	want = `refused the login of user "nobody_here"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("unknown user: %v, want %q", err, want)
	}
	if err != nil && strings.Contains(err.Error(), ":pw@") {
		t.Errorf("the message shows the password: %v", err)
	}
}
