package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
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

	// A token that stops being valid (rotated away): the next API call's
	// 401 brings the sign-in form back, saying why.
	b.SignIn(testToken)
	// The token is swapped on a page that runs no script (a static file of
	// the same origin shares the tab's sessionStorage): a request the
	// signed-in page still had in flight would otherwise meet the 401 first
	// and sign out before the page under test loads.
	b.Go("/ui/favicon.svg")
	Eval[chromedp.Void](b, `sessionStorage.setItem('webhookd.token', 'rotated-away-0123456789')`)
	b.Go("/ui/pipelines")
	b.WaitVisible("#signin-form")
	b.WaitText("#signin-form", "Your session ended")
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

// A pipeline's page: found in the list by its filters, its steps shown;
// tested on sample data (each step's request and response shown, the
// receiver's answer as text); paused, resumed and disabled; renamed in
// JSON mode; deleted after a confirmation.
func TestUIPipelineDetailActions(t *testing.T) {
	rcv := newReceiver(t)
	rcv.respondWith(func(c captured, w http.ResponseWriter) {
		w.WriteHeader(201)
		_, _ = w.Write([]byte(`{"ok":true,"note":"<b>bold</b>"}`))
	})
	p := shared.CreatePipeline(t, `{"name":"ui-actions","trigger_type":"postback","steps":[
		{"name":"notify","order":1,"url":"`+rcv.URL+`/notify","headers":{"X-Test":"yes"},"body_template":{"pb":"{{postback.id}}"}},
		{"name":"audit","order":2,"url":"`+rcv.URL+`/audit","method":"PUT"}]}`)
	id := p["id"].(string)

	b := newBrowser(t, shared)
	b.SignIn(testToken)
	b.Go("/ui/pipelines?trigger_type=postback&pipeline_id=" + id)
	b.WaitPage("pipelines")
	if got := Eval[int](b, `document.querySelectorAll('#pipeline-list tbody tr').length`); got != 1 {
		t.Fatalf("%d rows for one pipeline id", got)
	}
	b.WaitText("#pipeline-list", "ui-actions")
	b.Click(`#pipeline-list a[href="/ui/pipelines/` + id + `"]`)
	b.WaitPage("pipeline")
	b.WaitText("#pipeline-steps", rcv.URL+"/notify")
	b.WaitText("#pipeline-steps", "PUT "+rcv.URL+"/audit")

	// Test on sample data.
	b.Click("#test-pipeline")
	b.WaitPage("pipeline_test")
	b.Fill("#test-data", `{"postback": {"id": "pb_ui_1"}}`)
	b.Click("#run-test")
	b.WaitText("#test-status", "completed")
	if n := Eval[int](b, `document.querySelectorAll('.step-result').length`); n != 2 {
		t.Errorf("%d step results, want 2", n)
	}
	b.WaitText(`.step-result[data-order="1"] .request-line`, "POST "+rcv.URL+"/notify")
	b.WaitText(`.step-result[data-order="1"] .request-body`, "pb_ui_1")
	b.WaitText(`.step-result[data-order="1"] .response-body`, `"note":"<b>bold</b>"`)
	if n := Eval[int](b, `document.querySelectorAll('#test-result b').length`); n != 0 {
		t.Errorf("the receiver's HTML became %d elements", n)
	}
	b.Screenshot("pipeline-test")
	for range 2 {
		if c := rcv.next(t); !strings.Contains(c.Path, "/notify") && !strings.Contains(c.Path, "/audit") {
			t.Errorf("test call to %s", c.Path)
		}
	}

	// Pause, resume, disable: the API says so after each click.
	status := func() string {
		_, out := shared.API(t, "GET", "/api/admin/webhooks/pipelines/"+id, nil)
		return out["data"].(map[string]any)["status"].(string)
	}
	b.Go(uiPath("pipelines", id))
	b.WaitPage("pipeline")
	b.Click("#pause-pipeline")
	b.WaitText("#pipeline-status", "paused")
	if s := status(); s != "paused" {
		t.Errorf("after Pause: %s", s)
	}
	b.Click("#resume-pipeline")
	b.WaitText("#pipeline-status", "active")
	b.Click("#disable-pipeline")
	b.WaitText("#pipeline-status", "disabled")
	if s := status(); s != "disabled" {
		t.Errorf("after Disable: %s", s)
	}

	// Rename in JSON mode.
	b.Click("#edit-pipeline")
	b.WaitPage("pipeline_form")
	b.Click("#tab-json")
	b.WaitVisible("#pipeline-json")
	doc := Eval[string](b, `document.querySelector('#pipeline-json').value`)
	if !strings.Contains(doc, `"name": "ui-actions"`) || strings.Contains(doc, `"stats"`) {
		t.Fatalf("JSON mode shows %s", doc)
	}
	b.Fill("#pipeline-json", strings.Replace(doc, `"name": "ui-actions"`, `"name": "ui-actions-renamed"`, 1))
	b.Click("#save-pipeline")
	b.WaitPage("pipeline")
	b.WaitText("#pipeline-name", "ui-actions-renamed")

	// Delete: Cancel keeps it, confirming deletes it.
	b.Click("#delete-pipeline")
	b.Click("#modal-cancel")
	if code, _ := shared.API(t, "GET", "/api/admin/webhooks/pipelines/"+id, nil); code != 200 {
		t.Fatalf("cancelled delete: GET %d", code)
	}
	b.Click("#delete-pipeline")
	b.Click("#modal-confirm")
	b.WaitPage("pipelines")
	if code, _ := shared.API(t, "GET", "/api/admin/webhooks/pipelines/"+id, nil); code != 404 {
		t.Errorf("after delete: GET %d", code)
	}
}

