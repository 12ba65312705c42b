package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trackops/trackops/internal/audit"
	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/dlq"
	"github.com/trackops/trackops/internal/health"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/logging"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/progress"
)

func dlqCmd() *Command {
	return &Command{Name: "dlq", Args: []string{"list", "replay"}, Summary: "list and replay dead letters",
		Usage: `trackops dlq list [--topic T] [--status new|replayed|discarded] [--fingerprint F] [--since 24h] [--limit N] [--json]
trackops dlq replay (--id ID | --topic T [--fingerprint F] [--all]) [--dry-run]

  list     dead letters the DLQ monitor recorded, newest first, with their error fingerprint
  replay   send dead letters back to their original topic with a trackops_replay-count header;
           --topic alone replays the oldest new one, --all every new one matching;
           a record replayed TRACKOPS_DLQ_MAX_REPLAYS (3) times stays in the DLQ (loop guard)`,
		Run: dlqCommand}
}

func consumerRetry(cfg config.Config) kafka.RetryPolicy {
	return kafka.RetryPolicy{Attempts: cfg.Consumer.RetryAttempts, Initial: cfg.Consumer.RetryBackoff,
		Multiplier: cfg.Consumer.RetryMultiplier, Max: cfg.Consumer.RetryMaxBackoff}
}

// buildDLQ adds the DLQ ops endpoints and health, and with the relay role
// the DLQ monitor and the cluster's DLQ alerts.
func (a *App) buildDLQ() error {
	store := dlq.NewStore(a.pool)
	// No Auditor: this replayer only serves the API, whose router already
	// writes the one audit row of each replay or discard request; the
	// per-message actions are kept in dlq_actions (GET /api/v1/ops/dlq/{id}).
	// Auditing them here too left two rows for one mutation. The CLI, which
	// has no router, audits through dlqAuditor.
	replayer := dlq.NewReplayer(a.pool, a.producer, dlq.ReplayerConfig{
		MaxReplays: a.cfg.DLQ.MaxReplays, Logger: a.log.With("component", "dlq"), Metrics: a.metrics.dlq,
	})
	a.routes = append(a.routes, dlq.NewHandlers(store, replayer).Routes()...)
	if !a.roles.Has(RoleRelay) {
		a.routes = append(a.routes, outbox.NewHandlers(a.pool, nil).Routes()...)
	}
	// Dead letters per topic come from the broker's offsets; what the
	// monitor recorded (new, replayed, ...) is added from PostgreSQL.
	perTopic := health.DLQ(health.KafkaDLQCounter(a.producer))
	a.health.Add(health.Func{ComponentName: "dlq", Fn: func(ctx context.Context) health.Component {
		comp := perTopic.Check(ctx)
		if comp.Details == nil {
			comp.Details = map[string]any{}
		}
		if c, err := store.Count(ctx, dlq.Filter{}); err == nil {
			comp.Details["recorded"] = map[string]any{"total": c.Total, "new": c.New,
				"replayed": c.Replayed, "discarded": c.Discarded, "replayBlocked": c.Blocked}
		}
		return comp
	}})
	if !a.roles.Has(RoleRelay) {
		return nil
	}
	// Every relay process's monitor records the dead letters of its
	// partitions (idempotently); one process of the cluster alerts on them.
	monitor, err := dlq.NewMonitor(store, dlq.MonitorConfig{
		Kafka:   a.kafkaOptions("trackops-dlq-monitor"),
		Logger:  a.log.With("component", "dlq-monitor"),
		Metrics: a.metrics.dlq,
	})
	if err != nil {
		return err
	}
	a.addConsumer("dlq-monitor", monitor)
	a.buildDLQAlerts()
	return nil
}

func dlqCommand(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: want a subcommand: list or replay", ErrUsage)
	}
	switch args[0] {
	case "list":
		return dlqList(ctx, env, args[1:])
	case "replay":
		return dlqReplay(ctx, env, args[1:])
	}
	return fmt.Errorf("%w: unknown subcommand %q: want list or replay", ErrUsage, args[0])
}

