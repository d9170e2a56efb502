package admin

import (
	"github.com/gofiber/fiber/v2"

	"github.com/afftok/webhookd/opevents"
)

// listOperatorEvents lists the operator-events topic, newest first.
func (s *Server) listOperatorEvents(c *fiber.Ctx) error {
	q := query{c: c}
	page, limit := q.page()
	typ := q.oneOf("type", opevents.Types...)
	pipelineID := q.text("pipeline_id")
	if err := q.err(); err != nil {
		return err
	}
	if s.o.OperatorEvents == nil {
		return apiError(fiber.StatusServiceUnavailable, "unavailable", "operator events are not available on this replica")
	}
	events, total, err := s.o.OperatorEvents.List(c.UserContext(), opevents.Filter{Type: typ, PipelineID: pipelineID, Offset: (page - 1) * limit, Limit: limit})
	if err != nil {
		s.o.Log.Error("operator events unavailable", "err", err)
		return apiError(fiber.StatusServiceUnavailable, "unavailable", "the operator-events topic did not answer")
	}
	return ok(c, fiber.StatusOK, fiber.Map{"events": events, "pagination": pagination{Page: page, Limit: limit, Total: int64(total)}})
}