// The dashboard shows what the stats API says: executions, success rate
// and latency charts, queue depths, the top errors and disabled pipelines.
// It also makes the README's screenshots of the main pages, with data.
func TestUIDashboard(t *testing.T) {
	ok, bad := newReceiver(t), newReceiver(t)
	bad.respondWith(func(c captured, w http.ResponseWriter) {
		w.WriteHeader(503)
		_, _ = w.Write([]byte(`{"error":"partner API overloaded"}`))
	})
	good := shared.CreatePipeline(t, `{"name":"crm-conversions","description":"Conversions to the CRM","trigger_type":"conversion","steps":[
		{"name":"crm","order":1,"url":"`+ok.URL+`/crm","body_template":{"id":"{{conversion.id}}","amount":"{{conversion.amount}}"}},
		{"name":"slack","order":2,"url":"`+ok.URL+`/slack"}]}`)
	failing := shared.CreatePipeline(t, `{"name":"partner-postback","trigger_type":"conversion","steps":[
		{"name":"partner","order":1,"url":"`+bad.URL+`/partner","retry_policy":{"max_attempts":1}}]}`)
	shared.CreatePipeline(t, `{"name":"legacy-export","trigger_type":"click","status":"disabled","steps":[{"order":1,"url":"`+ok.URL+`/legacy"}]}`)
	const n = 6
	for i := range n {
		id := fmt.Sprintf("conv_ui_dash_%d", i)
		produce(t, "afftok.conversions", id, `{"type":"conversion.created","data":{"id":"`+id+`","amount":49.99,"currency":"USD"}}`)
	}
	last := fmt.Sprintf("conv_ui_dash_%d", n-1)
	shared.WaitExecution(t, good["id"].(string), last)
	if ex := shared.WaitExecution(t, failing["id"].(string), last); ex["status"] != "failed" {
		t.Fatalf("failing pipeline's execution: %v", ex)
	}
	// The page reads the per-minute aggregates: wait until they have it all.
	var stats map[string]any
	for deadline := time.Now().Add(arriveWithin); ; time.Sleep(100 * time.Millisecond) {
		_, out := shared.API(t, "GET", "/api/admin/webhooks/stats?pipeline_id="+failing["id"].(string), nil)
		stats = out["data"].(map[string]any)
		if len(stats["top_errors"].([]any)) > 0 && stats["summary"].(map[string]any)["total_executions_today"].(float64) >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never counted the failures: %v", stats)
		}
	}
	topError := stats["top_errors"].([]any)[0].(map[string]any)["error"].(string)

	b := newBrowser(t, shared)
	b.SignIn(testToken)
	b.Go("/ui/?range=1h")
	b.WaitPage("dashboard")
	executions, _ := strconv.Atoi(strings.ReplaceAll(b.Text("#stat-executions .stat-value"), ",", ""))
	if executions < 2*n {
		t.Errorf("dashboard shows %d executions, want at least %d", executions, 2*n)
	}
	if got := b.Text("#stat-success .stat-value"); !strings.HasSuffix(got, "%") || got == "100.0%" {
		t.Errorf("success rate %q (half of these failed)", got)
	}
	// Each chart drew its lines from the buckets.
	if paths := Eval[int](b, `[...document.querySelectorAll('.chart path.series')].filter(p => /L/.test(p.getAttribute('d'))).length`); paths < 3 {
		t.Errorf("%d chart lines with data", paths)
	}
	b.WaitText("#top-errors", topError[:min(len(topError), 30)])
	b.WaitText("#auto-disabled", "legacy-export")
	b.WaitText("#queues", "Dead letters")
	b.Screenshot("dashboard")

	// The README's pipelines pages, with these pipelines' stats.
	b.Go("/ui/pipelines?range=1h")
	b.WaitPage("pipelines")
	b.WaitText("#pipeline-list", "crm-conversions")
	b.Screenshot("pipelines")

	// Filters go into the URL and narrow the list.
	b.Fill("#filter-status", "disabled")
	b.WaitText("#pipeline-list", "legacy-export")
	if n := Eval[int](b, `[...document.querySelectorAll('#pipeline-list tbody .badge')].filter(e => e.textContent !== 'disabled').length`); n != 0 {
		t.Errorf("%d pipelines that are not disabled under status=disabled", n)
	}
	if q := Eval[string](b, `location.search`); !strings.Contains(q, "status=disabled") {
		t.Errorf("status filter not in the URL: %s", q)
	}

	// Pagination: two a page, Next shows the rest.
	b.Go("/ui/pipelines?limit=2")
	b.WaitPage("pipelines")
	if rows := Eval[int](b, `document.querySelectorAll('#pipeline-list tbody tr').length`); rows != 2 {
		t.Errorf("page 1 of limit 2 has %d rows", rows)
	}
	first := b.Text("#pipeline-list tbody")
	b.WaitText(".pager-info", "Page 1 of ")
	b.Click(".pager button:last-child")
	b.WaitText(".pager-info", "Page 2 of ")
	b.WaitPage("pipelines")
	if rows := Eval[int](b, `document.querySelectorAll('#pipeline-list tbody tr').length`); rows < 1 || b.Text("#pipeline-list tbody") == first {
		t.Errorf("page 2: %d rows, same as page 1: %v", rows, b.Text("#pipeline-list tbody") == first)
	}
	if q := Eval[string](b, `location.search`); !strings.Contains(q, "page=2") || !strings.Contains(q, "limit=2") {
		t.Errorf("page 2's URL: %s", q)
	}
	b.Go(uiPath("pipelines", good["id"].(string)) + "?range=1h")
	b.WaitPage("pipeline")
	b.WaitText("#pipeline-steps", ok.URL+"/slack")
	b.WaitText("#pipeline-recent", last) // its latest execution, with a link to it
	b.Screenshot("pipeline")
}

