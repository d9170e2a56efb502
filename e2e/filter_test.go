package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFilterDeliversOnlyMatchingEventsAndLogsNoneOfTheOthers: events go
// through Kafka to a pipeline with a filter and to one without; the
// filtered pipeline's receiver gets only the matching events, the metric
// counts the others, the execution log has none of them, and the pipeline
// without a filter gets every event.
func TestFilterDeliversOnlyMatchingEventsAndLogsNoneOfTheOthers(t *testing.T) {
	in := ownInstance(t, "flt.", testTiers, "0.02")
	rcv, all := newReceiver(t), newReceiver(t)

	// Validation on save names the field.
	code, out := in.API(t, "POST", "/api/admin/webhooks/pipelines", `{"name":"bad","trigger_type":"conversion",
	  "filter":{"conversion.amount":{"$gte":"ten"},"click.ua":{"$regex":"(a"}},"steps":[{"order":1,"url":"`+rcv.URL+`/x"}]}`)
	if errs := fmt.Sprint(out["error"]); code != 400 || !strings.Contains(errs, "field:filter.conversion.amount.$gte message:must be a number") ||
		!strings.Contains(errs, "field:filter.click.ua.$regex message:is not a valid RE2 regular expression") {
		t.Fatalf("invalid filter: %d %v", code, out)
	}

	const flt = `{"conversion.amount": {"$gte": 10}, "click.country": {"$in": ["US", "CA"]}}`
	p := in.CreatePipeline(t, `{"name":"filtered","trigger_type":"conversion","filter":`+flt+`,
	  "steps":[{"order":1,"url":"`+rcv.URL+`/hook","body_template":{"id":"{{conversion.id}}"}}]}`)
	pid := p["id"].(string)
	want, _ := json.Marshal(map[string]any{"conversion.amount": map[string]any{"$gte": 10}, "click.country": map[string]any{"$in": []string{"US", "CA"}}})
	if got, _ := json.Marshal(p["filter"]); string(got) != string(want) {
		t.Fatalf("create answers filter %s", got)
	}
	code, out = in.API(t, "GET", "/api/admin/webhooks/pipelines/"+pid, nil)
	if got, _ := json.Marshal(out["data"].(map[string]any)["filter"]); code != 200 || string(got) != string(want) {
		t.Fatalf("GET shows filter %s", got)
	}
	allID := in.CreatePipeline(t, `{"name":"unfiltered","trigger_type":"conversion","steps":[{"order":1,"url":"`+all.URL+`/all"}]}`)["id"].(string)

	// The test route says when the sample would be filtered, and calls nothing.
	code, out = in.API(t, "POST", "/api/admin/webhooks/test/pipeline/"+pid, `{"test_data":{"conversion":{"id":"t","amount":5},"click":{"country":"US"}}}`)
	if d := out["data"].(map[string]any); code != 200 || d["status"] != "filtered" || d["filtered"] != true || len(d["steps"].([]any)) != 0 {
		t.Fatalf("test of a filtered sample: %d %v", code, out)
	}

	events := []struct {
		id, data string
		pass     bool
	}{
		{"c1", `"conversion":{"id":"c1","amount":50},"click":{"country":"US"}`, true},
		{"c2", `"conversion":{"id":"c2","amount":5},"click":{"country":"US"}`, false},    // too small
		{"c3", `"conversion":{"id":"c3","amount":50},"click":{"country":"DE"}`, false},   // wrong country
		{"c4", `"conversion":{"id":"c4","amount":"50"},"click":{"country":"US"}`, false}, // a string is not a number
		{"c5", `"conversion":{"id":"c5","amount":10},"click":{"country":"CA"}`, true},
		{"c6", `"conversion":{"id":"c6","amount":99}`, false}, // no click at all
	}
	for _, e := range events {
		produce(t, "flt.events", e.id, `{"id":"evt_`+e.id+`","trigger_type":"conversion","trigger_id":"`+e.id+`","data":{`+e.data+`}}`)
	}
	got := map[string]bool{}
	for range 2 {
		c := rcv.next(t)
		got[string(c.Body)] = true
	}
	if !got[`{"id":"c1"}`] || !got[`{"id":"c5"}`] {
		t.Fatalf("the filtered pipeline got %v, want c1 and c5", got)
	}
	for range events {
		all.next(t)
	}
	in.WaitCaughtUp(t) // every event fanned out and finished: nothing more can come
	rcv.noneSoFar(t)
	all.noneSoFar(t)
	if v := in.metric(t, `webhookd_deliveries_filtered_total{pipeline_id="`+pid+`"}`); v != 4 {
		t.Fatalf("webhookd_deliveries_filtered_total for the pipeline = %v, want 4", v)
	}
	if v := in.metric(t, `webhookd_deliveries_filtered_total{pipeline_id="`+allID+`"}`); v != 0 {
		t.Fatalf("the pipeline without a filter has a filtered count %v", v)
	}

	// The execution log has the two deliveries and nothing for the others:
	// once every execution of the unfiltered pipeline is in, the sink has
	// read past anything the filtered events could have written.
	for _, e := range events {
		in.WaitExecution(t, allID, e.id)
	}
	for _, id := range []string{"c1", "c5"} {
		if l := in.WaitExecution(t, pid, id); l["status"] != "completed" {
			t.Fatalf("execution %v", l)
		}
	}
	code, out = in.API(t, "GET", "/api/admin/webhooks/logs/recent?pipeline_id="+pid+"&limit=50", nil)
	logs := out["data"].(map[string]any)["logs"].([]any)
	if code != 200 || len(logs) != 2 {
		t.Fatalf("the filtered pipeline has %d executions logged, want 2: %v", len(logs), logs)
	}

	// {} removes the filter: every event is delivered again.
	code, out = in.API(t, "PUT", "/api/admin/webhooks/pipelines/"+pid, `{"filter":{}}`)
	if _, has := out["data"].(map[string]any)["filter"]; code != 200 || has {
		t.Fatalf("PUT filter {}: %d %v", code, out)
	}
	produce(t, "flt.events", "c7", `{"id":"evt_c7","trigger_type":"conversion","trigger_id":"c7","data":{"conversion":{"id":"c7","amount":1}}}`)
	if c := rcv.next(t); string(c.Body) != `{"id":"c7"}` {
		t.Fatalf("after the filter was removed: %s", c.Body)
	}
	all.next(t)

	// A DLQ redrive is not filtered again: the operator asked for it.
	flaky := newReceiver(t)
	flaky.respondWith(failFirst(1, 500, nil))
	dp := in.CreatePipeline(t, `{"name":"redrive","trigger_type":"click","filter":{"click.country":"US"},
	  "steps":[{"order":1,"url":"`+flaky.URL+`/r","retry_policy":{"max_attempts":1}}]}`)["id"].(string)
	produce(t, "flt.events", "k1", `{"id":"evt_k1","type":"click.tracked","data":{"id":"k1","country":"US"}}`)
	flaky.next(t)
	item := in.DLQItems(t, "/api/admin/webhooks/logs/dlq", dp, 1)[0]
	if code, out := in.API(t, "PUT", "/api/admin/webhooks/pipelines/"+dp, `{"filter":{"click.country":"CA"}}`); code != 200 {
		t.Fatalf("PUT filter: %d %v", code, out)
	}
	if code, out := in.API(t, "POST", "/api/admin/webhooks/logs/dlq/"+item["id"].(string)+"/retry", nil); code != 202 {
		t.Fatalf("retry: %d %v", code, out)
	}
	if c := flaky.next(t); c.Header.Get("X-Afftok-Retry-Count") != "0" {
		t.Fatalf("redrive %v", c.Header)
	}
	in.WaitCaughtUp(t)
	flaky.noneSoFar(t)
}

