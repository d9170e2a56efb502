package analytics

import (
	"context"
	"testing"
	"time"

	"github.com/afftok/webhookd/delivery"
)

func TestFinishedExecutionsCountsAReplaysFinalExecutionsOnce(t *testing.T) {
	s := openTestStore(t, "replay")
	ctx := context.Background()
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	ex := func(replay, del, pipe, status string, seq int64) delivery.Execution {
		id := "exec_original_" + del
		if replay != "" {
			id = delivery.ReplayExecutionID(del, replay)
		}
		return delivery.Execution{ExecutionID: id, DeliveryID: del, PipelineID: pipe, Status: status, StartedAt: t0, Seq: seq}
	}
	rows := []delivery.Execution{
		ex("rpl_a", "d1", "p1", "retrying", 1), ex("rpl_a", "d1", "p1", "completed", 2), // retried, then delivered
		ex("rpl_a", "d2", "p1", "failed", 3),   // dead
		ex("rpl_a", "d3", "p2", "retrying", 1), // not finished yet
		ex("rpl_a", "d4", "p2", "partial", 2),
		ex("rpl_b", "d1", "p1", "completed", 2), // another replay
		ex("", "d1", "p1", "completed", 2),      // the original
	}
	// Twice: a delivery redone after a takeover has the same execution id.
	for range 2 {
		if err := s.InsertExecutions(ctx, rows); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		pipes []string
		want  int64
	}{{nil, 3}, {[]string{"p1"}, 2}, {[]string{"p2"}, 1}, {[]string{"p3"}, 0}} {
		n, err := s.FinishedExecutions(ctx, delivery.ReplayExecutionPrefix("rpl_a"), c.pipes)
		if err != nil || n != c.want {
			t.Errorf("pipelines %v: %d, %v; want %d", c.pipes, n, err, c.want)
		}
	}
}
