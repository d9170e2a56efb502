package admin

import (
	"github.com/gofiber/fiber/v2"

	"github.com/afftok/webhookd/analytics"
	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/event"
	"github.com/afftok/webhookd/pipeline"
)

func (s *Server) recentLogs(c *fiber.Ctx) error { return s.logs(c, nil) }

// failureLogs lists executions that failed, partly failed or are retrying.
func (s *Server) failureLogs(c *fiber.Ctx) error {
	return s.logs(c, []string{delivery.ExecFailed, delivery.ExecPartial, delivery.ExecRetrying})
}

func (s *Server) logs(c *fiber.Ctx, statuses []string) error {
	page, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	tt := c.Query("trigger_type")
	if tt != "" && !event.IsTriggerType(tt) {
		return &Error{Status: 400, Code: "validation_failed", Message: "invalid query", Details: []pipeline.FieldError{{Field: "trigger_type", Message: "unknown trigger type"}}}
	}
	if st := c.Query("status"); st != "" && statuses == nil {
		statuses = []string{st}
	}
	if s.o.Logs == nil {
		return apiError(fiber.StatusServiceUnavailable, "unavailable", "execution logs are not available on this replica")
	}
	logs, total, err := s.o.Logs.RecentExecutions(c.UserContext(), analytics.ExecutionFilter{
		PipelineID: c.Query("pipeline_id"), TriggerType: tt, Statuses: statuses, Limit: limit, Offset: (page - 1) * limit,
	})
	if err != nil {
		s.o.Log.Error("execution logs query failed", "err", err)
		return apiError(fiber.StatusServiceUnavailable, "unavailable", "execution logs are temporarily unavailable")
	}
	return ok(c, fiber.StatusOK, fiber.Map{"logs": logs, "pagination": pagination{Page: page, Limit: limit, Total: total}})
}
