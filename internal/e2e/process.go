// Package e2e runs the real trackops binary as a separate process against
// the machine's PostgreSQL and Redis, with its embedded broker, for tests
// that must kill it (SIGKILL) and start it again. The launching itself is
// internal/testfix's, shared with the benchmark scenarios; this file adds
// what tests need on top (t.Fatal, cleanup, an admin key).
package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/testfix"
)

// Binary builds cmd/trackops once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := testfix.Binary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// FreeAddr returns a loopback address with a port nobody listens on now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := testfix.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// RefusedAddr returns a loopback address whose connections are refused
// until the test ends.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	addr, release, err := testfix.RefusedAddr()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return addr
}

// Process is one trackops process started by a test.
type Process struct {
	*testfix.Process
	t    testing.TB
	HTTP string // base URL
	// Token is an admin API key created for the test.
	Token string
	// Log is the process's output so far.
	Log processLog
}

// processLog reads a running process's output.
type processLog struct{ p *testfix.Process }

// String is the output so far.
func (l processLog) String() string { return l.p.Log() }

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
// The process is killed when the test ends.
func Start(t testing.TB, cfg Config, args ...string) *Process {
	t.Helper()
	p := Launch(t, cfg, args...)
	p.WaitReady()
	return p
}

// Launch runs `trackops run` with cfg and returns at once, so several
// processes can start side by side; WaitReady waits for one. The process
// is killed when the test ends.
func Launch(t testing.TB, cfg Config, args ...string) *Process {
	t.Helper()
	env := []string{
		"TRACKOPS_DATABASE_URL=" + cfg.DatabaseURL,
		"TRACKOPS_DATA_DIR=" + cfg.DataDir,
		"TRACKOPS_HTTP_ADDR=" + cfg.HTTPAddr,
		"TRACKOPS_EMBEDDED_KAFKA_ADDR=" + cfg.KafkaAddr,
		"TRACKOPS_CONNECT_ADDR=" + cfg.ConnectAddr,
		"TRACKOPS_LOG_FORMAT=json",
	}
	env = append(env, cfg.Extra...)
	base := "http://" + cfg.HTTPAddr
	tp, err := testfix.StartProcess(context.Background(), testfix.ProcessSpec{
		Binary: Binary(t), Args: append([]string{"run"}, args...), Env: env, LogLimit: 64 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tp.Kill)
	return &Process{Process: tp, t: t, HTTP: base, Log: processLog{tp}}
}

// WaitReady waits until the process answers /health/ready with 200 (90 s
// at most: a hang guard, not a speed assertion) and creates (or reuses) the
// test's admin API key.
func (p *Process) WaitReady() {
	p.t.Helper()
	if err := p.Process.WaitReady(context.Background(), p.HTTP+"/health/ready", 90*time.Second); err != nil {
		p.t.Fatal(err)
	}
	p.Token = adminKey(p.t, p.Env)
}

// Stop sends SIGTERM and returns the exit code; when the process has not
// exited by the time ctx ends, it is killed and Stop reports it.
func (p *Process) Stop(ctx context.Context) (int, error) {
	grace := time.Minute
	if d, ok := ctx.Deadline(); ok {
		grace = time.Until(d)
	}
	code, stopped := p.Process.Stop(grace)
	if !stopped {
		return -1, fmt.Errorf("trackops did not stop after SIGTERM:\n%s", p.Log.String())
	}
	return code, nil
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

// commandGuard bounds a one-shot subcommand: a hang guard, not a speed
// assertion. A command that hangs fails its test with what it printed
// instead of holding the package until the test binary's timeout, whose
// report names the test but not the command.
const commandGuard = 3 * time.Minute

// Command runs a one-shot trackops subcommand with the process's environment.
func Command(t testing.TB, env []string, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandGuard)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("trackops %s still running after %s, killed: %w", strings.Join(args, " "), commandGuard, err)
	}
	return string(out), err
}

// slowAfter is when watchSlow first reports a test still running: the
// longest test takes under a minute on a quiet machine.
const slowAfter = 3 * time.Minute

// watchSlow writes a line to standard error while t runs past slowAfter,
// and again each minute. go test shows a package's output only when it
// fails, and a timeout's report names the tests then running but not how
// long each ran next to the others: these lines say which test was slow,
// and since when, even when a slow test ended and another one hung.
func watchSlow(t *testing.T) {
	start := time.Now()
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		if d := time.Since(start); d > slowAfter {
			fmt.Fprintf(os.Stderr, "e2e-slow: %s ended after %s\n", t.Name(), d.Round(time.Second))
		}
	})
	go func() {
		wait := time.NewTimer(slowAfter)
		defer wait.Stop()
		for {
			select {
			case <-done:
				return
			case <-wait.C:
				fmt.Fprintf(os.Stderr, "e2e-slow: %s still running after %s\n", t.Name(), time.Since(start).Round(time.Second))
				wait.Reset(time.Minute)
			}
		}
	}()
}
