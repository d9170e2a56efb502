package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const ms = time.Millisecond

// failFirst answers status for the first n requests, then 200.
func failFirst(n int32, status int, header map[string]string) func(captured, http.ResponseWriter) {
	var seen atomic.Int32
	return func(c captured, w http.ResponseWriter) {
		if seen.Add(1) <= n {
			for k, v := range header {
				w.Header().Set(k, v)
			}
			w.WriteHeader(status)
			return
		}
		_, _ = w.Write([]byte(`{"token":"tok-retry"}`))
	}
}

func always(status int) func(captured, http.ResponseWriter) {
	return func(c captured, w http.ResponseWriter) { w.WriteHeader(status) }
}

// checkGaps asserts each retry came no earlier than its delay and at most
// its delay plus a second later than that.
func checkGaps(t *testing.T, got []captured, lo, hi []time.Duration) {
	t.Helper()
	for i := 1; i < len(got); i++ {
		gap := got[i].At.Sub(got[i-1].At)
		if gap < lo[i-1] {
			t.Errorf("retry %d came %v after the previous attempt: earlier than its delay %v", i, gap, lo[i-1])
		}
		// Late only by scheduling on a busy machine (a stalled tier
		// consumer): up to its own delay plus a second. For delays of a
		// second or more, a longer tier than its delay would bring it
		// later than that (the 6 s tier for the 2 s Retry-After, the
		// scaled 18 s for the 6 s delay, minutes for a Retry-After not
		// capped); under a second this checks only that it came.
		if late := hi[i-1] + time.Second; gap > hi[i-1]+late {
			t.Errorf("retry %d came %v after the previous attempt: more than %v later than %v", i, gap, late, hi[i-1])
		}
	}
}

func TestDefaultScheduleRetriesWithSameDeliveryIDFreshSignatureNeverEarly(t *testing.T) {
	rcv := newReceiver(t)
	rcv.respondWith(failFirst(5, 500, nil))
	p := createPipeline(t, `{"name":"default-schedule","trigger_type":"conversion_rejected","steps":[{"order":1,"url":"`+rcv.URL+`/r","signing_key":"k"}]}`)
	produce(t, "afftok.conversions", "rej1", `{"id":"evt_rej1","type":"conversion.rejected","data":{"id":"rej_1"}}`)
	var got []captured
	for range 6 {
		got = append(got, rcv.next(t))
	}
	l := waitExecution(t, p["id"].(string), "rej_1")
	rcv.noneSoFar(t) // six attempts in all
	for i, c := range got {
		if c.Header.Get("X-Afftok-Retry-Count") != strconv.Itoa(i) || c.Header.Get("X-Afftok-Delivery-ID") != got[0].Header.Get("X-Afftok-Delivery-ID") {
			t.Errorf("attempt %d: retry count %q, delivery id %q", i, c.Header.Get("X-Afftok-Retry-Count"), c.Header.Get("X-Afftok-Delivery-ID"))
		}
		if !verifyHMAC(c.Body, c.Header.Get("X-Afftok-Signature"), "k") || c.Header.Get("X-Afftok-Timestamp") == "" {
			t.Errorf("attempt %d: signature does not verify", i)
		}
	}
	spec := []time.Duration{100 * ms, 200 * ms, 600 * ms, 1200 * ms, 6000 * ms} // 5s,10s,30s,1m,5m scaled 0.02
	checkGaps(t, got, spec, spec)
	s0 := l["steps"].([]any)[0].(map[string]any)
	if l["status"] != "completed" || s0["attempts"] != 6.0 || s0["status"] != "success" {
		t.Fatalf("log %v", l)
	}
}

