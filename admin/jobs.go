package admin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/event"
	"github.com/afftok/webhookd/jobs"
	"github.com/afftok/webhookd/pipeline"
)

// Jobs creates, reads and cancels replay and bulk-redrive jobs
// (*jobs.Service).
type Jobs interface {
	CreateReplay(ctx context.Context, spec jobs.Replay) (*jobs.Job, error)
	CreateRedrive(ctx context.Context, spec jobs.Redrive) (*jobs.Job, error)
	Get(ctx context.Context, id string) (*jobs.Job, error)
	Cancel(ctx context.Context, id string) (*jobs.Job, error)
}

// ReplayOutcomes counts a replay's finished deliveries (the analytics
// store).
type ReplayOutcomes interface {
	FinishedExecutions(ctx context.Context, prefix string, pipelineIDs []string) (int64, error)
}

// maxReplayRate bounds rate_per_second of a replay.
const maxReplayRate = 100000

type replayRequest struct {
	From          time.Time `json:"from"`
	To            time.Time `json:"to"`
	TriggerType   string    `json:"trigger_type"`
	PipelineIDs   []string  `json:"pipeline_ids"`
	RatePerSecond *float64  `json:"rate_per_second"`
}

// replayView is a replay job as the API shows it.
type replayView struct {
	ID               string    `json:"id"`
	State            string    `json:"state"`
	From             time.Time `json:"from"`
	To               time.Time `json:"to"`
	EffectiveFrom    time.Time `json:"effective_from,omitzero"`
	TriggerType      *string   `json:"trigger_type"`
	PipelineIDs      []string  `json:"pipeline_ids"`
	RatePerSecond    *float64  `json:"rate_per_second"`
	EventsScanned    int64     `json:"events_scanned"`
	DeliveriesQueued int64     `json:"deliveries_queued"`
	// DeliveriesDone: replayed deliveries finished (delivered or dead), as
	// the execution logs say; null when they cannot be read.
	DeliveriesDone *int64    `json:"deliveries_done"`
	Warnings       []string  `json:"warnings"`
	Error          string    `json:"error,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

func viewReplay(j *jobs.Job) replayView {
	r := j.Replay
	v := replayView{ID: j.ID, State: j.State, From: r.From, To: r.To, EffectiveFrom: r.EffectiveFrom,
		PipelineIDs: r.PipelineIDs, EventsScanned: j.Progress.EventsScanned, DeliveriesQueued: j.Progress.DeliveriesQueued,
		Warnings: r.Warnings, Error: j.Error, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt}
	if r.TriggerType != "" {
		v.TriggerType = &r.TriggerType
	}
	if r.RatePerSecond > 0 {
		v.RatePerSecond = &r.RatePerSecond
	}
	if v.PipelineIDs == nil {
		v.PipelineIDs = []string{}
	}
	if v.Warnings == nil {
		v.Warnings = []string{}
	}
	return v
}

// redriveView is a bulk-redrive job as the API shows it.
type redriveView struct {
	ID            string    `json:"id"`
	State         string    `json:"state"`
	Queued        int       `json:"queued"`
	Matched       int       `json:"matched"`
	RatePerSecond float64   `json:"rate_per_second"`
	Processed     int       `json:"processed"`
	Retried       int64     `json:"retried"`
	Skipped       int64     `json:"skipped"`
	Failed        int64     `json:"failed"`
	Error         string    `json:"error,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

func viewRedrive(j *jobs.Job) redriveView {
	r := j.Redrive
	return redriveView{ID: j.ID, State: j.State, Queued: len(r.Items), Matched: r.Matched, RatePerSecond: r.RatePerSecond,
		Processed: j.Progress.Position, Retried: j.Progress.Retried, Skipped: j.Progress.Skipped, Failed: j.Progress.Failed,
		Error: j.Error, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt}
}

func (s *Server) jobsAvailable() error {
	if s.o.Jobs == nil {
		return apiError(fiber.StatusServiceUnavailable, "unavailable", "jobs are not available on this replica")
	}
	return nil
}

// jobsUnavailable is Kafka not answering for the jobs topic: 503.
func (s *Server) jobsUnavailable(what string, err error) error {
	s.o.Log.Error("jobs: "+what+" failed", "err", err)
	return apiError(fiber.StatusServiceUnavailable, "unavailable", "Kafka did not answer for the jobs topic; try again")
}

// replay starts a replay of the event topics over [from, to).
func (s *Server) replay(c *fiber.Ctx) error {
	if err := s.jobsAvailable(); err != nil {
		return err
	}
	var in replayRequest
	if err := pipeline.Decode(c.Body(), &in); err != nil {
		var ve *pipeline.ValidationError
		if errors.As(err, &ve) {
			return err
		}
		return apiError(fiber.StatusBadRequest, "bad_request", err.Error())
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), 15*time.Second)
	defer cancel()
	if err := s.o.Registry.Sync(ctx); err != nil {
		return s.jobsUnavailable("registry sync", err)
	}
	ve := s.validateReplay(&in)
	if len(ve.Fields) > 0 {
		return ve
	}
	spec := jobs.Replay{From: in.From.UTC(), To: in.To.UTC(), TriggerType: in.TriggerType, PipelineIDs: in.PipelineIDs}
	if in.RatePerSecond != nil {
		spec.RatePerSecond = *in.RatePerSecond
	}
	if len(in.PipelineIDs) == 0 && !s.anyActive(in.TriggerType) {
		spec.Warnings = append(spec.Warnings, "no active pipeline matches: the replay reads the window and delivers nothing")
	}
	j, err := s.o.Jobs.CreateReplay(ctx, spec)
	if err != nil {
		return s.jobsUnavailable("create replay", err)
	}
	return ok(c, fiber.StatusAccepted, viewReplay(j))
}

