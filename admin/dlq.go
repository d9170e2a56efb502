package admin

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/dlq"
	"github.com/afftok/webhookd/event"
	"github.com/afftok/webhookd/jobs"
	"github.com/afftok/webhookd/pipeline"
)

// DLQ is what the API reads DLQ items from (the analytics store).
type DLQ interface {
	DeadLetters(ctx context.Context, f dlq.Filter) ([]dlq.Record, int64, error)
	DeadLetter(ctx context.Context, id string) (*dlq.Record, error)
}

// Redriver changes DLQ items (*dlq.Redriver).
type Redriver interface {
	Claim(id string) bool
	Release(id string)
	Retry(ctx context.Context, it *dlq.Record) (string, error)
	Delete(ctx context.Context, it *dlq.Record) error
}

type dlqItemView struct {
	ID          string          `json:"id"`
	PipelineID  string          `json:"pipeline_id"`
	TriggerType string          `json:"trigger_type"`
	TriggerID   string          `json:"trigger_id"`
	FailedAt    time.Time       `json:"failed_at"`
	Attempts    int64           `json:"attempts"`
	LastError   string          `json:"last_error"`
	Payload     json.RawMessage `json:"payload"`
	Reason      string          `json:"reason"`
	State       string          `json:"state"`
	// PayloadTruncated: the item was too large for the broker and was kept
	// reduced; source (or the delivery's own source) says where the event is.
	PayloadTruncated bool        `json:"payload_truncated,omitempty"`
	StepOrder        int64       `json:"step_order,omitempty"`
	DeliveryID       string      `json:"delivery_id,omitempty"`
	ExecutionID      string      `json:"execution_id,omitempty"`
	Source           *sourceView `json:"source,omitempty"`
}

type sourceView struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Value     string `json:"value,omitempty"`
}

func viewDLQ(it dlq.Record) dlqItemView {
	v := dlqItemView{ID: it.ID, PipelineID: it.PipelineID, TriggerType: it.TriggerType, TriggerID: it.TriggerID, FailedAt: it.FailedAt,
		Attempts: int64(it.Attempts), LastError: it.Error, Reason: it.Reason, State: it.State, StepOrder: int64(it.StepOrder),
		DeliveryID: it.DeliveryID, ExecutionID: it.ExecutionID, Payload: json.RawMessage("null"), PayloadTruncated: it.PayloadTruncated}
	if len(it.Payload) > 0 && json.Valid(it.Payload) {
		v.Payload = it.Payload
	}
	src := it.Source
	if src == nil && it.Task != nil {
		src = it.Task.Source
	}
	if src != nil {
		v.Source = &sourceView{Topic: src.Topic, Partition: src.Partition, Offset: src.Offset, Value: string(src.Value)}
	}
	return v
}

func (s *Server) dlqAvailable() error {
	if s.o.DLQ == nil || s.o.Redriver == nil {
		return apiError(fiber.StatusServiceUnavailable, "unavailable", "the DLQ is not available on this replica")
	}
	return nil
}

func (s *Server) listDLQ(c *fiber.Ctx) error {
	if err := s.dlqAvailable(); err != nil {
		return err
	}
	q := query{c: c}
	page, limit := q.page()
	tt := q.triggerType()
	pipelineID := q.text("pipeline_id")
	state := q.oneOf("state", dlq.StateDead, dlq.StateRetried, dlq.StateDeleted)
	if state == "" {
		state = dlq.StateDead
	}
	if err := q.err(); err != nil {
		return err
	}
	items, total, err := s.o.DLQ.DeadLetters(c.UserContext(), dlq.Filter{
		PipelineID: pipelineID, TriggerType: tt, State: state, Limit: limit, Offset: (page - 1) * limit,
	})
	if err != nil {
		s.o.Log.Error("dlq query failed", "err", err)
		return apiError(fiber.StatusServiceUnavailable, "unavailable", "the DLQ is temporarily unavailable")
	}
	out := make([]dlqItemView, len(items))
	for i, it := range items {
		out[i] = viewDLQ(it)
	}
	return ok(c, fiber.StatusOK, fiber.Map{"items": out, "pagination": pagination{Page: page, Limit: limit, Total: total}})
}

// deadItem loads an item that is still dead: 404 if unknown, 409 if it was
// already retried or deleted.
func (s *Server) deadItem(c *fiber.Ctx) (*dlq.Record, error) {
	if err := s.dlqAvailable(); err != nil {
		return nil, err
	}
	id := c.Params("id")
	it, err := s.o.DLQ.DeadLetter(c.UserContext(), id)
	if err != nil {
		s.o.Log.Error("dlq query failed", "err", err)
		return nil, apiError(fiber.StatusServiceUnavailable, "unavailable", "the DLQ is temporarily unavailable")
	}
	if it == nil {
		return nil, apiError(fiber.StatusNotFound, "not_found", "DLQ item "+id+" not found")
	}
	if it.State != dlq.StateDead {
		return nil, apiError(fiber.StatusConflict, "already_handled", "DLQ item "+id+" was already "+it.State)
	}
	if !s.o.Redriver.Claim(id) {
		return nil, apiError(fiber.StatusConflict, "already_handled", "DLQ item "+id+" was already handled")
	}
	return it, nil
}

