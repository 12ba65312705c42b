package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestServerKeepalivesReachTheServer: a lease session opened with
// WithServerKeepalives has the server probe it, so a holder cut off without
// a FIN loses its lock in seconds; settings the URL names itself are kept,
// and keyword/value strings work too.
func TestServerKeepalivesReachTheServer(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	for _, conn := range []string{postgres.WithServerKeepalives(db.URL), postgres.WithServerKeepalives(db.URL + "&tcp_keepalives_idle=7")} {
		c, err := pgx.Connect(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		var idle, interval, count, userTimeout string
		err = c.QueryRow(ctx, `SELECT current_setting('tcp_keepalives_idle'), current_setting('tcp_keepalives_interval'),
			current_setting('tcp_keepalives_count'), current_setting('tcp_user_timeout')`).Scan(&idle, &interval, &count, &userTimeout)
		c.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantIdle := "2"
		if strings.Contains(conn, "tcp_keepalives_idle=7") {
			wantIdle = "7"
		}
		if idle != wantIdle || interval != "1" || count != "3" || userTimeout != "5000" {
			t.Errorf("%s: idle %s, interval %s, count %s, user timeout %s", postgres.Redact(conn), idle, interval, count, userTimeout)
		}
	}
	kv := postgres.WithServerKeepalives("host=127.0.0.1 user=postgres tcp_keepalives_count=9")
	if !strings.Contains(kv, "tcp_keepalives_count=9") || strings.Count(kv, "tcp_keepalives_count") != 1 || !strings.Contains(kv, "tcp_user_timeout=5000") {
		t.Errorf("keyword/value form: %q", kv)
	}
}
