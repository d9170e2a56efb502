package consumer

import (
	"context"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/event"
	"github.com/afftok/webhookd/filter"
	"github.com/afftok/webhookd/metrics"
	"github.com/afftok/webhookd/pipeline"
	"github.com/afftok/webhookd/template"
)

// Pipelines is what fan-out needs of the registry.
type Pipelines interface {
	ForTrigger(triggerType string) []*pipeline.Compiled
}

// Runner runs deliveries and dead-letters unreadable records (*engine.Engine).
type Runner interface {
	Run(ctx context.Context, cl *kgo.Client, t *delivery.Task) error
	Unreadable(ctx context.Context, cl *kgo.Client, rec *kgo.Record, reason string, cause error) error
}

// Orderer runs the deliveries of pipelines ordered by key (*ordering.Orderer).
type Orderer interface {
	// Job is the job of t, a delivery of an ordered pipeline for rec: one
	// key's jobs run one at a time in the order Job was called.
	Job(rec *kgo.Record, t *delivery.Task) Job
}

// EventHandler fans each event out to every active pipeline of its trigger
// type whose filter (if any) the event passes: one job per delivery, so each proceeds on its own and the event's
// offset is finished when all of them are.
type EventHandler struct {
	Pipes  Pipelines
	Engine Runner
	// Order runs deliveries of pipelines with ordering "key" (nil: every
	// delivery runs on its own).
	Order Orderer
	Log   *slog.Logger
}

// Prepare implements Handler. The event is decoded once and shared,
// read-only, by its deliveries.
func (h *EventHandler) Prepare(rec *kgo.Record) Work {
	metrics.EventsConsumed.WithLabelValues(rec.Topic).Inc()
	ev, err := event.Decode(rec.Value)
	if err != nil {
		// Not lost and not blocking: its bytes go to the DLQ and the
		// partition moves on.
		metrics.EventsInvalid.WithLabelValues(rec.Topic).Inc()
		h.Log.Warn("undecodable event sent to the DLQ", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err)
		return Work{Jobs: []Job{func(ctx context.Context, cl *kgo.Client) error {
			return h.Engine.Unreadable(ctx, cl, rec, delivery.ReasonInvalidEvent, err)
		}}}
	}
	key := delivery.EventKey(ev.ID, rec.Topic, rec.Partition, rec.Offset)
	src := &delivery.Source{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}
	now := time.Now()
	var jobs []Job
	var vars template.Vars // what filters read, made once for the event
	for _, p := range h.Pipes.ForTrigger(ev.TriggerType) {
		if p.Status != pipeline.StatusActive || len(p.Steps) == 0 {
			metrics.DeliveriesSkipped.WithLabelValues(p.Status).Inc()
			continue
		}
		if p.Filter != nil {
			if vars == nil {
				vars = filter.Vars(ev)
			}
			// Applied here only, when the event is fanned out: retries,
			// failovers and DLQ redrives of a delivery that passed are not
			// filtered again (a redrive is an operator's explicit act).
			if !p.Filter.Match(vars) {
				metrics.DeliveriesFiltered.WithLabelValues(p.ID).Inc()
				continue
			}
		}
		t := delivery.NewTask(ev, rec.Value, src, key, p.ID, p.Steps[0].Order, now)
		// An event without a Kafka key has no order to keep.
		if p.OrderedByKey() && rec.Key != nil && h.Order != nil {
			t.Order = delivery.OrderKey(p.ID, rec.Key)
			jobs = append(jobs, h.Order.Job(rec, t))
			continue
		}
		jobs = append(jobs, func(ctx context.Context, cl *kgo.Client) error { return h.Engine.Run(ctx, cl, t) })
	}
	return Work{Jobs: jobs}
}
