package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/trackops/trackops/internal/dlq"
	"github.com/trackops/trackops/internal/health"
	"github.com/trackops/trackops/internal/inbox"
	"github.com/trackops/trackops/internal/lease"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres"
)

// Intervals of the pruning jobs: the outbox grows with every event, the
// inbox far more slowly.
const (
	outboxPruneInterval = time.Minute
	inboxPruneInterval  = time.Hour
)

// leaseIdentity names this process in pg_stat_activity (and so in
// lease.Holder's answer) on the sessions of its leases.
func leaseIdentity() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("trackops@%s:%d", host, os.Getpid())
}

// leaseURL is the URL of lease sessions: the direct URL (a session lock
// needs a real session, never a transaction pooler), with server-side
// keepalives so a holder cut off from the server loses its lease in
// seconds.
func (a *App) leaseURL() string { return postgres.WithServerKeepalives(a.cfg.Database.Direct()) }

// singleton runs job as a singleton job of the cluster: every process that
// builds it competes for the lease called name, and the holder runs job
// (see internal/lease: a lease is not a fence, so job must stay safe when
// two runs overlap briefly during a hand-over).
func (a *App) singleton(name string, log *slog.Logger, job func(ctx context.Context) error) {
	ls := lease.New(a.leaseURL(), name, lease.Options{Identity: leaseIdentity(), Logger: log})
	a.leases = append(a.leases, ls)
	a.workers = append(a.workers, worker{name: name, run: func(ctx context.Context) error { return ls.Run(ctx, job) }})
}

// buildSingletonHealth reports, as the "singletons" component of /health,
// which cluster-wide leases this process competes for and holds.
func (a *App) buildSingletonHealth() {
	if len(a.leases) == 0 {
		return
	}
	a.health.Add(health.Func{ComponentName: "singletons", Fn: func(context.Context) health.Component {
		details := map[string]any{"identity": leaseIdentity()}
		for _, l := range a.leases {
			details[l.Name()] = l.Status()
		}
		return health.Component{Status: health.Up, Details: details}
	}})
}

// buildPruning runs, with the relay role, the pruning of published outbox
// rows past TRACKOPS_OUTBOX_RETENTION and of processed-event rows past
// TRACKOPS_INBOX_RETENTION, each once across the cluster. Each prunes at
// once when its lease is taken (a holder that restarts often still prunes)
// and then at its interval; pruning is idempotent and works in bounded
// chunks, so an overlap during a hand-over costs nothing.
func (a *App) buildPruning() {
	if a.cfg.Relay.OutboxRetention > 0 {
		// A relay that publishes nothing: only its Prune is used.
		pruner := outbox.NewRelay(a.pool, nil, outbox.RelayConfig{Retention: a.cfg.Relay.OutboxRetention, Metrics: a.metrics.outbox})
		log := a.log.With("component", "outbox-pruning")
		a.singleton(outbox.PruningLease, log, every(outboxPruneInterval, func(ctx context.Context) {
			if n, err := pruner.Prune(ctx); err != nil && ctx.Err() == nil {
				log.Warn("outbox prune failed", "err", err)
			} else if n > 0 {
				log.Info("outbox pruned", "rows", n)
			}
		}))
	}
	log := a.log.With("component", "inbox-pruning")
	pruner := inbox.Pruner{DB: a.pool, Retention: a.cfg.Consumer.InboxRetention, Interval: inboxPruneInterval, Logger: log}
	a.singleton(inbox.PruningLease, log, pruner.Run)
}

// buildDLQAlerts raises, with the relay role, the alerts of recorded dead
// letters once across the cluster (dlq.AlertDispatcher); the monitors of
// every relay process only record them.
func (a *App) buildDLQAlerts() {
	log := a.log.With("component", "dlq-alerts")
	alerter := dlq.NewAlerter(dlq.AlertConfig{WebhookURL: a.cfg.DLQ.AlertWebhook, Interval: a.cfg.DLQ.AlertInterval,
		Logger: log, Metrics: a.metrics.dlq})
	d := dlq.NewAlertDispatcher(a.pool, alerter, dlq.DispatcherConfig{Logger: log})
	a.singleton(dlq.AlertsLease, log, d.Run)
}

// every runs fn at once and then every d until ctx ends.
func every(d time.Duration, fn func(ctx context.Context)) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			fn(ctx)
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	}
}