func dlqList(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("dlq list", env.Stderr)
	topic := fs.String("topic", "", "dead-letter or original topic")
	status := fs.String("status", "", "new, replayed or discarded")
	fingerprint := fs.String("fingerprint", "", "error fingerprint")
	since := fs.String("since", "", "RFC 3339 time or a duration such as 24h")
	limit := fs.Int("limit", 50, "rows to show (1-1000)")
	asJSON := fs.Bool("json", false, "print JSON (messages and fingerprint groups)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	q := map[string][]string{"topic": {*topic}, "status": {*status}, "fingerprint": {*fingerprint},
		"since": {*since}, "limit": {fmt.Sprint(*limit)}}
	f, err := dlq.ParseFilter(q, time.Now())
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	pool, err := openDB(ctx, env.Config)
	if err != nil {
		return err
	}
	defer pool.Close()
	store := dlq.NewStore(pool)
	if *asJSON {
		// The API's own page: counts, groups and messages from one source.
		out, err := store.Page(ctx, f)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	msgs, err := store.List(ctx, f)
	if err != nil {
		return err
	}
	return dlq.WriteTable(env.Stdout, msgs)
}

func dlqReplay(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("dlq replay", env.Stderr)
	id := fs.Int64("id", 0, "replay the dead letter with this id")
	topic := fs.String("topic", "", "replay dead letters of this (dead-letter or original) topic")
	fingerprint := fs.String("fingerprint", "", "only those with this error fingerprint")
	all := fs.Bool("all", false, "every matching new dead letter, not just the oldest")
	dryRun := fs.Bool("dry-run", false, "show what would be replayed; change nothing")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	req := dlq.ReplayRequest{ID: *id, Topic: *topic, Fingerprint: *fingerprint, All: *all, DryRun: *dryRun, Actor: cliActor(env.Config)}
	if err := req.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	pool, err := openDB(ctx, env.Config)
	if err != nil {
		return err
	}
	defer pool.Close()
	producer, err := kafka.NewProducer(kafka.Options{Brokers: env.Config.Kafka.Bootstrap(), ClientID: "trackops-dlq-replay",
		Compression: env.Config.Kafka.Compression})
	if err != nil {
		return err
	}
	defer producer.Close()
	if !req.DryRun {
		waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := kafka.WaitForBroker(waitCtx, producer, logging.New(io.Discard, "text", "error"))
		cancel()
		if err != nil {
			return fmt.Errorf("kafka at %s is unreachable (with the embedded broker, `trackops run` must be up): %w",
				strings.Join(env.Config.Kafka.Bootstrap(), ","), err)
		}
	}
	auditW := audit.NewWriter(pool, audit.WriterOptions{})
	defer auditW.Close(context.WithoutCancel(ctx))
	var prog *progress.Tracker
	if req.All {
		prog = progress.New(env.Stderr, "dlq replay", 0)
	}
	replayer := dlq.NewReplayer(pool, producer, dlq.ReplayerConfig{MaxReplays: env.Config.DLQ.MaxReplays,
		Auditor: dlqAuditor{auditW}, Logger: logging.New(env.Stderr, env.Config.Log.Format, "warn"), Progress: prog})
	res, err := replayer.Replay(ctx, req)
	prog.Done()
	if errors.Is(err, dlq.ErrNotFound) {
		return fmt.Errorf("dead letter %d not found; `trackops dlq list` shows the ids", req.ID)
	}
	if err != nil {
		return err
	}
	return res.WriteTable(env.Stdout)
}

func openDB(ctx context.Context, cfg config.Config) (*pgxpool.Pool, error) {
	if err := Migrate(ctx, cfg); err != nil {
		return nil, err
	}
	return connectDatabase(ctx, cfg)
}

// cliActor names the operator running a command in the audit log.
func cliActor(cfg config.Config) string {
	if cfg.CLI.Operator == "" {
		return "cli:unknown"
	}
	return "cli:" + cfg.CLI.Operator
}

// dlqAuditor writes the dead-letter actions of the CLI to the audit log
// (requests to the API are audited by the router).
type dlqAuditor struct{ w *audit.Writer }

// Audit implements dlq.Auditor.
func (d dlqAuditor) Audit(ctx context.Context, e dlq.AuditEvent) {
	kind, _, _ := strings.Cut(e.Actor, ":")
	d.w.Write(ctx, audit.Entry{At: e.At, Actor: e.Actor, PrincipalKind: kind, Action: e.Action,
		Target: e.Target, Outcome: "success"})
}
