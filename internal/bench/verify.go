package bench

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/progress"
)

// VerifyOptions bound what the invariant checker tolerates.
type VerifyOptions struct {
	// OutboxBound is how old an unpublished outbox row may be.
	OutboxBound time.Duration
	// PendingBound is how long an order may stay PENDING.
	PendingBound time.Duration
	// AllowFailed accepts outbox rows the relay gave up on.
	AllowFailed bool
	// MaxListed caps the offending rows listed per check.
	MaxListed int
	// Kafka, when set, also holds the topics against the database.
	Kafka *KafkaVerify
	// Progress, if set, is told of each check as it finishes.
	Progress *progress.Tracker
}

// Check outcomes.
const (
	CheckPass    = "pass"
	CheckFail    = "fail"
	CheckSkipped = "skipped"
)

// CheckResult is the outcome of one invariant check.
type CheckResult struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	// Detail says what was checked, or why the check was skipped.
	Detail string `json:"detail"`
	// Violations counts the offending rows; Offenders lists some of them.
	Violations int      `json:"violations"`
	Offenders  []string `json:"offenders,omitempty"`
}

// Report is the outcome of Verify.
type Report struct {
	Checks []CheckResult `json:"checks"`
}

// OK reports whether no check failed.
func (r Report) OK() bool { return r.Failed() == 0 }

// Failed counts the checks that failed.
func (r Report) Failed() int {
	n := 0
	for _, c := range r.Checks {
		if c.Status == CheckFail {
			n++
		}
	}
	return n
}

// Write prints the report as one line per check, then the offending rows.
func (r Report) Write(w io.Writer) {
	for _, c := range r.Checks {
		fmt.Fprintf(w, "%-8s %-22s %s\n", strings.ToUpper(c.Status), c.Name, c.Detail)
		for _, o := range c.Offenders {
			fmt.Fprintf(w, "         - %s\n", o)
		}
		if c.Violations > len(c.Offenders) {
			fmt.Fprintf(w, "         ... and %d more\n", c.Violations-len(c.Offenders))
		}
	}
}

// Verify checks the platform's invariants on one consistent snapshot of the
// database (a read-only REPEATABLE READ transaction), so rows changing under
// a running system cannot produce a false alarm between two queries.
func Verify(ctx context.Context, pool *pgxpool.Pool, opts VerifyOptions) (Report, error) {
	if opts.MaxListed <= 0 {
		opts.MaxListed = 20
	}
	var (
		rep    Report
		ranges map[string]map[int32]partitionRange
		cutoff time.Time
	)
	if opts.Kafka != nil {
		var err error
		if ranges, cutoff, err = prepareKafka(ctx, *opts.Kafka, opts.OutboxBound); err != nil {
			return rep, err
		}
	}
	err := postgres.WithTxOptions(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rep = Report{}
		v := verifier{tx: tx, opts: opts}
		checks := []func(context.Context) (CheckResult, error){
			v.stockBounds, v.reservationSums, v.orderHistories, v.outboxDrained, v.outboxFailed, v.pendingOrders,
		}
		opts.Progress.SetTotal(int64(len(checks)))
		for _, check := range checks {
			c, err := check(ctx)
			if err != nil {
				return err
			}
			rep.Checks = append(rep.Checks, c)
			opts.Progress.Step(c.Name + " " + c.Status)
		}
		if opts.Kafka != nil {
			cs, err := v.kafkaChecks(ctx, *opts.Kafka, ranges, cutoff)
			if err != nil {
				return err
			}
			rep.Checks = append(rep.Checks, cs...)
			for _, c := range cs {
				opts.Progress.Step(c.Name + " " + c.Status)
			}
		}
		return nil
	})
	return rep, err
}

type verifier struct {
	tx   pgx.Tx
	opts VerifyOptions
}

func (v verifier) tableExists(ctx context.Context, names ...string) (bool, error) {
	for _, n := range names {
		var exists bool
		if err := v.tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, n).Scan(&exists); err != nil {
			return false, fmt.Errorf("look up table %s: %w", n, err)
		}
		if !exists {
			return false, nil
		}
	}
	return true, nil
}

