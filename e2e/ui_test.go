package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// The UI's files load without a credential, with the strict CSP; unknown
// UI paths load the app (client routing), unknown files are 404; the API
// behind them still wants the token.
func TestUIServesAssetsWithoutATokenUnderAStrictCSP(t *testing.T) {
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := apiClient.Get("http://" + shared.AdminAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	for _, c := range []struct{ path, ctype, contains string }{
		{"/ui/", "text/html", `<script type="module" src="/ui/js/app.js">`},
		{"/ui/pipelines/pipe_x/edit", "text/html", `<div id="app">`},
		{"/ui/js/app.js", "text/javascript", "export function navigate"},
		{"/ui/css/app.css", "text/css", ".badge"},
	} {
		resp, body := get(c.path)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), c.ctype) || !strings.Contains(body, c.contains) {
			t.Errorf("GET %s: %d %s, body %.100q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: CSP %q", c.path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Referrer-Policy") != "no-referrer" || resp.Header.Get("ETag") == "" {
			t.Errorf("GET %s: headers %v", c.path, resp.Header)
		}
	}
	if resp, _ := get("/ui/js/nope.js"); resp.StatusCode != 404 {
		t.Errorf("unknown asset: %d", resp.StatusCode)
	}
	if resp, _ := get("/api/admin/webhooks/pipelines"); resp.StatusCode != 401 {
		t.Errorf("API without a token: %d", resp.StatusCode)
	}
}

// Sign-in: a wrong token is refused with the API's message; the right one
// opens the dashboard, whose session keeps the token in sessionStorage
// only (not in the URL, not in localStorage); signing out forgets it.
func TestUISignIn(t *testing.T) {
	b := newBrowser(t, shared)
	b.Go("/ui/pipelines")
	b.WaitVisible("#signin-form") // not signed in: the sign-in form, whatever the path
	b.Fill("#token", "wrong-token-0123456789")
	b.Click("#signin-submit")
	b.WaitText("#signin-error", "not valid")
	b.Screenshot("signin")

	b.Fill("#token", testToken)
	b.Click("#signin-submit")
	b.WaitPage("pipelines") // back where it was going
	if loc := Eval[string](b, `location.href`); strings.Contains(loc, testToken) {
		t.Errorf("token in the URL: %s", loc)
	}
	if n := Eval[int](b, `localStorage.length`); n != 0 {
		t.Errorf("localStorage has %d items", n)
	}
	if got := Eval[string](b, `sessionStorage.getItem('webhookd.role')`); got != "admin" {
		t.Errorf("role %q", got)
	}
	b.Click("#sign-out")
	b.WaitVisible("#signin-form")
	if tok := Eval[*string](b, `sessionStorage.getItem('webhookd.token')`); tok != nil {
		t.Errorf("token kept after sign-out")
	}
}