func (s *Server) retryDLQ(c *fiber.Ctx) error {
	it, err := s.deadItem(c)
	if err != nil {
		return err
	}
	ctx, cancel := s.callCtx(c)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 30*time.Second)
	defer cancelT()
	execID, err := s.o.Redriver.Retry(ctx, it)
	if err != nil {
		s.o.Redriver.Release(it.ID)
		if errors.Is(err, dlq.ErrNotRetryable) {
			return apiError(fiber.StatusUnprocessableEntity, "not_retryable", err.Error())
		}
		return kafkaUnavailable("retry", it.ID, err, s)
	}
	return ok(c, fiber.StatusAccepted, fiber.Map{"id": it.ID, "status": "queued", "delivery_id": it.DeliveryID, "execution_id": execID})
}

// kafkaUnavailable is a DLQ change Kafka did not take: 503, the item left
// as it was (still dead), the cause logged.
func kafkaUnavailable(what, id string, err error, s *Server) error {
	s.o.Log.Error("DLQ "+what+" failed", "id", id, "err", err)
	return apiError(fiber.StatusServiceUnavailable, "unavailable", "Kafka did not take the "+what+" of DLQ item "+id+"; it is still dead: try again")
}

func (s *Server) deleteDLQ(c *fiber.Ctx) error {
	it, err := s.deadItem(c)
	if err != nil {
		return err
	}
	if err := s.o.Redriver.Delete(c.UserContext(), it); err != nil {
		s.o.Redriver.Release(it.ID)
		return kafkaUnavailable("delete", it.ID, err, s)
	}
	return ok(c, fiber.StatusOK, fiber.Map{"id": it.ID, "deleted": true})
}

type bulkRetry struct {
	PipelineID    string    `json:"pipeline_id"`
	TriggerType   string    `json:"trigger_type"`
	Error         string    `json:"error"`
	FailedFrom    time.Time `json:"failed_from"`
	FailedTo      time.Time `json:"failed_to"`
	RatePerSecond float64   `json:"rate_per_second"`
	Limit         int       `json:"limit"`
}

// Bulk redrive bounds.
const (
	defaultRedriveRate  = 50
	defaultRedriveLimit = 1000
	maxRedriveLimit     = 10000
)

// bulkRetryDLQ selects dead items by filter and records a redrive job that
// retries them at a bounded rate, so a redrive cannot flood a receiver that
// has just recovered. It answers how many it queued and the job's id
// (GET/DELETE …/dlq/redrive/:id).
func (s *Server) bulkRetryDLQ(c *fiber.Ctx) error {
	if err := s.dlqAvailable(); err != nil {
		return err
	}
	var in bulkRetry
	if len(c.Body()) > 0 {
		if err := pipeline.Decode(c.Body(), &in); err != nil {
			var ve *pipeline.ValidationError
			if errors.As(err, &ve) {
				return err
			}
			return apiError(fiber.StatusBadRequest, "bad_request", err.Error())
		}
	}
	ve := &pipeline.ValidationError{}
	if in.TriggerType != "" && !event.IsTriggerType(in.TriggerType) {
		ve.Fields = append(ve.Fields, pipeline.FieldError{Field: "trigger_type", Message: "unknown trigger type"})
	}
	if in.RatePerSecond == 0 {
		in.RatePerSecond = defaultRedriveRate
	}
	if in.RatePerSecond < dlq.MinRate || in.RatePerSecond > dlq.MaxRate {
		ve.Fields = append(ve.Fields, pipeline.FieldError{Field: "rate_per_second", Message: "must be between 0.01 and 1000"})
	}
	if in.Limit == 0 {
		in.Limit = defaultRedriveLimit
	}
	if in.Limit < 0 || in.Limit > maxRedriveLimit {
		ve.Fields = append(ve.Fields, pipeline.FieldError{Field: "limit", Message: "must be between 1 and 10000"})
	}
	if !in.FailedFrom.IsZero() && !in.FailedTo.IsZero() && in.FailedTo.Before(in.FailedFrom) {
		ve.Fields = append(ve.Fields, pipeline.FieldError{Field: "failed_to", Message: "must not be before failed_from"})
	}
	if len(ve.Fields) > 0 {
		return ve
	}
	items, _, err := s.o.DLQ.DeadLetters(c.UserContext(), dlq.Filter{
		PipelineID: in.PipelineID, TriggerType: in.TriggerType, ErrorContains: in.Error,
		FailedFrom: in.FailedFrom, FailedTo: in.FailedTo, Limit: in.Limit,
	})
	if err != nil {
		s.o.Log.Error("dlq query failed", "err", err)
		return apiError(fiber.StatusServiceUnavailable, "unavailable", "the DLQ is temporarily unavailable")
	}
	var queued []string
	for _, it := range items {
		if it.Task != nil || (it.Source != nil && it.Reason == delivery.ReasonInvalidEvent) {
			queued = append(queued, it.ID)
		}
	}
	// A job on the jobs topic, not a goroutine: it survives this replica's
	// shutdown or death and runs on one replica (README, Architecture).
	if err := s.jobsAvailable(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), 15*time.Second)
	defer cancel()
	j, err := s.o.Jobs.CreateRedrive(ctx, jobs.Redrive{PipelineID: in.PipelineID, TriggerType: in.TriggerType, Error: in.Error,
		FailedFrom: in.FailedFrom, FailedTo: in.FailedTo, RatePerSecond: in.RatePerSecond, Limit: in.Limit, Matched: len(items), Items: queued})
	if err != nil {
		return s.jobsUnavailable("create redrive", err)
	}
	return ok(c, fiber.StatusAccepted, fiber.Map{"queued": len(queued), "matched": len(items), "rate_per_second": in.RatePerSecond, "job_id": j.ID})
}
