package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/signing/signingtest"
)

var verifyHMAC = signingtest.VerifyHMAC

const apiReferenceCreate = `{
  "name": "Conversion Notifications",
  "description": "Notify external system of conversions",
  "trigger_type": "conversion",
  "status": "active",
  "steps": [
    {
      "name": "Send to CRM",
      "order": 1,
      "url": "RECEIVER/webhooks/afftok",
      "method": "POST",
      "headers": {
        "Content-Type": "application/json",
        "X-API-Key": "{{env.CRM_API_KEY}}"
      },
      "body_template": {
        "event": "{{trigger_type}}",
        "conversion_id": "{{conversion.id}}",
        "amount": "{{conversion.amount}}",
        "user_id": "{{conversion.user_id}}"
      },
      "timeout_seconds": 30,
      "retry_policy": {
        "max_attempts": 5,
        "backoff_type": "exponential",
        "initial_delay_seconds": 5
      },
      "signature_mode": "hmac",
      "signing_key": "{{env.WEBHOOK_SECRET}}"
    }
  ],
  "failover_url": "RECEIVER/backup"
}`

func TestAPIReferenceCreateExampleDeliversSignedTemplatedWebhook(t *testing.T) {
	rcv := newReceiver(t)
	p := createPipeline(t, strings.ReplaceAll(apiReferenceCreate, "RECEIVER", rcv.URL))
	if p["name"] != "Conversion Notifications" || p["trigger_type"] != "conversion" || p["status"] != "active" || p["created_at"] == nil {
		t.Fatalf("create response = %v", p)
	}
	step := p["steps"].([]any)[0].(map[string]any)
	if _, leaked := step["signing_key"]; leaked || step["has_signing_key"] != true || step["id"] == "" {
		t.Fatalf("step in response = %v", step)
	}

	ev := `{"id":"evt_api_1","trigger_type":"conversion","trigger_id":"conv_api_1","timestamp":"2024-12-01T12:00:00Z",
	  "data":{"conversion":{"id":"conv_api_1","amount":49.99,"user_id":"user_012","currency":"USD"},"click":{"id":"click_456","country":"US"},"offer":{"id":"off_789","title":"Premium VPN"}}}`
	produce(t, "afftok.conversions", "conv_api_1", ev)
	got := rcv.next(t)

	if got.Path != "/webhooks/afftok" {
		t.Fatalf("path %s", got.Path)
	}
	if want := `{"event":"conversion","conversion_id":"conv_api_1","amount":49.99,"user_id":"user_012"}`; string(got.Body) != want {
		t.Fatalf("body %s\nwant %s", got.Body, want)
	}
	h := got.Header
	if h.Get("X-API-Key") != "crm-key-123" || h.Get("Content-Type") != "application/json" || h.Get("X-Afftok-Retry-Count") != "0" {
		t.Fatalf("headers %v", h)
	}
	if !verifyHMAC(got.Body, h.Get("X-Afftok-Signature"), "whsec-from-env") || !strings.HasPrefix(h.Get("X-Afftok-Signature"), "sha256=") {
		t.Fatalf("signature %q does not verify with the env secret", h.Get("X-Afftok-Signature"))
	}
	if ts := h.Get("X-Afftok-Timestamp"); ts == "" || len(ts) != 10 {
		t.Fatalf("timestamp %q", ts)
	}
	wantID := delivery.ID(delivery.EventKey("evt_api_1", "", 0, 0), p["id"].(string))
	if h.Get("X-Afftok-Delivery-ID") != wantID {
		t.Fatalf("delivery id %q, want deterministic %q", h.Get("X-Afftok-Delivery-ID"), wantID)
	}

	// The same event again (a redelivery) carries the same delivery id.
	produce(t, "afftok.conversions", "conv_api_1", ev)
	if again := rcv.next(t); again.Header.Get("X-Afftok-Delivery-ID") != wantID {
		t.Fatalf("redelivery id %q, want %q", again.Header.Get("X-Afftok-Delivery-ID"), wantID)
	}

	l := waitExecution(t, p["id"].(string), "conv_api_1")
	if l["status"] != "completed" || l["pipeline_name"] != "Conversion Notifications" || l["trigger_type"] != "conversion" || l["completed_at"] == nil {
		t.Fatalf("log = %v", l)
	}
	steps := l["steps"].([]any)
	s0 := steps[0].(map[string]any)
	if len(steps) != 1 || s0["status"] != "success" || s0["http_status"] != 200.0 || s0["step_name"] != "Send to CRM" || s0["response_body"] != `{"received": true}` || s0["latency_ms"] == nil {
		t.Fatalf("steps = %v", steps)
	}
}

