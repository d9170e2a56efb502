package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Browser tests of the logs, execution, DLQ and replay pages.

// uiTrig is a trigger id no other test uses.
func uiTrig(prefix string) string {
	return fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())
}

// switchable is a receiver that answers 500 "receiver down" while failing
// is set, else 200 {"received": true}.
func switchable(t *testing.T) (*receiver, *atomic.Bool) {
	rcv := newReceiver(t)
	failing := &atomic.Bool{}
	failing.Store(true)
	rcv.respondWith(func(c captured, w http.ResponseWriter) {
		if failing.Load() {
			w.WriteHeader(500)
			_, _ = w.Write([]byte(`{"error":"receiver down"}`))
			return
		}
		w.WriteHeader(200)
		_, _ = w.Write([]byte(`{"received": true}`))
	})
	return rcv, failing
}

// oneAttemptPipeline: a conversion pipeline whose only step is tried
// once, so a failure is dead at once.
const oneAttemptPipeline = `{"name":%q,"trigger_type":"conversion","steps":[{"order":1,"name":"Partner","url":%q,
  "body_template":{"id":"{{conversion.id}}"},"retry_policy":{"max_attempts":1}}]}`

func produceConversion(t *testing.T, trig string) {
	t.Helper()
	produce(t, "afftok.conversions", trig, `{"type":"conversion.created","data":{"id":"`+trig+`","amount":5,"currency":"USD"}}`)
}

// dlqByTrigger maps trigger id → DLQ item id.
func dlqByTrigger(items []map[string]any) map[string]string {
	out := map[string]string{}
	for _, it := range items {
		out[it["trigger_id"].(string)] = it["id"].(string)
	}
	return out
}

// waitDLQState polls the API until item is listed under state.
func waitDLQState(t *testing.T, in *instance, pipelineID, state, item string) {
	t.Helper()
	for deadline := time.Now().Add(arriveWithin); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) { // the store has no push signal
		code, out := in.API(t, "GET", "/api/admin/webhooks/dlq?state="+state+"&pipeline_id="+pipelineID, nil)
		if code != 200 {
			continue
		}
		for _, it := range out["data"].(map[string]any)["items"].([]any) {
			if it.(map[string]any)["id"] == item {
				return
			}
		}
	}
	t.Fatalf("DLQ item %s is not %s after %v", item, state, arriveWithin)
}