func TestCustomRetryPolicies(t *testing.T) {
	cases := []struct {
		name, policy string
		lo, hi       []time.Duration
	}{
		{"fixed", `{"max_attempts":3,"backoff_type":"fixed","initial_delay_seconds":5}`, []time.Duration{100 * ms, 100 * ms}, []time.Duration{100 * ms, 100 * ms}},
		{"exponential", `{"max_attempts":4,"backoff_type":"exponential","initial_delay_seconds":5,"backoff_multiplier":3}`, []time.Duration{100 * ms, 300 * ms, 900 * ms}, []time.Duration{100 * ms, 300 * ms, 900 * ms}},
		{"exponential_jitter", `{"max_attempts":3,"backoff_type":"exponential_jitter","initial_delay_seconds":10,"jitter_factor":0.5}`, []time.Duration{100 * ms, 200 * ms}, []time.Duration{300 * ms, 600 * ms}},
		{"capped", `{"max_attempts":4,"initial_delay_seconds":20,"max_delay_seconds":30}`, []time.Duration{400 * ms, 600 * ms, 600 * ms}, []time.Duration{400 * ms, 600 * ms, 600 * ms}},
	}
	rcvs := map[string]*receiver{}
	var ids []string
	for _, c := range cases {
		r := newReceiver(t)
		r.respondWith(always(500))
		rcvs[c.name] = r
		ids = append(ids, createPipeline(t, `{"name":"`+c.name+`","trigger_type":"conversion_approved","steps":[{"order":1,"url":"`+r.URL+`/x","retry_policy":`+c.policy+`}]}`)["id"].(string))
	}
	produce(t, "afftok.conversions", "appr", `{"id":"evt_policies","type":"conversion.approved","data":{"id":"appr_1"}}`)
	for i, c := range cases {
		var got []captured
		for range len(c.lo) + 1 {
			got = append(got, rcvs[c.name].next(t))
		}
		checkGaps(t, got, c.lo, c.hi)
		dlqItems(t, "/api/admin/webhooks/logs/dlq", ids[i], 1) // the step is dead: no attempt can follow
		rcvs[c.name].noneSoFar(t)                              // max_attempts is the total
	}
}

func TestRetryAfterIsHonouredAndCappedByMaxDelay(t *testing.T) {
	slow := newReceiver(t)
	slow.respondWith(failFirst(1, 429, map[string]string{"Retry-After": "100"})) // 100s → 2s scaled
	capped := newReceiver(t)
	capped.respondWith(failFirst(1, 503, map[string]string{"Retry-After": "3600"})) // capped at 50s → 1s
	createPipeline(t, `{"name":"ra","trigger_type":"api_key_event","steps":[{"order":1,"url":"`+slow.URL+`/a","retry_policy":{"max_attempts":2,"backoff_type":"fixed","initial_delay_seconds":1,"max_delay_seconds":300}}]}`)
	createPipeline(t, `{"name":"ra-cap","trigger_type":"api_key_event","steps":[{"order":1,"url":"`+capped.URL+`/a","retry_policy":{"max_attempts":2,"backoff_type":"fixed","initial_delay_seconds":1,"max_delay_seconds":50}}]}`)
	produce(t, "afftok.events", "ak", `{"id":"evt_ra","type":"api_key.created","data":{"id":"key_1"}}`)
	checkGaps(t, []captured{slow.next(t), slow.next(t)}, []time.Duration{2 * time.Second}, []time.Duration{2 * time.Second})
	checkGaps(t, []captured{capped.next(t), capped.next(t)}, []time.Duration{time.Second}, []time.Duration{time.Second})
}

func TestFailoverURLGetsTheSameSignedRequestAfterTheLastAttempt(t *testing.T) {
	rcv := newReceiver(t)
	rcv.respondWith(func(c captured, w http.ResponseWriter) {
		if strings.HasPrefix(c.Path, "/primary") {
			w.WriteHeader(500)
		}
	})
	p := createPipeline(t, `{"name":"fo","trigger_type":"postback","failover_url":"`+rcv.URL+`/backup","steps":[{"order":1,"url":"`+rcv.URL+`/primary",
	  "signing_key":"fo-key","retry_policy":{"max_attempts":2,"backoff_type":"fixed","initial_delay_seconds":5},"body_template":{"id":"{{postback.id}}"}}]}`)
	produce(t, "afftok.postbacks", "fo1", `{"id":"evt_fo1","type":"postback.received","data":{"id":"pb_fo1"}}`)
	a0, a1, fo := rcv.next(t), rcv.next(t), rcv.next(t)
	if a0.Path != "/primary" || a1.Path != "/primary" || fo.Path != "/backup" {
		t.Fatalf("paths %s %s %s", a0.Path, a1.Path, fo.Path)
	}
	if fo.Header.Get("X-Afftok-Failover") != "true" || string(fo.Body) != string(a0.Body) ||
		fo.Header.Get("X-Afftok-Delivery-ID") != a0.Header.Get("X-Afftok-Delivery-ID") || !verifyHMAC(fo.Body, fo.Header.Get("X-Afftok-Signature"), "fo-key") {
		t.Fatalf("failover request %v %s", fo.Header, fo.Body)
	}
	l := waitExecution(t, p["id"].(string), "pb_fo1")
	s0 := l["steps"].([]any)[0].(map[string]any)
	if l["status"] != "completed" || s0["failover"] != true || s0["status"] != "success" {
		t.Fatalf("log %v", l)
	}
}

