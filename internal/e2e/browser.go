package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser the console tests drive: one headless Chromium for the whole
// test process, a fresh tab per test. It is Debian's chromium package, which
// scripts/ensure-services.sh installs; a machine without it fails the
// tests, it never skips them.
var (
	browserOnce   sync.Once
	browserCtx    context.Context
	browserCancel context.CancelFunc
	browserDir    string
	browserErr    error
)

// chromiumPath finds the browser binary.
func chromiumPath() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no Chromium on PATH: run `make services` (scripts/ensure-services.sh installs Debian's chromium package)")
}

func startBrowser() {
	path, err := chromiumPath()
	if err != nil {
		browserErr = err
		return
	}
	if browserDir, err = os.MkdirTemp("", "trackops-chromium-"); err != nil {
		browserErr = err
		return
	}
	// The flags this machine's closed network needs: without the background
	// networking ones Chromium's own connections are refused and slow it.
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(browserDir),
		chromedp.WindowSize(1400, 1000),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	cancel := func() { cancelCtx(); cancelAlloc() }
	// Start the browser now, so a broken install fails here with its cause.
	if err := openBlank(ctx, cancel, time.Minute); err != nil {
		cancel()
		browserErr = fmt.Errorf("start %s: %w", path, err)
		return
	}
	browserCtx = ctx
	browserCancel = cancel
}

// openBlank runs the first action on a chromedp context, which starts its
// browser or opens its tab. The action runs on ctx itself (a tab opened
// under a timeout's context would close when that timeout's context ends);
// the bound is a hang guard: past limit, cancel ends ctx and the action
// with it, so a browser that never answers fails the test instead of
// holding the package until the test binary's timeout.
func openBlank(ctx context.Context, cancel context.CancelFunc, limit time.Duration) error {
	guard := time.AfterFunc(limit, cancel)
	err := chromedp.Do(ctx, chromedp.Navigate("about:blank"))
	if !guard.Stop() {
		return fmt.Errorf("no answer from the browser within %s: %w", limit, err)
	}
	return err
}

// stopBrowser ends the shared browser; TestMain calls it.
func stopBrowser() {
	if browserCancel != nil {
		browserCancel()
	}
	if browserDir != "" {
		_ = os.RemoveAll(browserDir)
	}
}

// Tab is one browser tab on a TrackOps process's console.
type Tab struct {
	t    *testing.T
	ctx  context.Context
	base string
}

// NewTab opens a tab of the shared browser for t, closed when t ends.
func NewTab(t *testing.T, p *Process) *Tab {
	t.Helper()
	browserOnce.Do(startBrowser)
	if browserErr != nil {
		t.Fatalf("browser: %v", browserErr)
	}
	ctx, cancel := chromedp.NewContext(browserCtx)
	t.Cleanup(cancel)
	if err := openBlank(ctx, cancel, step); err != nil {
		t.Fatalf("open a browser tab: %v", err)
	}
	return &Tab{t: t, ctx: ctx, base: p.HTTP}
}

// step bounds one interaction; the bound is a hang guard, not a speed
// assertion.
const step = 45 * time.Second

func (b *Tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.Shot("failed-" + what)
		b.t.Fatalf("%s: %v", what, err)
	}
}

// Open loads the console at hash (e.g. "#/topics") as a fresh page load,
// as a reload or a pasted link does. (It goes by about:blank: a navigation
// that changes only the hash loads nothing, and chromedp's Reload leaves a
// new tab unresponsive.)
func (b *Tab) Open(hash string) {
	b.t.Helper()
	b.do("open "+hash, chromedp.Navigate("about:blank"), chromedp.Navigate(b.base+"/console/"+hash))
}

// SignInWithKey stores an API key as the console's token and reloads hash.
func (b *Tab) SignInWithKey(key, hash string) {
	b.t.Helper()
	b.do("load console", chromedp.Navigate(b.base+"/console/"))
	b.Eval(fmt.Sprintf(`sessionStorage.setItem("trackops.token", %q)`, key))
	b.Open(hash)
	b.WaitVisible("#who .role")
}