// (1) An event produced through Kafka is found in the logs page (filtered
// by its pipeline), and its row opens the execution with the attempt.
func TestUILogsFindsADeliveryAndOpensItsExecution(t *testing.T) {
	rcv := newReceiver(t)
	var calls atomic.Int32
	rcv.respondWith(func(c captured, w http.ResponseWriter) {
		if calls.Add(1) == 1 {
			w.WriteHeader(503) // the first attempt fails: a retry tier sends the second
			_, _ = w.Write([]byte(`busy`))
			return
		}
		w.WriteHeader(201)
		_, _ = w.Write([]byte(`{"received": true, "crm_id": "crm-42"}`))
	})
	p := createPipeline(t, `{"name":"ui-logs","trigger_type":"conversion","steps":[{"order":1,"name":"Partner","url":"`+rcv.URL+`/crm?k={{conversion.id}}",
	  "body_template":{"id":"{{conversion.id}}"},"retry_policy":{"max_attempts":3}}]}`)
	id := p["id"].(string)
	trig := uiTrig("conv_uilogs")
	produceConversion(t, trig)
	rcv.next(t)
	rcv.next(t)
	execID := waitExecution(t, id, trig)["id"].(string)
	// The execution with every attempt, as the API documents it.
	code, out := api(t, "GET", "/api/admin/webhooks/logs/executions/"+execID, nil)
	if code != 200 || len(out["data"].(map[string]any)["attempts"].([]any)) != 2 {
		t.Fatalf("GET the execution: %d %v", code, out)
	}
	if code, out := api(t, "GET", "/api/admin/webhooks/logs/executions/exec_nope", nil); code != 404 {
		t.Fatalf("GET an unknown execution: %d %v", code, out)
	}

	b := newBrowser(t, shared)
	b.SignIn(testToken)
	b.Go("/ui/logs?pipeline_id=" + id)
	b.WaitPage("logs")
	b.WaitText("#logs-table", trig)
	b.WaitText("#log-"+execID, "completed")
	b.WaitText("#log-"+execID, "2 attempts · last HTTP 201")
	b.Screenshot("logs")

	// The failures view of the same pipeline is empty, and says so.
	b.Click("#tab-failures")
	b.WaitPage("logs")
	b.WaitText("#logs-body", "No failed, partial or retrying execution matches")
	if q := Eval[string](b, `location.search`); !strings.Contains(q, "view=failures") || !strings.Contains(q, "pipeline_id="+id) {
		t.Errorf("failures view's URL query %q", q)
	}
	b.Click("#tab-recent")
	b.WaitPage("logs")
	// Filters go into the URL's query; a status with no execution says so.
	b.Fill("#filter-status", "failed")
	b.Click("#filter-apply")
	b.WaitPage("logs")
	b.WaitText("#logs-body", "No execution matches these filters")
	if q := Eval[string](b, `location.search`); !strings.Contains(q, "status=failed") {
		t.Errorf("status filter's URL query %q", q)
	}
	// A bad query is answered with the API's message and the field.
	b.Go("/ui/logs?page=0")
	b.WaitPage("logs")
	b.WaitText("#logs-error", "validation_failed")
	b.WaitText("#logs-error", "page: must be a whole number")
	b.Go("/ui/logs?pipeline_id=" + id)
	b.WaitPage("logs")

	b.Click("#exec-" + execID)
	b.WaitPage("execution")
	b.WaitText("#execution-status", "completed")
	b.WaitText("#step-1", "Partner")
	// Every attempt: the first (503) and the retry from a tier (201), each
	// with its request URL and bodies.
	b.WaitText("#attempt-1", "attempt 1")
	b.WaitText("#attempt-1-route", "first attempt")
	b.WaitText("#attempt-1-http", "503")
	b.WaitText("#attempt-1-body", "busy")
	b.WaitText("#attempt-1-url", rcv.URL+"/crm?k="+trig)
	b.WaitText("#attempt-1-request", `"id":"`+trig+`"`)
	b.WaitText("#attempt-2", "attempt 2")
	b.WaitText("#attempt-2-route", "retry tier")
	b.WaitText("#attempt-2-http", "201")
	b.WaitText("#attempt-2-body", `"crm_id": "crm-42"`)
	if tag := Eval[string](b, `document.querySelector('#attempt-2-body').tagName`); tag != "PRE" {
		t.Errorf("response body in a %s, want PRE", tag)
	}
	if n := Eval[int](b, `document.querySelectorAll('#execution-attempts .attempt').length`); n != 2 {
		t.Errorf("%d attempts shown, want 2", n)
	}
	b.Screenshot("execution")

	// Live: the list reads itself again; a new delivery shows up without
	// a reload.
	b.Go("/ui/logs?live=1&pipeline_id=" + id)
	b.WaitPage("logs")
	if !Eval[bool](b, `document.querySelector('#logs-live').checked`) {
		t.Error("live is not checked")
	}
	Eval[bool](b, `(window.__samePage = true)`)
	trig2 := uiTrig("conv_uilogs_live")
	produceConversion(t, trig2)
	rcv.next(t)
	b.WaitText("#logs-table", trig2)
	if !Eval[bool](b, `window.__samePage === true`) {
		t.Error("the page was reloaded")
	}
}

