package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestPoolSettingsInTheURL: pgxpool's settings in TRACKOPS_DATABASE_URL
// (pool_max_conns, ...) size the main pool, and every single connection
// made from the same URL — creating the database, migrating, a lease or a
// LISTEN session — leaves them out instead of sending them to PostgreSQL,
// which refuses unknown parameters. An explicit pool_max_conns also wins
// over the default of at least ten connections.
func TestPoolSettingsInTheURL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, base := postgrestest.Unused(t, "trackops_test_poolurl")
	url := base + "&pool_max_conns=3&pool_min_conns=1&pool_max_conn_idle_time=1m"

	if err := postgres.EnsureDatabase(ctx, url); err != nil {
		t.Fatalf("create the database: %v", err)
	}
	if err := postgres.Migrate(ctx, url); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	cfg, err := postgres.ParseConnConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("a single connection: %v", err)
	}
	_ = conn.Close(ctx)

	tests := []struct {
		name string
		url  string
		want int32
	}{
		{"pool_max_conns in the URL", url, 3},
		{"no pool settings: at least ten", base, 10},
	}
	for _, tt := range tests {
		pool, err := postgres.Connect(ctx, tt.url)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		got := pool.Config().MaxConns
		pool.Close()
		if got != tt.want && !(tt.want == 10 && got > 10) {
			t.Errorf("%s: pool of %d connections, want %d", tt.name, got, tt.want)
		}
	}
}