const guideQuickStart = `{
    "name": "Conversion Notification",
    "trigger_type": "conversion",
    "status": "active",
    "steps": [
      {
        "order": 1,
        "name": "Notify Partner",
        "url": "RECEIVER/webhook",
        "method": "POST",
        "headers": {
          "Content-Type": "application/json"
        },
        "body_template": "{\"conversion_id\": \"{{conversion.id}}\", \"amount\": {{conversion.amount}}}",
        "signature_mode": "hmac",
        "signing_key": "your_secret_key"
      }
    ]
  }`

func TestGuideQuickStartWithFlatEventShape(t *testing.T) {
	rcv := newReceiver(t)
	p := createPipeline(t, strings.ReplaceAll(guideQuickStart, "RECEIVER", rcv.URL))
	produce(t, "afftok.conversions", "conv_456", `{"type":"conversion.created","data":{"id":"conv_456","click_id":"clk_xyz789","amount":49.99,"currency":"USD","status":"pending"}}`)
	got := rcv.next(t)
	if want := `{"conversion_id": "conv_456", "amount": 49.99}`; string(got.Body) != want {
		t.Fatalf("body %s, want %s", got.Body, want)
	}
	if !verifyHMAC(got.Body, got.Header.Get("X-Afftok-Signature"), "your_secret_key") {
		t.Fatal("signature does not verify")
	}
	// No event id: the delivery id derives from where the event was read.
	if id := got.Header.Get("X-Afftok-Delivery-ID"); !strings.HasPrefix(id, "wh_del_") {
		t.Fatalf("delivery id %q", id)
	}
	waitExecution(t, p["id"].(string), "conv_456")
}

func TestHostileEventStringsStillRenderValidJSON(t *testing.T) {
	rcv := newReceiver(t)
	createPipeline(t, `{"name":"ua","trigger_type":"click","steps":[{"order":1,"url":"`+rcv.URL+`/c?id={{click.id}}",
	  "body_template":"{\"ua\": \"{{click.user_agent}}\", \"ip\": {{click.ip}}}"}]}`)
	ua := "Mozilla\", \"admin\": true, \"x\": \"\n{{env.NOT_ALLOWED_SECRET}} ✓ \\"
	ev, _ := json.Marshal(map[string]any{"type": "click.tracked", "data": map[string]any{"id": "clk 1&x=2", "user_agent": ua, "ip": "1.2.3.4"}})
	produce(t, "afftok.clicks", "clk1", string(ev))
	got := rcv.next(t)
	var body map[string]any
	if err := json.Unmarshal(got.Body, &body); err != nil {
		t.Fatalf("invalid JSON %s: %v", got.Body, err)
	}
	if body["ua"] != ua || body["ip"] != "1.2.3.4" || len(body) != 2 || strings.Contains(string(got.Body), "must-not-leak") {
		t.Fatalf("body %s", got.Body)
	}
	if got.Path != "/c?id=clk+1%26x%3D2" {
		t.Fatalf("path %s", got.Path)
	}
}

func TestJWTStepCarriesSpecClaims(t *testing.T) {
	rcv := newReceiver(t)
	p := createPipeline(t, `{"name":"jwt","trigger_type":"fraud","steps":[{"order":1,"url":"`+rcv.URL+`/j","signature_mode":"jwt","signing_key":"jwt-secret"}]}`)
	produce(t, "afftok.fraud", "f1", `{"id":"evt_f1","type":"fraud.detected","data":{"event_type":"click","reason":"bot_detection","risk_score":92,"blocked":true}}`)
	got := rcv.next(t)
	tok := strings.TrimPrefix(got.Header.Get("Authorization"), "Bearer ")
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return []byte("jwt-secret"), nil }, jwt.WithValidMethods([]string{"HS256"})); err != nil {
		t.Fatalf("jwt %q: %v", tok, err)
	}
	if claims["pipeline_id"] != p["id"] || claims["trigger_type"] != "fraud" || claims["delivery_id"] != got.Header.Get("X-Afftok-Delivery-ID") ||
		claims["exp"].(float64)-claims["iat"].(float64) != 300 {
		t.Fatalf("claims %v", claims)
	}
	if got.Header.Get("X-Afftok-Signature") != "" {
		t.Fatal("JWT step also sent an HMAC signature")
	}
	var body map[string]any
	_ = json.Unmarshal(got.Body, &body)
	if body["trigger_type"] != "fraud" || body["data"].(map[string]any)["risk_score"] != 92.0 {
		t.Fatalf("default body %s", got.Body)
	}
}

