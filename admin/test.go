package admin

import (
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/dispatcher"
	"github.com/afftok/webhookd/event"
	"github.com/afftok/webhookd/filter"
	"github.com/afftok/webhookd/pipeline"
)

// Tester makes the test endpoints' real calls (the dispatcher, with the
// same SSRF guard as deliveries).
type Tester interface {
	Trial(ctx contextT, p *pipeline.Compiled, t *delivery.Task) (string, []dispatcher.Trace)
}

type testPipelineInput struct {
	TestData map[string]any `json:"test_data"`
}

// testEvent builds the event a test run renders: test_data is the event's
// data ({"conversion":{…}} or the trigger's object's fields).
func testEvent(triggerType string, data map[string]any) (*event.Event, []byte, error) {
	raw, err := json.Marshal(map[string]any{"id": pipeline.NewID("evt_test_"), "trigger_type": triggerType, "data": data})
	if err != nil {
		return nil, nil, err
	}
	ev, err := event.Decode(raw)
	return ev, raw, err
}

func (s *Server) testPipeline(c *fiber.Ctx) error {
	if s.o.Tester == nil {
		return apiError(fiber.StatusServiceUnavailable, "unavailable", "test calls are not available on this replica")
	}
	cur, found := s.lookup(c, c.Params("id"))
	if !found {
		return apiError(fiber.StatusNotFound, "not_found", "pipeline "+c.Params("id")+" not found")
	}
	var in testPipelineInput
	if len(c.Body()) > 0 {
		if err := pipeline.Decode(c.Body(), &in); err != nil {
			return decodeError(err)
		}
	}
	if in.TestData == nil {
		in.TestData = map[string]any{}
	}
	return s.runTrial(c, cur, in.TestData)
}

func (s *Server) runTrial(c *fiber.Ctx, p *pipeline.Compiled, data map[string]any) error {
	tt := p.TriggerType
	if tt == "" {
		tt = event.Conversion
	}
	ev, raw, err := testEvent(tt, data)
	if err != nil {
		return &pipeline.ValidationError{Fields: []pipeline.FieldError{{Field: "test_data", Message: err.Error()}}}
	}
	first := 0
	if len(p.Steps) > 0 {
		first = p.Steps[0].Order
	}
	t := delivery.NewTask(ev, raw, nil, "test:"+ev.ID, p.ID, first, time.Now())
	t.DeliveryID = strings.Replace(t.DeliveryID, "wh_del_", "wh_del_test_", 1)
	t.ExecutionID = "exec_test_" + strings.TrimPrefix(t.ExecutionID, "exec_")
	if !p.Filter.Match(filter.Vars(ev)) {
		// What fan-out would do with this event: no delivery, so no call.
		return ok(c, fiber.StatusOK, fiber.Map{"execution_id": t.ExecutionID, "delivery_id": t.DeliveryID, "status": "filtered", "filtered": true, "steps": []dispatcher.Trace{}})
	}
	ctx, cancel := s.callCtx(c)
	defer cancel()
	status, steps := s.o.Tester.Trial(ctx, p, t)
	return ok(c, fiber.StatusOK, fiber.Map{"execution_id": t.ExecutionID, "delivery_id": t.DeliveryID, "status": status, "filtered": false, "steps": steps})
}

type testStepInput struct {
	URL            string            `json:"url"`
	Method         string            `json:"method"`
	Headers        map[string]string `json:"headers"`
	Body           json.RawMessage   `json:"body"`
	TimeoutSeconds int               `json:"timeout_seconds"`
	SignatureMode  string            `json:"signature_mode"`
	SigningKey     string            `json:"signing_key"`
	TestData       map[string]any    `json:"test_data"`
}

// testStep sends one ad-hoc request, validated like a pipeline step.
func (s *Server) testStep(c *fiber.Ctx) error {
	if s.o.Tester == nil {
		return apiError(fiber.StatusServiceUnavailable, "unavailable", "test calls are not available on this replica")
	}
	var in testStepInput
	if err := pipeline.Decode(c.Body(), &in); err != nil {
		return decodeError(err)
	}
	p := &pipeline.Pipeline{ID: "pipe_test", Name: "test step", TriggerType: event.Conversion, Steps: []pipeline.Step{{
		Order: 1, Name: "test step", URL: in.URL, Method: in.Method, Headers: in.Headers, BodyTemplate: in.Body,
		TimeoutSeconds: in.TimeoutSeconds, SignatureMode: in.SignatureMode, SigningKey: in.SigningKey,
	}}}
	p.Normalize()
	if err := p.Validate(s.o.Env, s.o.Limits, s.o.Targets); err != nil {
		var ve *pipeline.ValidationError
		if errors.As(err, &ve) {
			for i := range ve.Fields { // report the request's own field names
				ve.Fields[i].Field = strings.TrimPrefix(strings.Replace(ve.Fields[i].Field, "body_template", "body", 1), "steps[0].")
			}
		}
		return err
	}
	cp, err := pipeline.Compile(p)
	if err != nil {
		return err
	}
	if in.TestData == nil {
		in.TestData = map[string]any{}
	}
	return s.runTrial(c, cp, in.TestData)
}

func decodeError(err error) error {
	var ve *pipeline.ValidationError
	if errors.As(err, &ve) {
		return err
	}
	return apiError(fiber.StatusBadRequest, "bad_request", err.Error())
}
