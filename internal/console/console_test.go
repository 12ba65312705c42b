package console_test

import (
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/trackops/trackops/internal/console"
	"github.com/trackops/trackops/internal/httpapi"
)

func TestConsoleIsServedWithItsAssets(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(httpapi.NewRouter(httpapi.RouterConfig{Logger: slog.New(slog.DiscardHandler)}, console.Routes()))
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/console/" {
		t.Fatalf("GET / = %d to %q, want a redirect to /console/", resp.StatusCode, resp.Header.Get("Location"))
	}
	for path, want := range map[string]string{
		"/console/":                `<script type="module" src="js/app.js">`,
		"/console/js/app.js":       `parseHash`,
		"/console/js/api.js":       `fetch(path`,
		"/console/js/pages/cdc.js": `config/validate`,
		"/console/style.css":       `table`,
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s = %d, body lacks %q", path, resp.StatusCode, want)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
}

// TestConsoleNeedsNothingFromOutside: every asset is embedded and the pages
// reference nothing off the origin, so the console works with no network
// and under the strict content security policy (no inline styles or
// scripts either).
func TestConsoleNeedsNothingFromOutside(t *testing.T) {
	t.Parallel()
	err := fs.WalkDir(console.Static(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(console.Static(), path)
		if err != nil {
			return err
		}
		for n, line := range strings.Split(string(b), "\n") {
			// The SVG namespace is a name, not a place the browser goes.
			if (strings.Contains(line, "http://") || strings.Contains(line, "https://")) && !strings.Contains(line, "http://www.w3.org/") {
				t.Errorf("%s:%d refers off the origin: %s", path, n+1, strings.TrimSpace(line))
			}
			for _, bad := range []string{`style="`, `onclick="`, "<script>", "eval(", "innerHTML", "document.write"} {
				if strings.Contains(line, bad) {
					t.Errorf("%s:%d contains %q, which the content security policy refuses or which invites injection", path, n+1, bad)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