func TestStepsRunInOrderWithChainingAndStopOnFailure(t *testing.T) {
	rcv := newReceiver(t)
	rcv.respondWith(func(c captured, w http.ResponseWriter) {
		switch {
		case strings.HasPrefix(c.Path, "/auth"):
			_, _ = w.Write([]byte(`{"token":"tok-42"}`))
		case strings.HasPrefix(c.Path, "/fail"):
			w.WriteHeader(500)
		default:
			w.WriteHeader(204)
		}
	})
	// Given out of order on purpose: order decides.
	p := createPipeline(t, `{"name":"multi","trigger_type":"postback","steps":[
	  {"order":2,"name":"Use","url":"`+rcv.URL+`/use","headers":{"Authorization":"Bearer {{steps.1.response.body.token}}"},"body_template":{"prev":"{{steps.1.status}}"}},
	  {"order":1,"name":"Auth","url":"`+rcv.URL+`/auth"},
	  {"order":3,"name":"Fails","url":"`+rcv.URL+`/fail","stop_on_failure":true,"retry_policy":{"max_attempts":1}},
	  {"order":4,"name":"Never","url":"`+rcv.URL+`/never"}]}`)
	produce(t, "afftok.postbacks", "pb1", `{"type":"postback.received","data":{"id":"pb_1","status":"approved"}}`)
	first, second, third := rcv.next(t), rcv.next(t), rcv.next(t)
	if first.Path != "/auth" || second.Path != "/use" || third.Path != "/fail" {
		t.Fatalf("order %s %s %s", first.Path, second.Path, third.Path)
	}
	if second.Header.Get("Authorization") != "Bearer tok-42" || string(second.Body) != `{"prev":200}` {
		t.Fatalf("chained step: auth %q body %s", second.Header.Get("Authorization"), second.Body)
	}
	l := waitExecution(t, p["id"].(string), "pb_1")
	rcv.noneSoFar(t) // the execution is over: step 4 never ran
	steps := l["steps"].([]any)
	if l["status"] != "failed" || len(steps) != 3 || steps[2].(map[string]any)["http_status"] != 500.0 || steps[2].(map[string]any)["status"] != "failed" {
		t.Fatalf("log %v", l)
	}
	// logs/failures lists it too.
	_, out := api(t, "GET", "/api/admin/webhooks/logs/failures?pipeline_id="+p["id"].(string), nil)
	if n := len(out["data"].(map[string]any)["logs"].([]any)); n != 1 {
		t.Fatalf("failures: %d logs", n)
	}
}

// Issue 8: a step that died (stop_on_failure false) is chained like a
// successful one — step 2 sees step 1's 500, its body and headers, not
// null — and the result travels with step 2's retry task through a tier.
func TestFailedStepIsChainedToTheNextStep(t *testing.T) {
	rcv := newReceiver(t)
	var useCalls atomic.Int32
	rcv.respondWith(func(c captured, w http.ResponseWriter) {
		switch {
		case c.Path == "/crm":
			w.Header().Set("X-Request-Id", "req-9")
			w.WriteHeader(500)
			_, _ = w.Write([]byte(`{"error":"crm down"}`))
		case useCalls.Add(1) == 1:
			w.WriteHeader(503) // step 2's first attempt: it waits on a retry tier
		default:
			w.WriteHeader(204)
		}
	})
	p := createPipeline(t, `{"name":"chain-failed","trigger_type":"postback","steps":[
	  {"order":1,"name":"CRM","url":"`+rcv.URL+`/crm","stop_on_failure":false,"retry_policy":{"max_attempts":1}},
	  {"order":2,"name":"Audit","url":"`+rcv.URL+`/audit",
	   "body_template":{"crm_status":"{{steps.1.status}}","by_name":"{{steps.CRM.response.status}}","crm_error":"{{steps.1.response.body.error}}","crm_request":"{{steps.1.response.headers.x-request-id}}"},
	   "retry_policy":{"max_attempts":2,"backoff_type":"fixed","initial_delay_seconds":5}}]}`)
	produce(t, "afftok.postbacks", "pbf", `{"type":"postback.received","data":{"id":"pb_failed_chain"}}`)
	if c := rcv.next(t); c.Path != "/crm" {
		t.Fatalf("first call %s", c.Path)
	}
	want := `{"crm_status":500,"by_name":500,"crm_error":"crm down","crm_request":"req-9"}`
	first, retry := rcv.next(t), rcv.next(t)
	for _, c := range []captured{first, retry} {
		if c.Path != "/audit" || string(c.Body) != want {
			t.Fatalf("%s body %s, want %s", c.Path, c.Body, want)
		}
	}
	if retry.Header.Get("X-Afftok-Retry-Count") != "1" {
		t.Fatalf("retry count %s", retry.Header.Get("X-Afftok-Retry-Count"))
	}
	l := waitExecution(t, p["id"].(string), "pb_failed_chain")
	if l["status"] != "partial" {
		t.Fatalf("log %v", l)
	}
	rcv.noneSoFar(t) // step 1 is not called again
}

