package postgres

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Migrations holds every schema migration, applied in version order.
//
// Version numbers are grouped by owner so parts can add migrations without
// colliding: 1–9 orders and outbox, 10–19 inventory, 20–29 auth and audit,
// 30–39 CDC, 40–49 dead letters, 50–59 cache and system settings, 60–69 the
// ops console and the order journey, 70–79 platform runtime.
//
//go:embed migrations/*.sql
var Migrations embed.FS

// Migrate applies every pending migration to the database at url.
func Migrate(ctx context.Context, url string) error {
	cfg, err := ParseConnConfig(url)
	if err != nil {
		return fmt.Errorf("open database for migrations: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	sub, err := fs.Sub(Migrations, "migrations")
	if err != nil {
		return err
	}
	// Several TrackOps processes may start at once; an advisory lock lets
	// one migrate while the others wait.
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithAllowOutofOrder(true), goose.WithSessionLocker(locker),
		// goose's own lines (verbose mode only) go through the process's slog handler.
		goose.WithSlog(slog.Default()))
	if err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	return nil
}

// MigrationsHash fingerprints the embedded migrations, so a test template
// database built from other migrations is never reused.
func MigrationsHash() string {
	h := sha256.New()
	entries, _ := fs.ReadDir(Migrations, "migrations")
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		b, _ := fs.ReadFile(Migrations, "migrations/"+n)
		h.Write([]byte(n))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}
