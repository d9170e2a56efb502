package admin

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/afftok/webhookd/analytics"
	"github.com/afftok/webhookd/event"
	"github.com/afftok/webhookd/pipeline"
	"github.com/afftok/webhookd/registry"
)

// pipelineInput is a create/update body. Pointers tell "absent" from "empty"
// for PUT, which changes only the fields it is given. Read-only fields of the
// GET response are accepted and ignored, so GET → edit → PUT works.
type pipelineInput struct {
	Name        *string      `json:"name"`
	Description *string      `json:"description"`
	TriggerType *string      `json:"trigger_type"`
	Status      *string      `json:"status"`
	Steps       *[]stepInput `json:"steps"`
	FailoverURL *string      `json:"failover_url"`

	ID            json.RawMessage `json:"id"`
	Stats         json.RawMessage `json:"stats"`
	StepsCount    json.RawMessage `json:"steps_count"`
	LastTriggered json.RawMessage `json:"last_triggered"`
	CreatedAt     json.RawMessage `json:"created_at"`
	UpdatedAt     json.RawMessage `json:"updated_at"`
	Revision      json.RawMessage `json:"revision"`
}

type stepInput struct {
	pipeline.Step
	Stats json.RawMessage `json:"stats"`
}

func (in *pipelineInput) apply(p *pipeline.Pipeline, old *pipeline.Pipeline) {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&p.Name, in.Name)
	set(&p.Description, in.Description)
	set(&p.TriggerType, in.TriggerType)
	set(&p.Status, in.Status)
	set(&p.FailoverURL, in.FailoverURL)
	if in.Steps == nil {
		return
	}
	p.Steps = make([]pipeline.Step, len(*in.Steps))
	for i, si := range *in.Steps {
		s := si.Step
		s.HasSigningKey = false
		// Keys are never returned, so a client that edits what GET showed
		// sends none: keep the step's current key (matched by id, else order).
		if prev := matchStep(old, s); prev != nil {
			if s.ID == "" {
				s.ID = prev.ID
			}
			if s.SigningKey == "" && (s.SignatureMode == "" || s.SignatureMode == prev.SignatureMode) {
				s.SigningKey = prev.SigningKey
			}
		}
		if s.ID == "" || (old != nil && matchStep(old, pipeline.Step{ID: s.ID}) == nil) {
			s.ID = pipeline.NewID("step_")
		}
		p.Steps[i] = s
	}
}

func matchStep(old *pipeline.Pipeline, s pipeline.Step) *pipeline.Step {
	if old == nil {
		return nil
	}
	for i := range old.Steps {
		if s.ID != "" && old.Steps[i].ID == s.ID {
			return &old.Steps[i]
		}
	}
	if s.ID != "" {
		return nil
	}
	for i := range old.Steps {
		if s.Order != 0 && old.Steps[i].Order == s.Order {
			return &old.Steps[i]
		}
	}
	return nil
}

// decodePipeline decodes a create/update body in one pass, so that bad
// top-level fields and bad fields of every step are reported together, each
// with its path ("steps[1].order").
func (s *Server) decodePipeline(c *fiber.Ctx) (*pipelineInput, error) {
	var in pipelineInput
	if len(c.Body()) == 0 {
		return nil, apiError(fiber.StatusBadRequest, "bad_request", "request body is required")
	}
	if err := pipeline.Decode(c.Body(), &in); err != nil {
		return nil, decodeError(err)
	}
	return &in, nil
}

func (s *Server) save(c *fiber.Ctx, p *pipeline.Pipeline) error {
	p.Normalize()
	if err := p.Validate(s.o.Env, s.o.Limits); err != nil {
		return err
	}
	if err := s.o.Registry.Put(c.UserContext(), p); err != nil {
		if errors.Is(err, registry.ErrNotReady) {
			return apiError(fiber.StatusServiceUnavailable, "unavailable", err.Error())
		}
		return err
	}
	return nil
}

