package analytics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/dlq"
)

const (
	wlExecTopic = "webhookd.executions"
	wlDLQTopic  = "webhookd.dlq"
)

var wlT0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// wlRecord is one record of the known workload, as the engine would
// produce it.
type wlRecord struct {
	topic string
	value any // delivery.Attempt, delivery.Execution or dlq.Record
}

// workload is five executions of two pipelines, in the order their records
// reach the executions and DLQ topics:
//
//	e1 p1/click      s1 ok 100 ms                          completed after 100 ms
//	e2 p1/click      s1 HTTP 500 200 ms, retry ok 300 ms    completed after 5.5 s
//	e3 p1/click +1m  s1 HTTP 503 400 ms ×3                  failed, one DLQ item
//	e4 p2/conv  +1m  s2a ok 50 ms, s2b timeout (no status)  still retrying
//	e5 p2/conv  +2m  s2a ok 70 ms, s2b ok 90 ms             completed after 500 ms
func workload() []wlRecord {
	att := func(exec, pipe, tt, step string, attempt int, status string, code int, lat int64, errText string, at time.Time) wlRecord {
		tier := ""
		if attempt > 0 {
			tier = "5s"
		}
		return wlRecord{wlExecTopic, delivery.Attempt{V: 1, Kind: delivery.KindAttempt, AttemptID: delivery.AttemptID(exec, len(step), attempt, false) + step,
			ExecutionID: exec, DeliveryID: "del_" + exec, PipelineID: pipe, PipelineName: pipe, TriggerType: tt, TriggerID: "t_" + exec, EventID: "ev_" + exec,
			StepID: step, StepName: step, StepOrder: len(step), Attempt: attempt, Tier: tier, Status: status, HTTPStatus: code, LatencyMS: lat, Error: errText, StartedAt: at}}
	}
	// seq 1 of a retrying record is the execution's first retry; a final
	// record after retries says so.
	ex := func(exec, pipe, tt, status string, start, done time.Time, seq int64) wlRecord {
		x := delivery.Execution{V: 1, Kind: delivery.KindExecution, ExecutionID: exec, DeliveryID: "del_" + exec, PipelineID: pipe,
			PipelineName: pipe, TriggerType: tt, TriggerID: "t_" + exec, EventID: "ev_" + exec, Status: status, StartedAt: start, CompletedAt: done, Seq: seq}
		x.FirstRetry = status == delivery.ExecRetrying && seq == 1
		x.Retried = status != delivery.ExecRetrying && seq > 1
		return wlRecord{wlExecTopic, x}
	}
	t0, m1, m2 := wlT0, wlT0.Add(time.Minute), wlT0.Add(2*time.Minute)
	ms := time.Millisecond
	return []wlRecord{
		att("e1", "p1", "click", "s1", 0, "success", 200, 100, "", t0),
		ex("e1", "p1", "click", "completed", t0, t0.Add(100*ms), 1),
		att("e2", "p1", "click", "s1", 0, "failed", 500, 200, "HTTP 500", t0),
		ex("e2", "p1", "click", "retrying", t0, time.Time{}, 1),
		att("e3", "p1", "click", "s1", 0, "failed", 503, 400, "HTTP 503", m1),
		ex("e3", "p1", "click", "retrying", m1, time.Time{}, 1),
		att("e2", "p1", "click", "s1", 1, "success", 200, 300, "", t0.Add(5*time.Second)),
		ex("e2", "p1", "click", "completed", t0, t0.Add(5500*ms), 2),
		att("e4", "p2", "conversion", "s2a", 0, "success", 200, 50, "", m1),
		att("e3", "p1", "click", "s1", 1, "failed", 503, 400, "HTTP 503", m1.Add(5*time.Second)),
		ex("e3", "p1", "click", "retrying", m1, time.Time{}, 2),
		att("e4", "p2", "conversion", "s2b", 0, "failed", 0, 30000, "timeout", m1),
		ex("e4", "p2", "conversion", "retrying", m1, time.Time{}, 1),
		att("e3", "p1", "click", "s1", 2, "failed", 503, 400, "HTTP 503", m1.Add(30*time.Second)),
		{wlDLQTopic, dlq.Record{V: 1, ID: "dlq_e3", State: "dead", Reason: "retries_exhausted", Error: "HTTP 503", DeliveryID: "del_e3", ExecutionID: "e3",
			PipelineID: "p1", TriggerType: "click", StepOrder: 2, Attempts: 3, FailedAt: m1.Add(31 * time.Second)}},
		ex("e3", "p1", "click", "failed", m1, m1.Add(31*time.Second), 3),
		att("e5", "p2", "conversion", "s2a", 0, "success", 200, 70, "", m2),
		att("e5", "p2", "conversion", "s2b", 0, "success", 200, 90, "", m2),
		ex("e5", "p2", "conversion", "completed", m2, m2.Add(500*ms), 1),
	}
}

