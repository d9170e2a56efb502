package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// metric reads one sample of the instance's /metrics (0 when absent).
func (in *instance) metric(t testing.TB, sample string) float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+in.AdminAddr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %q", sample, v)
			}
			return f
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return 0
}

// waitSweeps waits until the auto-disable checker has swept n more times
// (its debug log line): what it could decide on the data it had, it has.
func (in *instance) waitSweeps(t testing.TB, n int) {
	t.Helper()
	from := in.logs.count()
	for range n {
		_, err := in.logs.waitLine(from, func(l string) (string, bool) {
			from++
			return l, strings.Contains(l, `"auto-disable sweep"`)
		}, in.proc.done, arriveWithin)
		if err != nil {
			t.Fatalf("%s: no auto-disable sweep: %v", in.Name, err)
		}
	}
}

func (in *instance) operatorEvents(t testing.TB, query string) []map[string]any {
	t.Helper()
	code, out := in.API(t, "GET", "/api/admin/webhooks/operator-events"+query, nil)
	if code != 200 {
		t.Fatalf("operator events: %d %v", code, out)
	}
	var evs []map[string]any
	for _, e := range out["data"].(map[string]any)["events"].([]any) {
		evs = append(evs, e.(map[string]any))
	}
	return evs
}

// A pipeline whose receiver answers every request 500 (auto_disable_after_seconds
// 4, two attempts per event, an event every 300 ms) is disabled once its first
// failure is 4 s old: GET shows disabled_reason and disabled_at, one operator
// event is listed, produced and counted, and a PUT of status active re-enables
// it with the failure streak restarted (one more failure does not disable it
// again). Logs the detection latency: from the window elapsing (first failure
// + 4 s, or the 10th failure if later) to disabled_at.
func TestAPipelineFailingEveryAttemptIsAutoDisabledOnceAndCanBeReenabled(t *testing.T) {
	in := startInstance(t, "dev", merge(sharedEnv, ownTopics("adis.")))
	const window = 4 * time.Second
	rcv := newReceiver(t)
	rcv.respondWith(always(500))
	healthy := newReceiver(t) // answers 200
	var mu sync.Mutex
	var failures []time.Time
	stopDrain := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case c := <-rcv.reqs:
				mu.Lock()
				failures = append(failures, c.At)
				mu.Unlock()
			case <-healthy.reqs:
			case <-stopDrain:
				return
			}
		}
	}()
	defer func() { close(stopDrain); <-drained }()
	events0 := in.metric(t, `webhookd_operator_events_total{type="pipeline_auto_disabled"}`)

	p := in.CreatePipeline(t, `{"name":"always-500","trigger_type":"click","auto_disable_after_seconds":4,
	  "steps":[{"order":1,"url":"`+rcv.URL+`/hook","retry_policy":{"max_attempts":2,"backoff_type":"fixed","initial_delay_seconds":5}}]}`)
	id := p["id"].(string)
	if p["auto_disable_after_seconds"] != 4.0 || p["status"] != "active" {
		t.Fatalf("created %v", p)
	}
	// Same events, same window, a receiver that answers: never disabled.
	// (It also keeps the checker sweeping every second, a tenth of the
	// shortest window of an active pipeline, after the other is disabled.)
	ok := in.CreatePipeline(t, `{"name":"healthy","trigger_type":"click","auto_disable_after_seconds":4,"steps":[{"order":1,"url":"`+healthy.URL+`/ok"}]}`)
	get := func() map[string]any {
		code, out := in.API(t, "GET", "/api/admin/webhooks/pipelines/"+id, nil)
		if code != 200 {
			t.Fatalf("GET: %d %v", code, out)
		}
		return out["data"].(map[string]any)
	}

	var got map[string]any
	var seenDisabled time.Time
	deadline := time.Now().Add(arriveWithin)
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("not disabled within %v; %d failed attempts so far", arriveWithin, len(failures))
		}
		produce(t, "adis.events", "k", fmt.Sprintf(`{"id":"evt_adis_%d","type":"click.tracked","data":{"id":"clk_%d"}}`, i, i))
		time.Sleep(300 * time.Millisecond) // the event rate, not a wait for a result
		if got = get(); got["status"] == "disabled" {
			seenDisabled = time.Now()
			break
		}
	}
	if reason, _ := got["disabled_reason"].(string); !strings.Contains(reason, "every attempt failed for 4s") {
		t.Errorf("disabled_reason %q", got["disabled_reason"])
	}
	disabledAt, err := time.Parse(time.RFC3339Nano, fmt.Sprint(got["disabled_at"]))
	if err != nil {
		t.Fatalf("disabled_at %v: %v", got["disabled_at"], err)
	}
	mu.Lock()
	first, n := failures[0], len(failures)
	elapsed := first.Add(window)
	if n >= 10 && failures[9].After(elapsed) {
		elapsed = failures[9]
	}
	mu.Unlock()
	if disabledAt.Before(elapsed.Add(-250 * time.Millisecond)) { // the receiver stamps a little after webhookd
		t.Fatalf("disabled at %v, before the window elapsed (%v)", disabledAt, elapsed)
	}
	t.Logf("auto-disable detection latency: %v from the window elapsing to disabled_at (GET saw it %v after); %d failed attempts by then",
		disabledAt.Sub(elapsed).Round(time.Millisecond), seenDisabled.Sub(elapsed).Round(time.Millisecond), n)
	in.WaitLog(t, "pipeline auto-disabled", id)

	// More sweeps change nothing: one disable, one event, counted once.
	in.waitSweeps(t, 3)
	t.Logf("%v: swept 3 more times", time.Since(first).Round(time.Millisecond))
	evs := in.operatorEvents(t, "")
	if len(evs) != 1 || evs[0]["type"] != "pipeline_auto_disabled" || evs[0]["pipeline_id"] != id || evs[0]["failures"].(float64) < 10 ||
		evs[0]["window_seconds"] != 4.0 || evs[0]["revision"] != got["revision"] {
		t.Fatalf("operator events %v", evs)
	}
	if d := in.metric(t, `webhookd_operator_events_total{type="pipeline_auto_disabled"}`) - events0; d != 1 {
		t.Errorf("webhookd_operator_events_total{type=pipeline_auto_disabled} rose by %v, want 1", d)
	}
	if d := in.metric(t, `webhookd_pipelines_auto_disabled_total`); d != 1 {
		t.Errorf("webhookd_pipelines_auto_disabled_total %v, want 1", d)
	}
	readTopic(t, "adis.webhooks.operator-events", func(r *kgo.Record) bool { return string(r.Key) == id })

	// Re-enable: the streak restarts, so one more failure does not disable it.
	t.Logf("%v: re-enabling", time.Since(first).Round(time.Millisecond))
	code, out := in.API(t, "PUT", "/api/admin/webhooks/pipelines/"+id, `{"status":"active"}`)
	if code != 200 {
		t.Fatalf("PUT status active: %d %v", code, out)
	}
	got = get()
	if got["status"] != "active" || got["disabled_reason"] != nil || got["disabled_at"] != nil || got["reenabled_at"] == nil {
		t.Fatalf("re-enabled pipeline %v", got)
	}
	produce(t, "adis.events", "k", `{"id":"evt_adis_after","type":"click.tracked","data":{"id":"clk_after"}}`)
	in.WaitExecution(t, id, "clk_after") // its attempts are in ClickHouse
	t.Logf("%v: the failure after the re-enable is logged", time.Since(first).Round(time.Millisecond))
	in.waitSweeps(t, 2)
	if got = get(); got["status"] != "active" {
		t.Fatalf("disabled again at once after the re-enable: %v", got)
	}
	if _, h := in.API(t, "GET", "/api/admin/webhooks/pipelines/"+ok["id"].(string), nil); h["data"].(map[string]any)["status"] != "active" {
		t.Fatalf("the healthy pipeline is %v", h["data"])
	}
	evs = in.operatorEvents(t, "?page=1&limit=1")
	if len(evs) != 1 || evs[0]["type"] != "pipeline_enabled" {
		t.Fatalf("newest operator event %v, want the re-enable", evs)
	}
	if evs = in.operatorEvents(t, "?type=pipeline_auto_disabled&pipeline_id="+id); len(evs) != 1 {
		t.Fatalf("auto-disable events %v", evs)
	}
}
