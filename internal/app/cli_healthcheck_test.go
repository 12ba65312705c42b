package app

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/trackops/trackops/internal/config"
)

func TestHealthcheckCommand(t *testing.T) {
	t.Parallel()
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health/ready" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	run := func(args ...string) error {
		var out bytes.Buffer
		return healthcheckCommand(context.Background(), &Env{Stdout: &out, Stderr: &out}, args)
	}
	if err := run("--url", srv.URL+"/health/ready"); err != nil {
		t.Fatalf("ready server: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := run("--url", srv.URL+"/health/ready"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("unready server: %v, want an error naming 503", err)
	}
	srv.Close()
	if err := run("--url", srv.URL+"/health/ready"); err == nil {
		t.Fatal("no server: no error")
	}

	for addr, want := range map[string]string{
		"0.0.0.0:8080":   "http://127.0.0.1:8080/health/ready",
		"127.0.0.1:9000": "http://127.0.0.1:9000/health/ready",
		":8081":          "http://127.0.0.1:8081/health/ready",
		"[::]:8080":      "http://[::1]:8080/health/ready",
		"10.1.2.3:8080":  "http://10.1.2.3:8080/health/ready",
	} {
		if got := readinessURL(config.Config{HTTP: config.HTTP{Addr: addr}}); got != want {
			t.Errorf("readinessURL(%s) = %s, want %s", addr, got, want)
		}
	}
	if got := readinessURL(config.Config{HTTP: config.HTTP{Addr: "0.0.0.0:8443", TLSCertFile: "c.pem"}}); got != "https://127.0.0.1:8443/health/ready" {
		t.Errorf("with TLS: %s", got)
	}
}