// offenders runs a query whose rows each describe one violation as text.
func (v verifier) offenders(ctx context.Context, c CheckResult, sql string, args ...any) (CheckResult, error) {
	rows, err := v.tx.Query(ctx, sql, args...)
	if err != nil {
		return c, fmt.Errorf("check %s: %w", c.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return c, fmt.Errorf("check %s: %w", c.Name, err)
		}
		c.add(line, v.opts.MaxListed)
	}
	if err := rows.Err(); err != nil {
		return c, fmt.Errorf("check %s: %w", c.Name, err)
	}
	c.finish()
	return c, nil
}

func (c *CheckResult) add(line string, maxListed int) {
	c.Violations++
	if len(c.Offenders) < maxListed {
		c.Offenders = append(c.Offenders, line)
	}
}

func (c *CheckResult) finish() {
	if c.Violations > 0 {
		c.Status = CheckFail
		c.Detail = fmt.Sprintf("%s: %d offending rows", c.Detail, c.Violations)
	} else {
		c.Status = CheckPass
	}
}

func skipped(name, why string) CheckResult {
	return CheckResult{Name: name, Status: CheckSkipped, Detail: why}
}

func (v verifier) stockBounds(ctx context.Context) (CheckResult, error) {
	const name = "stock-bounds"
	if ok, err := v.tableExists(ctx, "inventory_items"); err != nil || !ok {
		return skipped(name, "no inventory_items table in this schema"), err
	}
	return v.offenders(ctx, CheckResult{Name: name, Detail: "0 <= reserved <= on_hand for every SKU"},
		`SELECT format('sku=%s on_hand=%s reserved=%s', sku, on_hand, reserved)
		FROM inventory_items WHERE NOT (0 <= reserved AND reserved <= on_hand) ORDER BY sku`)
}

func (v verifier) reservationSums(ctx context.Context) (CheckResult, error) {
	const name = "reservation-sums"
	if ok, err := v.tableExists(ctx, "inventory_items", "reservations"); err != nil || !ok {
		return skipped(name, "no inventory_items or reservations table in this schema"), err
	}
	return v.offenders(ctx, CheckResult{Name: name, Detail: "reserved = sum of held reservations per SKU"},
		`SELECT format('sku=%s reserved=%s held_reservations=%s', i.sku, i.reserved, coalesce(r.held, 0))
		FROM inventory_items i
		LEFT JOIN (SELECT sku, sum(quantity) AS held FROM reservations WHERE status = 'reserved' GROUP BY sku) r ON r.sku = i.sku
		WHERE i.reserved <> coalesce(r.held, 0)
		UNION ALL
		SELECT format('sku=%s held_reservations=%s but no inventory item', r.sku, sum(r.quantity))
		FROM reservations r LEFT JOIN inventory_items i ON i.sku = r.sku
		WHERE r.status = 'reserved' AND i.sku IS NULL GROUP BY r.sku`)
}

// orderHistories walks every order's status history: it must start with
// PENDING at version 1, each step must be a legal transition from the
// previous status with the next version, and it must end in the order's
// current status and version.
func (v verifier) orderHistories(ctx context.Context) (CheckResult, error) {
	c := CheckResult{Name: "order-histories", Detail: "every order's history is a legal path ending in its status and version"}
	rows, err := v.tx.Query(ctx, `SELECT o.id, o.status, o.version, h.from_status, h.to_status, h.version
		FROM orders o LEFT JOIN order_status_history h ON h.order_id = o.id
		ORDER BY o.id, h.id`)
	if err != nil {
		return c, fmt.Errorf("check %s: %w", c.Name, err)
	}
	defer rows.Close()
	var (
		cur      uuid.UUID
		walk     historyWalk
		started  bool
		finished = func() {
			if started {
				if problem := walk.end(); problem != "" {
					c.add(fmt.Sprintf("order=%s %s", cur, problem), v.opts.MaxListed)
				}
			}
		}
	)
	for rows.Next() {
		var (
			id           uuid.UUID
			status       string
			version      int
			from, to     *string
			entryVersion *int
		)
		if err := rows.Scan(&id, &status, &version, &from, &to, &entryVersion); err != nil {
			return c, fmt.Errorf("check %s: %w", c.Name, err)
		}
		if !started || id != cur {
			finished()
			cur, started = id, true
			walk = historyWalk{status: order.Status(status), version: version}
		}
		if to != nil {
			walk.step(from, *to, *entryVersion)
		}
	}
	if err := rows.Err(); err != nil {
		return c, fmt.Errorf("check %s: %w", c.Name, err)
	}
	finished()
	c.finish()
	return c, nil
}