func TestFailoverFailureGoesToTheDLQWhichCanBeListedRetriedDeletedAndRedriven(t *testing.T) {
	var healthy atomic.Bool
	rcv := newReceiver(t)
	rcv.respondWith(func(c captured, w http.ResponseWriter) {
		if !healthy.Load() {
			w.WriteHeader(502)
		}
	})
	p := createPipeline(t, `{"name":"dlq","trigger_type":"offer_joined","failover_url":"`+rcv.URL+`/backup","steps":[{"order":1,"url":"`+rcv.URL+`/primary","retry_policy":{"max_attempts":1}}]}`)
	pid := p["id"].(string)
	produce(t, "afftok.events", "d1", `{"id":"evt_d1","type":"offer.joined","data":{"id":"oj_d1","offer_id":"off_9"}}`)
	first := rcv.next(t)
	for i := range 3 { // the failover's own short policy: 3 attempts
		if c := rcv.next(t); c.Path != "/backup" || c.Header.Get("X-Afftok-Retry-Count") != strconv.Itoa(i) {
			t.Fatalf("failover attempt %d: %s retry %s", i, c.Path, c.Header.Get("X-Afftok-Retry-Count"))
		}
	}
	items := dlqItems(t, "/api/admin/webhooks/logs/dlq", pid, 1)
	it := items[0]
	if it["trigger_type"] != "offer_joined" || it["trigger_id"] != "oj_d1" || it["last_error"] != "HTTP 502" || it["attempts"] != 3.0 ||
		it["payload"].(map[string]any)["data"].(map[string]any)["offer_id"] != "off_9" || it["failed_at"] == nil {
		t.Fatalf("dlq item %v", it)
	}
	l := waitExecution(t, pid, "oj_d1")
	if l["status"] != "failed" {
		t.Fatalf("log %v", l)
	}
	// The guide's alias lists the same item.
	if alias := dlqItems(t, "/api/admin/webhooks/dlq", pid, 1); alias[0]["id"] != it["id"] {
		t.Fatalf("alias lists %v", alias)
	}

	// Retry: a new attempt cycle from the dead step, same delivery id.
	healthy.Store(true)
	id := it["id"].(string)
	code, out := api(t, "POST", "/api/admin/webhooks/logs/dlq/"+id+"/retry", nil)
	if code != 202 {
		t.Fatalf("retry %d %v", code, out)
	}
	again := rcv.next(t)
	if again.Path != "/primary" || again.Header.Get("X-Afftok-Delivery-ID") != first.Header.Get("X-Afftok-Delivery-ID") || again.Header.Get("X-Afftok-Retry-Count") != "0" {
		t.Fatalf("retried request %s %v", again.Path, again.Header)
	}
	if code, _ := api(t, "POST", "/api/admin/webhooks/dlq/"+id+"/retry", nil); code != 409 {
		t.Fatalf("second retry: %d, want 409", code)
	}
	dlqItems(t, "/api/admin/webhooks/logs/dlq", pid, 0)
	if code, _ := api(t, "POST", "/api/admin/webhooks/logs/dlq/dlq_nope/retry", nil); code != 404 {
		t.Fatalf("unknown item: %d", code)
	}

	// Delete.
	healthy.Store(false)
	produce(t, "afftok.events", "d2", `{"id":"evt_d2","type":"offer.joined","data":{"id":"oj_d2"}}`)
	for range 4 {
		rcv.next(t)
	}
	del := dlqItems(t, "/api/admin/webhooks/logs/dlq", pid, 1)[0]["id"].(string)
	if code, _ := api(t, "DELETE", "/api/admin/webhooks/dlq/"+del, nil); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if code, _ := api(t, "DELETE", "/api/admin/webhooks/logs/dlq/"+del, nil); code != 409 {
		t.Fatalf("second delete: %d, want 409", code)
	}
	if code, _ := api(t, "DELETE", "/api/admin/webhooks/logs/dlq/dlq_nope", nil); code != 404 {
		t.Fatalf("unknown delete: %d", code)
	}
	dlqItems(t, "/api/admin/webhooks/logs/dlq", pid, 0)

	// Bulk redrive with filters and a rate limit.
	for i := range 3 {
		produce(t, "afftok.events", "b", fmt.Sprintf(`{"id":"evt_b%d","type":"offer.joined","data":{"id":"oj_b%d"}}`, i, i))
	}
	for range 12 {
		rcv.next(t)
	}
	dlqItems(t, "/api/admin/webhooks/logs/dlq", pid, 3)
	healthy.Store(true)
	if code, out := api(t, "POST", "/api/admin/webhooks/logs/dlq/retry", `{"pipeline_id":"`+pid+`","error":"no such error"}`); code != 202 || out["data"].(map[string]any)["queued"] != 0.0 {
		t.Fatalf("filtered bulk: %d %v", code, out)
	}
	if code, _ := api(t, "POST", "/api/admin/webhooks/logs/dlq/retry", `{"rate_per_second":5000}`); code != 400 {
		t.Fatalf("rate over the limit: %d", code)
	}
	code, out = api(t, "POST", "/api/admin/webhooks/dlq/retry", `{"pipeline_id":"`+pid+`","error":"http 502","trigger_type":"offer_joined","failed_from":"2020-01-01T00:00:00Z","rate_per_second":5}`)
	if code != 202 || out["data"].(map[string]any)["queued"] != 3.0 {
		t.Fatalf("bulk: %d %v", code, out)
	}
	var at []time.Time
	for range 3 {
		c := rcv.next(t)
		if c.Path != "/primary" {
			t.Fatalf("bulk redrive sent %s", c.Path)
		}
		at = append(at, c.At)
	}
	if took := at[2].Sub(at[0]); took < 350*ms { // 3 items at 5/s: 200 ms apart
		t.Fatalf("bulk redrive of 3 at 5/s took %v from the first to the last: not rate limited", took)
	}
	// The redrive is a job: its progress can be read until it is done.
	job := waitJob(t, shared, "/api/admin/webhooks/dlq/redrive/"+out["data"].(map[string]any)["job_id"].(string), "done")
	if job["processed"] != 3.0 || job["retried"] != 3.0 || job["rate_per_second"] != 5.0 {
		t.Fatalf("redrive job %v", job)
	}
	dlqItems(t, "/api/admin/webhooks/logs/dlq", pid, 0)
}