func (s *Server) createPipeline(c *fiber.Ctx) error {
	in, err := s.decodePipeline(c)
	if err != nil {
		return err
	}
	now := s.o.Now().UTC().Truncate(time.Second)
	p := &pipeline.Pipeline{ID: pipeline.NewID("pipe_"), CreatedAt: now, UpdatedAt: now, Revision: 1}
	in.apply(p, nil)
	if err := s.save(c, p); err != nil {
		return err
	}
	return ok(c, fiber.StatusCreated, s.detail(c, p, false))
}

func (s *Server) updatePipeline(c *fiber.Ctx) error {
	cur, found := s.o.Registry.Get(c.Params("id"))
	if !found {
		return apiError(fiber.StatusNotFound, "not_found", "pipeline "+c.Params("id")+" not found")
	}
	in, err := s.decodePipeline(c)
	if err != nil {
		return err
	}
	p := *cur.Pipeline
	p.Steps = append([]pipeline.Step(nil), cur.Pipeline.Steps...)
	in.apply(&p, cur.Pipeline)
	p.UpdatedAt = s.o.Now().UTC().Truncate(time.Second)
	p.Revision = cur.Revision + 1
	if err := s.save(c, &p); err != nil {
		return err
	}
	return ok(c, fiber.StatusOK, s.detail(c, &p, false))
}

func (s *Server) deletePipeline(c *fiber.Ctx) error {
	id := c.Params("id")
	if _, found := s.o.Registry.Get(id); !found {
		return apiError(fiber.StatusNotFound, "not_found", "pipeline "+id+" not found")
	}
	if err := s.o.Registry.Delete(c.UserContext(), id); err != nil {
		return err
	}
	return ok(c, fiber.StatusOK, fiber.Map{"id": id, "deleted": true})
}

func (s *Server) getPipeline(c *fiber.Ctx) error {
	cur, found := s.o.Registry.Get(c.Params("id"))
	if !found {
		return apiError(fiber.StatusNotFound, "not_found", "pipeline "+c.Params("id")+" not found")
	}
	return ok(c, fiber.StatusOK, s.detail(c, cur.Pipeline, true))
}

type stepView struct {
	pipeline.Step
	Stats *analytics.StepStats `json:"stats,omitempty"`
}

type pipelineDetail struct {
	ID            string                   `json:"id"`
	Name          string                   `json:"name"`
	Description   string                   `json:"description"`
	TriggerType   string                   `json:"trigger_type"`
	Status        string                   `json:"status"`
	Steps         []stepView               `json:"steps"`
	FailoverURL   string                   `json:"failover_url,omitempty"`
	Stats         *analytics.PipelineStats `json:"stats,omitempty"`
	LastTriggered *time.Time               `json:"last_triggered"`
	CreatedAt     time.Time                `json:"created_at"`
	UpdatedAt     time.Time                `json:"updated_at"`
	Revision      int64                    `json:"revision"`
}

// detail is the spec's "Get Webhook Details" shape; stats are read from
// ClickHouse when withStats (a store outage degrades to no stats, not an error).
func (s *Server) detail(c *fiber.Ctx, p *pipeline.Pipeline, withStats bool) *pipelineDetail {
	r := p.Redacted()
	d := &pipelineDetail{ID: r.ID, Name: r.Name, Description: r.Description, TriggerType: r.TriggerType, Status: r.Status,
		FailoverURL: r.FailoverURL, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, Revision: r.Revision}
	var steps map[string]*analytics.StepStats
	if withStats && s.o.Logs != nil {
		if st, err := s.o.Logs.PipelineStats(c.UserContext(), []string{p.ID}); err == nil {
			d.Stats = st[p.ID]
			if d.Stats == nil {
				d.Stats = &analytics.PipelineStats{}
			}
			d.LastTriggered = d.Stats.LastTriggered
		} else {
			s.o.Log.Warn("pipeline stats unavailable", "err", err)
		}
		if ss, err := s.o.Logs.StepStats(c.UserContext(), p.ID); err == nil {
			steps = ss
		}
	}
	for _, st := range r.Steps {
		v := stepView{Step: st}
		if withStats {
			v.Stats = steps[st.ID]
			if v.Stats == nil {
				v.Stats = &analytics.StepStats{}
			}
		}
		d.Steps = append(d.Steps, v)
	}
	return d
}