// (2) A pipeline whose receiver fails leaves DLQ items; the DLQ page shows
// them with their details, retries one (the receiver now succeeds: the
// delivery arrives and the item is retried) and deletes another once the
// confirmation is accepted (a cancelled one changes nothing).
func TestUIDLQRetryAndDeleteItems(t *testing.T) {
	rcv, failing := switchable(t)
	p := createPipeline(t, fmt.Sprintf(oneAttemptPipeline, "ui-dlq", rcv.URL+"/partner"))
	id := p["id"].(string)
	trigA, trigB := uiTrig("conv_uidlq_a"), uiTrig("conv_uidlq_b")
	produceConversion(t, trigA)
	produceConversion(t, trigB)
	rcv.next(t)
	rcv.next(t)
	items := dlqByTrigger(dlqItems(t, "/api/admin/webhooks/dlq", id, 2))
	a, bItem := items[trigA], items[trigB]
	failing.Store(false)

	b := newBrowser(t, shared)
	b.SignIn(testToken)
	b.Go("/ui/dlq?pipeline_id=" + id)
	b.WaitPage("dlq")
	b.WaitText("#dlq-table", trigA)
	b.WaitText("#dlq-table", trigB)
	b.WaitText("#dlq-row-"+a, "retries_exhausted")
	b.Click("#details-" + a)
	b.WaitVisible("#dlq-detail-" + a)
	b.WaitText("#dlq-detail-"+a, trigA) // the payload, as text
	b.WaitText("#dlq-error-"+a, "500")
	b.Screenshot("dlq")

	b.Click("#retry-" + a)
	b.WaitText("#dlq-row-"+a+" .dlq-state", "retried")
	if got := rcv.next(t); !strings.Contains(string(got.Body), trigA) {
		t.Fatalf("the retried delivery's body %s", got.Body)
	}
	if Eval[bool](b, `!document.querySelector('#retry-`+a+`').disabled`) {
		t.Error("retry still enabled on a retried item")
	}

	b.Click("#delete-" + bItem)
	b.Click("#modal-cancel")
	if got := Eval[string](b, `document.querySelector('#dlq-row-`+bItem+`').dataset.state`); got != "dead" {
		t.Errorf("cancelled delete: state %q", got)
	}
	b.Click("#delete-" + bItem)
	b.WaitText(".modal", bItem)
	b.Click("#modal-confirm")
	b.WaitText("#dlq-row-"+bItem+" .dlq-state", "deleted")

	// The API agrees, and the page's state filter shows them there.
	waitDLQState(t, shared, id, "retried", a)
	waitDLQState(t, shared, id, "deleted", bItem)
	b.Go("/ui/dlq?state=retried&pipeline_id=" + id)
	b.WaitPage("dlq")
	b.WaitText("#dlq-table", trigA)
	if Eval[bool](b, `!document.querySelector('#retry-`+a+`').disabled`) {
		t.Error("retry enabled on an item listed as retried")
	}
	b.Go("/ui/dlq?pipeline_id=" + id)
	b.WaitPage("dlq")
	b.WaitText("#dlq-table", "No dead item matches these filters")
	rcv.noneSoFar(t)
}

// (3) Bulk redrive from the DLQ page: the job's progress is polled until
// done, with every item retried and delivered.
func TestUIDLQBulkRedriveShowsProgressUntilDone(t *testing.T) {
	rcv, failing := switchable(t)
	p := createPipeline(t, fmt.Sprintf(oneAttemptPipeline, "ui-redrive", rcv.URL+"/partner"))
	id := p["id"].(string)
	trigs := []string{uiTrig("conv_uirdr_a"), uiTrig("conv_uirdr_b"), uiTrig("conv_uirdr_c")}
	for _, tr := range trigs {
		produceConversion(t, tr)
	}
	for range trigs {
		rcv.next(t)
	}
	dlqItems(t, "/api/admin/webhooks/dlq", id, 3)
	failing.Store(false)

	b := newBrowser(t, shared)
	b.SignIn(testToken)
	b.Go("/ui/dlq?pipeline_id=" + id)
	b.WaitPage("dlq")
	for _, tr := range trigs {
		b.WaitText("#dlq-table", tr)
	}
	if got := Eval[string](b, `document.querySelector('#redrive-pipeline').value`); got != id {
		t.Fatalf("redrive form's pipeline %q, want the filter's %s", got, id)
	}
	// A bad rate is shown at its field.
	b.Fill("#redrive-rate", "5000")
	b.Click("#redrive-submit")
	b.Click("#modal-confirm")
	b.WaitText(`.field[data-field="rate_per_second"] .field-error`, "between 0.01 and 1000")
	b.Fill("#redrive-rate", "20")
	b.Click("#redrive-submit")
	b.WaitText(".modal", "Retry up to 1,000 dead items of pipeline "+id)
	b.Click("#modal-confirm")
	b.WaitVisible("#redrive-progress") // the page again, watching the job
	b.WaitPage("dlq")
	if q := Eval[string](b, `location.search`); !strings.Contains(q, "redrive=rdr_") {
		t.Fatalf("the job is not in the URL: %q", q)
	}
	b.WaitText("#redrive-state", "done")
	b.WaitText("#redrive-retried", "3")
	b.WaitText("#redrive-progress", "3 of 3 (100%)")
	if v := Eval[float64](b, `document.querySelector('#redrive-bar').value`); v != 3 {
		t.Errorf("progress bar at %v", v)
	}
	b.Screenshot("dlq-redrive")
	got := map[string]bool{}
	for range trigs {
		c := rcv.next(t)
		for _, tr := range trigs {
			if strings.Contains(string(c.Body), tr) {
				got[tr] = true
			}
		}
	}
	if len(got) != 3 {
		t.Fatalf("redriven deliveries %v", got)
	}
	rcv.noneSoFar(t)
}

