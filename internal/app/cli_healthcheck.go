package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/trackops/trackops/internal/config"
)

func healthcheckCmd() *Command {
	return &Command{Name: "healthcheck",
		Summary: "exit 0 if this host's TrackOps is ready (GET /health/ready), else 1; for container health checks",
		Usage:   "trackops healthcheck [--url URL] [--timeout 3s]", Run: healthcheckCommand}
}

// healthcheckCommand asks a running process whether it is ready. Container
// images without a shell or curl (distroless) run it as their HEALTHCHECK.
func healthcheckCommand(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("healthcheck", env.Stderr)
	url := fs.String("url", "", "the readiness URL (default: /health/ready on TRACKOPS_HTTP_ADDR, over loopback)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	target := *url
	if target == "" {
		target = readinessURL(env.Config)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	client := &http.Client{Transport: &http.Transport{
		// The check dials the process on its own host by loopback, while its
		// certificate names the public host: the connection, not the
		// certificate, is what is checked here.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback health probe
	}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready: %s answered %s", target, resp.Status)
	}
	fmt.Fprintf(env.Stdout, "ready (%s)\n", target)
	return nil
}

// readinessURL is /health/ready on the HTTP address of cfg, reached over
// loopback when the process listens on every interface.
func readinessURL(cfg config.Config) string {
	host, port, err := net.SplitHostPort(cfg.HTTP.Addr)
	if err != nil {
		host, port = "127.0.0.1", "8080"
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	scheme := "http"
	if cfg.HTTP.TLSCertFile != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/health/ready"
}
