package postgrestest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ReplicaPair is a private PostgreSQL primary and a streaming replica of
// it, made for one test with the distribution's initdb, pg_ctl and
// pg_basebackup -R on free loopback ports, in a directory of their own.
// The machine's shared server is not touched. Both are stopped and removed
// when the test ends.
type ReplicaPair struct {
	// PrimaryPort and ReplicaPort are the servers' loopback ports.
	PrimaryPort, ReplicaPort int

	t       testing.TB
	bin     string
	root    string
	runAs   *user.User
	primary string // data directories
	replica string
}

// URL is a URL of database db on the primary.
func (p *ReplicaPair) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.PrimaryPort, db)
}

// ReplicaURL is a URL of database db on the replica.
func (p *ReplicaPair) ReplicaURL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.ReplicaPort, db)
}

// NewReplicaPair starts the primary (wal_level=logical, so CDC works on it
// too) and a replica streaming from it, and waits until the replica
// accepts connections.
func NewReplicaPair(t testing.TB) *ReplicaPair {
	t.Helper()
	p := &ReplicaPair{t: t, bin: pgBinDir(t), PrimaryPort: freePort(t), ReplicaPort: freePort(t)}
	// initdb and postgres refuse to run as root: as root the servers run
	// as the postgres user, which must own their directory.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("postgrestest: running as root needs the postgres user (installed with PostgreSQL): %v", err)
		}
		p.runAs = u
	}
	root, err := os.MkdirTemp("", "trackops-replica-")
	if err != nil {
		t.Fatal(err)
	}
	p.root = root
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	p.chown(root)
	p.primary, p.replica = filepath.Join(root, "primary"), filepath.Join(root, "replica")

	p.run("initdb", "-D", p.primary, "-U", "postgres", "--auth=trust", "-N", "-E", "UTF8")
	t.Cleanup(func() { p.stop(p.primary) })
	p.start(p.primary, p.PrimaryPort, "-c wal_level=logical -c max_wal_senders=10 -c max_replication_slots=10")
	p.run("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(p.PrimaryPort), "-U", "postgres",
		"-D", p.replica, "-R", "-X", "stream", "-c", "fast")
	t.Cleanup(func() { p.stop(p.replica) })
	p.start(p.replica, p.ReplicaPort, "-c hot_standby=on")
	return p
}

// pgBinDir is the newest PostgreSQL server installation's bin directory.
func pgBinDir(t testing.TB) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(dirs) == 0 {
		t.Fatal("postgrestest: no PostgreSQL server binaries under /usr/lib/postgresql (run `make services`, which installs PostgreSQL)")
	}
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) < versionOf(dirs[j]) })
	return filepath.Dir(dirs[len(dirs)-1])
}

func versionOf(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

func (p *ReplicaPair) chown(path string) {
	if p.runAs == nil {
		return
	}
	uid, _ := strconv.Atoi(p.runAs.Uid)
	gid, _ := strconv.Atoi(p.runAs.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		p.t.Fatal(err)
	}
}

// command runs a PostgreSQL program as the servers' user.
func (p *ReplicaPair) command(prog string, args ...string) *exec.Cmd {
	path := filepath.Join(p.bin, prog)
	if p.runAs == nil {
		return exec.Command(path, args...)
	}
	return exec.Command("runuser", append([]string{"-u", p.runAs.Username, "--", path}, args...)...)
}

func (p *ReplicaPair) run(prog string, args ...string) {
	p.t.Helper()
	if out, err := p.command(prog, args...).CombinedOutput(); err != nil {
		p.t.Fatalf("postgrestest: %s: %v\n%s", prog, err, out)
	}
}

func (p *ReplicaPair) start(dir string, port int, opts string) {
	p.t.Helper()
	o := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100 %s", port, dir, opts)
	cmd := p.command("pg_ctl", "-D", dir, "-o", o, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60", "start")
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		p.t.Fatalf("postgrestest: start %s: %v\n%s\n%s", filepath.Base(dir), err, out, log)
	}
}

// StopReplica stops the replica (immediate shutdown), as a replica going
// down would.
func (p *ReplicaPair) StopReplica() { p.stop(p.replica) }

func (p *ReplicaPair) stop(dir string) {
	_ = p.command("pg_ctl", "-D", dir, "-m", "immediate", "-w", "stop").Run()
}

// onReplica runs fn on a connection to the replica's postgres database.
func (p *ReplicaPair) onReplica(ctx context.Context, fn func(*pgx.Conn) error) error {
	conn, err := pgx.Connect(ctx, p.ReplicaURL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return fn(conn)
}

// PauseReplay stops the replica from applying WAL (it keeps receiving it):
// from now on it shows the data as of this moment.
func (p *ReplicaPair) PauseReplay() {
	p.t.Helper()
	if err := p.onReplica(context.Background(), func(c *pgx.Conn) error {
		_, err := c.Exec(context.Background(), `SELECT pg_wal_replay_pause()`)
		return err
	}); err != nil {
		p.t.Fatalf("postgrestest: pause replay: %v", err)
	}
}

// ResumeReplay lets the replica apply WAL again.
func (p *ReplicaPair) ResumeReplay() {
	p.t.Helper()
	if err := p.onReplica(context.Background(), func(c *pgx.Conn) error {
		_, err := c.Exec(context.Background(), `SELECT pg_wal_replay_resume()`)
		return err
	}); err != nil {
		p.t.Fatalf("postgrestest: resume replay: %v", err)
	}
}

// WaitCaughtUp waits until the replica has replayed everything the primary
// had written when it was called.
func (p *ReplicaPair) WaitCaughtUp() {
	p.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		p.t.Fatal(err)
	}
	var target string
	err = conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&target)
	conn.Close(ctx)
	if err != nil {
		p.t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second) // a hang guard
	for {
		var caughtUp bool
		err := p.onReplica(ctx, func(c *pgx.Conn) error {
			return c.QueryRow(ctx, `SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn`, target).Scan(&caughtUp)
		})
		if err == nil && caughtUp {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("postgrestest: the replica did not replay up to %s (%v)", target, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