// (4) A replay by time window started from the page (a field error first),
// watched until done: the window's event is delivered again to the chosen
// pipeline with X-Afftok-Replay.
func TestUIReplayByTimeWindowReachesDone(t *testing.T) {
	rcv := newReceiver(t)
	p := createPipeline(t, `{"name":"ui-replay","trigger_type":"postback","steps":[{"order":1,"url":"`+rcv.URL+`/pb","body_template":{"id":"{{postback.id}}"}}]}`)
	id := p["id"].(string)
	trig := uiTrig("pb_uireplay")
	from := time.Now().UTC().Add(-time.Millisecond)
	produce(t, "afftok.postbacks", trig, `{"type":"postback.received","data":{"id":"`+trig+`","status":"approved"}}`)
	orig := rcv.next(t)
	waitExecution(t, id, trig)
	to := time.Now().UTC()
	const layout = "2006-01-02T15:04:05.000"

	b := newBrowser(t, shared)
	b.SignIn(testToken)
	b.Go("/ui/replay")
	b.WaitPage("replay")
	b.WaitText("#replay-recent", "No replay started in this tab yet")
	b.Fill("#replay-from", from.Format(layout))
	b.Fill("#replay-to", to.Format(layout))
	b.Fill("#replay-trigger", "postback")
	b.Fill("#replay-pipelines", "pipe_does_not_exist")
	b.Click("#replay-submit")
	b.WaitText(`.field[data-field="pipeline_ids"] .field-error`, "pipe_does_not_exist: no such pipeline")
	b.WaitText("#replay-form-error", "validation_failed")
	b.Screenshot("replay-form")

	b.Fill("#replay-pipelines", id)
	b.Click("#replay-submit")
	b.WaitPage("replay")
	b.WaitVisible("#replay-progress")
	b.WaitText("#replay-state", "done")
	b.WaitVisible("#replay-settled")
	b.WaitText("#replay-queued", "1")
	b.WaitText("#replay-delivered", "1")
	b.WaitText("#replay-progress", "1 of 1 (100%)")
	b.Screenshot("replay")
	replayID := strings.TrimPrefix(Eval[string](b, `location.pathname`), "/ui/replay/")
	if !strings.HasPrefix(replayID, "rpl_") {
		t.Fatalf("replay page %q", replayID)
	}
	again := rcv.next(t)
	if again.Header.Get("X-Afftok-Replay") != replayID || again.Header.Get("X-Afftok-Delivery-ID") != orig.Header.Get("X-Afftok-Delivery-ID") {
		t.Fatalf("replayed request: replay %q delivery %q, want %s %s", again.Header.Get("X-Afftok-Replay"), again.Header.Get("X-Afftok-Delivery-ID"), replayID, orig.Header.Get("X-Afftok-Delivery-ID"))
	}
	// The tab remembers it.
	b.Go("/ui/replay")
	b.WaitPage("replay")
	b.WaitText("#replay-recent", replayID)
	b.WaitText("#replay-recent", "done")
	rcv.noneSoFar(t)
}

