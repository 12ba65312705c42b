package dlq

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trackops/trackops/internal/postgres"
)

// AlertsLease is the name of the cluster-wide lease under which one process
// raises the alerts of recorded dead letters.
const AlertsLease = "dlq-alerts"

// DispatcherConfig describes an AlertDispatcher.
type DispatcherConfig struct {
	// Interval is how often recorded dead letters are looked for (default 1 s).
	Interval time.Duration
	// Batch bounds the dead letters alerted per round (default 100).
	Batch int
	// Logger receives failures.
	Logger *slog.Logger
}

// AlertDispatcher raises the alerts of dead letters the monitors recorded.
// Every process of the relay role runs a monitor, which records each dead
// letter once (dlq_messages is unique per topic, partition and offset)
// whichever process consumes it; alerting is a singleton job, run by the
// one process holding the dlq-alerts lease. It reads the recorded dead
// letters not alerted yet, locking them with SKIP LOCKED, tells the Alerter
// (a log line, a rate-limited webhook call) and marks them alerted in the
// same transaction, so two dispatchers that briefly overlap during a lease
// hand-over never alert one dead letter twice, and a mark that fails to
// commit leaves it to be alerted again. The webhook call itself is sent in
// the background: a process that dies after the commit and before the call
// went out loses that call (its log line was written).
type AlertDispatcher struct {
	pool    *pgxpool.Pool
	alerter *Alerter
	cfg     DispatcherConfig
}

// NewAlertDispatcher returns a dispatcher of the dead letters in pool to
// alerter.
func NewAlertDispatcher(pool *pgxpool.Pool, alerter *Alerter, cfg DispatcherConfig) *AlertDispatcher {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &AlertDispatcher{pool: pool, alerter: alerter, cfg: cfg}
}

// Run alerts until ctx ends (run it under the cluster-wide lease).
func (d *AlertDispatcher) Run(ctx context.Context) error {
	go d.alerter.Run(ctx)
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	for {
		for {
			n, err := d.DispatchOnce(ctx)
			if err != nil && ctx.Err() == nil {
				d.cfg.Logger.Warn("DLQ alert dispatch failed; retrying", "err", err)
			}
			if err != nil || n < d.cfg.Batch {
				break
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// DispatchOnce alerts on one batch of unalerted dead letters, oldest first,
// and returns how many it handled.
func (d *AlertDispatcher) DispatchOnce(ctx context.Context) (int, error) {
	var msgs []Message
	err := postgres.WithTx(ctx, d.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+messageColumns+` FROM dlq_messages WHERE alerted_at IS NULL
			ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, d.cfg.Batch)
		if err != nil {
			return err
		}
		if msgs, err = pgx.CollectRows(rows, scanMessage); err != nil || len(msgs) == 0 {
			return err
		}
		ids := make([]int64, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		if _, err = tx.Exec(ctx, `UPDATE dlq_messages SET alerted_at = now() WHERE id = ANY($1)`, ids); err != nil {
			return err
		}
		// Raised before the commit: a mark that does not commit leaves the
		// dead letter to be alerted again (at least once), never silently.
		for _, m := range msgs {
			d.alerter.Notify(m)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("dlq alerts: %w", err)
	}
	return len(msgs), nil
}