func (s *Server) anyActive(triggerType string) bool {
	for _, p := range s.o.Registry.List() {
		if p.Status == pipeline.StatusActive && (triggerType == "" || p.TriggerType == triggerType) {
			return true
		}
	}
	return false
}

func (s *Server) validateReplay(in *replayRequest) *pipeline.ValidationError {
	ve := &pipeline.ValidationError{}
	add := func(field, msg string) {
		ve.Fields = append(ve.Fields, pipeline.FieldError{Field: field, Message: msg})
	}
	now := s.o.Now()
	if in.From.IsZero() {
		add("from", "is required (an RFC 3339 time)")
	}
	if in.To.IsZero() {
		add("to", "is required (an RFC 3339 time)")
	}
	if !in.From.IsZero() && !in.To.IsZero() && !in.From.Before(in.To) {
		add("to", "must be after from")
	}
	if in.To.After(now) {
		add("to", "must not be in the future: events produced after the replay starts are delivered anyway")
	}
	if in.TriggerType != "" && !event.IsTriggerType(in.TriggerType) {
		add("trigger_type", "unknown trigger type")
	}
	seen := map[string]bool{}
	for i, id := range in.PipelineIDs {
		field := "pipeline_ids[" + strconv.Itoa(i) + "]"
		p, found := s.o.Registry.Get(id)
		switch {
		case seen[id]:
			add(field, "is listed twice")
		case !found:
			add(field, "no such pipeline")
		case in.TriggerType != "" && p.TriggerType != in.TriggerType:
			add(field, fmt.Sprintf("has trigger type %s, not %s", p.TriggerType, in.TriggerType))
		}
		seen[id] = true
	}
	if r := in.RatePerSecond; r != nil && (*r <= 0 || *r > maxReplayRate) {
		add("rate_per_second", "must be greater than 0 and at most 100000")
	}
	return ve
}

// job loads a job of kind for a GET or DELETE: 404 when unknown or of
// another kind.
func (s *Server) job(c *fiber.Ctx, kind string, cancel bool) (*jobs.Job, error) {
	if err := s.jobsAvailable(); err != nil {
		return nil, err
	}
	id := c.Params("id")
	ctx, stop := context.WithTimeout(c.UserContext(), 15*time.Second)
	defer stop()
	j, err := s.o.Jobs.Get(ctx, id)
	if err == nil && j.Kind != kind {
		err = jobs.ErrNotFound
	}
	if err == nil && cancel {
		j, err = s.o.Jobs.Cancel(ctx, id)
	}
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return nil, apiError(fiber.StatusNotFound, "not_found", kind+" "+id+" not found")
	case errors.Is(err, jobs.ErrFinished):
		return nil, apiError(fiber.StatusConflict, "already_handled", kind+" "+id+" has already finished ("+j.State+")")
	case err != nil:
		return nil, s.jobsUnavailable("read job", err)
	}
	return j, nil
}

func (s *Server) getReplay(c *fiber.Ctx) error {
	j, err := s.job(c, jobs.KindReplay, false)
	if err != nil {
		return err
	}
	v := viewReplay(j)
	if s.o.ReplayOutcomes != nil {
		ctx, cancel := context.WithTimeout(c.UserContext(), 10*time.Second)
		defer cancel()
		// Progress stays readable when ClickHouse is not: done is null.
		if n, err := s.o.ReplayOutcomes.FinishedExecutions(ctx, delivery.ReplayExecutionPrefix(j.ID), j.Replay.PipelineIDs); err == nil {
			v.DeliveriesDone = &n
		} else {
			s.o.Log.Warn("replay: finished deliveries not counted", "replay", j.ID, "err", err)
		}
	}
	return ok(c, fiber.StatusOK, v)
}

func (s *Server) cancelReplay(c *fiber.Ctx) error {
	j, err := s.job(c, jobs.KindReplay, true)
	if err != nil {
		return err
	}
	return ok(c, fiber.StatusOK, viewReplay(j))
}

func (s *Server) getRedrive(c *fiber.Ctx) error {
	j, err := s.job(c, jobs.KindRedrive, false)
	if err != nil {
		return err
	}
	return ok(c, fiber.StatusOK, viewRedrive(j))
}

func (s *Server) cancelRedrive(c *fiber.Ctx) error {
	j, err := s.job(c, jobs.KindRedrive, true)
	if err != nil {
		return err
	}
	return ok(c, fiber.StatusOK, viewRedrive(j))
}