// TestFailoverRetryPolicyBoundsTheFailoverAttempts: with a
// failover_retry_policy of 2 fixed attempts the failover URL is called
// exactly twice, its own delay apart, and the step is in the DLQ; without
// one, three times (the default), as before.
func TestFailoverRetryPolicyBoundsTheFailoverAttempts(t *testing.T) {
	code, out := api(t, "POST", "/api/admin/webhooks/pipelines", `{"name":"bad-fo","trigger_type":"fraud","failover_url":"http://example.com/fo",
	  "failover_retry_policy":{"max_attempts":0,"backoff_type":"linear"},"steps":[{"order":1,"url":"http://example.com/x"}]}`)
	if errs := fmt.Sprint(out["error"]); code != 400 || !strings.Contains(errs, "field:failover_retry_policy.max_attempts message:must be between 1 and 25") ||
		!strings.Contains(errs, "field:failover_retry_policy.backoff_type") {
		t.Fatalf("invalid failover_retry_policy: %d %v", code, out)
	}

	failing := func(c captured, w http.ResponseWriter) { w.WriteHeader(502) }
	custom, dflt := newReceiver(t), newReceiver(t)
	custom.respondWith(failing)
	dflt.respondWith(failing)
	steps := `"steps":[{"order":1,"url":"%s/primary","retry_policy":{"max_attempts":1}}]`
	cp := createPipeline(t, `{"name":"fo-custom","trigger_type":"fraud","failover_url":"`+custom.URL+`/backup",
	  "failover_retry_policy":{"max_attempts":2,"backoff_type":"fixed","initial_delay_seconds":10},`+fmt.Sprintf(steps, custom.URL)+`}`)
	dp := createPipeline(t, `{"name":"fo-default","trigger_type":"fraud","failover_url":"`+dflt.URL+`/backup",`+fmt.Sprintf(steps, dflt.URL)+`}`)
	if got, _ := json.Marshal(cp["failover_retry_policy"]); string(got) != `{"backoff_type":"fixed","initial_delay_seconds":10,"max_attempts":2}` {
		t.Fatalf("create answers failover_retry_policy %s", got)
	}
	if _, has := dp["failover_retry_policy"]; has {
		t.Fatalf("a pipeline without failover_retry_policy shows one: %v", dp)
	}

	produce(t, "afftok.fraud", "fo", `{"id":"evt_fopol","type":"fraud.detected","data":{"id":"fr_fopol"}}`)
	hits := func(r *receiver, backups int) []captured {
		if c := r.next(t); c.Path != "/primary" {
			t.Fatalf("first request to %s", c.Path)
		}
		var got []captured
		for i := range backups {
			c := r.next(t)
			if c.Path != "/backup" || c.Header.Get("X-Afftok-Retry-Count") != strconv.Itoa(i) || c.Header.Get("X-Afftok-Failover") != "true" {
				t.Fatalf("failover attempt %d: %s retry count %s", i, c.Path, c.Header.Get("X-Afftok-Retry-Count"))
			}
			got = append(got, c)
		}
		return got
	}
	checkGaps(t, hits(custom, 2), []time.Duration{200 * ms}, []time.Duration{200 * ms}) // 10 s scaled 0.02
	checkGaps(t, hits(dflt, 3), []time.Duration{100 * ms, 200 * ms}, []time.Duration{100 * ms, 200 * ms})
	for _, c := range []struct {
		id       string
		attempts float64
	}{{cp["id"].(string), 2}, {dp["id"].(string), 3}} {
		it := dlqItems(t, "/api/admin/webhooks/logs/dlq", c.id, 1)[0]
		if it["attempts"] != c.attempts || it["last_error"] != "HTTP 502" {
			t.Fatalf("dlq item %v, want %v attempts", it, c.attempts)
		}
	}
	shared.WaitCaughtUp(t)
	custom.noneSoFar(t) // exactly two failover attempts
	dflt.noneSoFar(t)   // exactly three

	// An explicit zero is a mistake, not a reset; {} restores the default.
	code, out = api(t, "PUT", "/api/admin/webhooks/pipelines/"+cp["id"].(string), `{"failover_retry_policy":{"max_attempts":0}}`)
	if errs := fmt.Sprint(out["error"]); code != 400 || !strings.Contains(errs, "field:failover_retry_policy.max_attempts") {
		t.Fatalf("PUT failover_retry_policy max_attempts 0: %d %v", code, out)
	}
	code, out = api(t, "PUT", "/api/admin/webhooks/pipelines/"+cp["id"].(string), `{"failover_retry_policy":{}}`)
	if _, has := out["data"].(map[string]any)["failover_retry_policy"]; code != 200 || has {
		t.Fatalf("PUT failover_retry_policy {}: %d %v", code, out)
	}
}
