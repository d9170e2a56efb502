package analytics

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/afftok/webhookd/delivery"
)

// The log endpoints read from the newest hour or minute the counts allow;
// every page and total must be what a full FINAL scan of executions says:
// executions over five hours, some retried (then ended or still
// retrying), some written twice (a replay), some written without being fed
// to the counts, with pages crossing the hours.
func TestRecentExecutionsPagesMatchAFullScan(t *testing.T) {
	s := openTestStore(t, "logpages")
	ctx := context.Background()
	t0 := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	pipes, triggers := []string{"p1", "p2", "p3"}, []string{"click", "conversion"}
	finals := []string{delivery.ExecCompleted, delivery.ExecFailed, delivery.ExecPartial, delivery.ExecCancelled}
	var fed, unfed []delivery.Execution
	var atts []delivery.Attempt
	for i := range 600 {
		start := t0.Add(time.Duration(i) * 29 * time.Second) // about 4 h 50 m
		e := delivery.Execution{V: 1, Kind: delivery.KindExecution, ExecutionID: fmt.Sprintf("e%03d", i), PipelineID: pipes[i%3],
			TriggerType: triggers[i%2], Status: finals[i%4], StartedAt: start, CompletedAt: start.Add(time.Second), Seq: 10}
		atts = append(atts, delivery.Attempt{V: 1, Kind: delivery.KindAttempt, AttemptID: e.ExecutionID + "_a", ExecutionID: e.ExecutionID,
			PipelineID: e.PipelineID, TriggerType: e.TriggerType, StepID: "s", StepOrder: 1, Status: "success", HTTPStatus: 200, StartedAt: start})
		if i%5 == 0 { // went into retry first
			r := e
			r.Status, r.Seq, r.FirstRetry, r.CompletedAt = delivery.ExecRetrying, 1, true, time.Time{}
			fed = append(fed, r)
			if i%10 == 0 { // … and is still retrying
				continue
			}
			e.Retried = true
		}
		if i%37 == 0 {
			unfed = append(unfed, e) // written to the base table only
			continue
		}
		fed = append(fed, e)
	}
	counts := map[string]delivery.Execution{} // the latest state fed of each execution
	for _, e := range fed {
		counts[e.ExecutionID] = e
	}
	b := &Batch{Executions: fed, ExecutionOrigins: origins(wlExecTopic, 0, 0, len(fed)), Attempts: atts, AttemptOrigins: origins(wlExecTopic, 1, 0, len(atts))}
	for range 2 { // the second time, a replay
		if err := s.Write(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.InsertExecutions(ctx, unfed); err != nil {
		t.Fatal(err)
	}
	for _, f := range []ExecutionFilter{
		{Limit: 20},
		{Limit: 20, Offset: 140},
		{Limit: 50, Offset: 580},
		{Limit: 50, Offset: 700},
		{PipelineID: "p2", Limit: 10, Offset: 30},
		{PipelineID: "p1", TriggerType: "conversion", Limit: 7, Offset: 13},
		{Statuses: []string{delivery.ExecFailed, delivery.ExecPartial, delivery.ExecRetrying}, Limit: 20, Offset: 60},
		{Statuses: []string{delivery.ExecFailed}, Limit: 20, Offset: 20},
		{Statuses: []string{delivery.ExecRetrying}, Limit: 100},
		{PipelineID: "p3", Statuses: []string{delivery.ExecCompleted, delivery.ExecCancelled}, Limit: 5, Offset: 40},
	} {
		logs, total, err := s.RecentExecutions(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := s.b.query(ctx, `SELECT execution_id FROM `+s.t("executions")+` FINAL
			WHERE ({p:String} = '' OR pipeline_id = {p:String}) AND ({tt:String} = '' OR trigger_type = {tt:String})
			  AND (length({st:Array(String)}) = 0 OR has({st:Array(String)}, status))
			ORDER BY started_at DESC, execution_id`, Params{"p": f.PipelineID, "tt": f.TriggerType, "st": append([]string{}, f.Statuses...)})
		if err != nil {
			t.Fatal(err)
		}
		var all, got []string
		for _, r := range rows {
			all = append(all, asString(r[0]))
		}
		want := all[min(f.Offset, len(all)):min(f.Offset+f.Limit, len(all))]
		for _, l := range logs {
			got = append(got, l.ID)
			if len(l.Steps) != 1 || l.Steps[0].Status != "success" {
				t.Errorf("%+v: execution %s steps %+v", f, l.ID, l.Steps)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%+v: page %v, want %v", f, got, want)
		}
		// The counts know what was fed: an execution whose final state
		// was not fed counts as still retrying if that was fed, else not
		// at all. Where the page shows the end of the list, exact.
		var counted int64
		for _, e := range counts {
			if (f.PipelineID == "" || e.PipelineID == f.PipelineID) && (f.TriggerType == "" || e.TriggerType == f.TriggerType) &&
				(len(f.Statuses) == 0 || slices.Contains(f.Statuses, e.Status)) {
				counted++
			}
		}
		switch {
		case len(want) < f.Limit && (len(want) > 0 || f.Offset == 0):
			counted = int64(len(all))
		case len(want) == 0:
			counted = min(counted, int64(f.Offset))
		}
		if total != counted {
			t.Errorf("%+v: total %d, want %d (%d in the table)", f, total, counted, len(all))
		}
	}
}

// The tables added for speed are filled from what a database already
// holds when they are created: an older schema with data, migrated.
func TestLogAndQuantileTablesAreFilledFromExistingData(t *testing.T) {
	s := openTestStore(t, "backfill")
	ctx := context.Background()
	for _, b := range []*Batch{batchOf(workload(), 0, len(workload()))} {
		if err := s.Write(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	// As a database from before them: the new tables and views gone.
	for _, tbl := range []string{"executions_by_time", "executions_status_1h", "latency_hist_1m", "latency_hist_1h", "time_to_success_hist_1m", "time_to_success_hist_1h"} {
		for _, q := range []string{"DROP TABLE " + s.t(tbl+"_mv"), "DROP TABLE " + s.t(tbl)} {
			if err := s.b.exec(ctx, q, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	// …and their migrations not recorded.
	if err := s.b.exec(ctx, "DELETE FROM "+s.t("schema_migrations")+" WHERE version >= 3", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil { // and again: nothing twice
		t.Fatal(err)
	}
	checkWorkload(t, s)
	logs, total, err := s.RecentExecutions(ctx, ExecutionFilter{Limit: 2})
	if err != nil || total != 5 || len(logs) != 2 {
		t.Fatalf("logs: %d of %d, %v", len(logs), total, err)
	}
}

// With the aggregates kept longer than the logs (say a year against 30
// days), executions_status_1h still counts executions whose rows have
// expired: the log endpoints' pagination.total must not count them.
func TestRecentExecutionsTotalLeavesOutExpiredLogs(t *testing.T) {
	s, err := OpenChDB(FindChDB(), filepath.Join(t.TempDir(), "ch"), Options{Database: "kept", Retention: Retention{Logs: 2, Aggregates: 365}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var es []delivery.Execution
	for i := range 3 {
		start := now.Add(-time.Duration(i+1) * time.Minute)
		es = append(es, delivery.Execution{V: 1, Kind: delivery.KindExecution, ExecutionID: fmt.Sprintf("e%d", i), PipelineID: "p1",
			TriggerType: "click", Status: delivery.ExecCompleted, StartedAt: start, CompletedAt: start.Add(time.Second), Seq: 1})
	}
	if err := s.Write(ctx, &Batch{Executions: es, ExecutionOrigins: origins(wlExecTopic, 0, 0, len(es))}); err != nil {
		t.Fatal(err)
	}
	// Ten days ago: 500 executions counted, their rows expired (TTL).
	mustExec(t, s, fmt.Sprintf(`INSERT INTO kept.executions_status_1h VALUES (toStartOfHour(toDateTime(%d, 'UTC')), 'p1', 'click', 'completed', 500)`,
		now.Add(-10*24*time.Hour).Unix()))
	logs, total, err := s.RecentExecutions(ctx, ExecutionFilter{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 2 || total != 3 {
		t.Errorf("page of %d, total %d; want 2 of 3", len(logs), total)
	}
}