// batchOf is records [from, to) of the workload as the sink would write
// them: typed rows, each with its topic offset (one partition per topic).
func batchOf(recs []wlRecord, from, to int) *Batch {
	b := &Batch{}
	offsets := map[string]int64{}
	for i, r := range recs {
		o := Origin{Topic: r.topic, Offset: offsets[r.topic]}
		offsets[r.topic]++
		if i < from || i >= to {
			continue
		}
		switch v := r.value.(type) {
		case delivery.Attempt:
			b.Attempts, b.AttemptOrigins = append(b.Attempts, v), append(b.AttemptOrigins, o)
		case delivery.Execution:
			b.Executions, b.ExecutionOrigins = append(b.Executions, v), append(b.ExecutionOrigins, o)
		case dlq.Record:
			b.Dead, b.DeadOrigins = append(b.Dead, DeadLetterRow{Record: v, Version: 1}), append(b.DeadOrigins, o)
		}
	}
	return b
}

// checkWorkload asserts the figures of the workload, computed by hand.
func checkWorkload(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	hour := Range{From: wlT0, To: wlT0.Add(time.Hour)}
	st, err := s.Stats(ctx, hour)
	if err != nil {
		t.Fatal(err)
	}
	// 5 executions: 4 finished (3 completed, 1 failed), e4 retrying.
	// Latency over the 9 attempts with an HTTP status: 50 70 90 100 200
	// 300 400 400 400 → mean 2010/9 = 223. Time to success: 100, 500, 5500.
	want := Stats{Executions: 5, Completed: 3, Failed: 1, Finished: 4, InRetry: 1, AvgLatencyMS: 223, DLQDead: 1,
		LatencyMS: Quantiles{P50: 200, P95: 400, P99: 400}, TimeToSuccessMS: Quantiles{P50: 500, P95: 5500, P99: 5500}}
	got := *st
	got.ByTrigger, got.TopErrors = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stats\n got %+v\nwant %+v", got, want)
	}
	click, conv := st.ByTrigger["click"], st.ByTrigger["conversion"]
	if click.Executions != 3 || click.SuccessRate != 66.67 || click.TimeToSuccessMS != (Quantiles{100, 5500, 5500}) || click.LatencyMS.P99 != 400 {
		t.Errorf("click = %+v", click)
	}
	if conv.Executions != 2 || conv.SuccessRate != 100 || conv.TimeToSuccessMS != (Quantiles{500, 500, 500}) || conv.LatencyMS.P50 != 70 {
		t.Errorf("conversion = %+v", conv)
	}
	wantErrs := []ErrorCount{{"HTTP 503", 3}, {"HTTP 500", 1}, {"timeout", 1}}
	if len(st.TopErrors) != 3 || st.TopErrors[0] != wantErrs[0] || st.TopErrors[1] != wantErrs[1] || st.TopErrors[2] != wantErrs[2] {
		t.Errorf("top errors = %+v", st.TopErrors)
	}

	ps, err := s.PipelineStats(ctx, nil, hour)
	if err != nil {
		t.Fatal(err)
	}
	if p := ps["p1"]; p == nil || p.TotalExecutions != 3 || p.Successful != 2 || p.Failed != 1 || p.InRetry != 0 || p.InDLQ != 1 || p.SuccessRate != 66.67 ||
		p.TimeToSuccessMS != (Quantiles{100, 5500, 5500}) || p.LastTriggered == nil || !p.LastTriggered.Equal(wlT0.Add(time.Minute)) {
		t.Errorf("p1 = %+v", p)
	}
	if p := ps["p2"]; p == nil || p.TotalExecutions != 2 || p.Successful != 1 || p.Failed != 0 || p.InRetry != 1 || p.InDLQ != 0 || p.SuccessRate != 50 ||
		p.LatencyMS != (Quantiles{70, 90, 90}) {
		t.Errorf("p2 = %+v", p)
	}
	// The step that showed successful > executions after a replay.
	steps, err := s.StepStats(ctx, "p1", hour)
	if err != nil {
		t.Fatal(err)
	}
	if s1 := steps["s1"]; s1 == nil || s1.Executions != 3 || s1.Successful != 2 || s1.AvgLatencyMS != 300 || s1.LatencyMS.P99 != 400 {
		t.Errorf("p1 s1 = %+v", s1)
	}
	steps, err = s.StepStats(ctx, "p2", hour)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := steps["s2a"], steps["s2b"]; a == nil || b == nil || a.Executions != 2 || a.Successful != 2 || b.Executions != 2 || b.Successful != 1 ||
		b.AvgLatencyMS != 90 || a.TimeToSuccessMS.P50 != 500 {
		t.Errorf("p2 steps = %+v %+v", a, b)
	}
	// The pipeline detail's one query answers what both answer.
	for _, id := range []string{"p1", "p2", "nope"} {
		st, steps, err := s.PipelineDetailStats(ctx, id, hour)
		if err != nil {
			t.Fatal(err)
		}
		want := ps[id]
		if want == nil {
			want = &PipelineStats{}
		}
		if !reflect.DeepEqual(st, want) {
			t.Errorf("%s detail stats = %+v, want %+v", id, st, want)
		}
		wantSteps, err := s.StepStats(ctx, id, hour)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(steps, wantSteps) {
			t.Errorf("%s detail steps = %v, want %v", id, steps, wantSteps)
		}
	}

	ts, err := s.TimeSeries(ctx, Range{From: wlT0, To: wlT0.Add(3 * time.Minute)}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	wantTS := []Bucket{
		{Start: wlT0, Executions: 2, Successful: 2, Retried: 1, LatencyMSP95: 300},
		{Start: wlT0.Add(time.Minute), Executions: 2, Failed: 1, Retried: 2, DLQ: 1, LatencyMSP95: 400},
		{Start: wlT0.Add(2 * time.Minute), Executions: 1, Successful: 1, LatencyMSP95: 90},
	}
	if len(ts) != len(wantTS) {
		t.Fatalf("time series = %+v", ts)
	}
	for i := range ts {
		if !ts[i].Start.Equal(wantTS[i].Start) || ts[i].Executions != wantTS[i].Executions || ts[i].Successful != wantTS[i].Successful ||
			ts[i].Failed != wantTS[i].Failed || ts[i].Retried != wantTS[i].Retried || ts[i].DLQ != wantTS[i].DLQ || ts[i].LatencyMSP95 != wantTS[i].LatencyMSP95 || ts[i].LatencyMSP50 > ts[i].LatencyMSP95 || ts[i].LatencyMSP99 < ts[i].LatencyMSP95 {
			t.Errorf("bucket %d = %+v, want %+v", i, ts[i], wantTS[i])
		}
	}
	// Hourly buckets read the per-hour tables, and a range that is not
	// whole hours reads minutes at its edges: the same figures.
	ts, err = s.TimeSeries(ctx, Range{From: wlT0.Add(-time.Hour), To: wlT0.Add(time.Hour)}, time.Hour)
	if err != nil || len(ts) != 2 || ts[0].Executions != 0 || ts[1].Executions != 5 || ts[1].Successful != 3 || ts[1].Failed != 1 || ts[1].Retried != 3 || ts[1].DLQ != 1 || ts[1].LatencyMSP95 != 400 {
		t.Errorf("hourly = %+v, %v", ts, err)
	}
	for _, r := range []Range{{From: wlT0.Add(-30 * time.Minute), To: wlT0.Add(90 * time.Minute)}, {From: wlT0.Add(-90 * time.Second), To: wlT0.Add(150 * time.Second)}} {
		if edge, err := s.Stats(ctx, r); err != nil || edge.Executions != 5 || edge.Completed != 3 || edge.TimeToSuccessMS != want.TimeToSuccessMS || edge.LatencyMS != want.LatencyMS {
			t.Errorf("stats over %v–%v = %+v, %v", r.From, r.To, edge, err)
		}
	}
	// From is taken down to its minute: t0+90s counts e3, e4 and e5.
	if edge, err := s.Stats(ctx, Range{From: wlT0.Add(90 * time.Second), To: wlT0.Add(time.Hour)}); err != nil || edge.Executions != 3 || edge.InRetry != 1 {
		t.Errorf("stats from the third minute = %+v, %v", edge, err)
	}
	// 5-minute buckets add the minutes up; one pipeline's are its own.
	ts, err = s.TimeSeries(ctx, Range{From: wlT0, To: wlT0.Add(10 * time.Minute), PipelineID: "p2"}, 5*time.Minute)
	if err != nil || len(ts) != 2 || ts[0].Executions != 2 || ts[0].Successful != 1 || ts[0].Retried != 0 || ts[1].Executions != 0 {
		t.Errorf("p2 in 5m buckets = %+v, %v", ts, err)
	}
}

