// Package e2e runs the real trackops binary as a separate process against
// the machine's PostgreSQL and Redis, with its embedded broker, for tests
// that must kill it (SIGKILL) and start it again.
package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/trackops once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "trackops-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "trackops")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/trackops")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// FreeAddr returns a loopback address with a port nobody listens on now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Process is one trackops process started by a test.
type Process struct {
	t    testing.TB
	cmd  *exec.Cmd
	Env  []string
	HTTP string // base URL
	// Token is an admin API key created for the test.
	Token string
	Log   *lockedBuffer
	done  chan struct{}
}

// Config is what differs between test processes.
type Config struct {
	DatabaseURL string
	DataDir     string
	HTTPAddr    string
	KafkaAddr   string
	ConnectAddr string
	Extra       []string // more KEY=VALUE settings
}

// Start runs `trackops run` with cfg, waits until it is ready and creates an
// admin API key for the test (reused when cfg's database already has one).
func Start(t testing.TB, cfg Config, args ...string) *Process {
	t.Helper()
	p := Launch(t, cfg, args...)
	p.WaitReady()
	return p
}

// Launch runs `trackops run` with cfg and returns at once, so several
// processes can start side by side; WaitReady waits for one.
func Launch(t testing.TB, cfg Config, args ...string) *Process {
	t.Helper()
	env := append(os.Environ(),
		"TRACKOPS_DATABASE_URL="+cfg.DatabaseURL,
		"TRACKOPS_DATA_DIR="+cfg.DataDir,
		"TRACKOPS_HTTP_ADDR="+cfg.HTTPAddr,
		"TRACKOPS_EMBEDDED_KAFKA_ADDR="+cfg.KafkaAddr,
		"TRACKOPS_CONNECT_ADDR="+cfg.ConnectAddr,
		"TRACKOPS_LOG_FORMAT=json",
	)
	env = append(env, cfg.Extra...)
	p := &Process{t: t, Env: env, HTTP: "http://" + cfg.HTTPAddr, Log: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(Binary(t), append([]string{"run"}, args...)...)
	p.cmd.Env = env
	p.cmd.Stdout = p.Log
	p.cmd.Stderr = p.Log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.Kill() })
	return p
}

// WaitReady waits until the process answers /health/ready with 200 and
// creates (or reuses) the test's admin API key.
func (p *Process) WaitReady() {
	t := p.t
	t.Helper()
	deadline := time.Now().Add(90 * time.Second) // a hang guard, not a speed assertion
	for {
		resp, err := http.Get(p.HTTP + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				p.Token = adminKey(t, p.Env)
				return
			}
		}
		select {
		case <-p.done:
			t.Fatalf("trackops exited before it was ready:\n%s", p.Log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("trackops not ready after 90 s:\n%s", p.Log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Alive reports whether the process is still running.
func (p *Process) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Kill ends the process with SIGKILL, as a crash would.
func (p *Process) Kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// Stop sends SIGTERM and returns the exit code.
func (p *Process) Stop(ctx context.Context) (int, error) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), nil
	case <-ctx.Done():
		p.Kill()
		return -1, fmt.Errorf("trackops did not stop after SIGTERM:\n%s", p.Log.String())
	}
}

var (
	keysMu sync.Mutex
	keys   = map[string]string{} // database URL -> admin key
)

func adminKey(t testing.TB, env []string) string {
	t.Helper()
	var dbURL string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "TRACKOPS_DATABASE_URL="); ok {
			dbURL = v
		}
	}
	keysMu.Lock()
	defer keysMu.Unlock()
	if k, ok := keys[dbURL]; ok {
		return k
	}
	out, err := Command(t, env, "", "apikey", "create", "--name", "e2e", "--role", "admin")
	if err != nil {
		t.Fatalf("apikey create: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	keys[dbURL] = strings.TrimSpace(lines[len(lines)-1])
	return keys[dbURL]
}

// Do sends an authenticated request with a JSON body (may be "").
func (p *Process) Do(method, path, body string) (*http.Response, error) {
	req, err := http.NewRequest(method, p.HTTP+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+p.Token)
	return httpClient.Do(req)
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// Command runs a one-shot trackops subcommand with the process's environment.
func Command(t testing.TB, env []string, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var _ io.Writer = (*lockedBuffer)(nil)
