package bench_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/e2e"
	"github.com/trackops/trackops/internal/outbox"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestVerifyAfterLoadgenThenBrokenByHand runs the real binary: the platform,
// `trackops loadgen` against it, `trackops verify` (must pass), then breaks
// invariants by hand and runs verify again (must fail, naming the rows).
func TestVerifyAfterLoadgenThenBrokenByHand(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	t.Parallel()
	db := postgrestest.New(t)
	p := e2e.Start(t, e2e.Config{DatabaseURL: db.URL, DataDir: t.TempDir(), HTTPAddr: e2e.FreeAddr(t),
		KafkaAddr: e2e.FreeAddr(t), ConnectAddr: e2e.FreeAddr(t)})

	args := []string{"loadgen", "--target", p.HTTP, "--rate", "40", "--duration", "3s", "--skus", "5"}
	if out, err := e2e.Command(t, p.Env, "", "apikey", "create", "--name", "loadgen", "--role", "admin"); err == nil {
		lines := strings.Split(strings.TrimSpace(out), "\n")
		args = append(args, "--token", strings.TrimSpace(lines[len(lines)-1]))
	} else if !strings.Contains(out, "unknown command") {
		t.Fatalf("apikey create: %v\n%s", err, out)
	}
	out, err := e2e.Command(t, p.Env, "", args...)
	if err != nil {
		t.Fatalf("loadgen: %v\n%s", err, out)
	}
	for _, want := range []string{"throughput", "p99", "201:", "create", "read"} {
		if !strings.Contains(out, want) {
			t.Errorf("loadgen output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "done ") || !strings.Contains(out, "ok ") {
		t.Errorf("no live progress in loadgen output:\n%s", out)
	}
	var orders int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM orders`).Scan(&orders); err != nil || orders == 0 {
		t.Fatalf("loadgen created %d orders (err %v)", orders, err)
	}
	waitDrained(t, db)

	out, err = e2e.Command(t, p.Env, "", "verify", "--outbox-bound", "1m")
	if err != nil {
		t.Fatalf("verify failed after a clean loadgen run: %v\n%s", err, out)
	}
	if !strings.Contains(out, "PASS     order-histories") || !strings.Contains(out, "PASS     outbox-drained") {
		t.Errorf("verify output:\n%s", out)
	}

	// Break two invariants by hand: an order jumps to SHIPPED with no
	// history, and an outbox row is left unpublished for an hour. The
	// process stops first: a relay still running would publish that row
	// (its insert wakes it) before verify looks.
	p.Kill()
	ctx := context.Background()
	var victim string
	if err := db.Pool.QueryRow(ctx, `UPDATE orders SET status = 'SHIPPED'
		WHERE id = (SELECT id FROM orders WHERE status IN ('PENDING', 'CONFIRMED') LIMIT 1) RETURNING id::text`).Scan(&victim); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, topic, event_data, created_at)
		VALUES (gen_random_uuid(), 'order', 'stuck-aggregate', 'ORDER_CREATED', 'ORDER_CREATED', '{}', now() - interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	out, err = e2e.Command(t, p.Env, "", "verify", "--outbox-bound", "1m")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("verify on a broken database: err %v, want exit status 1\n%s", err, out)
	}
	for _, want := range []string{"FAIL     order-histories", victim, "status SHIPPED but history ends in", "FAIL     outbox-drained", "stuck-aggregate"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
}

// waitDrained waits until the relay has published every outbox row.
func waitDrained(t *testing.T, db *postgrestest.Database) {
	t.Helper()
	var st outbox.Stats
	for range 300 {
		var err error
		if st, err = outbox.ReadStats(context.Background(), db.Pool); err != nil {
			t.Fatal(err)
		}
		if st.Pending == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("outbox not drained: %+v", st)
}