func openTestStore(t *testing.T, db string) *Store {
	t.Helper()
	s, err := OpenChDB(FindChDB(), filepath.Join(t.TempDir(), "ch"), Options{Database: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// A known workload gives the figures computed by hand, and writing the same
// batch again — or a batch overlapping one already written, as a sink
// restarted from an older commit does — changes none of them.
func TestStatsAreExactAndSurviveReplayedBatches(t *testing.T) {
	s := openTestStore(t, "agg")
	ctx := context.Background()
	recs := workload()
	half := len(recs) / 2
	for _, b := range []*Batch{
		batchOf(recs, 0, half),
		batchOf(recs, 0, half),           // the same batch again
		batchOf(recs, half-3, len(recs)), // overlapping the first
		batchOf(recs, 0, len(recs)),      // everything again
	} {
		if err := s.Write(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	checkWorkload(t, s)
	// Outside the workload's hour: nothing.
	later := Range{From: wlT0.Add(2 * time.Hour), To: wlT0.Add(3 * time.Hour)}
	if st, err := s.Stats(ctx, later); err != nil || st.Executions != 0 || st.LatencyMS != (Quantiles{}) || len(st.TopErrors) != 0 {
		t.Errorf("a later range = %+v, %v", st, err)
	}
}

// Rows not read from Kafka (no origin) are not filtered by the high-water
// marks (those are what makes a replay harmless): two executions written
// without origins both count. The same execution's final state written
// again counts once (its feed key).
func TestRowsWithoutOriginAreFedEachTime(t *testing.T) {
	s := openTestStore(t, "noorigin")
	ctx := context.Background()
	e := delivery.Execution{ExecutionID: "x", PipelineID: "p", TriggerType: "click", Status: "completed", StartedAt: wlT0, CompletedAt: wlT0.Add(time.Second), Seq: 1}
	e2 := e
	e2.ExecutionID = "y"
	for _, b := range []delivery.Execution{e, e2, e} {
		if err := s.Write(ctx, &Batch{Executions: []delivery.Execution{b}}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.Stats(ctx, Range{From: wlT0, To: wlT0.Add(time.Hour)})
	if err != nil || st.Finished != 2 {
		t.Fatalf("stats = %+v, %v; want both executions fed, each once", st, err)
	}
}

// The sink inserts a batch and crashes before committing it; the next sink
// reads the batch again from the last commit and inserts it again. The
// figures are those of the workload, once.
func TestSinkCrashAndReplayKeepsStatsExact(t *testing.T) {
	s := openTestStore(t, "sinkreplay")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts, prod, recs := workloadOnABroker(ctx, t, 1)
	so := SinkOptions{ClientOpts: opts, Group: "analytics", ExecutionsTopic: wlExecTopic, DLQTopic: wlDLQTopic, BatchSize: 1000, FlushInterval: 50 * time.Millisecond}

	// First life: everything it reads is inserted, nothing committed.
	first := NewSink(so, s)
	first.crashAfterInsert = func() bool { return true }
	if err := first.Run(ctx); !errors.Is(err, errCrashed) {
		t.Fatalf("first sink: %v", err)
	}
	// Second life: reads from the start again, inserts, commits.
	sinkToTheEnd(ctx, t, NewSink(so, s), prod, int64(len(recs)-1), 1)
	// The base tables hold rows twice until merged; the log endpoints read
	// them with FINAL.
	logs, total, err := s.RecentExecutions(context.Background(), ExecutionFilter{})
	if err != nil || total != 5 || len(logs) != 5 {
		t.Fatalf("logs: %d of %d, %v", len(logs), total, err)
	}
	checkWorkload(t, s)
}

// sinkToTheEnd runs sk until its group has committed the executions topic
// up to execAt and the DLQ topic up to dlqAt (the signal that everything was
// inserted), then stops it.
func sinkToTheEnd(ctx context.Context, t *testing.T, sk *Sink, cl *kgo.Client, execAt, dlqAt int64) {
	t.Helper()
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sk.Run(sctx) }()
	adm := kadm.NewClient(cl)
	for {
		offs, err := adm.FetchOffsets(ctx, "analytics")
		if err == nil {
			execs, _ := offs.Lookup(wlExecTopic, 0)
			dead, _ := offs.Lookup(wlDLQTopic, 0)
			if execs.At == execAt && dead.At == dlqAt {
				break
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the sink did not commit everything: %v, %v", offs, err)
		case err := <-done:
			t.Fatalf("the sink stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// After a crash, the dispatcher delivers again the events whose offsets it
// had not committed: their executions write every state again, same ids, at
// new offsets of the executions and DLQ topics. The figures count each
// execution, attempt and DLQ item once, as the logs list them — whether
// the second copy reaches the sink in a later batch or in the same one.
func TestRedeliveredExecutionsCountOnce(t *testing.T) {
	for _, batch := range []struct {
		name string
		size int
	}{{"later batches", 7}, {"one batch", 1000}} {
		t.Run(batch.name, func(t *testing.T) {
			s := openTestStore(t, "redelivered")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			opts, prod, recs := workloadOnABroker(ctx, t, 2)
			so := SinkOptions{ClientOpts: opts, Group: "analytics", ExecutionsTopic: wlExecTopic, DLQTopic: wlDLQTopic, BatchSize: batch.size, FlushInterval: 50 * time.Millisecond}
			sinkToTheEnd(ctx, t, NewSink(so, s), prod, int64(2*(len(recs)-1)), 2)
			logs, total, err := s.RecentExecutions(ctx, ExecutionFilter{})
			if err != nil || total != 5 || len(logs) != 5 {
				t.Fatalf("logs: %d of %d, %v", len(logs), total, err)
			}
			checkWorkload(t, s)
			ps, err := s.PipelineStats(ctx, nil, Range{From: wlT0, To: wlT0.Add(time.Hour)})
			if err != nil || ps["p1"] == nil || ps["p1"].TotalExecutions != 3 || ps["p2"] == nil || ps["p2"].TotalExecutions != 2 {
				t.Fatalf("pipeline stats %+v, %v; want p1 3 and p2 2 executions", ps, err)
			}
			// A DLQ item that went dead twice (the same id) is one in the
			// time series too.
			buckets, err := s.TimeSeries(ctx, Range{From: wlT0, To: wlT0.Add(3 * time.Minute)}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			var dead int64
			for _, b := range buckets {
				dead += b.DLQ
			}
			if dead != 1 {
				t.Errorf("time series DLQ %d, want 1", dead)
			}
		})
	}
}

// A redelivered execution may take another path than its first delivery:
// it retries where the first did not, or the first went into retry and the
// redelivery succeeds at once (the first one's retry task then finishes it
// too). Each execution still counts once, finished, and not "in retry";
// the log totals by status agree — with the states in later batches or in
// one.
func TestRedeliveredExecutionTakingAnotherPathCountsOnce(t *testing.T) {
	state := func(status string, seq int64, firstRetry, retried bool) delivery.Execution {
		x := delivery.Execution{V: 1, Kind: delivery.KindExecution, ExecutionID: "x", DeliveryID: "d", PipelineID: "p", PipelineName: "p",
			TriggerType: "click", Status: status, StartedAt: wlT0, Seq: seq, FirstRetry: firstRetry, Retried: retried}
		if status != delivery.ExecRetrying {
			x.CompletedAt = wlT0.Add(time.Duration(seq) * time.Second)
		}
		return x
	}
	for _, c := range []struct {
		name   string
		states []delivery.Execution
	}{
		{"retries only when redelivered", []delivery.Execution{
			state("completed", 1, false, false),
			state("retrying", 2, true, false), state("completed", 3, false, true)}},
		{"succeeds at once when redelivered", []delivery.Execution{
			state("retrying", 1, true, false),
			state("completed", 2, false, false),
			state("completed", 3, false, true)}},
	} {
		for _, oneBatch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/one batch %v", c.name, oneBatch), func(t *testing.T) {
				s := openTestStore(t, "paths")
				ctx := context.Background()
				b := &Batch{}
				for i, x := range c.states {
					rec, _ := json.Marshal(x)
					b.ExecutionRecs, b.ExecutionRecOrigins = append(b.ExecutionRecs, rec), append(b.ExecutionRecOrigins, Origin{Topic: wlExecTopic, Offset: int64(i)})
					if !oneBatch {
						if err := s.Write(ctx, b); err != nil {
							t.Fatal(err)
						}
						b = &Batch{}
					}
				}
				if err := s.Write(ctx, b); err != nil {
					t.Fatal(err)
				}
				st, err := s.Stats(ctx, Range{From: wlT0, To: wlT0.Add(time.Hour)})
				if err != nil || st.Executions != 1 || st.Finished != 1 || st.Completed != 1 || st.InRetry != 0 {
					t.Fatalf("stats %+v, %v; want one execution, completed, none in retry", st, err)
				}
				for status, want := range map[string]int64{"completed": 1, "retrying": 0} {
					if _, total, err := s.RecentExecutions(ctx, ExecutionFilter{Statuses: []string{status}}); err != nil || total != want {
						t.Errorf("logs with status %s: total %d, %v; want %d", status, total, err, want)
					}
				}
			})
		}
	}
}

// workloadOnABroker starts a broker (kfake) with the workload's topics and
// produces the workload to it copies times over (as the engine would: a
// second copy is every execution delivered again); it returns the options
// of a client of it and a producer.
func workloadOnABroker(ctx context.Context, t *testing.T, copies int) ([]kgo.Opt, *kgo.Client, []wlRecord) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, wlExecTopic, wlDLQTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	prod, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	recs := workload()
	for range copies {
		for _, r := range recs {
			v, _ := json.Marshal(r.value)
			if err := prod.ProduceSync(ctx, &kgo.Record{Topic: r.topic, Value: v}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return opts, prod, recs
}
