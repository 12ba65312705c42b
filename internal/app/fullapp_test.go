package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/cache/cachetest"
	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
	"github.com/trackops/trackops/internal/testfix"
)

// fullApp is a whole TrackOps process (every role) inside a test: a private
// PostgreSQL clone, a private broker, a private redis-server, and the HTTP
// API and the Kafka Connect REST API on free loopback ports. Each App
// serves its own metrics registry, so tests that start one run in parallel.
type fullApp struct {
	*App
	base        string // http://host:port of the API
	connectBase string // http://host:port of the Kafka Connect REST API
	db          *postgrestest.Database
	redis       *cachetest.Server
	stop        func()
	// client talks to both ports (it trusts the test certificate when TLS
	// is configured).
	client *http.Client
}

// startFullApp builds and runs an App with every role, logging to logger.
// Each tweak adjusts the configuration before the App is built.
func startFullApp(t testing.TB, logger *slog.Logger, tweaks ...func(*config.Config)) *fullApp {
	t.Helper()
	db := postgrestest.New(t)
	broker := kafkatest.New(t)
	redis := cachetest.StartServer(t)
	cfg := configOn(t, db)
	cfg.Redis.URL = redis.URL()
	cfg.Kafka.Brokers = []string{broker.Addr()}
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.CDC.ConnectAddr = freeAddr(t)
	cfg.DataDir = t.TempDir()
	cfg.Relay.PollInterval = 50 * time.Millisecond
	cfg.Consumer.RetryAttempts = 3
	cfg.Consumer.RetryBackoff = 10 * time.Millisecond
	cfg.Consumer.RetryMaxBackoff = 50 * time.Millisecond
	cfg.ShutdownTimeout = 10 * time.Second
	for _, tw := range tweaks {
		tw(&cfg)
	}
	roles, err := ParseRoles("all")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, cfg, roles, logger)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	addr, err := a.Listen()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.Run(ctx); err != nil {
			t.Errorf("app run: %v", err)
		}
	}()
	scheme, client := "http://", http.DefaultClient
	if cfg.HTTP.TLSCertFile != "" {
		scheme, client = "https://", tlsClient(t, cfg.HTTP.TLSCertFile)
	}
	fa := &fullApp{App: a, base: scheme + addr.String(), connectBase: scheme + cfg.CDC.ConnectAddr,
		db: db, redis: redis, client: client}
	fa.stop = func() { cancel(); <-done }
	// Registered after the database's, broker's and Redis's cleanups, so it
	// runs before them.
	t.Cleanup(fa.stop)
	fa.waitReady(t)
	return fa
}

func (fa *fullApp) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // a deadlock guard, not a speed assertion
	for {
		resp, err := fa.client.Get(fa.base + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("app not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// key creates an API key with role and returns its secret.
func (fa *fullApp) key(t testing.TB, name string, role httpapi.Role) string {
	t.Helper()
	k, err := fa.security.auth.CreateAPIKey(context.Background(), name, role)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// do sends a request with a bearer token (none when token is "") and a JSON
// body (none when body is ""), and returns the status and body.
func (fa *fullApp) do(t testing.TB, token, method, path, body string, header ...string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, fa.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := fa.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// mustDo is do that fails the test unless the status is want; it decodes the
// body into out when out is not nil.
func (fa *fullApp) mustDo(t testing.TB, want int, token, method, path, body string, out any, header ...string) {
	t.Helper()
	code, b := fa.do(t, token, method, path, body, header...)
	if code != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, code, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	addr, err := testfix.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
