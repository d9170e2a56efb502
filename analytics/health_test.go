package analytics

import (
	"context"
	"testing"
	"time"

	"github.com/afftok/webhookd/delivery"
)

// The auto-disable queries on real ClickHouse SQL (chDB): outcomes since a
// per-pipeline moment, and the failure streak after the last success.
func TestFailureStreakQueries(t *testing.T) {
	s := openTestStore(t, "health")
	ctx := context.Background()
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	n := 0
	att := func(pipe, status string, at time.Time) delivery.Attempt {
		n++
		exec := "exec_" + pipe + "_" + string(rune('a'+n%26)) + at.Format("150405.000")
		return delivery.Attempt{AttemptID: delivery.AttemptID(exec, 1, 0, false), ExecutionID: exec, PipelineID: pipe,
			StepOrder: 1, Status: status, HTTPStatus: 500, StartedAt: at}
	}
	var as []delivery.Attempt
	// pipe_fail: a success at t0, then 12 failures a minute apart.
	as = append(as, att("pipe_fail", "success", t0))
	for i := 1; i <= 12; i++ {
		as = append(as, att("pipe_fail", "failed", t0.Add(time.Duration(i)*time.Minute)))
	}
	// pipe_ok: failures, then a success at t0+10m.
	for i := 1; i <= 9; i++ {
		as = append(as, att("pipe_ok", "failed", t0.Add(time.Duration(i)*time.Minute)))
	}
	as = append(as, att("pipe_ok", "success", t0.Add(10*time.Minute)))
	// Inserted twice: a replayed batch must not change the streak's count.
	for range 2 {
		if err := s.InsertAttempts(ctx, as); err != nil {
			t.Fatal(err)
		}
	}

	out, err := s.AttemptOutcomes(ctx, map[string]time.Time{"pipe_fail": t0.Add(5 * time.Minute), "pipe_ok": t0.Add(5 * time.Minute), "pipe_none": t0})
	if err != nil {
		t.Fatal(err)
	}
	if o := out["pipe_fail"]; o.Successes != 0 || o.Failures == 0 {
		t.Errorf("pipe_fail outcomes since t0+5m: %+v", o)
	}
	if o := out["pipe_ok"]; o.Successes == 0 {
		t.Errorf("pipe_ok outcomes since t0+5m: %+v", o)
	}
	if _, ok := out["pipe_none"]; ok {
		t.Errorf("a pipeline without attempts has outcomes: %+v", out)
	}

	fs, err := s.FailureStreak(ctx, "pipe_fail", t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := FailureStreak{LastSuccess: t0, Failures: 12, First: t0.Add(time.Minute), Last: t0.Add(12 * time.Minute)}
	if !fs.LastSuccess.Equal(want.LastSuccess) || fs.Failures != want.Failures || !fs.First.Equal(want.First) || !fs.Last.Equal(want.Last) {
		t.Errorf("streak %+v, want %+v", fs, want)
	}
	// Counted from a later moment (a re-enable): only what came after it.
	fs, err = s.FailureStreak(ctx, "pipe_fail", t0.Add(6*time.Minute+30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !fs.LastSuccess.IsZero() || fs.Failures != 6 || !fs.First.Equal(t0.Add(7*time.Minute)) {
		t.Errorf("streak since t0+6m30s: %+v", fs)
	}
	fs, err = s.FailureStreak(ctx, "pipe_ok", t0)
	if err != nil {
		t.Fatal(err)
	}
	if !fs.LastSuccess.Equal(t0.Add(10*time.Minute)) || fs.Failures != 0 || !fs.First.IsZero() {
		t.Errorf("pipe_ok streak %+v", fs)
	}
}
