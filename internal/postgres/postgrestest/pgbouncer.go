package postgrestest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/testfix"
)

// PgBouncer is a private PgBouncer in transaction-pooling mode in front of
// the test PostgreSQL server (AdminURL), on a free loopback port, as
// production puts one in front of TrackOps' request and consumer pools.
type PgBouncer struct {
	// Port is where it listens on 127.0.0.1.
	Port int
	user string
	cmd  *exec.Cmd
	log  *testfix.TailBuffer
}

// PgBouncerOptions tune StartPgBouncer.
type PgBouncerOptions struct {
	// PoolSize is the number of server connections per database and user
	// (default_pool_size); default 20.
	PoolSize int
}

// StartPgBouncer starts PgBouncer with pool_mode = transaction, reaching
// every database of the test server, and stops it when t ends. Its config
// lives in a temporary directory. The Debian package is installed by
// scripts/ensure-services.sh; a missing binary fails the test.
func StartPgBouncer(t testing.TB, opts ...PgBouncerOptions) *PgBouncer {
	t.Helper()
	var o PgBouncerOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.PoolSize <= 0 {
		o.PoolSize = 20
	}
	bin := pgbouncerBinary(t)
	server, err := pgx.ParseConfig(AdminURL())
	if err != nil {
		t.Fatalf("postgrestest: %v", err)
	}
	// PgBouncer refuses to run as root; it then drops to nobody, who must
	// be able to read its files: the directory is world-readable (it holds
	// no secret the local trust set-up does not already give away).
	dir, err := os.MkdirTemp("", "trackops-pgbouncer-")
	if err != nil {
		t.Fatalf("postgrestest: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("postgrestest: %v", err)
	}
	b := &PgBouncer{Port: freePort(t), user: server.User, log: &testfix.TailBuffer{}}
	users := filepath.Join(dir, "userlist.txt")
	ini := filepath.Join(dir, "pgbouncer.ini")
	writeFile(t, users, fmt.Sprintf("%q %q\n", server.User, server.Password))
	writeFile(t, ini, fmt.Sprintf(`[databases]
* = host=%s port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
admin_users = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = 1000
ignore_startup_parameters = extra_float_digits
server_check_delay = 0
logfile =
pidfile =
`, server.Host, server.Port, b.Port, users, server.User, o.PoolSize))
	args := []string{ini}
	if os.Geteuid() == 0 {
		args = []string{"-u", "nobody", ini}
	}
	b.cmd = exec.Command(bin, args...)
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("postgrestest: start pgbouncer: %v", err)
	}
	t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
		_ = b.cmd.Wait()
		if t.Failed() {
			t.Logf("pgbouncer log:\n%s", b.log.String())
		}
	})
	b.waitReady(t)
	return b
}

// URL connects to database through the pooler.
func (b *PgBouncer) URL(database string) string {
	u := url.URL{Scheme: "postgres", User: url.User(b.user), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(b.Port)),
		Path: "/" + database, RawQuery: "sslmode=disable"}
	return u.String()
}

// Show runs a SHOW command of PgBouncer's admin console (SHOW DATABASES,
// SHOW STATS, ...) and returns its rows as column → text maps.
func (b *PgBouncer) Show(t testing.TB, what string) []map[string]string {
	t.Helper()
	// The admin console speaks only the simple query protocol.
	conn, err := pgx.Connect(context.Background(), b.URL("pgbouncer")+"&default_query_exec_mode=simple_protocol")
	if err != nil {
		t.Fatalf("postgrestest: pgbouncer admin console: %v", err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), "SHOW "+what)
	if err != nil {
		t.Fatalf("postgrestest: SHOW %s: %v", what, err)
	}
	defer rows.Close()
	var out []map[string]string
	for rows.Next() {
		vals := rows.RawValues()
		m := map[string]string{}
		for i, f := range rows.FieldDescriptions() {
			m[f.Name] = string(vals[i])
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("postgrestest: SHOW %s: %v", what, err)
	}
	return out
}

func (b *PgBouncer) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second) // a guard against a pooler that never starts
	for {
		conn, err := pgx.Connect(context.Background(), b.URL("postgres")+"&default_query_exec_mode=simple_protocol")
		if err == nil {
			err = conn.Ping(context.Background())
			conn.Close(context.Background())
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgrestest: pgbouncer on port %d not ready: %v\n%s", b.Port, err, b.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pgbouncerBinary finds pgbouncer; Debian installs it in /usr/sbin, which a
// non-root PATH may lack.
func pgbouncerBinary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/pgbouncer"); err == nil {
		return "/usr/sbin/pgbouncer"
	}
	t.Fatalf("postgrestest: pgbouncer is not installed; run `make services` (scripts/ensure-services.sh installs it)")
	return ""
}

func freePort(t testing.TB) int {
	t.Helper()
	port, err := testfix.FreePort()
	if err != nil {
		t.Fatalf("postgrestest: %v", err)
	}
	return port
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatalf("postgrestest: %v", err)
	}
}