// A read token signs in, sees the pipelines, and every action that would
// change something is disabled (the API would answer 403 anyway).
func TestUIReadTokenChangesNothing(t *testing.T) {
	const readTok = "ui-read-token-0123456789"
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte(readTok+" read\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in := startInstance(t, "dev", merge(ownTopics("uiread."), map[string]string{"WEBHOOKD_ADMIN_TOKENS_FILE": file}))
	rcv := newReceiver(t)
	p := in.CreatePipeline(t, `{"name":"ui-read-only","trigger_type":"click","steps":[{"order":1,"url":"`+rcv.URL+`/x"}]}`)

	b := newBrowser(t, in)
	b.SignIn(readTok)
	b.WaitText("#session-role", "read-only")
	b.Go("/ui/pipelines")
	b.WaitPage("pipelines")
	b.WaitText("#pipeline-list", "ui-read-only")
	if !Eval[bool](b, `document.querySelector('#new-pipeline').disabled`) {
		t.Error("New pipeline is enabled for a read token")
	}
	b.Go(uiPath("pipelines", p["id"].(string)))
	b.WaitPage("pipeline")
	for _, id := range []string{"#edit-pipeline", "#test-pipeline", "#pause-pipeline", "#disable-pipeline", "#delete-pipeline"} {
		if !Eval[bool](b, `document.querySelector('`+id+`').disabled`) {
			t.Errorf("%s is enabled for a read token", id)
		}
	}
}

// A standard-mode step saved without a key gets one generated: the form
// shows it once, and the pipeline's page (like GET) never shows it again.
func TestUIGeneratedSigningKeyIsShownOnce(t *testing.T) {
	rcv := newReceiver(t)
	b := newBrowser(t, shared)
	b.SignIn(testToken)
	b.Go("/ui/pipelines/new")
	b.WaitPage("pipeline_form")
	b.Fill("#f-name", "ui-standard-signing")
	b.Fill("#f-trigger_type", "click")
	b.Fill("#f-steps-0-url", rcv.URL+"/signed")
	b.Fill("#f-steps-0-signature_mode", "standard")
	b.Click("#save-pipeline")
	b.WaitText("#generated-keys", "whsec_")
	key := strings.TrimSpace(b.Text("#generated-keys .generated-key pre"))
	if !strings.HasPrefix(key, "whsec_") {
		t.Fatalf("generated key %q", key)
	}
	b.Click(`#generated-keys a[href^="/ui/pipelines/"]`)
	b.WaitPage("pipeline")
	id := pipelineIDFromPath(t, b)
	t.Cleanup(func() { shared.API(t, "DELETE", "/api/admin/webhooks/pipelines/"+id, nil) })
	b.WaitText("#pipeline-steps", "standard")
	if html := Eval[string](b, `document.body.textContent`); strings.Contains(html, key) || strings.Contains(html, "whsec_") {
		t.Error("the pipeline's page shows the signing key")
	}
}
