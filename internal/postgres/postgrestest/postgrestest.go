// Package postgrestest gives each test its own PostgreSQL database, cloned
// from a template that has every migration applied, so tests run in parallel
// against the real server without seeing each other's rows.
package postgrestest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trackops/trackops/internal/postgres"
)

// AdminURL is the server the test databases are created on. Override it with
// TRACKOPS_TEST_DATABASE_URL.
func AdminURL() string {
	if u := os.Getenv("TRACKOPS_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// Database is one test's private database.
type Database struct {
	// Name is the database name.
	Name string
	// URL connects to it (libpq URL form).
	URL string
	// Pool is an open pool on it, closed when the test ends.
	Pool *pgxpool.Pool
}

// New creates a fresh migrated database for t and drops it when t ends.
func New(t testing.TB) *Database {
	t.Helper()
	ctx := context.Background()
	templateOnce.Do(func() { templateName, templateErr = ensureTemplate(ctx) })
	if templateErr != nil {
		t.Fatalf("postgrestest: template database: %v", templateErr)
	}
	name := "trackops_test_" + randomSuffix()
	admin := adminConn(t)
	defer admin.Close(ctx)
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		_, err = admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, templateName))
		if err == nil {
			break
		}
		switch {
		case postgres.IsCode(err, "3D000"):
			// The template was dropped by hand meanwhile: build it again.
			if _, rebuildErr := ensureTemplate(ctx); rebuildErr != nil {
				t.Fatalf("postgrestest: rebuild template: %v", rebuildErr)
			}
		case !postgres.IsCode(err, "55006"):
			// 55006 (template briefly in use by a concurrent clone) is retried.
			attempt = 20
			continue
		}
		time.Sleep(time.Duration(50+attempt*25) * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("postgrestest: create database: %v", err)
	}
	url := postgres.WithDatabase(AdminURL(), name)
	pool, err := postgres.Connect(ctx, url)
	if err != nil {
		t.Fatalf("postgrestest: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		Drop(t, name)
	})
	return &Database{Name: name, URL: url, Pool: pool}
}

// Drop removes a test database, ending its sessions and dropping any
// replication slots left in it. A slot whose walsender has not exited yet
// is still active and cannot be dropped, and a database with a slot cannot
// be dropped either: Drop keeps ending walsenders and dropping slots until
// none is left (up to 30 s; a loaded machine can take seconds to end a
// walsender), or the slot and the database would leak, and slots are
// cluster-wide and limited (max_replication_slots).
func Drop(t testing.TB, name string) {
	ctx := context.Background()
	admin := adminConn(t)
	defer admin.Close(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _ = admin.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, name)
		_, _ = admin.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`, name)
		var left int
		err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = $1`, name).Scan(&left)
		if err == nil && left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Logf("postgrestest: replication slots of %s still there after 30 s (err %v); the database may leak", name, err)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name)); err != nil {
		t.Logf("postgrestest: drop database %s: %v", name, err)
	}
}

// Unused returns the name and URL of a database that does not exist yet,
// for tests of creating and migrating one; it is dropped, if created, when
// t ends.
func Unused(t testing.TB, prefix string) (name, url string) {
	t.Helper()
	name = prefix + "_" + randomSuffix()
	t.Cleanup(func() { Drop(t, name) })
	return name, postgres.WithDatabase(AdminURL(), name)
}

func adminConn(t testing.TB) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), AdminURL())
	if err != nil {
		t.Fatalf("postgrestest: connect to %s: %v", postgres.Redact(AdminURL()), err)
	}
	return conn
}

// ensureTemplate builds the migrated template once per migration set; test
// binaries of several packages race for it, so an advisory lock serialises them.
func ensureTemplate(ctx context.Context) (string, error) {
	name := "trackops_tpl_" + postgres.MigrationsHash()
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(7301)`); err != nil {
		return "", err
	}
	defer conn.Exec(ctx, `SELECT pg_advisory_unlock(7301)`)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)`, name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	building := name + "_build"
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+building+" WITH (FORCE)"); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+building); err != nil {
		return "", err
	}
	if err := postgres.Migrate(ctx, postgres.WithDatabase(AdminURL(), building)); err != nil {
		return "", err
	}
	// Templates of other migration sets are left alone: other checkouts on
	// the same server may be testing with them. `make testdb-clean` drops them.
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+building+" RENAME TO "+name); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+name+" WITH is_template true ALLOW_CONNECTIONS false"); err != nil {
		return "", err
	}
	return name, nil
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RefuseInserts installs a trigger on table that fails every insert while
// the returned switch is on (it starts off), so a test can make one write of
// a transaction fail and see what the transaction kept.
func (d *Database) RefuseInserts(t testing.TB, table string) (refuse func(on bool)) {
	t.Helper()
	ctx := context.Background()
	if _, err := d.Pool.Exec(ctx, fmt.Sprintf(`
		CREATE TABLE IF NOT EXISTS test_refused_inserts (tbl text PRIMARY KEY, refused boolean NOT NULL);
		CREATE OR REPLACE FUNCTION test_refuse_insert() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF (SELECT refused FROM test_refused_inserts WHERE tbl = TG_TABLE_NAME) THEN
				RAISE EXCEPTION 'insert into %% refused by the test', TG_TABLE_NAME;
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER test_refuse_insert BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION test_refuse_insert();`,
		pgx.Identifier{table}.Sanitize())); err != nil {
		t.Fatalf("postgrestest: refuse inserts into %s: %v", table, err)
	}
	if _, err := d.Pool.Exec(ctx, `INSERT INTO test_refused_inserts VALUES ($1, false)`, table); err != nil {
		t.Fatalf("postgrestest: refuse inserts into %s: %v", table, err)
	}
	return func(on bool) {
		t.Helper()
		if _, err := d.Pool.Exec(ctx, `UPDATE test_refused_inserts SET refused = $2 WHERE tbl = $1`, table, on); err != nil {
			t.Fatalf("postgrestest: refuse inserts into %s: %v", table, err)
		}
	}
}
