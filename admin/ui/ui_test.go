package ui

import (
	"io"
	"io/fs"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
)

func app() *fiber.App {
	a := fiber.New()
	a.Use(Handler)
	a.Use(func(c *fiber.Ctx) error { return c.Status(418).SendString("next") })
	return a
}

func do(t *testing.T, a *fiber.App, method, target string, headers ...string) (int, map[string]string, string) {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := a.Test(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	h := map[string]string{}
	for k := range resp.Header {
		h[k] = resp.Header.Get(k)
	}
	return resp.StatusCode, h, string(body)
}

// The UI's files: index.html for the app's own paths, each file with its
// type, revalidated by ETag, every answer under the CSP; other methods and
// paths go on to the API.
func TestHandlerServesTheUI(t *testing.T) {
	a := app()
	for _, c := range []struct{ target, status, ctype, body string }{
		{"/ui/", "200", "text/html; charset=utf-8", `<div id="app">`},
		{"/ui/pipelines/pipe_1/edit", "200", "text/html; charset=utf-8", `<div id="app">`},
		{"/UI/logs", "200", "text/html; charset=utf-8", `<div id="app">`},
		{"/ui/js/app.js", "200", "text/javascript; charset=utf-8", "export function navigate"},
		{"/ui/js/pages/dashboard.js", "200", "text/javascript; charset=utf-8", "export async function render"},
		{"/ui/css/app.css", "200", "text/css; charset=utf-8", ".badge"},
		{"/ui/favicon.svg", "200", "image/svg+xml", "<svg"},
		{"/ui/js/missing.js", "404", "", "not found"},
	} {
		status, h, body := do(t, a, "GET", c.target)
		if want := c.status; want != strconv.Itoa(status) || c.ctype != "" && h["Content-Type"] != c.ctype || !strings.Contains(body, c.body) {
			t.Errorf("GET %s: %d %q %.80q", c.target, status, h["Content-Type"], body)
		}
		if h["Content-Security-Policy"] != CSP || h["X-Content-Type-Options"] != "nosniff" || h["Referrer-Policy"] != "no-referrer" {
			t.Errorf("GET %s: security headers %v", c.target, h)
		}
	}
	status, h, _ := do(t, a, "GET", "/ui/js/app.js")
	if status != 200 || h["Etag"] == "" || h["Cache-Control"] != "no-cache" {
		t.Fatalf("app.js: %d %v", status, h)
	}
	if status, _, body := do(t, a, "GET", "/ui/js/app.js", "If-None-Match", h["Etag"]); status != 304 || body != "" {
		t.Errorf("revalidation: %d %q", status, body)
	}
	if status, _, body := do(t, a, "HEAD", "/ui/"); status != 200 || body != "" {
		t.Errorf("HEAD: %d %q", status, body)
	}
	if status, h, _ := do(t, a, "GET", "/ui"); status != 301 || h["Location"] != "/ui/" {
		t.Errorf("/ui: %d %v", status, h)
	}
	if status, h, _ := do(t, a, "GET", "/"); status != 302 || h["Location"] != "/ui/" {
		t.Errorf("/: %d %v", status, h)
	}
	for _, c := range [][2]string{{"POST", "/ui/"}, {"GET", "/api/admin/webhooks/pipelines"}, {"GET", "/uix"}, {"DELETE", "/ui/js/app.js"}} {
		if status, _, body := do(t, a, c[0], c[1]); status != 418 || body != "next" {
			t.Errorf("%s %s was not passed on: %d %q", c[0], c[1], status, body)
		}
	}
}

// The UI's code never parses strings as HTML or code, and its HTML has no
// inline script or style: data is text (see dom.js), and the CSP holds.
func TestStaticFilesKeepTheRules(t *testing.T) {
	unsafeJS := regexp.MustCompile(`\.(innerHTML|outerHTML)\s*[+]?=|insertAdjacentHTML|document\.write|\beval\(|new Function\(|setAttribute\(\s*['"]on|\.setAttribute\(\s*['"]style|(from|import\(?|fetch\()\s*['"](https?:)?//`)
	inlineHTML := regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>[^<]|\sstyle=|\son[a-z]+=|https?://`)
	n := 0
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static, p)
		if err != nil {
			return err
		}
		n++
		src := string(b)
		switch {
		case strings.HasSuffix(p, ".js"):
			for i, line := range strings.Split(src, "\n") {
				if strings.HasPrefix(strings.TrimSpace(line), "//") {
					continue
				}
				if m := unsafeJS.FindString(line); m != "" {
					t.Errorf("%s:%d: %q in %s", p, i+1, m, strings.TrimSpace(line))
				}
			}
		case strings.HasSuffix(p, ".html"):
			if m := inlineHTML.FindString(src); m != "" {
				t.Errorf("%s: %q", p, m)
			}
		}
		return nil
	})
	if err != nil || n < 10 {
		t.Fatalf("walked %d files: %v", n, err)
	}
}

// Every answer under /ui carries the CSP, also those the API gives to the
// methods passed on; no path reaches outside the embedded files, however it
// climbs (dot segments, encoded dots, backslashes).
func TestHandlerHeadersAndTraversal(t *testing.T) {
	a := app()
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		if status, h, _ := do(t, a, m, "/ui/js/app.js"); status != 418 || h["Content-Security-Policy"] != CSP || h["X-Frame-Options"] != "DENY" {
			t.Errorf("%s /ui/js/app.js passed on without the headers: %d %v", m, status, h)
		}
	}
	if _, h, _ := do(t, a, "GET", "/uix"); h["Content-Security-Policy"] != "" {
		t.Errorf("/uix is not the UI's, yet got its CSP")
	}
	for _, target := range []string{
		"/ui/../ui.go", "/ui/%2e%2e/ui.go", "/ui/%2E%2E/%2e%2e/etc/passwd", "/ui/..%2fui.go", "/ui/..%5cui.go",
		"/ui/..\\ui.go", "/ui/static/index.html", "/ui/js/../../ui.go", "/ui/./js/%2e%2e/%2e%2e/ui_test.go",
		"/ui/%00.js", "/ui/js/app.js%00.png", "/ui/....//ui.go",
	} {
		status, h, body := do(t, a, "GET", target)
		if strings.Contains(body, "package ui") || strings.Contains(body, "root:") {
			t.Errorf("GET %s served a file outside the UI: %d %.80q", target, status, body)
		}
		if status != 418 && h["Content-Security-Policy"] != CSP {
			t.Errorf("GET %s: %d without the CSP", target, status)
		}
		if status == 200 && !strings.Contains(body, `<div id="app">`) {
			t.Errorf("GET %s: 200 with %.80q", target, body)
		}
	}
}
