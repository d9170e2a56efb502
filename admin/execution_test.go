package admin

import (
	"context"
	"strings"
	"testing"

	"github.com/afftok/webhookd/analytics"
)

// oneExecution knows execution exec_1 and records the ids looked up.
type oneExecution struct{ asked *[]string }

func (oneExecution) RecentExecutions(context.Context, analytics.ExecutionFilter) ([]analytics.ExecutionLog, int64, error) {
	return nil, 0, nil
}

func (l oneExecution) Execution(_ context.Context, id string) (*analytics.ExecutionLog, []analytics.AttemptLog, error) {
	*l.asked = append(*l.asked, id)
	if id != "exec_1" {
		return nil, nil, nil
	}
	return &analytics.ExecutionLog{ID: id, Steps: []analytics.StepLog{}}, []analytics.AttemptLog{}, nil
}

func (oneExecution) PipelineStats(context.Context, []string, analytics.Range) (map[string]*analytics.PipelineStats, error) {
	return nil, nil
}

func (oneExecution) PipelineDetailStats(context.Context, string, analytics.Range) (*analytics.PipelineStats, map[string]*analytics.StepStats, error) {
	return nil, nil, nil
}

// GET /logs/executions/:id looks up only ids an execution can have, and
// answers any other 404 in the error model without echoing it back.
func TestGetExecutionBoundsTheID(t *testing.T) {
	var asked []string
	s := New(Options{Token: testToken, Logs: oneExecution{&asked}})
	if status, body := serve(t, s, "GET", "/api/admin/webhooks/logs/executions/exec_1", ""); status != 200 || !strings.Contains(string(body), `"id":"exec_1"`) {
		t.Fatalf("exec_1: %d %s", status, body)
	}
	if status, body := serve(t, s, "GET", "/api/admin/webhooks/logs/executions/exec_2", ""); status != 404 || !strings.Contains(string(body), `"code":"not_found"`) {
		t.Fatalf("exec_2: %d %s", status, body)
	}
	long := "exec_" + strings.Repeat("a", 300)
	status, body := serve(t, s, "GET", "/api/admin/webhooks/logs/executions/"+long, "")
	if status != 404 || !strings.Contains(string(body), `"code":"not_found"`) || strings.Contains(string(body), long) {
		t.Errorf("300-character id: %d %s", status, body)
	}
	if strings.Join(asked, ",") != "exec_1,exec_2" {
		t.Errorf("looked up %q, want exec_1 and exec_2 only", asked)
	}
	if !validExecutionID("exec_rpl_0123_abc") || validExecutionID("") || validExecutionID("exec_\x00") || validExecutionID("exec_\u200b") || validExecutionID("\xff") {
		t.Error("validExecutionID")
	}
}
