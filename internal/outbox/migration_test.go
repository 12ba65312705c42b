package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pressly/goose/v3"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestAppendOnlyMigrationKeepsEveryRowsState: an outbox written by the relay
// that marked rows (migrations up to 5) keeps each row's state through the
// migration to the append-only outbox: published rows keep their time,
// partition and offset and are not published again; pending ones are; one
// backing off keeps its back-off; a failed one stays failed.
func TestAppendOnlyMigrationKeepsEveryRowsState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name, url := postgrestest.Unused(t, "trackops_test_mig")
	admin, err := pgx.Connect(ctx, postgrestest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	admin.Close(ctx)

	sqlDB, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	sub, _ := fs.Sub(postgres.Migrations, "migrations")
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, sub, goose.WithAllowOutofOrder(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 5); err != nil {
		t.Fatal(err)
	}
	pool, err := postgres.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	// The old relay's states: published (with and without a recorded
	// position), pending, backing off after two failures, failed.
	published := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	rows := []struct {
		name, sql string
	}{
		{"published", `processed = true, published_at = $2, attempts = 1, kafka_partition = 2, kafka_offset = 41`},
		{"published-legacy", `processed = true, published_at = $2, attempts = 1`},
		{"pending", `processed = false`},
		{"backing-off", `attempts = 2, last_error = 'broker down', next_attempt_at = now() + interval '1 hour'`},
		{"failed", `failed = true, attempts = 1, last_error = 'MESSAGE_TOO_LARGE'`},
	}
	ids := map[string]string{}
	for _, r := range rows {
		ev := newEvent(t, r.name, 0)
		ids[r.name] = ev.ID
		if err := outbox.Write(ctx, pool, ev); err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, fmt.Sprintf(`UPDATE outbox_events SET %s WHERE id = $1 AND $2::timestamptz IS NOT NULL`, r.sql), ev.ID, published); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
	pool.Reset() // the columns changed under cached statements

	type state struct {
		processed, failed, retrying bool
		attempts                    int
		publishedAt                 *time.Time
		partition                   *int32
		offset                      *int64
		nextAttempt                 *time.Time
	}
	read := func(name string) state {
		t.Helper()
		var s state
		if err := pool.QueryRow(ctx, `SELECT processed, failed, retrying, attempts, published_at, kafka_partition, kafka_offset, next_attempt_at
			FROM outbox_status WHERE id = $1`, ids[name]).Scan(&s.processed, &s.failed, &s.retrying, &s.attempts, &s.publishedAt,
			&s.partition, &s.offset, &s.nextAttempt); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return s
	}
	if s := read("published"); !s.processed || s.attempts != 1 || s.publishedAt == nil || !s.publishedAt.Equal(published) ||
		s.partition == nil || *s.partition != 2 || *s.offset != 41 {
		t.Fatalf("published row after the migration: %+v", s)
	}
	if s := read("published-legacy"); !s.processed || s.partition != nil {
		t.Fatalf("published row without a position after the migration: %+v", s)
	}
	if s := read("pending"); s.processed || !s.retrying || s.attempts != 0 {
		t.Fatalf("pending row after the migration: %+v", s)
	}
	if s := read("backing-off"); s.processed || !s.retrying || s.attempts != 2 || s.nextAttempt == nil || time.Until(*s.nextAttempt) < 59*time.Minute {
		t.Fatalf("backing-off row after the migration: %+v", s)
	}
	if s := read("failed"); s.processed || !s.failed || s.retrying {
		t.Fatalf("failed row after the migration: %+v", s)
	}
	st, err := outbox.ReadStats(ctx, pool)
	if err != nil || st.Pending != 2 || st.Failed != 1 || st.Published != 2 {
		t.Fatalf("stats after the migration: %+v (%v); want 2 pending, 1 failed, 2 published", st, err)
	}

	// The relay publishes the pending row alone: the published ones are
	// done, the backing-off one waits, the failed one waits for an operator.
	broker := kafkatest.New(t)
	relay := outbox.NewRelay(pool, newProducer(t, broker), outbox.RelayConfig{Logger: quiet})
	if n, err := relay.PublishBatch(ctx); err != nil || n != 1 {
		t.Fatalf("first batch after the migration: n=%d err=%v, want the pending row", n, err)
	}
	if n, err := relay.PublishBatch(ctx); err != nil || n != 0 {
		t.Fatalf("second batch: n=%d err=%v, want nothing", n, err)
	}
	if s := read("pending"); !s.processed || s.retrying {
		t.Fatalf("pending row after the relay: %+v", s)
	}
	recs := kafkatest.Read(t, broker, events.OrderStatusUpdated, 1, 10*time.Second)
	if len(recs) != 1 || recs[0].Headers == nil {
		t.Fatalf("Kafka holds %d records after the migration, want the pending one", len(recs))
	}
}