func TestStopOnFailureFalseDeadLettersTheStepAndGoesOn(t *testing.T) {
	rcv := newReceiver(t)
	rcv.respondWith(func(c captured, w http.ResponseWriter) {
		if c.Path == "/one" {
			w.WriteHeader(500)
		}
	})
	p := createPipeline(t, `{"name":"sof","trigger_type":"click","steps":[
	  {"order":1,"url":"`+rcv.URL+`/one","stop_on_failure":false,"retry_policy":{"max_attempts":1}},
	  {"order":2,"url":"`+rcv.URL+`/two"}]}`)
	produce(t, "afftok.clicks", "sof", `{"type":"click.tracked","data":{"id":"clk_sof"}}`)
	if a, b := rcv.next(t), rcv.next(t); a.Path != "/one" || b.Path != "/two" {
		t.Fatalf("paths %s %s", a.Path, b.Path)
	}
	l := waitExecution(t, p["id"].(string), "clk_sof")
	if l["status"] != "partial" {
		t.Fatalf("log %v", l)
	}
	it := dlqItems(t, "/api/admin/webhooks/logs/dlq", p["id"].(string), 1)[0]
	if it["step_order"] != 1.0 {
		t.Fatalf("dlq item %v", it)
	}
	// Retrying the dead step runs that step only: step 2 already ran.
	rcv.respondWith(nil)
	if code, _ := api(t, "POST", "/api/admin/webhooks/logs/dlq/"+it["id"].(string)+"/retry", nil); code != 202 {
		t.Fatal("retry failed")
	}
	if c := rcv.next(t); c.Path != "/one" {
		t.Fatalf("retry sent %s", c.Path)
	}
	shared.WaitCaughtUp(t)
	rcv.noneSoFar(t) // step 2 is not run again
}

