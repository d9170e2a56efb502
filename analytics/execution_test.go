package analytics

import (
	"context"
	"testing"
	"time"

	"github.com/afftok/webhookd/delivery"
)

// One execution: its steps as the list shows them, and every attempt in
// the order made, with the request's (redacted) URL, tier and failover;
// an unknown or hostile id is none.
func TestExecutionWithEveryAttempt(t *testing.T) {
	s := openTestStore(t, "execone")
	ctx := context.Background()
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	att := func(exec string, step, attempt int, failover bool, tier, status string, code int, at time.Time) delivery.Attempt {
		return delivery.Attempt{AttemptID: delivery.AttemptID(exec, step, attempt, failover), ExecutionID: exec, DeliveryID: "wh_del_1",
			PipelineID: "pipe_1", PipelineName: "P", TriggerType: "conversion", TriggerID: "conv_1", StepID: "step_1", StepName: "CRM",
			StepOrder: step, Attempt: attempt, Failover: failover, Tier: tier, Status: status, HTTPStatus: code, LatencyMS: 40,
			RequestURL: "https://crm.example/h?key=[redacted]", RequestBody: `{"id":"conv_1"}`, ResponseBody: "<b>busy</b>", StartedAt: at}
	}
	attempts := []delivery.Attempt{
		att("exec_1", 1, 0, false, "", "failed", 503, t0),
		att("exec_1", 1, 1, false, "tier1", "failed", 502, t0.Add(time.Second)),
		att("exec_1", 1, 1, true, "failover", "success", 200, t0.Add(2*time.Second)),
		att("exec_2", 1, 0, false, "", "success", 200, t0.Add(time.Minute)),
	}
	execs := []delivery.Execution{
		{ExecutionID: "exec_1", DeliveryID: "wh_del_1", PipelineID: "pipe_1", PipelineName: "P", TriggerType: "conversion", TriggerID: "conv_1", Status: "completed", StartedAt: t0, CompletedAt: t0.Add(2 * time.Second), Seq: 2},
		{ExecutionID: "exec_2", DeliveryID: "wh_del_1", PipelineID: "pipe_1", PipelineName: "P", TriggerType: "conversion", TriggerID: "conv_1", Status: "completed", StartedAt: t0.Add(time.Minute), CompletedAt: t0.Add(time.Minute), Seq: 2},
	}
	if err := s.Write(ctx, &Batch{Attempts: attempts, AttemptOrigins: origins("webhookd.executions", 0, 0, len(attempts)),
		Executions: execs, ExecutionOrigins: origins("webhookd.executions", 0, 10, len(execs))}); err != nil {
		t.Fatal(err)
	}
	ex, atts, err := s.Execution(ctx, "exec_1")
	if err != nil || ex == nil || ex.ID != "exec_1" || ex.Status != "completed" || ex.DurationMS != 2000 || len(ex.Steps) != 1 || ex.Steps[0].Attempts != 3 || !ex.Steps[0].Failover {
		t.Fatalf("exec_1 = %+v, %v", ex, err)
	}
	if len(atts) != 3 {
		t.Fatalf("attempts = %+v", atts)
	}
	want := []struct {
		attempt  int64
		failover bool
		tier     string
		code     int64
	}{{0, false, "", 503}, {1, false, "tier1", 502}, {1, true, "failover", 200}}
	for i, w := range want {
		a := atts[i]
		if a.Attempt != w.attempt || a.Failover != w.failover || a.Tier != w.tier || a.HTTPStatus != w.code || a.StepName != "CRM" || a.StepOrder != 1 ||
			a.RequestURL != "https://crm.example/h?key=[redacted]" || a.RequestBody != `{"id":"conv_1"}` || a.ResponseBody != "<b>busy</b>" ||
			!a.StartedAt.Equal(t0.Add(time.Duration(i)*time.Second)) {
			t.Errorf("attempt %d = %+v", i, a)
		}
	}
	for _, unknown := range []string{"exec_nope", "", "exec_1' OR 1=1 --", "exec_1\x00' OR 1=1 --"} {
		if none, atts, err := s.Execution(ctx, unknown); err != nil || none != nil || atts != nil {
			t.Errorf("execution %q = %+v %+v, %v", unknown, none, atts, err)
		}
	}
}
