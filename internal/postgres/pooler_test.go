package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// Behind PgBouncer in transaction mode with one server connection, two
// client connections take turns on it. pgx's default exec mode prepares a
// named statement per query on each client connection, so the second one
// collides with the first's on the shared server connection; BehindPooler's
// mode uses unnamed statements and both work, inside and outside
// transactions.
func TestBehindPoolerSurvivesTransactionPooling(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	bouncer := postgrestest.StartPgBouncer(t, postgrestest.PgBouncerOptions{PoolSize: 1})
	ctx := context.Background()
	url := bouncer.URL(db.Name)

	// Two held client connections, each running the same query twice.
	run := func(pool *pgxpool.Pool) error {
		a, err := pool.Acquire(ctx)
		if err != nil {
			return err
		}
		defer a.Release()
		b, err := pool.Acquire(ctx)
		if err != nil {
			return err
		}
		defer b.Release()
		for range 2 {
			for _, c := range []*pgxpool.Conn{a, b} {
				var n int
				if err := c.QueryRow(ctx, `SELECT count(*) FROM orders WHERE status = $1`, "PENDING").Scan(&n); err != nil {
					return err
				}
			}
		}
		return nil
	}

	plain, err := postgres.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := run(plain); err == nil || !strings.Contains(err.Error(), "prepared statement") {
		t.Fatalf("default exec mode through a transaction pooler: err = %v; want a prepared-statement clash (the control)", err)
	}

	pooled, err := postgres.Connect(ctx, url, postgres.BehindPooler())
	if err != nil {
		t.Fatal(err)
	}
	defer pooled.Close()
	if err := run(pooled); err != nil {
		t.Fatalf("BehindPooler through a transaction pooler: %v", err)
	}
	err = postgres.WithTx(ctx, pooled, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO orders (id, customer_id, status, total_amount) VALUES (gen_random_uuid(), 'c', 'PENDING', 1)`)
		return err
	})
	if err != nil {
		t.Fatalf("transaction through the pooler: %v", err)
	}

	// A URL that names its own exec mode keeps it.
	explicit, err := postgres.Connect(ctx, url+"&default_query_exec_mode=simple_protocol", postgres.BehindPooler())
	if err != nil {
		t.Fatal(err)
	}
	defer explicit.Close()
	if m := explicit.Config().ConnConfig.DefaultQueryExecMode; m != pgx.QueryExecModeSimpleProtocol {
		t.Fatalf("exec mode %v, want the URL's simple_protocol", m)
	}
}