// Go moves the open console to hash, as a link would, and waits until the
// page is drawn.
func (b *Tab) Go(hash string) {
	b.t.Helper()
	if Eval[bool](b, fmt.Sprintf(`location.hash === %q`, hash)) {
		return // already there and drawn
	}
	n := Eval[string](b, `document.body.dataset.renders || "0"`)
	b.Eval(fmt.Sprintf(`location.hash = %q`, hash))
	b.WaitFor("render of "+hash, fmt.Sprintf(`(document.body.dataset.renders || "0") !== %q`, n))
}

// Eval runs JavaScript and returns its result decoded as T.
func Eval[T any](b *Tab, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.Shot("failed-eval")
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// Eval runs JavaScript for its effect.
func (b *Tab) Eval(js string) { b.t.Helper(); _ = Eval[any](b, js) }

// WaitVisible waits until an element matching the CSS selector is visible.
func (b *Tab) WaitVisible(sel string) {
	b.t.Helper()
	b.do("wait for "+sel, chromedp.WaitVisible(chromedp.CSS(sel)))
}

// WaitFor waits until the JavaScript expression is truthy.
func (b *Tab) WaitFor(what, js string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	// An expression that throws (the page is between two renders) is not
	// true yet.
	guarded := fmt.Sprintf(`(() => { try { return !!(%s); } catch (e) { return false; } })()`, js)
	if _, err := chromedp.Run(ctx, chromedp.Poll[any](guarded, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		b.Shot("failed-" + what)
		b.t.Fatalf("waiting for %s (%s): %v", what, js, err)
	}
}

// Click clicks the element matching the CSS selector.
func (b *Tab) Click(sel string) {
	b.t.Helper()
	b.do("click "+sel, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// Fill sets a form field's value (clearing what was there).
func (b *Tab) Fill(sel, value string) {
	b.t.Helper()
	b.do("fill "+sel, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.SetValue(chromedp.CSS(sel), value))
}

// Text returns the text of the first element matching sel, as written (not
// as styled: CSS may show it in capitals).
func (b *Tab) Text(sel string) string {
	b.t.Helper()
	return strings.TrimSpace(Eval[string](b, fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, sel)))
}

// Count returns how many elements match sel.
func (b *Tab) Count(sel string) int {
	b.t.Helper()
	return Eval[int](b, fmt.Sprintf(`document.querySelectorAll(%q).length`, sel))
}

// Hash is the page's location hash.
func (b *Tab) Hash() string { b.t.Helper(); return Eval[string](b, `location.hash`) }

// Shot saves a full-page screenshot named after the test and what. They go
// to TRACKOPS_TEST_SCREENSHOTS when set (to look at them), otherwise to a
// temporary folder removed when the tests end.
func (b *Tab) Shot(what string) {
	ctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", what, err)
		return
	}
	name := regexp.MustCompile(`[^A-Za-z0-9._-]+`).ReplaceAllString(b.t.Name()+"-"+what, "_") + ".png"
	path := filepath.Join(screenshotDir(b.t), strings.Trim(name, "_"))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", what, err)
		return
	}
	b.t.Logf("screenshot: %s", path)
}

var (
	shotsOnce sync.Once
	shotsDir  string
	shotsTemp bool
)

func screenshotDir(t *testing.T) string {
	shotsOnce.Do(func() {
		if d := os.Getenv("TRACKOPS_TEST_SCREENSHOTS"); d != "" {
			shotsDir = d
			_ = os.MkdirAll(d, 0o755)
			return
		}
		shotsDir, _ = os.MkdirTemp("", "trackops-console-screenshots-")
		shotsTemp = true
	})
	return shotsDir
}

// removeScreenshots deletes the temporary screenshot folder; TestMain
// calls it.
func removeScreenshots() {
	if shotsTemp && shotsDir != "" {
		_ = os.RemoveAll(shotsDir)
	}
}
