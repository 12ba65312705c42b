// Package runinfo keeps, in PostgreSQL, what the running platform was
// started with (its event strategy), so that one-shot commands run from
// another shell, whose environment may differ, report the platform's
// settings rather than their own.
package runinfo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/postgres"
)

// Names of the recorded settings.
const (
	// EventStrategy is the TRACKOPS_EVENT_STRATEGY of the last process
	// started on the database.
	EventStrategy = "event_strategy"
)

// Entry is one recorded setting.
type Entry struct {
	Name  string    `json:"name"`
	Value string    `json:"value"`
	SetAt time.Time `json:"set_at"`
	// SetBy names the process: host, pid and version.
	SetBy string `json:"set_by"`
}

// Record stores name=value as set by this process (version names the
// binary), replacing what an earlier start recorded.
func Record(ctx context.Context, db postgres.Querier, name, value, version string) error {
	host, _ := os.Hostname()
	by := fmt.Sprintf("%s pid %d (trackops %s)", host, os.Getpid(), version)
	_, err := db.Exec(ctx, `INSERT INTO platform_runtime (name, value, set_by) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, set_by = EXCLUDED.set_by, set_at = now()`,
		name, value, by)
	if err != nil {
		return fmt.Errorf("record %s of the running platform: %w", name, err)
	}
	return nil
}

// Get returns the recorded setting; ok is false when no process recorded it.
func Get(ctx context.Context, db postgres.Querier, name string) (e Entry, ok bool, err error) {
	err = db.QueryRow(ctx, `SELECT name, value, set_at, set_by FROM platform_runtime WHERE name = $1`, name).
		Scan(&e.Name, &e.Value, &e.SetAt, &e.SetBy)
	if errors.Is(err, pgx.ErrNoRows) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("read %s of the running platform: %w", name, err)
	}
	return e, true, nil
}
