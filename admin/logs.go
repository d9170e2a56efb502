package admin

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/afftok/webhookd/analytics"
	"github.com/afftok/webhookd/delivery"
)

func (s *Server) recentLogs(c *fiber.Ctx) error {
	return s.logs(c, delivery.ExecCompleted, delivery.ExecFailed, delivery.ExecPartial, delivery.ExecRetrying, delivery.ExecCancelled)
}

// failureLogs lists executions that failed, partly failed or are retrying.
func (s *Server) failureLogs(c *fiber.Ctx) error {
	return s.logs(c, delivery.ExecFailed, delivery.ExecPartial, delivery.ExecRetrying)
}

// logs lists executions whose status is one of statuses (?status= picks one).
func (s *Server) logs(c *fiber.Ctx, statuses ...string) error {
	q := query{c: c}
	page, limit := q.page()
	tt := q.triggerType()
	pipelineID := q.text("pipeline_id")
	if st := q.oneOf("status", statuses...); st != "" {
		statuses = []string{st}
	}
	if err := q.err(); err != nil {
		return err
	}
	if s.o.Logs == nil {
		return apiError(fiber.StatusServiceUnavailable, "unavailable", "execution logs are not available on this replica")
	}
	logs, total, err := s.o.Logs.RecentExecutions(c.UserContext(), analytics.ExecutionFilter{
		PipelineID: pipelineID, TriggerType: tt, Statuses: statuses, Limit: limit, Offset: (page - 1) * limit,
	})
	if err != nil {
		s.o.Log.Error("execution logs query failed", "err", err)
		return apiError(fiber.StatusServiceUnavailable, "unavailable", "execution logs are temporarily unavailable")
	}
	return ok(c, fiber.StatusOK, fiber.Map{"logs": logs, "pagination": pagination{Page: page, Limit: limit, Total: total}})
}

// executionView is one execution with every attempt.
type executionView struct {
	analytics.ExecutionLog
	Attempts []analytics.AttemptLog `json:"attempts"`
}

// getExecution answers one execution: its steps as the lists show them and
// every attempt, oldest first (the admin UI's execution page).
func (s *Server) getExecution(c *fiber.Ctx) error {
	if s.o.Logs == nil {
		return apiError(fiber.StatusServiceUnavailable, "unavailable", "execution logs are not available on this replica")
	}
	id := c.Params("id")
	if !validExecutionID(id) {
		// No execution has such an id (they are "exec_" and a hash):
		// not looked up, and not echoed back.
		return apiError(fiber.StatusNotFound, "not_found", "no execution has that id")
	}
	ex, attempts, err := s.o.Logs.Execution(c.UserContext(), id)
	if err != nil {
		s.o.Log.Error("execution log query failed", "err", err)
		return apiError(fiber.StatusServiceUnavailable, "unavailable", "execution logs are temporarily unavailable")
	}
	if ex == nil {
		return apiError(fiber.StatusNotFound, "not_found", "execution "+id+" not found")
	}
	return ok(c, fiber.StatusOK, executionView{ExecutionLog: *ex, Attempts: attempts})
}

// validExecutionID: at most 200 bytes, printable (execution ids are
// "exec_" and a hash, with a replay's id between for a replay's).
func validExecutionID(id string) bool {
	return id != "" && len(id) <= 200 && utf8.ValidString(id) &&
		!strings.ContainsFunc(id, func(r rune) bool { return !unicode.IsPrint(r) })
}