// (5) A receiver's response body with markup in it is shown as text on the
// execution page: nothing runs, no element is made of it, no CSP
// violation or console error (the harness fails the test on one).
func TestUIXSSResponseBodyIsShownAsText(t *testing.T) {
	const hostile = `<script>window.__xss=1</script><img src=x onerror="window.__xss=2">`
	rcv := newReceiver(t)
	rcv.respondWith(func(c captured, w http.ResponseWriter) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(200)
		_, _ = w.Write([]byte(hostile))
	})
	p := createPipeline(t, `{"name":"ui-xss <b>bold</b>","trigger_type":"click","steps":[{"order":1,"name":"<img src=x onerror=\"window.__xss=3\">","url":"`+rcv.URL+`/x"}]}`)
	id := p["id"].(string)
	trig := uiTrig("clk_uixss")
	produce(t, "afftok.clicks", trig, `{"type":"click.tracked","data":{"id":"`+trig+`"}}`)
	rcv.next(t)
	execID := waitExecution(t, id, trig)["id"].(string)

	b := newBrowser(t, shared)
	b.SignIn(testToken)
	b.Go("/ui/logs?pipeline_id=" + id)
	b.WaitPage("logs")
	Eval[bool](b, `(window.__csp = [], document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI)), true)`)
	b.WaitText("#logs-table", "ui-xss <b>bold</b>")
	b.Click("#exec-" + execID) // in-app: the same window, listener kept
	b.WaitPage("execution")
	b.WaitText("#attempt-1-body", hostile)
	b.WaitText("#step-1", `<img src=x onerror="window.__xss=3">`)
	b.WaitText("#attempt-1", `<img src=x onerror="window.__xss=3">`)
	if got := Eval[string](b, `typeof window.__xss`); got != "undefined" {
		t.Errorf("window.__xss is %s: the body ran", got)
	}
	if n := Eval[int](b, `document.querySelectorAll('#content script, #content img, #content b').length`); n != 0 {
		t.Errorf("%d elements made of the response body or names", n)
	}
	if got := Eval[string](b, `document.querySelector('#attempt-1-body').textContent`); got != hostile {
		t.Errorf("body shown as %q", got)
	}
	if v := Eval[[]string](b, `window.__csp`); len(v) != 0 {
		t.Errorf("CSP violations: %v", v)
	}
	b.Screenshot("execution-xss")
}

