package retrytopics

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/bus"
	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/dispatcher"
	"github.com/afftok/webhookd/pipeline"
)

// Router places tasks on tier topics and the failover topic. It implements
// dispatcher.Router.
type Router struct {
	Prefix        string
	Tiers         []Tier // shortest first
	FailoverTopic string
	Now           func() time.Time
}

var _ dispatcher.Router = (*Router)(nil)

func (r *Router) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Choose returns the largest tier not longer than d (the shortest if d is
// shorter than every tier: its consumer then holds the task until it is due).
func (r *Router) Choose(d time.Duration) Tier {
	t := r.Tiers[0]
	for _, x := range r.Tiers {
		if x.Delay <= d {
			t = x
		}
	}
	return t
}

// Retry implements dispatcher.Router.
func (r *Router) Retry(t *delivery.Task) *kgo.Record {
	tier := r.Choose(t.NotBefore.Sub(r.now()))
	t.Tiers = append(t.Tiers, tier.Name)
	return taskRecord(TopicName(r.Prefix, tier), t)
}

// Failover implements dispatcher.Router.
func (r *Router) Failover(t *delivery.Task) *kgo.Record { return taskRecord(r.FailoverTopic, t) }

func taskRecord(topic string, t *delivery.Task) *kgo.Record {
	t.V = delivery.Version
	b, err := json.Marshal(t)
	if err != nil {
		panic(fmt.Sprintf("encode task: %v", err)) // plain data; a failure is a bug
	}
	// Keyed by delivery id: all of a delivery's tasks share a partition.
	return &kgo.Record{Topic: topic, Key: []byte(t.DeliveryID), Value: b}
}

func decodeTask(rec *kgo.Record) (*delivery.Task, error) {
	var t delivery.Task
	if err := json.Unmarshal(rec.Value, &t); err != nil {
		return nil, fmt.Errorf("undecodable task: %w", err)
	}
	if t.DeliveryID == "" || t.PipelineID == "" {
		return nil, fmt.Errorf("task without delivery or pipeline id")
	}
	return &t, nil
}

// Pipelines is what the runner needs of the registry.
type Pipelines interface {
	Get(id string) (*pipeline.Compiled, bool)
}

// Runner runs due tasks, honouring the pipeline's current status (DESIGN.md
// §4): active runs; paused holds the task without spending an attempt;
// disabled dead-letters it (pipeline_disabled); deleted cancels it.
type Runner struct {
	Pipes    Pipelines
	Disp     *dispatcher.Dispatcher
	Router   *Router
	DLQTopic string
	// PauseRecheck is how long a paused pipeline's task waits before it is
	// looked at again.
	PauseRecheck time.Duration
	Log          *slog.Logger
}

// Run runs t and produces what came of it; nil once all of that is acknowledged.
func (r *Runner) Run(ctx context.Context, cl *kgo.Client, rec *kgo.Record, t *delivery.Task) error {
	job, err := dispatcher.JobForTask(t)
	if err != nil {
		return bus.Send(ctx, cl, dispatcher.InvalidEvent(r.DLQTopic, rec, err, time.Now()))
	}
	p, ok := r.Pipes.Get(t.PipelineID)
	var out dispatcher.Outcome
	switch {
	case !ok:
		r.Log.Info("pipeline deleted; pending delivery cancelled", "pipeline_id", t.PipelineID, "delivery_id", t.DeliveryID, "step", t.StepOrder)
		out = r.Disp.Finish(&pipeline.Compiled{Pipeline: &pipeline.Pipeline{ID: t.PipelineID}}, job, delivery.ExecCancelled)
	case p.Status == pipeline.StatusPaused:
		held := *t
		held.NotBefore = time.Now().Add(r.PauseRecheck)
		return bus.Send(ctx, cl, r.Router.Retry(&held))
	case p.Status == pipeline.StatusDisabled:
		out = r.Disp.DeadLetterTask(p, t, job, delivery.ReasonPipelineDisabled)
	default:
		out = r.Disp.Run(ctx, p, t, job)
		if err := ctx.Err(); err != nil {
			return err // cut short by shutdown: the task is read again
		}
	}
	return bus.Send(ctx, cl, out.Records...)
}

// TierHandler runs one retry tier's topic. Records of a tier are in due
// order, since each was produced with the same hold ahead of it: the head is
// held until its produce time plus the tier's delay, then attempted if due or
// hopped to the tier that fits the remainder.
type TierHandler struct {
	Tier   Tier
	Runner *Runner
	Log    *slog.Logger
}

// Due implements consumer.Handler: the tier's hold after the record was
// produced, or the task's own due time if that is earlier (a remainder
// hopped into the finest tier). Never later than the hold: holding a head
// longer would delay every record behind it, which then hops late in turn.
func (h *TierHandler) Due(rec *kgo.Record) time.Time {
	t, err := decodeTask(rec)
	if err != nil {
		return time.Time{}
	}
	return Due(rec.Timestamp, h.Tier.Delay, t.NotBefore)
}

// holdSlack lets a head wait slightly past its hold for its own due time.
// Kafka timestamps have millisecond resolution, so a task due exactly at the
// hold can look due a fraction of a millisecond after it; hopping it then
// would put it behind fresher records, up to a whole tier late. Waiting in
// place delays what is behind by at most the slack.
const holdSlack = 10 * time.Millisecond

// Due is when a tier record is looked at: produced+hold, or the task's own
// due time if that is earlier or within holdSlack after it.
func Due(produced time.Time, hold time.Duration, notBefore time.Time) time.Time {
	if end := produced.Add(hold); end.Add(holdSlack).Before(notBefore) {
		return end
	}
	return notBefore
}

// Handle implements consumer.Handler.
func (h *TierHandler) Handle(ctx context.Context, cl *kgo.Client, rec *kgo.Record) error {
	t, err := decodeTask(rec)
	if err != nil {
		h.Log.Error("undecodable retry task sent to the DLQ", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err)
		return bus.Send(ctx, cl, dispatcher.InvalidEvent(h.Runner.DLQTopic, rec, err, time.Now()))
	}
	if time.Now().Before(t.NotBefore) {
		// Never early: hop to the tier that fits what is left.
		return bus.Send(ctx, cl, h.Runner.Router.Retry(t))
	}
	return h.Runner.Run(ctx, cl, rec, t)
}

// ImmediateHandler runs the failover topic: tasks there are due at once
// (failover attempts and DLQ retries).
type ImmediateHandler struct {
	Runner *Runner
	Log    *slog.Logger
}

// Due implements consumer.Handler.
func (h *ImmediateHandler) Due(rec *kgo.Record) time.Time {
	if t, err := decodeTask(rec); err == nil {
		return t.NotBefore
	}
	return time.Time{}
}

// Handle implements consumer.Handler.
func (h *ImmediateHandler) Handle(ctx context.Context, cl *kgo.Client, rec *kgo.Record) error {
	t, err := decodeTask(rec)
	if err != nil {
		h.Log.Error("undecodable failover task sent to the DLQ", "partition", rec.Partition, "offset", rec.Offset, "err", err)
		return bus.Send(ctx, cl, dispatcher.InvalidEvent(h.Runner.DLQTopic, rec, err, time.Now()))
	}
	return h.Runner.Run(ctx, cl, rec, t)
}