func TestStepTimeoutIsAFailedAttempt(t *testing.T) {
	rcv := newReceiver(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // runs before the receiver's Close, which waits for handlers
	rcv.respondWith(func(c captured, w http.ResponseWriter) { <-release })
	p := createPipeline(t, `{"name":"slow","trigger_type":"offer_joined","steps":[{"order":1,"url":"`+rcv.URL+`/slow","timeout_seconds":1,"retry_policy":{"max_attempts":1}}]}`)
	start := time.Now()
	produce(t, "afftok.events", "oj1", `{"type":"offer.joined","data":{"id":"oj_1","offer_id":"off_1"}}`)
	l := waitExecution(t, p["id"].(string), "oj_1")
	s0 := l["steps"].([]any)[0].(map[string]any)
	if l["status"] != "failed" || s0["error"] != "Connection timeout" || s0["latency_ms"].(float64) < 1000 || s0["latency_ms"].(float64) > 5000 {
		t.Fatalf("log %v after %v", l, time.Since(start))
	}
}

func TestAllEightTriggerTypesAreDelivered(t *testing.T) {
	rcv := newReceiver(t)
	events := map[string]string{
		"click":               `{"type":"click.tracked","data":{"id":"tt_click"}}`,
		"conversion":          `{"type":"conversion.created","data":{"id":"tt_conv"}}`,
		"conversion_approved": `{"type":"conversion.approved","data":{"id":"tt_appr"}}`,
		"conversion_rejected": `{"type":"conversion.rejected","data":{"id":"tt_rej"}}`,
		"postback":            `{"type":"postback.received","data":{"id":"tt_pb"}}`,
		"fraud":               `{"trigger_type":"fraud","trigger_id":"tt_fraud","data":{"fraud":{"type":"bot_detection"}}}`,
		"offer_joined":        `{"type":"offer.joined","data":{"id":"tt_oj"}}`,
		"api_key_event":       `{"type":"api_key.rotated","data":{"id":"tt_key"}}`,
	}
	for tt := range events {
		createPipeline(t, `{"name":"`+tt+`","trigger_type":"`+tt+`","steps":[{"order":1,"url":"`+rcv.URL+`/`+tt+`","body_template":{"t":"{{trigger_type}}","id":"{{trigger_id}}"}}]}`)
	}
	for tt, ev := range events {
		produce(t, "afftok.events", tt, ev)
	}
	seen := map[string]string{}
	for range events {
		c := rcv.next(t)
		seen[strings.TrimPrefix(c.Path, "/")] = string(c.Body)
	}
	for tt := range events {
		var b map[string]string
		if err := json.Unmarshal([]byte(seen[tt]), &b); err != nil || b["t"] != tt || !strings.HasPrefix(b["id"], "tt_") {
			t.Errorf("%s: got %q", tt, seen[tt])
		}
	}
}

func TestInvalidEventsGoToDLQAndThePartitionKeepsFlowing(t *testing.T) {
	rcv := newReceiver(t)
	createPipeline(t, `{"name":"after-bad","trigger_type":"click","steps":[{"order":1,"url":"`+rcv.URL+`/ok"}]}`)
	// Same key: same partition, in this order.
	// An event without data, whichever shape and however it is missing, is
	// invalid as well (issue 8): it is not delivered with null fields.
	nullData := `{"id":"evt_null_data","type":"click.tracked","data":null}`
	noData := `{"id":"evt_no_data","trigger_type":"click","trigger_id":"clk_no_data"}`
	stringData := `{"id":"evt_string_data","type":"click.tracked","data":"clk_1"}`
	produce(t, "afftok.clicks", "k", `not json at all`)
	produce(t, "afftok.clicks", "k", `{"type":"click.exploded","data":{}}`)
	produce(t, "afftok.clicks", "k", nullData)
	produce(t, "afftok.clicks", "k", noData)
	produce(t, "afftok.clicks", "k", stringData)
	produce(t, "afftok.clicks", "k", `{"type":"click.tracked","data":{"id":"after_bad"}}`)
	if got := rcv.next(t); !strings.Contains(string(got.Body), "after_bad") {
		t.Fatalf("body %s", got.Body)
	}
	// Every bad record is on the DLQ topic with reason invalid_event and its bytes.
	found := map[string]string{}
	readTopic(t, "webhooks.dlq", func(r *kgo.Record) bool {
		var d struct {
			Reason, Error string
			Source        *struct {
				Topic string
				Value []byte
			}
		}
		if json.Unmarshal(r.Value, &d) == nil && d.Reason == "invalid_event" && d.Source != nil && d.Source.Topic == "afftok.clicks" {
			found[string(d.Source.Value)] = d.Error
		}
		return len(found) == 5
	})
	if !strings.Contains(found["not json at all"], "invalid event") || !strings.Contains(found[`{"type":"click.exploded","data":{}}`], "unknown event type") ||
		!strings.Contains(found[nullData], "event data is missing") || !strings.Contains(found[noData], "event data is missing") ||
		!strings.Contains(found[stringData], "event data must be a JSON object") {
		t.Fatalf("DLQ records: %v", found)
	}
	rcv.noneSoFar(t) // the data-less events were not delivered
}

func TestPipelineCRUDShapesAndSecrets(t *testing.T) {
	// No token / wrong token: 401 on every admin route.
	for _, h := range []string{"", "Bearer wrong-token-0123456789", "Basic abc"} {
		req, _ := http.NewRequest("GET", "http://"+shared.AdminAddr+"/api/admin/webhooks/pipelines", nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("auth %q: %d", h, resp.StatusCode)
		}
	}
	rcv := newReceiver(t)
	p := createPipeline(t, `{"name":"crud","description":"d","trigger_type":"conversion_approved","status":"paused","steps":[{"order":1,"name":"A","url":"`+rcv.URL+`/a","signing_key":"k-secret-1"}]}`)
	id := p["id"].(string)

	code, out := api(t, "GET", "/api/admin/webhooks/pipelines?status=paused&trigger_type=conversion_approved&page=1&limit=5", nil)
	data := out["data"].(map[string]any)
	list := data["pipelines"].([]any)
	if code != 200 || len(list) != 1 || data["pagination"].(map[string]any)["total"] != 1.0 {
		t.Fatalf("list: %d %v", code, out)
	}
	item := list[0].(map[string]any)
	if item["id"] != id || item["steps_count"] != 1.0 || item["stats"].(map[string]any)["success_rate"] == nil {
		t.Fatalf("list item %v", item)
	}

	code, out = api(t, "GET", "/api/admin/webhooks/pipelines/"+id, nil)
	d := out["data"].(map[string]any)
	st := d["steps"].([]any)[0].(map[string]any)
	if code != 200 || d["description"] != "d" || st["signature_mode"] != "hmac" || st["timeout_seconds"] != 30.0 || st["method"] != "POST" || d["stats"].(map[string]any)["in_dlq"] == nil || st["stats"] == nil {
		t.Fatalf("get %d %v", code, d)
	}
	if raw, _ := json.Marshal(out); strings.Contains(string(raw), "k-secret-1") {
		t.Fatal("signing key returned by GET")
	}

	// PUT with the spec's partial body; the step keeps its key (not resent).
	code, out = api(t, "PUT", "/api/admin/webhooks/pipelines/"+id, `{"name":"Updated","status":"active","steps":[{"order":1,"name":"A2","url":"`+rcv.URL+`/b"}]}`)
	d = out["data"].(map[string]any)
	if code != 200 || d["name"] != "Updated" || d["status"] != "active" || d["description"] != "d" || d["steps"].([]any)[0].(map[string]any)["has_signing_key"] != true {
		t.Fatalf("put %d %v", code, out)
	}
	// What was stored, as a user sees it: GET shows the new URL and a key,
	// and the next event goes to the new URL signed with the kept key.
	code, out = api(t, "GET", "/api/admin/webhooks/pipelines/"+id, nil)
	st = out["data"].(map[string]any)["steps"].([]any)[0].(map[string]any)
	if code != 200 || st["url"] != rcv.URL+"/b" || st["has_signing_key"] != true || st["name"] != "A2" {
		t.Fatalf("get after put %d %v", code, st)
	}
	produce(t, "afftok.conversions", "crud", `{"id":"evt_crud","type":"conversion.approved","data":{"id":"appr_crud"}}`)
	got := rcv.next(t)
	if got.Path != "/b" || !verifyHMAC(got.Body, got.Header.Get("X-Afftok-Signature"), "k-secret-1") {
		t.Fatalf("after put: sent to %s, signature %q does not verify with the kept key", got.Path, got.Header.Get("X-Afftok-Signature"))
	}
	waitExecution(t, id, "appr_crud")

	code, _ = api(t, "DELETE", "/api/admin/webhooks/pipelines/"+id, nil)
	if code != 200 {
		t.Fatalf("delete %d", code)
	}
	if code, out = api(t, "GET", "/api/admin/webhooks/pipelines/"+id, nil); code != 404 || out["error"].(map[string]any)["code"] != "not_found" {
		t.Fatalf("get after delete %d %v", code, out)
	}
	if code, _ = api(t, "PUT", "/api/admin/webhooks/pipelines/nope", `{"name":"x"}`); code != 404 {
		t.Fatalf("put missing %d", code)
	}
}

func TestInvalidPipelinesAreRejectedWithFieldPaths(t *testing.T) {
	cases := []struct{ body, field string }{
		{`{"trigger_type":"conversion","steps":[{"order":1,"url":"https://x.io"}]}`, "name"},
		{`{"name":"n","trigger_type":"sale","steps":[{"order":1,"url":"https://x.io"}]}`, "trigger_type"},
		{`{"name":"n","trigger_type":"click","status":"on","steps":[{"order":1,"url":"https://x.io"}]}`, "status"},
		{`{"name":"n","trigger_type":"click","steps":[]}`, "steps"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"ftp://x.io"}]}`, "steps[0].url"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","method":"TRACE"}]}`, "steps[0].method"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io"},{"order":1,"url":"https://y.io"}]}`, "steps[1].order"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","timeout_seconds":301}]}`, "steps[0].timeout_seconds"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","retry_policy":{"max_attempts":0}}]}`, "steps[0].retry_policy.max_attempts"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","retry_policy":{"max_attempts":3,"backoff_type":"linear"}}]}`, "steps[0].retry_policy.backoff_type"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","retry_policy":{"max_attempts":3,"backoff_type":"exponential_jitter","jitter_factor":1.5}}]}`, "steps[0].retry_policy.jitter_factor"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","retry_policy":{"max_attempts":3,"initial_delay_seconds":-1}}]}`, "steps[0].retry_policy.initial_delay_seconds"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","retry_policy":{"max_attempts":3,"initial_delay_seconds":0.2}}]}`, "steps[0].retry_policy.initial_delay_seconds"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","retry_policy":{"max_attempts":20,"backoff_type":"fixed","initial_delay_seconds":86400}}]}`, "steps[0].retry_policy"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","retry_policy":{"max_attempts":3,"backoff_multiplier":0.5}}]}`, "steps[0].retry_policy.backoff_multiplier"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","signature_mode":"rsa"}]}`, "steps[0].signature_mode"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","signature_mode":"hmac"}]}`, "steps[0].signing_key"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","body_template":"{\"a\": {{click.id}"}]}`, "steps[0].body_template"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","body_template":{"a":"{{secrets.x}}"}}]}`, "steps[0].body_template"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","headers":{"X-K":"{{env.NOT_ALLOWED_SECRET}}"}}]}`, "steps[0].headers.X-K"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","body_template":{"t":"{{steps.2.status}}"}},{"order":2,"url":"https://x.io"}]}`, "steps[0].body_template"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","retry_polcy":{}}]}`, "steps[0].retry_polcy"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":"1","url":"https://x.io"}]}`, "steps[0].order"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1.5,"url":"https://x.io"}]}`, "steps[0].order"},
		{`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","url":"https://y.io"}]}`, "steps[0].url"},
		{"{\"name\":\"caf\xe9\",\"trigger_type\":\"click\",\"steps\":[{\"order\":1,\"url\":\"https://x.io\"}]}", "name"},
	}
	for _, c := range cases {
		code, out := api(t, "POST", "/api/admin/webhooks/pipelines", c.body)
		if code != 400 || out["success"] != false {
			t.Errorf("%s: %d %v", c.body, code, out)
			continue
		}
		var fields []string
		details, _ := out["error"].(map[string]any)["details"].([]any)
		for _, d := range details {
			fields = append(fields, d.(map[string]any)["field"].(string))
		}
		if !contains(fields, c.field) {
			t.Errorf("%s: fields %v, want %s (%v)", c.body, fields, c.field, out["error"])
		}
	}
	if code, _ := api(t, "POST", "/api/admin/webhooks/pipelines", `{not json`); code != 400 {
		t.Errorf("malformed JSON: %d", code)
	}
	// Every bad field is listed, not just the first; data after the body is refused.
	code, out := api(t, "POST", "/api/admin/webhooks/pipelines", `{"name":5,"trigger_type":7,"steps":"nope"}`)
	details, _ := out["error"].(map[string]any)["details"].([]any)
	if code != 400 || len(details) != 3 {
		t.Errorf("three bad fields: %d %v", code, out)
	}
	code, out = api(t, "POST", "/api/admin/webhooks/pipelines", `{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io"}]} garbage`)
	if code != 400 || out["error"].(map[string]any)["code"] != "bad_request" {
		t.Errorf("trailing garbage: %d %v", code, out)
	}
	// An oversized body is refused from its declared length, before it is read.
	conn, err := net.Dial("tcp", shared.AdminAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/admin/webhooks/pipelines HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", testToken, 2<<20)
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.Contains(status, " 413 ") {
		t.Errorf("oversized body: %q %v", status, err)
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// A serve-mode binary built without cgo and with no libchdb.so anywhere starts,
// consumes, and stops cleanly on SIGTERM: chDB is only loaded by dev mode.
func TestServeBinaryStartsWithoutLibchdb(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "webhookd")
	build := exec.Command("go", "build", "-o", bin, "../cmd/webhookd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	in := newInstance(t, "serve", map[string]string{
		"WEBHOOKD_CHDB_LIBRARY": "/nonexistent/libchdb.so", "LD_LIBRARY_PATH": "/nonexistent",
		"WEBHOOKD_ROLES": "dispatcher", "WEBHOOKD_CONSUMER_GROUP": "serve-test", "WEBHOOKD_ADMIN_TOKEN": "serve-test-token-0123",
	})
	in.Bin = bin
	in.Start(t) // /readyz 200 on the health server
	in.WaitLog(t, `"worker started"`, `"worker":"dispatcher"`)
	// A replica without the admin API still answers probes (as the Helm
	// chart's pods are probed), and keeps /metrics behind the token.
	probe := func(path, token string) int {
		req, _ := http.NewRequest("GET", "http://"+in.AdminAddr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := apiClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if probe("/healthz", "") != 200 || probe("/readyz", "") != 200 || probe("/metrics", "") != 401 || probe("/metrics", "serve-test-token-0123") != 200 {
		t.Fatal("a dispatcher-only replica does not answer its probes")
	}
	if took, err := in.Stop(); err != nil {
		t.Fatalf("serve exited with %v, %v after SIGTERM", err, took)
	}
}

func TestTestEndpointsMakeRealCallsWithTheSpecShapes(t *testing.T) {
	rcv := newReceiver(t)
	p := createPipeline(t, `{"name":"Test me","trigger_type":"conversion","steps":[{"order":1,"name":"Send to CRM","url":"`+rcv.URL+`/crm",
	  "headers":{"X-API-Key":"{{env.CRM_API_KEY}}"},"signing_key":"{{env.WEBHOOK_SECRET}}",
	  "body_template":{"conversion_id":"{{conversion.id}}","amount":"{{conversion.amount}}","user_id":"{{conversion.user_id}}"}}]}`)
	code, out := api(t, "POST", "/api/admin/webhooks/test/pipeline/"+p["id"].(string),
		`{"test_data":{"conversion":{"id":"test_conv_123","amount":49.99,"user_id":"test_user_456"}}}`)
	got := rcv.next(t)
	if code != 200 || string(got.Body) != `{"conversion_id":"test_conv_123","amount":49.99,"user_id":"test_user_456"}` {
		t.Fatalf("%d %v / sent %s", code, out, got.Body)
	}
	d := out["data"].(map[string]any)
	st := d["steps"].([]any)[0].(map[string]any)
	req, resp := st["request"].(map[string]any), st["response"].(map[string]any)
	if !strings.HasPrefix(d["execution_id"].(string), "exec_test_") || d["status"] != "completed" || st["step_name"] != "Send to CRM" ||
		st["status"] != "success" || st["http_status"] != 200.0 || req["method"] != "POST" || req["url"] != rcv.URL+"/crm" ||
		req["body"].(map[string]any)["amount"] != 49.99 || resp["status"] != 200.0 || resp["body"] != `{"received": true}` {
		t.Fatalf("test run %v", d)
	}
	// Secrets are redacted in what the API shows (they were sent for real).
	h := req["headers"].(map[string]any)
	if got.Header.Get("X-API-Key") != "crm-key-123" || h["X-Api-Key"] != "[redacted]" || h["X-Afftok-Signature"] != "[redacted]" {
		t.Fatalf("headers shown %v", h)
	}
	if raw, _ := json.Marshal(out); strings.Contains(string(raw), "crm-key-123") || strings.Contains(string(raw), "whsec-from-env") {
		t.Fatal("a secret was returned")
	}

	code, out = api(t, "POST", "/api/admin/webhooks/test/step", `{"url":"`+rcv.URL+`/hello","method":"POST","headers":{"Content-Type":"application/json"},
	  "body":{"test":true,"message":"Hello from AffTok"},"timeout_seconds":10}`)
	got = rcv.next(t)
	if code != 200 || string(got.Body) != `{"test":true,"message":"Hello from AffTok"}` || out["data"].(map[string]any)["status"] != "completed" {
		t.Fatalf("test step %d %v / sent %s", code, out, got.Body)
	}
	code, out = api(t, "POST", "/api/admin/webhooks/test/step", `{"url":"ftp://x","timeout_seconds":900}`)
	fields := fmt.Sprint(out["error"])
	if code != 400 || !strings.Contains(fields, "field:url") || !strings.Contains(fields, "field:timeout_seconds") {
		t.Fatalf("invalid test step: %d %v", code, out)
	}
	if code, _ := api(t, "POST", "/api/admin/webhooks/test/pipeline/pipe_nope", `{}`); code != 404 {
		t.Fatalf("unknown pipeline: %d", code)
	}
}

func TestStatsShowTodayAndQueues(t *testing.T) {
	rcv := newReceiver(t)
	rcv.respondWith(func(c captured, w http.ResponseWriter) {
		if c.Path == "/bad" {
			w.WriteHeader(418)
		}
	})
	ok := createPipeline(t, `{"name":"stats-ok","trigger_type":"postback","steps":[{"order":1,"url":"`+rcv.URL+`/ok"}]}`)
	bad := createPipeline(t, `{"name":"stats-bad","trigger_type":"postback","steps":[{"order":1,"url":"`+rcv.URL+`/bad","retry_policy":{"max_attempts":1}}]}`)
	produce(t, "afftok.postbacks", "st", `{"type":"postback.received","data":{"id":"pb_stats"}}`)
	rcv.next(t)
	rcv.next(t)
	waitExecution(t, ok["id"].(string), "pb_stats")
	waitExecution(t, bad["id"].(string), "pb_stats")
	code, out := api(t, "GET", "/api/admin/webhooks/stats", nil)
	if code != 200 {
		t.Fatalf("%d %v", code, out)
	}
	d := out["data"].(map[string]any)
	sum, q := d["summary"].(map[string]any), d["queues"].(map[string]any)
	pb := d["by_trigger_type"].(map[string]any)["postback"].(map[string]any)
	if sum["total_pipelines"].(float64) < 2 || sum["total_executions_today"].(float64) < 2 || pb["executions"].(float64) < 2 || pb["success_rate"].(float64) >= 100 {
		t.Fatalf("stats %v", d)
	}
	for _, k := range []string{"primary", "retry", "failover", "dlq"} {
		if _, ok := q[k]; !ok {
			t.Fatalf("queues %v lack %s", q, k)
		}
	}
	found := false
	for _, e := range d["top_errors"].([]any) {
		found = found || e.(map[string]any)["error"] == "HTTP 418"
	}
	if !found {
		t.Fatalf("top errors %v", d["top_errors"])
	}
}
