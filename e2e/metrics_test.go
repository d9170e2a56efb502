package e2e

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// scrape reads an instance's /metrics as series ("name{labels}", labels
// as Prometheus prints them: sorted by name) to values.
func scrape(t testing.TB, in *instance) map[string]float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+in.AdminAddr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetricsReportAKnownWorkload runs a known workload through a fresh
// instance — three clicks delivered, one conversion failing every attempt
// into the DLQ (and tripping its host's breaker), three clicks a filter
// rejects — and reads the numbers an SRE would alert on from /metrics:
// names, labels and values.
func TestMetricsReportAKnownWorkload(t *testing.T) {
	in := startInstance(t, "dev", merge(sharedEnv, ownTopics("metrics."), map[string]string{
		"WEBHOOKD_QUEUE_METRICS_INTERVAL": "200ms",
		"WEBHOOKD_BREAKER_FAILURES":       "3", "WEBHOOKD_BREAKER_COOLDOWN": "1h",
	}))
	ok, failing := newReceiver(t), newReceiver(t)
	failing.respondWith(func(_ captured, w http.ResponseWriter) { w.WriteHeader(500) })
	clicks := in.CreatePipeline(t, `{"name":"m-clicks","trigger_type":"click","steps":[{"order":1,"url":"`+ok.URL+`/ok"}]}`)["id"].(string)
	filtered := in.CreatePipeline(t, `{"name":"m-filtered","trigger_type":"click","filter":{"click.id":{"$regex":"^never$"}},"steps":[{"order":1,"url":"`+ok.URL+`/never"}]}`)["id"].(string)
	dead := in.CreatePipeline(t, `{"name":"m-dead","trigger_type":"conversion","steps":[{"order":1,"url":"`+failing.URL+`/fail",
		"retry_policy":{"max_attempts":3,"backoff_type":"fixed","initial_delay_seconds":1,"max_delay_seconds":300}}]}`)["id"].(string)

	for _, v := range []string{
		`{"id":"evt_m1","type":"click.tracked","data":{"id":"clk_m1"}}`,
		`{"id":"evt_m2","type":"click.tracked","data":{"id":"clk_m2"}}`,
		`{"id":"evt_m3","type":"click.tracked","data":{"id":"clk_m3"}}`,
		`{"id":"evt_m4","type":"conversion.created","data":{"id":"conv_m4"}}`,
	} {
		if err := producer.ProduceSync(t.Context(), &kgo.Record{Topic: "metrics.events", Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"clk_m1", "clk_m2", "clk_m3"} {
		in.WaitExecution(t, clicks, id)
	}
	in.WaitExecution(t, dead, "conv_m4")
	in.DLQItems(t, "/api/admin/webhooks/logs/dlq", dead, 1)
	in.WaitCaughtUp(t)

	// Counters and histograms are exact once the work is done.
	want := map[string]float64{
		`webhookd_events_consumed_total{topic="metrics.events"}`:                                 4,
		`webhookd_attempts_total{status="success",trigger_type="click"}`:                         3,
		`webhookd_attempts_total{status="failed",trigger_type="conversion"}`:                     3,
		`webhookd_deliveries_total{status="completed",trigger_type="click"}`:                     3,
		`webhookd_deliveries_total{status="retrying",trigger_type="conversion"}`:                 2,
		`webhookd_deliveries_total{status="failed",trigger_type="conversion"}`:                   1,
		`webhookd_deliveries_filtered_total{pipeline_id="` + filtered + `"}`:                     3,
		`webhookd_dead_letters_total{reason="retries_exhausted"}`:                                1,
		`webhookd_attempt_duration_seconds_count`:                                                6,
		`webhookd_attempt_duration_seconds_bucket{le="300"}`:                                     6,
		`webhookd_attempt_duration_seconds_bucket{le="+Inf"}`:                                    6,
		`webhookd_pipelines_auto_disabled_total`:                                                 0,
		`webhookd_in_flight_requests`:                                                            0,
		`webhookd_breakers{state="open"}`:                                                        1,
		`webhookd_breakers{state="closed"}`:                                                      1,
		`webhookd_host_breaker_state{host="` + strings.TrimPrefix(failing.URL, "http://") + `"}`: 1,
	}
	// Gauges computed every 200 ms and the sink's rows settle a little
	// later: polled until they do (no signal reaches the test for them).
	settled := map[string]float64{
		`webhookd_dlq_items`: 1,
		`webhookd_consumer_lag{group="metrics.group",topic="metrics.events"}`:                     0,
		`webhookd_consumer_lag{group="metrics.group-failover",topic="metrics.webhooks.failover"}`: 0,
		`webhookd_retry_tier_depth{tier="100ms"}`:                                                 0,
		`webhookd_retry_tier_depth{tier="6s"}`:                                                    0,
		`webhookd_failover_depth`:                                                                 0,
		`webhookd_analytics_rows_total{table="attempts"}`:                                         6,
		`webhookd_analytics_rows_total{table="dlq_items"}`:                                        1,
		`webhookd_analytics_sink_failing`:                                                         0,
		`webhookd_analytics_sink_backoff_seconds`:                                                 0,
		`webhookd_analytics_insert_errors_total`:                                                  0,
	}
	var got map[string]float64
	for deadline := time.Now().Add(arriveWithin); ; time.Sleep(100 * time.Millisecond) {
		got = scrape(t, in)
		done := true
		for k, v := range settled {
			if g, ok := got[k]; !ok || g != v {
				done = false
			}
		}
		if done || time.Now().After(deadline) {
			break
		}
	}
	for k, v := range settled {
		want[k] = v
	}
	for k, v := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("%s missing from /metrics", k)
		} else if g != v {
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
	// Present with any value: the sink's batch and latency histograms.
	for _, k := range []string{`webhookd_analytics_batch_rows_count`, `webhookd_analytics_insert_duration_seconds_count{table="attempts"}`} {
		if got[k] <= 0 {
			t.Errorf("%s = %v, want > 0", k, got[k])
		}
	}
	// Bounded cardinality: no series names a delivery, an execution or an
	// event, and the per-host series stay within their top-N.
	hosts := 0
	for k := range got {
		for _, bad := range []string{"delivery_id", "execution_id", "event_id", "wh_del_", "evt_m"} {
			if strings.Contains(k, bad) {
				t.Errorf("per-delivery label in %s", k)
			}
		}
		if strings.HasPrefix(k, "webhookd_host_") {
			hosts++
		}
	}
	if hosts > 2*10+1 {
		t.Errorf("%d per-host series", hosts)
	}
}
