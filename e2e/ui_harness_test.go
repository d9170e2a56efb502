package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The admin web UI's browser tests drive Debian's chromium, headless,
// against a webhookd dev instance (usually the shared one). A test:
//
//	b := newBrowser(t, shared)
//	b.SignIn(testToken)
//	b.Go("/ui/pipelines")
//	b.WaitPage("pipelines")                 // the page rendered its data
//	b.Do(chromedp.Click(chromedp.CSS("#new-pipeline")))
//	b.WaitText("#pipeline-list", "my-pipe") // polls the DOM, no sleeps
//	b.Screenshot("pipelines")               // only with WEBHOOKD_UI_SCREENSHOTS=dir
//
// Without chromium the tests skip, unless CI is set: then its absence fails
// them (.ci/run and scripts/test-tools.sh install it). Every uncaught
// exception, console.error and browser error other than a failed request
// (the UI shows API errors, and the browser logs their status) — for
// example a Content-Security-Policy violation — fails the test.

// uiWithin bounds one browser step: pages read the API, which reads
// ClickHouse, on a busy machine.
const uiWithin = time.Minute

// chromiumPath finds the browser, or skips (fails under CI) the test.
func chromiumPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("WEBHOOKD_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed, and CI is set: the UI's browser tests must run (apt-get install chromium)")
	}
	t.Skip("chromium is not installed (apt-get install chromium, or set WEBHOOKD_CHROMIUM): skipping the UI's browser test")
	return ""
}

// browser is one headless chromium with one tab, on one webhookd instance.
type browser struct {
	t    testing.TB
	ctx  context.Context // the tab
	base string          // http://<admin address>

	mu       sync.Mutex
	problems []string // console errors, exceptions, CSP violations
}

// newBrowser starts chromium (1280×800) for the test; it is stopped, and
// the console checked, when the test ends.
func newBrowser(t testing.TB, in *instance) *browser {
	t.Helper()
	path := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // the tests may run as root (CI containers)
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 800),
		chromedp.UserDataDir(t.TempDir()),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(alloc)
	b := &browser{t: t, ctx: ctx, base: "http://" + in.AdminAddr}
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.problems {
			t.Errorf("browser console: %s", p)
		}
	})
	// The first Run starts the browser; it takes no timeout of its own (a
	// context deadline would stop the browser with it), so a browser that
	// hangs at launch is stopped by a watchdog instead of holding the
	// package until its time limit. The later steps each have uiWithin.
	watchdog := time.AfterFunc(3*uiWithin, cancelAlloc)
	err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800))
	if !watchdog.Stop() {
		t.Fatalf("start chromium (%s): not started within %v (%v)", path, 3*uiWithin, err)
	}
	if err != nil {
		t.Fatalf("start chromium (%s): %v", path, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			// A request the API refused is logged by the browser
			// (source network): the UI shows those errors itself.
			if m.IsException() || m.Type == chromedp.ConsoleError && m.Source != "network" {
				text := m.Text
				if m.Exception != nil {
					text = (&chromedp.ExceptionError{ExceptionDetails: m.Exception}).Error()
				}
				b.mu.Lock()
				b.problems = append(b.problems, fmt.Sprintf("%s (%s %s:%d)", text, m.Source, m.URL, m.Line))
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// Do runs the steps within uiWithin; a failure ends the test with the
// page's URL and text.
func (b *browser) Do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, uiWithin)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v\n%s", err, b.describe())
	}
}

// describe is the page's location and visible text, for failures.
func (b *browser) describe() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if len(text) > 3000 {
		text = text[:3000] + "…"
	}
	return "page " + loc + ":\n" + text
}

// Eval evaluates a JavaScript expression in the page.
func Eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, uiWithin)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v\n%s", expr, err, b.describe())
	}
	return v
}

// Go loads a UI path ("/ui/pipelines") in the tab.
func (b *browser) Go(path string) {
	b.t.Helper()
	b.Do(chromedp.Navigate(b.base + path))
}

// WaitPage waits until the router rendered page (a module name in
// static/js/pages) with its data: body[data-ready=page].
func (b *browser) WaitPage(page string) {
	b.t.Helper()
	b.WaitVisible(`body[data-ready="` + page + `"]`)
}

// WaitVisible waits until an element matching the CSS selector is visible.
func (b *browser) WaitVisible(css string) {
	b.t.Helper()
	b.Do(chromedp.WaitVisible(chromedp.CSS(css)))
}

// WaitText waits until the text of the element matching css contains want.
func (b *browser) WaitText(css, want string) {
	b.t.Helper()
	b.Do(chromedp.Poll[chromedp.Void](fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.textContent.includes(%q); })()`, css, want),
		chromedp.WithPollingTimeout(uiWithin)))
}

// Text is the visible text of the first element matching css.
func (b *browser) Text(css string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, uiWithin)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(css)))
	if err != nil {
		b.t.Fatalf("text of %s: %v\n%s", css, err, b.describe())
	}
	return s
}

// Click clicks the element matching css once it is visible.
func (b *browser) Click(css string) {
	b.t.Helper()
	b.Do(chromedp.WaitVisible(chromedp.CSS(css)), chromedp.Click(chromedp.CSS(css)))
}

// Fill replaces the value of an input, select or textarea, as typing does
// (input and change events fire).
func (b *browser) Fill(css, value string) {
	b.t.Helper()
	b.Do(chromedp.WaitVisible(chromedp.CSS(css)))
	Eval[chromedp.Void](b, fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.focus(); e.value = %q;
		e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true})); })()`, css, value))
}

// SignIn signs in with token through the sign-in form and waits for the
// dashboard.
func (b *browser) SignIn(token string) {
	b.t.Helper()
	b.Go("/ui/signin")
	b.Do(chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#signin-submit")),
		chromedp.WaitVisible(chromedp.CSS("#sign-out")))
}

// Screenshot saves the viewport as <name>.png in WEBHOOKD_UI_SCREENSHOTS,
// when that is set (README's screenshots come from there).
func (b *browser) Screenshot(name string) {
	b.t.Helper()
	dir := os.Getenv("WEBHOOKD_UI_SCREENSHOTS")
	if dir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, uiWithin)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// uiPath escapes a pipeline id (or any segment) for a UI path.
func uiPath(parts ...string) string {
	return "/ui/" + strings.Join(parts, "/")
}