func TestChainedResultsTravelWithTheRetry(t *testing.T) {
	rcv := newReceiver(t)
	var failed atomic.Bool
	rcv.respondWith(func(c captured, w http.ResponseWriter) {
		switch {
		case c.Path == "/auth":
			_, _ = w.Write([]byte(`{"token":"tok-77"}`))
		case failed.CompareAndSwap(false, true):
			w.WriteHeader(503)
		}
	})
	createPipeline(t, `{"name":"chain","trigger_type":"fraud","steps":[
	  {"order":1,"name":"Auth","url":"`+rcv.URL+`/auth"},
	  {"order":2,"url":"`+rcv.URL+`/use","headers":{"Authorization":"Bearer {{steps.Auth.response.body.token}}"},"body_template":{"s":"{{steps.1.status}}"},
	   "retry_policy":{"max_attempts":2,"backoff_type":"fixed","initial_delay_seconds":5}}]}`)
	produce(t, "afftok.fraud", "ch", `{"type":"fraud.detected","data":{"id":"fr_ch"}}`)
	rcv.next(t)
	first, retry := rcv.next(t), rcv.next(t)
	for _, c := range []captured{first, retry} {
		if c.Path != "/use" || c.Header.Get("Authorization") != "Bearer tok-77" || string(c.Body) != `{"s":200}` {
			t.Fatalf("%s auth %q body %s", c.Path, c.Header.Get("Authorization"), c.Body)
		}
	}
	if retry.Header.Get("X-Afftok-Retry-Count") != "1" {
		t.Fatalf("retry count %s", retry.Header.Get("X-Afftok-Retry-Count"))
	}
	shared.WaitCaughtUp(t)
	rcv.noneSoFar(t) // step 1 is not called again
}

func TestPipelineStatusGovernsPendingRetries(t *testing.T) {
	policy := `"retry_policy":{"max_attempts":3,"backoff_type":"fixed","initial_delay_seconds":50}` // 1 s scaled
	t.Run("paused holds without spending attempts", func(t *testing.T) {
		rcv := newReceiver(t)
		rcv.respondWith(failFirst(1, 500, nil))
		p := createPipeline(t, `{"name":"pause","trigger_type":"conversion","steps":[{"order":1,"url":"`+rcv.URL+`/p",`+policy+`}]}`)
		id := p["id"].(string)
		produce(t, "afftok.conversions", "ps", `{"id":"evt_ps","type":"conversion.created","data":{"id":"conv_ps"}}`)
		rcv.next(t)
		if code, _ := api(t, "PUT", "/api/admin/webhooks/pipelines/"+id, `{"status":"paused"}`); code != 200 {
			t.Fatal("pause failed")
		}
		// The held task is looked at and deferred, twice, without an attempt.
		deferrals := 0
		var tiers []string
		for _, tier := range strings.Split(testTiers, ",") {
			tiers = append(tiers, "webhooks.retry."+tier)
		}
		readTopic(t, tiers[0], func(r *kgo.Record) bool {
			var task struct {
				PipelineID    string `json:"pipeline_id"`
				DeferredSince string `json:"deferred_since"`
			}
			if json.Unmarshal(r.Value, &task) == nil && task.PipelineID == id && task.DeferredSince != "" {
				deferrals++
			}
			return deferrals >= 2
		}, tiers[1:]...)
		rcv.noneSoFar(t)
		if code, _ := api(t, "PUT", "/api/admin/webhooks/pipelines/"+id, `{"status":"active"}`); code != 200 {
			t.Fatal("resume failed")
		}
		if c := rcv.next(t); c.Header.Get("X-Afftok-Retry-Count") != "1" {
			t.Fatalf("after resume: retry count %s", c.Header.Get("X-Afftok-Retry-Count"))
		}
	})
	t.Run("disabled moves them to the DLQ", func(t *testing.T) {
		rcv := newReceiver(t)
		rcv.respondWith(always(500))
		p := createPipeline(t, `{"name":"disable","trigger_type":"conversion","steps":[{"order":1,"url":"`+rcv.URL+`/d",`+policy+`}]}`)
		id := p["id"].(string)
		produce(t, "afftok.conversions", "ds", `{"id":"evt_ds","type":"conversion.created","data":{"id":"conv_ds"}}`)
		rcv.next(t)
		if code, _ := api(t, "PUT", "/api/admin/webhooks/pipelines/"+id, `{"status":"disabled"}`); code != 200 {
			t.Fatal("disable failed")
		}
		it := dlqItems(t, "/api/admin/webhooks/logs/dlq", id, 1)[0]
		if it["reason"] != "pipeline_disabled" {
			t.Fatalf("dlq item %v", it)
		}
		rcv.noneSoFar(t)
	})
	t.Run("deleted cancels them", func(t *testing.T) {
		rcv := newReceiver(t)
		rcv.respondWith(always(500))
		p := createPipeline(t, `{"name":"delete","trigger_type":"conversion","steps":[{"order":1,"url":"`+rcv.URL+`/x",`+policy+`}]}`)
		id := p["id"].(string)
		produce(t, "afftok.conversions", "dl", `{"id":"evt_dl","type":"conversion.created","data":{"id":"conv_dl"}}`)
		rcv.next(t)
		if code, _ := api(t, "DELETE", "/api/admin/webhooks/pipelines/"+id, nil); code != 200 {
			t.Fatal("delete failed")
		}
		if l := waitExecution(t, id, "conv_dl"); l["status"] != "cancelled" {
			t.Fatalf("log %v", l)
		}
		rcv.noneSoFar(t)
	})
}

