package analytics

import (
	"context"
	"testing"
	"time"

	"github.com/afftok/webhookd/delivery"
)

// Execution reads attempts by the execution's pipeline and from its start
// (the attempts' sorting key) instead of scanning every attempt: each of
// its attempts is still there, one that a replica's clock put up to a
// minute before the execution's start too, and none of another pipeline's.
func TestExecutionReadsItsAttemptsByPipelineAndStart(t *testing.T) {
	s := openTestStore(t, "execbound")
	ctx := context.Background()
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	att := func(pipe string, attempt int, at time.Time) delivery.Attempt {
		return delivery.Attempt{AttemptID: delivery.AttemptID("exec_1", 1, attempt, false) + pipe, ExecutionID: "exec_1", PipelineID: pipe,
			TriggerType: "conversion", StepID: "s", StepOrder: 1, Attempt: attempt, Status: "failed", HTTPStatus: 500, StartedAt: at}
	}
	attempts := []delivery.Attempt{att("pipe_1", 0, t0.Add(-30*time.Second)), att("pipe_1", 1, t0.Add(time.Hour)), att("pipe_other", 2, t0)}
	execs := []delivery.Execution{{ExecutionID: "exec_1", PipelineID: "pipe_1", TriggerType: "conversion", Status: "failed", StartedAt: t0, CompletedAt: t0.Add(time.Hour), Seq: 2}}
	if err := s.Write(ctx, &Batch{Attempts: attempts, AttemptOrigins: origins("webhookd.executions", 0, 0, len(attempts)),
		Executions: execs, ExecutionOrigins: origins("webhookd.executions", 0, 10, len(execs))}); err != nil {
		t.Fatal(err)
	}
	ex, atts, err := s.Execution(ctx, "exec_1")
	if err != nil || ex == nil {
		t.Fatalf("%v %v", ex, err)
	}
	if len(atts) != 2 || atts[0].Attempt != 0 || atts[1].Attempt != 1 || ex.Steps[0].Attempts != 2 {
		t.Errorf("attempts %+v, steps %+v", atts, ex.Steps)
	}
}