type pipelineSummary struct {
	ID            string       `json:"id"`
	Name          string       `json:"name"`
	Description   string       `json:"description"`
	TriggerType   string       `json:"trigger_type"`
	Status        string       `json:"status"`
	StepsCount    int          `json:"steps_count"`
	LastTriggered *time.Time   `json:"last_triggered"`
	Stats         summaryStats `json:"stats"`
	CreatedAt     time.Time    `json:"created_at"`
	UpdatedAt     time.Time    `json:"updated_at"`
}

type summaryStats struct {
	TotalExecutions int64   `json:"total_executions"`
	Successful      int64   `json:"successful"`
	Failed          int64   `json:"failed"`
	SuccessRate     float64 `json:"success_rate"`
}

type pagination struct {
	Page  int   `json:"page"`
	Limit int   `json:"limit"`
	Total int64 `json:"total"`
}

func pageParams(c *fiber.Ctx) (page, limit int, err error) {
	page, limit = 1, 20
	if v := c.Query("page"); v != "" {
		if page, err = strconv.Atoi(v); err != nil || page < 1 {
			return 0, 0, &Error{Status: 400, Code: "validation_failed", Message: "invalid query", Details: []pipeline.FieldError{{Field: "page", Message: "must be a whole number ≥ 1"}}}
		}
	}
	if v := c.Query("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 200 {
			return 0, 0, &Error{Status: 400, Code: "validation_failed", Message: "invalid query", Details: []pipeline.FieldError{{Field: "limit", Message: "must be between 1 and 200"}}}
		}
	}
	return page, limit, nil
}

func (s *Server) listPipelines(c *fiber.Ctx) error {
	page, limit, err := pageParams(c)
	if err != nil {
		return err
	}
	status, tt := c.Query("status"), c.Query("trigger_type")
	if status != "" && status != pipeline.StatusActive && status != pipeline.StatusPaused && status != pipeline.StatusDisabled {
		return &Error{Status: 400, Code: "validation_failed", Message: "invalid query", Details: []pipeline.FieldError{{Field: "status", Message: "must be active, paused or disabled"}}}
	}
	if tt != "" && !event.IsTriggerType(tt) {
		return &Error{Status: 400, Code: "validation_failed", Message: "invalid query", Details: []pipeline.FieldError{{Field: "trigger_type", Message: "unknown trigger type"}}}
	}
	var matched []*pipeline.Compiled
	for _, p := range s.o.Registry.List() {
		if (status == "" || p.Status == status) && (tt == "" || p.TriggerType == tt) {
			matched = append(matched, p)
		}
	}
	total := len(matched)
	from := min((page-1)*limit, total)
	to := min(from+limit, total)
	pageItems := matched[from:to]
	ids := make([]string, len(pageItems))
	for i, p := range pageItems {
		ids[i] = p.ID
	}
	stats := map[string]*analytics.PipelineStats{}
	if s.o.Logs != nil && len(ids) > 0 {
		if st, err := s.o.Logs.PipelineStats(c.UserContext(), ids); err == nil {
			stats = st
		} else {
			s.o.Log.Warn("pipeline stats unavailable", "err", err)
		}
	}
	out := make([]pipelineSummary, 0, len(pageItems))
	for _, p := range pageItems {
		sum := pipelineSummary{ID: p.ID, Name: p.Name, Description: p.Description, TriggerType: p.TriggerType, Status: p.Status,
			StepsCount: len(p.Steps), CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
		if st := stats[p.ID]; st != nil {
			sum.Stats = summaryStats{TotalExecutions: st.TotalExecutions, Successful: st.Successful, Failed: st.Failed, SuccessRate: st.SuccessRate}
			sum.LastTriggered = st.LastTriggered
		}
		out = append(out, sum)
	}
	return ok(c, fiber.StatusOK, fiber.Map{"pipelines": out, "pagination": pagination{Page: page, Limit: limit, Total: int64(total)}})
}