// ownInstance starts a `webhookd dev` of a test's own (own data directory,
// chDB, admin API, topics under prefix, events on <prefix>events), so the
// test can stop, restart or retime it without touching the shared one.
func ownInstance(t *testing.T, prefix, tiers, scale string) *instance {
	t.Helper()
	return startInstance(t, "dev", merge(ownTopics(prefix), map[string]string{
		"WEBHOOKD_TOPIC_PARTITIONS": "2", "WEBHOOKD_RETRY_TIERS": tiers, "WEBHOOKD_RETRY_DELAY_SCALE": scale,
		"WEBHOOKD_SHUTDOWN_GRACE": "2s", "WEBHOOKD_ANALYTICS_FLUSH_INTERVAL": "100ms",
		"WEBHOOKD_BREAKER_FAILURES": "0", // these tests time the tiers; the breaker has its own
	}))
}

func TestRestartWhileTasksWaitInTheTiersLosesNothingAndIsNeverEarly(t *testing.T) {
	rcv := newReceiver(t)
	rcv.respondWith(failFirst(3, 500, nil))
	in := ownInstance(t, "rst.", testTiers, "0.02")
	in.CreatePipeline(t, `{"name":"restart","trigger_type":"click","steps":[{"order":1,"url":"`+rcv.URL+`/r",
	  "retry_policy":{"max_attempts":4,"backoff_type":"fixed","initial_delay_seconds":150}}]}`) // 3 s scaled
	for i := range 3 {
		produce(t, "rst.events", strconv.Itoa(i), fmt.Sprintf(`{"id":"evt_rst%d","type":"click.tracked","data":{"id":"clk_rst%d"}}`, i, i))
	}
	firsts := map[string]captured{}
	for range 3 {
		c := rcv.next(t)
		firsts[c.Header.Get("X-Afftok-Delivery-ID")] = c
	}
	in.Restart(t) // the three retries wait in the tiers while the process is down
	seen := map[string]bool{}
	for range 3 {
		c := rcv.next(t)
		id := c.Header.Get("X-Afftok-Delivery-ID")
		f, ok := firsts[id]
		if !ok || seen[id] || c.Header.Get("X-Afftok-Retry-Count") != "1" {
			t.Fatalf("unexpected retry %s (retry count %s)", id, c.Header.Get("X-Afftok-Retry-Count"))
		}
		seen[id] = true
		if gap := c.At.Sub(f.At); gap < 3*time.Second {
			t.Fatalf("retry came %v after the first attempt, before its 3s delay", gap)
		}
	}
	in.WaitCaughtUp(t)
	rcv.noneSoFar(t)
}

