package analytics

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/dlq"
)

// TestStoreConformance runs one suite on every backend: chDB always, and a
// ClickHouse server when WEBHOOKD_TEST_CLICKHOUSE_ADDR is set.
func TestStoreConformance(t *testing.T) {
	t.Run("chdb", func(t *testing.T) {
		s, err := OpenChDB(FindChDB(), filepath.Join(t.TempDir(), "ch"), Options{Database: "conf"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		runConformance(t, s)
	})
	t.Run("clickhouse-server", func(t *testing.T) {
		addr := os.Getenv("WEBHOOKD_TEST_CLICKHOUSE_ADDR")
		if addr == "" {
			t.Skip("WEBHOOKD_TEST_CLICKHOUSE_ADDR not set")
		}
		db := "webhookd_test_" + time.Now().Format("150405")
		s, err := OpenServer(context.Background(), ServerOptions{Addr: addr, User: os.Getenv("WEBHOOKD_TEST_CLICKHOUSE_USER"), Password: os.Getenv("WEBHOOKD_TEST_CLICKHOUSE_PASSWORD")}, Options{Database: db})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s.b.exec(context.Background(), "DROP DATABASE IF EXISTS "+db, nil); s.Close() }()
		runConformance(t, s)
	})
}

func runConformance(t *testing.T, s *Store) {
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrate is not idempotent: %v", err)
	}
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	att := func(exec string, step, attempt int, status string, code int, at time.Time) delivery.Attempt {
		return delivery.Attempt{AttemptID: delivery.AttemptID(exec, step, attempt, false), ExecutionID: exec, DeliveryID: "wh_del_" + exec,
			PipelineID: "pipe_1", PipelineName: "P 'one'", TriggerType: "conversion", TriggerID: "conv_1", EventID: "evt_" + exec,
			StepID: "step_" + string(rune('0'+step)), StepName: "S", StepOrder: step, Attempt: attempt, Status: status, HTTPStatus: code,
			LatencyMS: 100 * int64(step), ResponseBody: `{"received": true}`, StartedAt: at}
	}
	attempts := []delivery.Attempt{
		att("exec_a", 1, 0, "success", 200, t0),
		att("exec_a", 2, 0, "success", 201, t0.Add(time.Second)),
		att("exec_b", 1, 0, "failed", 500, t0.Add(time.Minute)),
	}
	execs := []delivery.Execution{
		{ExecutionID: "exec_a", DeliveryID: "wh_del_exec_a", PipelineID: "pipe_1", PipelineName: "P 'one'", TriggerType: "conversion", TriggerID: "conv_1", Status: "completed", StartedAt: t0, CompletedAt: t0.Add(1500 * time.Millisecond), Seq: 2},
		{ExecutionID: "exec_b", DeliveryID: "wh_del_exec_b", PipelineID: "pipe_1", PipelineName: "P 'one'", TriggerType: "conversion", TriggerID: "conv_2", Status: "failed", StartedAt: t0.Add(time.Minute), CompletedAt: t0.Add(time.Minute + time.Second), Seq: 2},
	}
	// Write twice: a replay of the topics must not double anything.
	b := &Batch{Attempts: attempts, AttemptOrigins: origins("webhookd.executions", 0, 10, len(attempts)),
		Executions: execs, ExecutionOrigins: origins("webhookd.executions", 0, 20, len(execs))}
	for range 2 {
		if err := s.Write(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	dl := DeadLetterRow{Record: dlq.Record{ID: "dlq_1", State: "dead", Reason: "retries_exhausted", PipelineID: "pipe_1", FailedAt: t0, Payload: json.RawMessage("{}")}, Version: 1}
	if err := s.Write(ctx, &Batch{Dead: []DeadLetterRow{dl}, DeadOrigins: origins("webhookd.dlq", 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}

	logs, total, err := s.RecentExecutions(ctx, ExecutionFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if total != 2 || len(logs) != 2 || logs[0].ID != "exec_b" || logs[1].ID != "exec_a" {
		t.Fatalf("total %d, logs %+v", total, logs)
	}
	a := logs[1]
	if a.PipelineName != "P 'one'" || a.Status != "completed" || a.DurationMS != 1500 || len(a.Steps) != 2 || a.Steps[1].HTTPStatus != 201 || a.Steps[0].Attempts != 1 || a.Steps[0].ResponseBody != `{"received": true}` {
		t.Fatalf("exec_a = %+v", a)
	}
	failed, _, err := s.RecentExecutions(ctx, ExecutionFilter{Statuses: []string{"failed", "retrying"}})
	if err != nil || len(failed) != 1 || failed[0].ID != "exec_b" {
		t.Fatalf("failures = %+v, %v", failed, err)
	}
	// A hostile filter value is data, not SQL (a NUL byte included: chDB
	// takes the query as a C string).
	for _, hostile := range []string{`x' OR 1=1 --`, "pipe_1\x00' OR 1=1 --", `' OR 1=1 --`} {
		none, _, err := s.RecentExecutions(ctx, ExecutionFilter{PipelineID: hostile})
		if err != nil || len(none) != 0 {
			t.Fatalf("filter %q = %+v, %v", hostile, none, err)
		}
	}
	all := Range{From: t0.Add(-time.Hour), To: t0.Add(time.Hour)}
	st, err := s.PipelineStats(ctx, nil, all)
	if err != nil {
		t.Fatal(err)
	}
	p := st["pipe_1"]
	if p == nil || p.TotalExecutions != 2 || p.Successful != 1 || p.Failed != 1 || p.SuccessRate != 50 || p.InDLQ != 1 || p.LastTriggered == nil || !p.LastTriggered.Equal(t0.Add(time.Minute)) {
		t.Fatalf("stats = %+v", p)
	}
	stats, err := s.Stats(ctx, all)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Executions != 2 || stats.Completed != 1 || stats.Finished != 2 || stats.AvgLatencyMS != 133 || stats.DLQDead != 1 ||
		stats.ByTrigger["conversion"].SuccessRate != 50 || len(stats.TopErrors) != 0 {
		t.Fatalf("stats = %+v", stats)
	}
	// Ranges are whole minutes: from t0+30s counts from t0's minute.
	if later, err := s.Stats(ctx, Range{From: t0.Add(time.Minute), To: all.To}); err != nil || later.Executions != 1 {
		t.Fatalf("stats since a later moment = %+v, %v", later, err)
	}
	ss, err := s.StepStats(ctx, "pipe_1", all)
	if err != nil || ss["step_1"] == nil || ss["step_1"].Executions != 2 || ss["step_1"].Successful != 1 {
		t.Fatalf("step stats = %+v, %v", ss, err)
	}
}

// origins are n consecutive offsets of one partition from first.
func origins(topic string, partition int32, first int64, n int) []Origin {
	out := make([]Origin, n)
	for i := range out {
		out[i] = Origin{Topic: topic, Partition: partition, Offset: first + int64(i)}
	}
	return out
}

func TestBindParamsQuotesEveryValue(t *testing.T) {
	q, err := bindParams("SELECT {a:String}, {b:Int64}, {c:Array(String)}", Params{"a": `it's \ {b:Int64}`, "b": 5, "c": []string{"x'", "y"}})
	if err != nil {
		t.Fatal(err)
	}
	want := `SELECT CAST('it\'s \\ {b:Int64}' AS String), CAST(5 AS Int64), CAST(['x\'','y'] AS Array(String))`
	if q != want {
		t.Fatalf("got  %s\nwant %s", q, want)
	}
	if _, err := bindParams("SELECT {missing:String}", nil); err == nil {
		t.Fatal("missing parameter accepted")
	}
}

// Names go into DDL text: anything but a plain identifier is refused before
// a connection is opened.
func TestStoreOptionsRejectNonIdentifiers(t *testing.T) {
	for _, o := range []Options{{Database: "x; DROP TABLE y"}, {Database: "ok", Cluster: "c'1"}} {
		if _, err := OpenChDB("/nonexistent/libchdb.so", t.TempDir(), o); err == nil || !strings.Contains(err.Error(), "use letters") {
			t.Errorf("%+v: %v", o, err)
		}
	}
}

// The executions topic's records, inserted as they are (chDB), read back
// exactly like typed rows: times, an absent completed_at, unknown fields
// skipped, replays idempotent.
func TestRecordsInsertAsTheyAre(t *testing.T) {
	s := openTestStore(t, "recs")
	ctx := context.Background()
	if !s.TakesRecords() {
		t.Fatal("chDB should take records as they are")
	}
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 123456789, time.UTC)
	enc := func(v any) []byte { b, _ := json.Marshal(v); return b }
	att := enc(delivery.Attempt{V: 1, Kind: delivery.KindAttempt, AttemptID: "att_1", ExecutionID: "exec_r", DeliveryID: "wh_del_r", PipelineID: "pipe_r",
		PipelineName: `P "q" 'x'`, TriggerType: "click", TriggerID: "clk_r", StepID: "step_1", StepName: "S", StepOrder: 1, Status: "success",
		HTTPStatus: 200, LatencyMS: 42, ResponseBody: "ok\n\u2713", StartedAt: t0})
	retrying := enc(delivery.Execution{V: 1, Kind: delivery.KindExecution, ExecutionID: "exec_r", DeliveryID: "wh_del_r", PipelineID: "pipe_r",
		PipelineName: "P", TriggerType: "click", TriggerID: "clk_r", Status: "retrying", StartedAt: t0, Seq: 1})
	if strings.Contains(string(retrying), "completed_at") {
		t.Fatalf("a retrying execution carries completed_at: %s", retrying)
	}
	for range 2 { // a replay
		if err := s.InsertRecords(ctx, "attempts", [][]byte{att}); err != nil {
			t.Fatal(err)
		}
		if err := s.InsertRecords(ctx, "executions", [][]byte{retrying}); err != nil {
			t.Fatal(err)
		}
	}
	logs, total, err := s.RecentExecutions(ctx, ExecutionFilter{PipelineID: "pipe_r"})
	if err != nil || total != 1 || len(logs) != 1 {
		t.Fatalf("%d logs (%d), %v", len(logs), total, err)
	}
	l := logs[0]
	if l.Status != "retrying" || l.CompletedAt != nil || !l.StartedAt.Equal(t0.Truncate(time.Millisecond)) || len(l.Steps) != 1 ||
		l.Steps[0].ResponseBody != "ok\n\u2713" || l.Steps[0].LatencyMS != 42 || l.Steps[0].Attempts != 1 {
		t.Fatalf("%+v", l)
	}
	final := enc(delivery.Execution{V: 1, Kind: delivery.KindExecution, ExecutionID: "exec_r", DeliveryID: "wh_del_r", PipelineID: "pipe_r",
		PipelineName: "P", TriggerType: "click", TriggerID: "clk_r", Status: "completed", StartedAt: t0, CompletedAt: t0.Add(time.Second), Seq: 2})
	if err := s.InsertRecords(ctx, "executions", [][]byte{final}); err != nil {
		t.Fatal(err)
	}
	logs, _, _ = s.RecentExecutions(ctx, ExecutionFilter{PipelineID: "pipe_r"})
	if logs[0].Status != "completed" || logs[0].CompletedAt == nil || logs[0].DurationMS != 1000 {
		t.Fatalf("%+v", logs[0])
	}
}