// (6) A read token sees the DLQ, its items and their details, but retry,
// delete and bulk redrive are disabled.
func TestUIDLQReadTokenCannotRetryOrDelete(t *testing.T) {
	const readTok = "ui-dlq-read-token-0123456789"
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte(readTok+" read\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in := startInstance(t, "dev", merge(sharedEnv, ownTopics("uidlqro."), map[string]string{"WEBHOOKD_ADMIN_TOKENS_FILE": file}))
	rcv, _ := switchable(t)
	p := in.CreatePipeline(t, fmt.Sprintf(oneAttemptPipeline, "ui-dlq-read", rcv.URL+"/partner"))
	id := p["id"].(string)
	produceAt(t, "uidlqro.events", "ro1", time.Now())
	rcv.next(t)
	item := in.DLQItems(t, "/api/admin/webhooks/dlq", id, 1)[0]["id"].(string)

	b := newBrowser(t, in)
	b.SignIn(readTok)
	b.WaitText("#session-role", "read-only")
	b.Go("/ui/dlq?pipeline_id=" + id)
	b.WaitPage("dlq")
	b.WaitText("#dlq-table", "conv_ro1")
	for _, sel := range []string{"#retry-" + item, "#delete-" + item, "#redrive-submit"} {
		if !Eval[bool](b, `document.querySelector('`+sel+`').disabled`) {
			t.Errorf("%s is enabled for a read token", sel)
		}
	}
	b.Click("#details-" + item) // reading is allowed
	b.WaitText("#dlq-detail-"+item, "conv_ro1")
	b.Screenshot("dlq-read-only")
	waitDLQState(t, in, id, "dead", item) // still dead
}

// A slow bulk redrive is cancelled from its progress card (after a
// confirmation): the job ends cancelled and the items it did not reach
// stay dead.
func TestUIDLQBulkRedriveCanBeCancelled(t *testing.T) {
	rcv, failing := switchable(t)
	p := createPipeline(t, fmt.Sprintf(oneAttemptPipeline, "ui-redrive-cancel", rcv.URL+"/partner"))
	id := p["id"].(string)
	trigs := []string{uiTrig("conv_uicnc_a"), uiTrig("conv_uicnc_b")}
	for _, tr := range trigs {
		produceConversion(t, tr)
	}
	for range trigs {
		rcv.next(t)
	}
	items := dlqByTrigger(dlqItems(t, "/api/admin/webhooks/dlq", id, 2))
	failing.Store(false)

	b := newBrowser(t, shared)
	b.SignIn(testToken)
	b.Go("/ui/dlq?pipeline_id=" + id)
	b.WaitPage("dlq")
	b.Fill("#redrive-rate", "0.01") // one item per 100 s
	b.Click("#redrive-submit")
	b.Click("#modal-confirm")
	b.WaitVisible("#redrive-progress")
	b.WaitText("#redrive-state", "running")

	// The page polls the running job, and stops when the user leaves it.
	watching := Eval[string](b, `location.pathname + location.search`)
	Eval[bool](b, `(() => { window.__polls = 0; const f = window.fetch;
		window.fetch = (u, ...a) => { if (String(u).includes('/dlq/redrive/')) window.__polls++; return f(u, ...a); }; return true; })()`)
	b.Do(chromedp.Poll[chromedp.Void](`window.__polls >= 2`, chromedp.WithPollingTimeout(uiWithin)))
	b.Click("#nav-logs")
	b.WaitPage("logs")
	left := Eval[int](b, `window.__polls`)
	// Nothing must happen: a short, bounded wait (3 poll intervals).
	Eval[bool](b, `(setTimeout(() => { window.__quiet = true; }, 3000), true)`)
	b.Do(chromedp.Poll[chromedp.Void](`window.__quiet === true`, chromedp.WithPollingTimeout(uiWithin)))
	if n := Eval[int](b, `window.__polls`); n != left {
		t.Errorf("the job was polled %d more times after leaving its page", n-left)
	}
	b.Go(watching)
	b.WaitPage("dlq")
	b.WaitText("#redrive-state", "running")
	b.Click("#redrive-cancel")
	b.WaitText(".modal", "Cancel redrive")
	b.Click("#modal-confirm")
	b.WaitText("#redrive-state", "cancelled")
	b.WaitVisible("#redrive-dismiss")
	if Eval[bool](b, `(() => { const c = document.querySelector('#redrive-cancel'); return !!c && !c.hidden; })()`) {
		t.Error("cancel still offered on a cancelled job")
	}
	retried := Eval[string](b, `document.querySelector('#redrive-retried').textContent`)
	if retried != "0" && retried != "1" {
		t.Fatalf("retried %q of 2 at 0.01 per second", retried)
	}
	// At least one item was not reached: still dead.
	dead := 0
	for _, item := range items {
		code, out := api(t, "GET", "/api/admin/webhooks/dlq?pipeline_id="+id, nil)
		if code != 200 {
			t.Fatalf("dlq: %d", code)
		}
		for _, it := range out["data"].(map[string]any)["items"].([]any) {
			if it.(map[string]any)["id"] == item {
				dead++
			}
		}
	}
	if dead == 0 {
		t.Fatal("every item left the DLQ although the redrive was cancelled")
	}
	b.Click("#redrive-dismiss")
	b.WaitPage("dlq")
	if q := Eval[string](b, `location.search`); strings.Contains(q, "redrive=") {
		t.Errorf("dismissed job still in the URL: %q", q)
	}
}