// TestRetryDelayAccuracy measures how late retries run with real (unscaled)
// delays on the real tier topics: fixed delays of 1–9 s (lateness measured)
// and jittered ones (checked never early), 20 events × 8 steps. Lateness = retry arrival − (first response + delay). It
// fails if any retry is early or p99 lateness exceeds 1 s, and logs the
// figures (go test -run Accuracy -v ./e2e).
func TestRetryDelayAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 15 s")
	}
	var mu sync.Mutex
	firstDone := map[string]time.Time{}
	var lateness, jittered []time.Duration
	delays := map[string]time.Duration{}
	done := make(chan struct{}, 1000)
	rcv := newReceiver(t)
	rcv.respondWith(func(c captured, w http.ResponseWriter) {
		id := c.Header.Get("X-Afftok-Delivery-ID")
		mu.Lock()
		defer mu.Unlock()
		if c.Header.Get("X-Afftok-Retry-Count") == "0" {
			w.WriteHeader(500)
			firstDone[id+c.Path] = time.Now()
			return
		}
		if strings.HasPrefix(c.Path, "/jitter") {
			// The jittered delay is not known here; the task carries it: the
			// retry's own signature timestamp is taken when it is sent, so
			// only the never-early bound (≥ 70% of the base) is checked.
			base := map[string]time.Duration{"/jitter2": 2 * time.Second, "/jitter6": 6 * time.Second}[c.Path]
			if gap := c.At.Sub(firstDone[id+c.Path]); gap < base*7/10 {
				t.Errorf("%s retried after %v, before the shortest jittered delay %v", c.Path, gap, base*7/10)
			}
			jittered = append(jittered, c.At.Sub(firstDone[id+c.Path]))
			done <- struct{}{}
			return
		}
		late := c.At.Sub(firstDone[id+c.Path]) - delays[c.Path]
		if late > 500*ms {
			t.Logf("late %v: %s first at %s", late.Round(ms), c.Path, firstDone[id+c.Path].Format("05.000"))
		}
		lateness = append(lateness, late)
		done <- struct{}{}
	})
	drained := make(chan struct{})
	go func() {
		for {
			select {
			case <-rcv.reqs: // timings are taken in respond; only drain here
			case <-drained:
				return
			}
		}
	}()
	defer close(drained)
	in := ownInstance(t, "acc.", "1s,5s,10s,30s,1m,5m,15m,1h", "1")
	var steps []string
	for _, d := range []int{1, 2, 3, 5, 7, 9} {
		path := fmt.Sprintf("/fixed%d", d)
		delays[path] = time.Duration(d) * time.Second
		steps = append(steps, fmt.Sprintf(`{"order":%d,"url":"%s%s","stop_on_failure":false,"retry_policy":{"max_attempts":2,"backoff_type":"fixed","initial_delay_seconds":%d}}`, len(steps)+1, rcv.URL, path, d))
	}
	// Jittered delays leave sub-second remainders after the tiers' holds.
	for _, d := range []int{2, 6} {
		path := fmt.Sprintf("/jitter%d", d)
		steps = append(steps, fmt.Sprintf(`{"order":%d,"url":"%s%s","stop_on_failure":false,"retry_policy":{"max_attempts":2,"backoff_type":"exponential_jitter","initial_delay_seconds":%d,"jitter_factor":0.3}}`, len(steps)+1, rcv.URL, path, d))
	}
	in.CreatePipeline(t, `{"name":"acc","trigger_type":"click","steps":[`+strings.Join(steps[:3], ",")+`]}`)
	in.CreatePipeline(t, `{"name":"acc2","trigger_type":"click","steps":[`+strings.Join(steps[3:6], ",")+`]}`)
	in.CreatePipeline(t, `{"name":"acc3","trigger_type":"click","steps":[`+strings.Join(steps[6:], ",")+`]}`)
	const events = 20
	for i := range events {
		produce(t, "acc.events", strconv.Itoa(i), fmt.Sprintf(`{"id":"evt_acc%d","type":"click.tracked","data":{"id":"clk_acc%d"}}`, i, i))
	}
	// Steps run in order, so a pipeline's later steps start after its earlier
	// retries: wait for every retry.
	deadline := time.After(arriveWithin)
	for range events * len(steps) {
		select {
		case <-done:
		case <-deadline:
			t.Fatalf("only %d retries arrived", len(lateness))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	sort.Slice(lateness, func(i, j int) bool { return lateness[i] < lateness[j] })
	pct := func(p float64) time.Duration { return lateness[int(p*float64(len(lateness)-1))] }
	t.Logf("retry lateness over %d retries (fixed delays 1–9 s, tiers 1s,5s,10s,…): min %v p50 %v p99 %v max %v; %d jittered retries, none early",
		len(lateness), lateness[0].Round(ms), pct(0.5).Round(ms), pct(0.99).Round(ms), lateness[len(lateness)-1].Round(ms), len(jittered))
	if lateness[0] < 0 {
		t.Errorf("a retry ran %v early", -lateness[0])
	}
	if pct(0.99) > time.Second {
		t.Errorf("p99 lateness %v is over 1 s", pct(0.99))
	}
}
