package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trackops/trackops/internal/postgres"
)

// FreeAddr returns a loopback address with a port nobody listens on now.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Database is a scenario's own PostgreSQL database, created empty and
// dropped (with its replication slots) by Drop.
type Database struct {
	Name  string
	URL   string
	Pool  *pgxpool.Pool
	admin string
}

// CreateDatabase creates a fresh, migrated database named after prefix on
// the server of baseURL.
func CreateDatabase(ctx context.Context, baseURL, prefix string) (*Database, error) {
	cfg, err := pgx.ParseConfig(baseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	name := prefix + "_" + hex.EncodeToString(suffix)
	db := &Database{Name: name, URL: withDatabase(baseURL, cfg.Database, name), admin: withDatabase(baseURL, cfg.Database, "postgres")}
	if err := postgres.EnsureDatabase(ctx, db.URL); err != nil {
		return nil, err
	}
	if err := postgres.Migrate(ctx, db.URL); err != nil {
		db.Drop(context.WithoutCancel(ctx))
		return nil, err
	}
	if db.Pool, err = postgres.Connect(ctx, db.URL); err != nil {
		db.Drop(context.WithoutCancel(ctx))
		return nil, err
	}
	return db, nil
}

// withDatabase swaps the database name in a libpq URL.
func withDatabase(url, from, to string) string {
	if i := strings.Index(url, "/"+from); from != "" && i >= 0 {
		return url[:i] + "/" + to + url[i+1+len(from):]
	}
	// No database in the URL: add one before the query string.
	base, query, _ := strings.Cut(url, "?")
	base = strings.TrimRight(base, "/") + "/" + to
	if query != "" {
		return base + "?" + query
	}
	return base
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

// Redis is a private redis-server on a free port, so a scenario's cache
// figures are not mixed with whatever else uses the machine's Redis.
type Redis struct {
	URL  string
	Addr string
	bin  string
	cmd  *exec.Cmd
}

// Signal sends sig to a private redis-server (SIGSTOP freezes it, SIGCONT
// thaws it, SIGKILL kills it).
func (r *Redis) Signal(sig os.Signal) error {
	if r.cmd == nil || r.cmd.Process == nil {
		return fmt.Errorf("redis at %s is not a private redis-server", r.Addr)
	}
	return r.cmd.Process.Signal(sig)
}

// Restart kills a private redis-server (as a crash would) and starts a new,
// empty one on the same port.
func (r *Redis) Restart(ctx context.Context) error {
	if r.bin == "" {
		return fmt.Errorf("redis at %s is not a private redis-server", r.Addr)
	}
	r.Stop()
	return r.start(ctx)
}

// StartRedis starts redis-server without persistence; with no redis-server
// on PATH it returns fallbackURL's server instead.
func StartRedis(ctx context.Context, fallbackURL string) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return &Redis{URL: fallbackURL}, nil
	}
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	r := &Redis{URL: "redis://" + addr, Addr: addr, bin: bin}
	if err := r.start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Redis) start(ctx context.Context) error {
	_, port, _ := net.SplitHostPort(r.Addr)
	cmd := exec.Command(r.bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--databases", "16")
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	r.cmd = cmd
	addr := r.Addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.Stop()
			return fmt.Errorf("redis-server on %s did not come up", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends a private redis-server.
func (r *Redis) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	}
}

// ProcessConfig is how a scenario runs TrackOps.
type ProcessConfig struct {
	Binary      string
	DatabaseURL string
	RedisURL    string
	Args        []string // after "run", e.g. --roles
	Env         []string // more KEY=VALUE settings
}

// Process is a TrackOps process a scenario started.
type Process struct {
	// HTTP is the API base URL; KafkaAddr the embedded broker; ConnectAddr
	// the Kafka Connect REST API.
	HTTP, KafkaAddr, ConnectAddr string
	Env                          []string
	cmd                          *exec.Cmd
	dataDir                      string
	done                         chan struct{}
	log                          *tailBuffer
	peakRSS                      int64
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
	env := append(os.Environ(),
		"TRACKOPS_DATABASE_URL="+cfg.DatabaseURL,
		"TRACKOPS_REDIS_URL="+cfg.RedisURL,
		"TRACKOPS_KAFKA_BROKERS=",
		"TRACKOPS_DATA_DIR="+dataDir,
		"TRACKOPS_HTTP_ADDR="+httpAddr,
		"TRACKOPS_EMBEDDED_KAFKA_ADDR="+kafkaAddr,
		"TRACKOPS_CONNECT_ADDR="+connectAddr,
		"TRACKOPS_LOG_FORMAT=json",
		"TRACKOPS_LOG_LEVEL=warn",
		// Benchmarks measure how fast requests are served, not where the
		// rate limiter cuts them off.
		"TRACKOPS_RATE_LIMIT_PRINCIPAL=off",
		"TRACKOPS_RATE_LIMIT_IP=off",
	)
	env = append(env, cfg.Env...)
	p := &Process{HTTP: "http://" + httpAddr, KafkaAddr: kafkaAddr, ConnectAddr: connectAddr, Env: env,
		dataDir: dataDir, done: make(chan struct{}), log: &tailBuffer{max: 64 << 10}}
	p.cmd = exec.Command(cfg.Binary, append([]string{"run"}, cfg.Args...)...)
	p.cmd.Env = env
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		os.RemoveAll(dataDir)
		return nil, fmt.Errorf("start %s: %w", cfg.Binary, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := client.Get(p.HTTP + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.done:
			p.Stop()
			return nil, fmt.Errorf("trackops exited before it was ready: %s", p.log.String())
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("trackops not ready after 90 s: %s", p.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// PeakRSS is the process's peak resident set size in bytes (VmHWM), read
// while it runs and kept after it stops.
func (p *Process) PeakRSS() int64 {
	if v, err := readVmHWM(p.cmd.Process.Pid); err == nil && v > p.peakRSS {
		p.peakRSS = v
	}
	return p.peakRSS
}

func readVmHWM(pid int) (int64, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// Stop records the peak RSS, sends SIGTERM, waits (SIGKILL after 20 s) and
// removes the data directory.
func (p *Process) Stop() {
	select {
	case <-p.done:
	default:
		p.PeakRSS()
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	os.RemoveAll(p.dataDir)
}

// Log returns the tail of the process's output.
func (p *Process) Log() string { return p.log.String() }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(t.b)
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return s
}

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
