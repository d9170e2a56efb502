package admin

import (
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/afftok/webhookd/analytics"
	"github.com/afftok/webhookd/pipeline"
)

// StatsSource is what /stats reads from the analytics store.
type StatsSource interface {
	Stats(ctx contextT, r analytics.Range) (*analytics.Stats, error)
	TimeSeries(ctx contextT, r analytics.Range, step time.Duration) ([]analytics.Bucket, error)
}

// QueueDepths reports queue depths (consumer lag) by queue name.
type QueueDepths func(ctx contextT) (map[string]int64, error)

// stats is the spec's GET /stats: pipelines, executions over from–to
// (default: today, UTC) of one pipeline or all, queue depths and the most
// frequent errors.
func (s *Server) stats(c *fiber.Ctx) error {
	q := query{c: c}
	now := s.o.Now().UTC()
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	from, to := q.timeRange(midnight, now)
	pipelineID := q.text("pipeline_id")
	if err := q.err(); err != nil {
		return err
	}
	if s.o.Stats == nil {
		return apiError(fiber.StatusServiceUnavailable, "unavailable", "stats are not available on this replica")
	}
	st, err := s.o.Stats.Stats(c.UserContext(), analytics.Range{From: from, To: to, PipelineID: pipelineID})
	if err != nil {
		s.o.Log.Error("stats query failed", "err", err)
		return apiError(fiber.StatusServiceUnavailable, "unavailable", "stats are temporarily unavailable")
	}
	var total, active int
	for _, p := range s.o.Registry.List() {
		total++
		if p.Status == pipeline.StatusActive {
			active++
		}
	}
	var rate float64
	if st.Finished > 0 {
		rate = float64(int64(float64(st.Completed)*10000/float64(st.Finished)+0.5)) / 100
	}
	queues := map[string]int64{"dlq": st.DLQDead}
	if s.o.Queues != nil {
		if q, err := s.o.Queues(c.UserContext()); err == nil {
			for k, v := range q {
				queues[k] = v
			}
		} else {
			s.o.Log.Warn("queue depths unavailable", "err", err)
		}
	}
	byTrigger := map[string]analytics.TriggerStats{}
	for k, v := range st.ByTrigger {
		byTrigger[k] = v
	}
	return ok(c, fiber.StatusOK, fiber.Map{
		"summary": fiber.Map{
			"total_pipelines": total, "active_pipelines": active, "total_executions_today": st.Executions,
			"success_rate": rate, "avg_latency_ms": st.AvgLatencyMS,
			"latency_ms": st.LatencyMS, "time_to_success_ms": st.TimeToSuccessMS,
			"from": from, "to": to,
		},
		"by_trigger_type": byTrigger,
		"queues":          queues,
		"top_errors":      st.TopErrors,
	})
}

// timeSeries is GET /stats/timeseries: executions, outcomes, retries, DLQ
// items and p50/p95/p99 attempt latency in buckets of interval over from–to
// (default: the last 24 hours; at most maxBuckets buckets).
func (s *Server) timeSeries(c *fiber.Ctx) error {
	q := query{c: c}
	now := s.o.Now().UTC()
	from, to := q.timeRange(now.Add(-24*time.Hour), now)
	name, step := q.interval(from, to)
	pipelineID := q.text("pipeline_id")
	if err := q.err(); err != nil {
		return err
	}
	if s.o.Stats == nil {
		return apiError(fiber.StatusServiceUnavailable, "unavailable", "stats are not available on this replica")
	}
	buckets, err := s.o.Stats.TimeSeries(c.UserContext(), analytics.Range{From: from, To: to, PipelineID: pipelineID}, step)
	if err != nil {
		s.o.Log.Error("time series query failed", "err", err)
		return apiError(fiber.StatusServiceUnavailable, "unavailable", "stats are temporarily unavailable")
	}
	if buckets == nil {
		buckets = []analytics.Bucket{}
	}
	return ok(c, fiber.StatusOK, fiber.Map{"interval": name, "buckets": buckets})
}
