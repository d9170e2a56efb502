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

// pipelineIDFromPath is the id in /ui/pipelines/<id>.
func pipelineIDFromPath(t *testing.T, b *browser) string {
	t.Helper()
	p := Eval[string](b, `location.pathname`)
	id, ok := strings.CutPrefix(p, "/ui/pipelines/")
	if !ok || id == "" || strings.Contains(id, "/") {
		t.Fatalf("not on a pipeline's page: %s", p)
	}
	return id
}

// Creating a pipeline with the form: an invalid step URL comes back from
// the API as a validation error shown at that field (and nothing is
// created); once fixed, the pipeline is saved as typed and its page shows it.
func TestUICreatePipelineWithTheFormShowsAFieldErrorFirst(t *testing.T) {
	rcv := newReceiver(t)
	b := newBrowser(t, shared)
	b.SignIn(testToken)
	b.Click("#nav-pipelines")
	b.WaitPage("pipelines")
	b.Click("#new-pipeline")
	b.WaitPage("pipeline_form")

	name := "ui-form-" + strings.ReplaceAll(t.Name(), "/", "-")
	b.Fill("#f-name", name)
	b.Fill("#f-trigger_type", "conversion")
	b.Fill("#f-steps-0-name", "crm")
	b.Fill("#f-steps-0-url", "ftp://crm.example.com/hook")
	b.Fill("#f-steps-0-headers", "X-Source: webhookd-ui")
	b.Fill("#f-steps-0-body_template", `{"id": "{{conversion.id}}", "amount": "{{conversion.amount}}"}`)
	b.Click("#save-pipeline")
	b.WaitText(`[data-field="steps[0].url"] .field-error`, "http or https")
	if got := Eval[string](b, `document.activeElement.id`); got != "f-steps-0-url" {
		t.Errorf("focus on %q, want the invalid URL's field", got)
	}
	if p := Eval[string](b, `location.pathname`); p != "/ui/pipelines/new" {
		t.Errorf("left the form for %s", p)
	}
	// What was typed is still there.
	if got := Eval[string](b, `document.querySelector('#f-steps-0-headers').value`); got != "X-Source: webhookd-ui" {
		t.Errorf("headers after the error: %q", got)
	}
	b.Screenshot("pipeline-form-error")

	b.Fill("#f-steps-0-url", rcv.URL+"/ui-hook")
	b.Click("#save-pipeline")
	b.WaitPage("pipeline")
	b.WaitText("#pipeline-name", name)
	id := pipelineIDFromPath(t, b)
	t.Cleanup(func() { shared.API(t, "DELETE", "/api/admin/webhooks/pipelines/"+id, nil) })
	b.WaitText("#pipeline-steps", rcv.URL+"/ui-hook")

	code, out := shared.API(t, "GET", "/api/admin/webhooks/pipelines/"+id, nil)
	if code != 200 {
		t.Fatalf("GET the created pipeline: %d %v", code, out)
	}
	p := out["data"].(map[string]any)
	step := p["steps"].([]any)[0].(map[string]any)
	if p["name"] != name || p["trigger_type"] != "conversion" || p["status"] != "active" || step["url"] != rcv.URL+"/ui-hook" ||
		step["name"] != "crm" || step["headers"].(map[string]any)["X-Source"] != "webhookd-ui" ||
		step["body_template"].(map[string]any)["id"] != "{{conversion.id}}" {
		t.Errorf("saved %v", p)
	}
}
