package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/testfix"
)

// FreeAddr returns a loopback address with a port nobody listens on now.
func FreeAddr() (string, error) { return testfix.FreeAddr() }

// Database is a scenario's own PostgreSQL database, created empty and
// dropped (with its replication slots) by Drop.
// harnessApp is the application_name of the harness's own sessions.
const harnessApp = "trackops-bench"

type Database struct {
	Name  string
	URL   string
	Pool  *pgxpool.Pool
	admin string
}

// CreateDatabase creates a fresh, migrated database named after prefix on
// the server of baseURL.
func CreateDatabase(ctx context.Context, baseURL, prefix string) (*Database, error) {
	if _, err := pgx.ParseConfig(baseURL); err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	name := prefix + "_" + hex.EncodeToString(suffix)
	db := &Database{Name: name, URL: postgres.WithDatabase(baseURL, name), admin: postgres.WithDatabase(baseURL, "postgres")}
	if err := postgres.EnsureDatabase(ctx, db.URL); err != nil {
		return nil, err
	}
	if err := postgres.Migrate(ctx, db.URL); err != nil {
		db.Drop(context.WithoutCancel(ctx))
		return nil, err
	}
	// The harness's sessions are named, so CPU figures can leave them out.
	pool, err := postgres.Connect(ctx, db.URL, func(c *pgxpool.Config, _ string) {
		c.ConnConfig.RuntimeParams["application_name"] = harnessApp
	})
	if err != nil {
		db.Drop(context.WithoutCancel(ctx))
		return nil, err
	}
	db.Pool = pool
	return db, nil
}

// Drop ends the database's sessions, drops its replication slots and the
// database itself.
func (d *Database) Drop(ctx context.Context) {
	if d.Pool != nil {
		d.Pool.Close()
	}
	conn, err := pgx.Connect(ctx, d.admin)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, d.Name)
	for range 20 {
		if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`, d.Name); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.Name}.Sanitize()+" WITH (FORCE)")
}

// StartRedis starts a private redis-server (testfix.Redis) without
// persistence, so a scenario's cache figures are not mixed with whatever
// else uses the machine's Redis. A missing redis-server is an error: the
// set-up installs it. The caller kills it.
func StartRedis() (*testfix.Redis, error) { return testfix.StartRedis("") }

// ProcessConfig is how a scenario runs TrackOps.
type ProcessConfig struct {
	Binary      string
	DatabaseURL string
	RedisURL    string
	Args        []string // after "run", e.g. --roles
	Env         []string // more KEY=VALUE settings
}

// Process is a TrackOps process a scenario started (testfix.Process) on
// free ports with its own data directory and embedded broker.
type Process struct {
	*testfix.Process
	// HTTP is the API base URL; KafkaAddr the embedded broker; ConnectAddr
	// the Kafka Connect REST API.
	HTTP, KafkaAddr, ConnectAddr string
	dataDir                      string
}

// StartProcess runs `trackops run` on free ports with its own data
// directory and embedded broker, and waits until it is ready.
func StartProcess(ctx context.Context, cfg ProcessConfig) (*Process, error) {
	httpAddr, err1 := FreeAddr()
	kafkaAddr, err2 := FreeAddr()
	connectAddr, err3 := FreeAddr()
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp("", "trackops-bench-")
	if err != nil {
		return nil, err
	}
	env := []string{
		"TRACKOPS_DATABASE_URL=" + cfg.DatabaseURL,
		"TRACKOPS_REDIS_URL=" + cfg.RedisURL,
		"TRACKOPS_KAFKA_BROKERS=",
		"TRACKOPS_DATA_DIR=" + dataDir,
		"TRACKOPS_HTTP_ADDR=" + httpAddr,
		"TRACKOPS_EMBEDDED_KAFKA_ADDR=" + kafkaAddr,
		"TRACKOPS_CONNECT_ADDR=" + connectAddr,
		"TRACKOPS_LOG_FORMAT=json",
		"TRACKOPS_LOG_LEVEL=warn",
		// Benchmarks measure how fast requests are served, not where the
		// rate limiter cuts them off.
		"TRACKOPS_RATE_LIMIT_PRINCIPAL=off",
		"TRACKOPS_RATE_LIMIT_IP=off",
	}
	tp, err := testfix.StartProcess(ctx, testfix.ProcessSpec{
		Binary: cfg.Binary, Args: append([]string{"run"}, cfg.Args...), Env: append(env, cfg.Env...),
		ReadyURL: "http://" + httpAddr + "/health/ready", ReadyTimeout: 90 * time.Second, LogLimit: 64 << 10,
	})
	if err != nil {
		os.RemoveAll(dataDir)
		return nil, err
	}
	return &Process{Process: tp, HTTP: "http://" + httpAddr, KafkaAddr: kafkaAddr, ConnectAddr: connectAddr, dataDir: dataDir}, nil
}

// Stop records the peak RSS, sends SIGTERM, waits (SIGKILL after 20 s) and
// removes the data directory.
func (p *Process) Stop() {
	p.Process.Stop(20 * time.Second)
	os.RemoveAll(p.dataDir)
}

// Log returns the tail of the process's output.
func (p *Process) Log() string { return p.Process.LogTail(4000) }

// CreateAPIKey runs `trackops apikey create` with the process's settings and
// returns the key, or "" with a reason when the build has no auth.
func CreateAPIKey(ctx context.Context, binary string, env []string) (key, reason string, err error) {
	cmd := exec.CommandContext(ctx, binary, "apikey", "create", "--name", "bench-"+strconv.FormatInt(time.Now().UnixNano(), 36), "--role", "admin")
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && strings.Contains(string(exit.Stderr), "unknown command") {
			return "", "no apikey command in this build: requests go without a token", nil
		}
		return "", "", fmt.Errorf("trackops apikey create: %w: %s", err, exitStderr(err))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1]), "", nil
}

func exitStderr(err error) string {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return strings.TrimSpace(string(exit.Stderr))
	}
	return ""
}
