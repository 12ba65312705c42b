package testfix

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/trackops once per process (into a temporary
// directory) and returns its path.
func Binary() (string, error) {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "trackops-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "trackops")
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/trackops")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("testfix: go build ./cmd/trackops: %v\n%s", err, out)
		}
	})
	return binPath, buildErr
}

// ProcessSpec is how to run a child process.
type ProcessSpec struct {
	// Binary and Args are the program and its arguments.
	Binary string
	Args   []string
	// Env is added to this process's environment (later entries win).
	Env []string
	// ReadyURL, when set, is polled until it answers 200: Start returns
	// then, or fails when the process exits first or ReadyTimeout (default
	// 60 s) passes.
	ReadyURL     string
	ReadyTimeout time.Duration
	// LogLimit bounds the output kept (default 1 MiB): the last bytes stay.
	LogLimit int
}

// Process is a child process whose output is kept.
type Process struct {
	// Env is the child's whole environment.
	Env []string

	cmd     *exec.Cmd
	done    chan struct{}
	log     *TailBuffer
	peakRSS int64
}

// StartProcess starts spec's program and, with a ReadyURL, waits until it
// is ready.
func StartProcess(ctx context.Context, spec ProcessSpec) (*Process, error) {
	if spec.LogLimit <= 0 {
		spec.LogLimit = 1 << 20
	}
	env := append(os.Environ(), spec.Env...)
	p := &Process{Env: env, done: make(chan struct{}), log: &TailBuffer{Max: spec.LogLimit}}
	p.cmd = exec.Command(spec.Binary, spec.Args...)
	p.cmd.Env = env
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	dieWithParent(p.cmd)
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("testfix: start %s: %w", spec.Binary, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	if spec.ReadyURL == "" {
		return p, nil
	}
	if err := p.WaitReady(ctx, spec.ReadyURL, spec.ReadyTimeout); err != nil {
		p.Kill()
		return nil, err
	}
	return p, nil
}

// WaitReady polls url until it answers 200, the process exits, ctx ends or
// timeout (default 60 s) passes; StartProcess calls it when the spec names a
// ReadyURL, callers starting several processes side by side call it later.
func (p *Process) WaitReady(ctx context.Context, url string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("testfix: %s exited before it was ready:\n%s", filepath.Base(p.cmd.Path), p.log.Tail(4000))
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("testfix: %s not ready after %s:\n%s", filepath.Base(p.cmd.Path), timeout, p.log.Tail(4000))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Pid is the child's process id.
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

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitCode is the exit code once Done is closed (-1 when killed by a signal).
func (p *Process) ExitCode() int { return p.cmd.ProcessState.ExitCode() }

// Kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *Process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.PeakRSS()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits for the exit, killing the process when it
// has not exited after grace; it returns the exit code and whether the
// process stopped by itself.
func (p *Process) Stop(grace time.Duration) (code int, stopped bool) {
	select {
	case <-p.done:
		return p.ExitCode(), true
	default:
	}
	p.PeakRSS()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return p.ExitCode(), true
	case <-t.C:
		p.Kill()
		return -1, false
	}
}

// Log is the output kept (stdout and stderr, interleaved).
func (p *Process) Log() string { return p.log.String() }

// LogTail is at most the last n bytes of the output.
func (p *Process) LogTail(n int) string { return p.log.Tail(n) }

// PeakRSS is the process's peak resident set size in bytes (VmHWM), read
// while it runs and kept after it stops.
func (p *Process) PeakRSS() int64 {
	select {
	case <-p.done:
		return p.peakRSS
	default:
	}
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

// TailBuffer keeps the last Max bytes written to it (all of them when Max
// is 0); safe for concurrent writers.
type TailBuffer struct {
	Max int

	mu sync.Mutex
	b  []byte
}

// Write implements io.Writer.
func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if t.Max > 0 && len(t.b) > t.Max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.Max:]...)
	}
	return len(p), nil
}

// String is everything kept.
func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// Tail is at most the last n bytes kept.
func (t *TailBuffer) Tail(n int) string {
	s := t.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

// SelfCPU is the CPU time, user and system, this process has used so far
// (zero if it cannot be read): benchmarks report CPU per operation from two
// readings.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
