package e2e

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestFailedStartSaysWhy starts the real binary against each broken
// dependency or setting and checks that it exits 1 with one line naming
// what failed and what to do — not a panic, not a wall of driver text.
func TestFailedStartSaysWhy(t *testing.T) {
	endToEnd(t)
	db := postgrestest.New(t)
	taken := holdPort(t)
	dead := RefusedAddr(t)

	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"PostgreSQL down", map[string]string{"TRACKOPS_DATABASE_URL": "postgres://postgres@" + dead + "/trackops?sslmode=disable"},
			[]string{"cannot reach PostgreSQL at " + dead + " (connection refused); is it running?"}},
		{"unparsable database URL", map[string]string{"TRACKOPS_DATABASE_URL": "postgres://postgres:secret@localhost:port/x"},
			[]string{"TRACKOPS_DATABASE_URL is not a PostgreSQL URL", "want the form postgres://USER:PASSWORD@HOST:5432/DATABASE"}},
		{"Redis URL with a bad scheme", map[string]string{"TRACKOPS_REDIS_URL": "http://127.0.0.1:6379"},
			[]string{`TRACKOPS_REDIS_URL="http://127.0.0.1:6379": invalid URL scheme: http`, "want redis://HOST:6379"}},
		{"HTTP port taken", map[string]string{"TRACKOPS_HTTP_ADDR": taken},
			[]string{"the HTTP API cannot listen on TRACKOPS_HTTP_ADDR=" + taken + ": the address is already in use", "set TRACKOPS_HTTP_ADDR to a free address"}},
		{"embedded Kafka port taken", map[string]string{"TRACKOPS_EMBEDDED_KAFKA_ADDR": taken},
			[]string{"the embedded Kafka broker cannot listen on TRACKOPS_EMBEDDED_KAFKA_ADDR=" + taken + ": the address is already in use"}},
		{"Connect port taken", map[string]string{"TRACKOPS_CONNECT_ADDR": taken},
			[]string{"cannot listen on TRACKOPS_CONNECT_ADDR=" + taken + ": the address is already in use"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{
				"TRACKOPS_DATABASE_URL":        db.URL,
				"TRACKOPS_DATA_DIR":            t.TempDir(),
				"TRACKOPS_HTTP_ADDR":           FreeAddr(t),
				"TRACKOPS_EMBEDDED_KAFKA_ADDR": FreeAddr(t),
				"TRACKOPS_CONNECT_ADDR":        FreeAddr(t),
				"TRACKOPS_LOG_FORMAT":          "json",
			}
			for k, v := range tt.env {
				env[k] = v
			}
			code, stdout, stderr := runBinary(t, env, "run")
			if code != 1 {
				t.Fatalf("exit code %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
				t.Fatalf("start-up failure panicked:\n%s", stderr)
			}
			last := lastLine(stderr)
			if !strings.HasPrefix(last, "trackops run: ") {
				t.Fatalf("last line %q is not the command's error line; stderr:\n%s", last, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(last, w) {
					t.Errorf("error line %q lacks %q", last, w)
				}
			}
			if strings.Contains(stderr, "secret") {
				t.Errorf("the error shows the database password:\n%s", stderr)
			}
		})
	}
}

// holdPort listens on a free loopback port until the test ends, so the
// process under test finds it taken.
func holdPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// runBinary runs trackops with exactly env (plus PATH and HOME) and
// returns its exit code and output.
func runBinary(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("run trackops: %v", err)
	}
	return code, out.String(), errOut.String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}