// historyWalk follows one order's history entries, oldest first, and keeps
// the first problem found.
type historyWalk struct {
	status      order.Status // the order's current status
	version     int          // the order's current version
	entries     int
	lastStatus  order.Status
	lastVersion int
	problem     string
}

func (w *historyWalk) step(from *string, to string, version int) {
	if w.problem != "" {
		return
	}
	w.entries++
	toStatus := order.Status(to)
	switch {
	case w.entries == 1:
		if from != nil || toStatus != order.StatusPending || version != 1 {
			w.problem = fmt.Sprintf("history starts with %s -> %s at version %d, want PENDING at version 1", str(from), to, version)
		}
	case from == nil || order.Status(*from) != w.lastStatus:
		w.problem = fmt.Sprintf("history entry %d is from %s but the previous entry ended in %s", w.entries, str(from), w.lastStatus)
	case !order.CanTransition(w.lastStatus, toStatus):
		w.problem = fmt.Sprintf("illegal transition %s -> %s in history", w.lastStatus, to)
	case version != w.lastVersion+1:
		w.problem = fmt.Sprintf("history entry %s -> %s has version %d, want %d", w.lastStatus, to, version, w.lastVersion+1)
	}
	w.lastStatus, w.lastVersion = toStatus, version
}

func (w *historyWalk) end() string {
	switch {
	case w.problem != "":
		return w.problem
	case w.entries == 0:
		return fmt.Sprintf("status %s with no history", w.status)
	case w.lastStatus != w.status:
		return fmt.Sprintf("status %s but history ends in %s", w.status, w.lastStatus)
	case w.lastVersion != w.version:
		return fmt.Sprintf("version %d but history ends at version %d", w.version, w.lastVersion)
	}
	return ""
}

func str(s *string) string {
	if s == nil {
		return "(none)"
	}
	return *s
}

func (v verifier) outboxDrained(ctx context.Context) (CheckResult, error) {
	c := CheckResult{Name: "outbox-drained", Detail: fmt.Sprintf("no unpublished outbox row older than %s", v.opts.OutboxBound)}
	return v.offenders(ctx, c,
		`SELECT format('outbox id=%s type=%s aggregate=%s created_at=%s attempts=%s last_error=%s',
			id, event_type, aggregate_id, created_at, attempts, coalesce(last_error, ''))
		FROM outbox_pending
		WHERE created_at < now() - make_interval(secs => $1)
		ORDER BY seq`, v.opts.OutboxBound.Seconds())
}

func (v verifier) outboxFailed(ctx context.Context) (CheckResult, error) {
	const name = "outbox-failed"
	if v.opts.AllowFailed {
		return skipped(name, "failed outbox rows allowed (--allow-failed)"), nil
	}
	return v.offenders(ctx, CheckResult{Name: name, Detail: "no outbox row the relay gave up on"},
		`SELECT format('outbox id=%s type=%s aggregate=%s attempts=%s last_error=%s',
			id, event_type, aggregate_id, attempts, coalesce(last_error, ''))
		FROM outbox_events WHERE failed ORDER BY seq`)
}

func (v verifier) pendingOrders(ctx context.Context) (CheckResult, error) {
	const name = "pending-orders"
	// Without the inventory service nothing moves an order out of PENDING,
	// so every order would be "stuck": the check means nothing then.
	if ok, err := v.tableExists(ctx, "inventory_items", "reservations"); err != nil || !ok {
		return skipped(name, "no inventory service in this schema: nothing confirms orders"), err
	}
	c := CheckResult{Name: name, Detail: fmt.Sprintf("no order PENDING for longer than %s", v.opts.PendingBound)}
	return v.offenders(ctx, c,
		`SELECT format('order=%s PENDING since %s', id, created_at)
		FROM orders WHERE status = 'PENDING' AND created_at < now() - make_interval(secs => $1)
		ORDER BY created_at`, v.opts.PendingBound.Seconds())
}
