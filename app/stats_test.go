package app_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/afftok/webhookd/analytics"
	"github.com/afftok/webhookd/delivery"
)

// The stats routes answer, for a known workload written twice (a replayed
// sink batch), the figures computed by hand — in the shapes the OpenAPI
// document describes (request checks every answer against it).
//
//	e1 ok 100 ms                          completed after 100 ms
//	e2 HTTP 500 200 ms, retry ok 300 ms    completed after 5.5 s
//	e3 HTTP 503 400 ms                     failed
//	e4 ok 250 ms                           completed after 500 ms
//
// Attempt latency 100 200 250 300 400: mean 250, p50 250, p95 = p99 = 400;
// time to success 100, 500, 5500; 3 of 4 completed.
func TestStatsRoutesShowHandComputedFigures(t *testing.T) {
	a := startStack(t)
	r := request(t, a, "POST", "/api/admin/webhooks/pipelines", []byte(`{"name":"stats-known","trigger_type":"conversion","steps":[{"order":1,"url":"https://hooks.example.com/x"}]}`))
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	p := dataOf(t, r)
	pid := p["id"].(string)
	stepID := p["steps"].([]any)[0].(map[string]any)["id"].(string)
	// Two days ago: within the tables' TTL, outside every default range.
	t0 := time.Now().UTC().Truncate(24 * time.Hour).Add(-48*time.Hour + 10*time.Hour)
	at := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339) }
	ms := time.Millisecond
	att := func(exec string, attempt int, status string, code int, lat int64, errText string, at time.Time) delivery.Attempt {
		return delivery.Attempt{AttemptID: delivery.AttemptID(exec, 1, attempt, false), ExecutionID: exec, PipelineID: pid, TriggerType: "conversion",
			StepID: stepID, StepOrder: 1, Attempt: attempt, Status: status, HTTPStatus: code, LatencyMS: lat, Error: errText, StartedAt: at}
	}
	ex := func(exec, status string, done time.Duration, seq int64) delivery.Execution {
		e := delivery.Execution{ExecutionID: exec, PipelineID: pid, TriggerType: "conversion", Status: status, StartedAt: t0, Seq: seq}
		if status != delivery.ExecRetrying {
			e.CompletedAt, e.Retried = t0.Add(done), seq > 1
		} else {
			e.FirstRetry = seq == 1
		}
		return e
	}
	b := &analytics.Batch{
		Attempts: []delivery.Attempt{att(pid+"e1", 0, "success", 200, 100, "", t0), att(pid+"e2", 0, "failed", 500, 200, "HTTP 500", t0),
			att(pid+"e2", 1, "success", 200, 300, "", t0.Add(5*time.Second)), att(pid+"e3", 0, "failed", 503, 400, "HTTP 503", t0),
			att(pid+"e4", 0, "success", 200, 250, "", t0)},
		Executions: []delivery.Execution{ex(pid+"e1", "completed", 100*ms, 1), ex(pid+"e2", "retrying", 0, 1), ex(pid+"e2", "completed", 5500*ms, 2),
			ex(pid+"e3", "failed", 400*ms, 1), ex(pid+"e4", "completed", 500*ms, 1)},
	}
	for i := range b.Attempts {
		b.AttemptOrigins = append(b.AttemptOrigins, analytics.Origin{Topic: "stats-test-" + pid, Offset: int64(i)})
	}
	for i := range b.Executions {
		b.ExecutionOrigins = append(b.ExecutionOrigins, analytics.Origin{Topic: "stats-test-" + pid, Offset: int64(100 + i)})
	}
	for range 2 {
		if err := a.Store.Write(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	span := "from=" + at(0) + "&to=" + at(time.Hour)
	get := func(target string, v any) {
		t.Helper()
		r := request(t, a, "GET", target, nil)
		if r.status != 200 {
			t.Fatalf("GET %s: %d %s", target, r.status, r.body)
		}
		var env struct{ Data json.RawMessage }
		if err := json.Unmarshal(r.body, &env); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(env.Data, v); err != nil {
			t.Fatal(err)
		}
	}
	type q struct{ P50, P95, P99 int64 }
	lat, tts := q{250, 400, 400}, q{500, 5500, 5500}

	var stats struct {
		Summary struct {
			TotalExecutionsToday int64   `json:"total_executions_today"`
			SuccessRate          float64 `json:"success_rate"`
			AvgLatencyMS         int64   `json:"avg_latency_ms"`
			LatencyMS            q       `json:"latency_ms"`
			TimeToSuccessMS      q       `json:"time_to_success_ms"`
		}
		ByTriggerType map[string]struct {
			Executions      int64   `json:"executions"`
			SuccessRate     float64 `json:"success_rate"`
			LatencyMS       q       `json:"latency_ms"`
			TimeToSuccessMS q       `json:"time_to_success_ms"`
		} `json:"by_trigger_type"`
		TopErrors []struct {
			Error string
			Count int64
		} `json:"top_errors"`
	}
	get("/api/admin/webhooks/stats?"+span+"&pipeline_id="+pid, &stats)
	s := stats.Summary
	if s.TotalExecutionsToday != 4 || s.SuccessRate != 75 || s.AvgLatencyMS != 250 || s.LatencyMS != lat || s.TimeToSuccessMS != tts {
		t.Errorf("summary = %+v", s)
	}
	if c := stats.ByTriggerType["conversion"]; c.Executions != 4 || c.SuccessRate != 75 || c.LatencyMS != lat || c.TimeToSuccessMS != tts || len(stats.ByTriggerType) != 1 {
		t.Errorf("by trigger type = %+v", stats.ByTriggerType)
	}
	if len(stats.TopErrors) != 2 || stats.TopErrors[0].Error != "HTTP 500" || stats.TopErrors[0].Count != 1 || stats.TopErrors[1].Error != "HTTP 503" {
		t.Errorf("top errors = %+v", stats.TopErrors)
	}

	var series struct {
		Interval string
		Buckets  []struct {
			Start                                        time.Time
			Executions, Successful, Failed, Retried, DLQ int64
			LatencyMSP50                                 int64 `json:"latency_ms_p50"`
			LatencyMSP95                                 int64 `json:"latency_ms_p95"`
			LatencyMSP99                                 int64 `json:"latency_ms_p99"`
		}
	}
	get("/api/admin/webhooks/stats/timeseries?interval=1m&from="+at(0)+"&to="+at(3*time.Minute)+"&pipeline_id="+pid, &series)
	if series.Interval != "1m" || len(series.Buckets) != 3 {
		t.Fatalf("series = %+v", series)
	}
	if b0 := series.Buckets[0]; !b0.Start.Equal(t0) || b0.Executions != 4 || b0.Successful != 3 || b0.Failed != 1 || b0.Retried != 1 || b0.DLQ != 0 || b0.LatencyMSP95 != 400 ||
		b0.LatencyMSP50 == 0 || b0.LatencyMSP50 > b0.LatencyMSP95 || b0.LatencyMSP99 < b0.LatencyMSP95 {
		t.Errorf("first bucket = %+v", b0)
	}
	if b2 := series.Buckets[2]; !b2.Start.Equal(t0.Add(2*time.Minute)) || b2.Executions != 0 || b2.LatencyMSP50 != 0 || b2.LatencyMSP95 != 0 || b2.LatencyMSP99 != 0 {
		t.Errorf("last bucket = %+v", b2)
	}

	type pstats struct {
		TotalExecutions int64   `json:"total_executions"`
		Successful      int64   `json:"successful"`
		Failed          int64   `json:"failed"`
		SuccessRate     float64 `json:"success_rate"`
		LatencyMS       q       `json:"latency_ms"`
		TimeToSuccessMS q       `json:"time_to_success_ms"`
	}
	var detail struct {
		Stats pstats
		Steps []struct {
			ID    string
			Stats struct {
				Executions, Successful int64
				LatencyMS              q `json:"latency_ms"`
				TimeToSuccessMS        q `json:"time_to_success_ms"`
			}
		}
	}
	get("/api/admin/webhooks/pipelines/"+pid+"?"+span, &detail)
	want := pstats{TotalExecutions: 4, Successful: 3, Failed: 1, SuccessRate: 75, LatencyMS: lat, TimeToSuccessMS: tts}
	if detail.Stats != want {
		t.Errorf("detail stats = %+v, want %+v", detail.Stats, want)
	}
	if st := detail.Steps[0].Stats; len(detail.Steps) != 1 || st.Executions != 4 || st.Successful != 3 || st.LatencyMS != lat || st.TimeToSuccessMS != tts {
		t.Errorf("step stats = %+v", detail.Steps)
	}
	var list struct {
		Pipelines []struct {
			ID    string
			Stats pstats
		}
	}
	get("/api/admin/webhooks/pipelines?"+span+"&pipeline_id="+pid, &list)
	if len(list.Pipelines) != 1 || list.Pipelines[0].ID != pid || list.Pipelines[0].Stats != want {
		t.Errorf("list = %+v", list.Pipelines)
	}
	// At most 1,500 buckets: 25 hours of minutes, not one more.
	get("/api/admin/webhooks/stats/timeseries?interval=1m&from="+at(0)+"&to="+at(25*time.Hour), &series)
	if len(series.Buckets) != 1500 {
		t.Errorf("25 h of minutes: %d buckets", len(series.Buckets))
	}
	if r := request(t, a, "GET", "/api/admin/webhooks/stats/timeseries?interval=1m&from="+at(0)+"&to="+at(25*time.Hour+time.Minute), nil); r.status != 400 || !contains(details(r), "interval") {
		t.Errorf("1,501 buckets: %d %s", r.status, r.body)
	}
	// The default range (the last 24 hours) holds none of it.
	get("/api/admin/webhooks/pipelines/"+pid, &detail)
	if detail.Stats.TotalExecutions != 0 {
		t.Errorf("default range stats = %+v", detail.Stats)
	}
}
