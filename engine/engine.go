// Package engine drives deliveries through the state machine. Run asks the
// dispatcher to run a delivery's current step until a decision needs Kafka,
// and Apply — the one function that does so — turns that decision into the
// records that carry it on: attempt and execution records, a task on a retry
// tier or the failover topic, a DLQ item. They are produced and acknowledged
// before Run returns nil, so the caller may mark its source offset (DESIGN.md
// §3, §3a). The event consumer, the tier consumers and the failover consumer
// all go through here.
//
// Every produce error is classified: a record too large for the broker turns
// its task into a DLQ item (reduced if that is too large as well); a task
// Kafka refuses for good goes to the DLQ with the refusal; a transient
// refusal is tried again twice, then it is fatal (the offset stays unmarked);
// a lost log record is logged and counted. A DLQ item Kafka refuses in every
// form is fatal too. Nothing is retried without a bound: the client bounds
// its own retries (bus.ProduceTimeout), and so does send.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/bus"
	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/dlq"
	"github.com/afftok/webhookd/metrics"
	"github.com/afftok/webhookd/ordering"
	"github.com/afftok/webhookd/pipeline"
)

// Pipelines is what the engine needs of the registry.
type Pipelines interface {
	Get(id string) (*pipeline.Compiled, bool)
	// Deleted: the pipeline existed and was deleted (not merely unknown to
	// a registry that has not caught up yet).
	Deleted(id string) bool
}

// Stepper decides for deliveries (*dispatcher.Dispatcher).
type Stepper interface {
	// Step runs t's current step; p is nil when the pipeline was deleted.
	Step(ctx context.Context, p *pipeline.Compiled, t *delivery.Task) delivery.Decision
	// Unknown decides for a delivery whose pipeline is not known here yet.
	Unknown(t *delivery.Task) delivery.Decision
}

// Engine runs deliveries. It is safe for concurrent use.
type Engine struct {
	Pipes  Pipelines
	Steps  Stepper
	Topics bus.Topics
	Now    func() time.Time
	Log    *slog.Logger
}

// ErrAborted: shutdown cut the delivery short. Nothing it decided counts; the
// caller must not mark the source offset, so the delivery runs again.
var ErrAborted = errors.New("delivery cut short by shutdown")

// FatalError: Kafka refused a DLQ item in every form, or kept refusing a
// record for a while. The process cannot place the delivery anywhere; its
// caller must stop without marking it (the delivery runs again after a
// restart).
type FatalError struct{ Err error }

func (e *FatalError) Error() string { return "cannot hand a delivery to Kafka: " + e.Err.Error() }
func (e *FatalError) Unwrap() error { return e.Err }

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// Run drives t until a decision needs Kafka, and hands it over. nil: all of
// it is acknowledged.
func (e *Engine) Run(ctx context.Context, cl *kgo.Client, t *delivery.Task) error {
	_, err := e.RunLeft(ctx, cl, t)
	return err
}

// RunLeft is Run, and also reports whether the delivery left for a retry
// tier or the failover topic (Retry, Defer, Failover): a delivery of a
// pipeline ordered by key then holds its key (package ordering).
func (e *Engine) RunLeft(ctx context.Context, cl *kgo.Client, t *delivery.Task) (left bool, err error) {
	var outs []out
	for t != nil {
		p, ok := e.Pipes.Get(t.PipelineID)
		var dec delivery.Decision
		if !ok && !e.Pipes.Deleted(t.PipelineID) {
			dec = e.Steps.Unknown(t)
		} else {
			dec = e.Steps.Step(ctx, p, t)
		}
		if dec.Verdict == delivery.Abort {
			return false, ErrAborted
		}
		switch dec.Verdict {
		case delivery.Retry, delivery.Defer, delivery.Failover:
			left = true
		}
		var more []out
		more, t = e.Apply(p, &dec)
		outs = append(outs, more...)
	}
	return left, e.send(ctx, cl, outs)
}

// Hop moves a task that is not yet due to the tier that fits what is left of
// its wait (retry tiers never run a task early).
func (e *Engine) Hop(ctx context.Context, cl *kgo.Client, t *delivery.Task) error {
	return e.send(ctx, cl, []out{e.onTier(t, t.NotBefore)})
}

// Unreadable dead-letters a record that could not be decoded (an event, or a
// task), keeping its bytes.
func (e *Engine) Unreadable(ctx context.Context, cl *kgo.Client, rec *kgo.Record, reason string, cause error) error {
	return e.send(ctx, cl, []out{e.deadLetter(dlq.ForSource(rec, reason, cause, e.now()))})
}

// role is what a record is to its delivery, which decides what a refused
// produce means.
// tierSlack: see onTier (retrytopics holds a head up to the same 10 ms).
const tierSlack = 10 * time.Millisecond

type role uint8

const (
	roleLog   role = iota + 1 // attempt and execution records
	roleTask                  // a task on a retry tier or the failover topic
	roleDLQ                   // a DLQ item
	roleOrder                 // the release of a key lock (ordering)
)

func (r role) String() string { return [...]string{"", "log", "task", "dlq", "order"}[r] }

type out struct {
	rec   *kgo.Record
	role  role
	tries int            // transient refusals so far
	count func()         // metrics of what the record stands for, once it is acknowledged
	task  *delivery.Task // roleTask
	dl    *dlq.Record    // roleDLQ
}

// Apply turns a decision into its records (DESIGN.md §3a), and returns the
// task that runs next in place, if any.
func (e *Engine) Apply(p *pipeline.Compiled, dec *delivery.Decision) ([]out, *delivery.Task) {
	var outs []out
	if dec.Attempt != nil {
		outs = append(outs, e.log(dec.Attempt.ExecutionID, dec.Attempt))
	}
	switch dec.Verdict {
	case delivery.Retry, delivery.Defer, delivery.Failover:
		// A delivery of an ordered pipeline leaving for a topic holds its
		// key until it ends (its caller writes the lock).
		if dec.Task.Order != "" {
			dec.Task.Blocks = true
		}
	case delivery.Done, delivery.Cancelled, delivery.Dead:
		// The end of a delivery that holds its key releases it — the
		// execution going on in place (Dead with Continue) has not ended.
		if t := dec.Task; t.Blocks && t.Order != "" && (dec.Verdict != delivery.Dead || dec.Continue == nil) && e.Topics.Order != "" {
			outs = append(outs, out{rec: ordering.ReleaseRecord(e.Topics.Order, t), role: roleOrder})
		}
	}
	switch dec.Verdict {
	case delivery.Next:
		return outs, dec.Task
	case delivery.Done, delivery.Cancelled:
		outs = append(outs, e.execution(p, dec.Task, dec.Status))
	case delivery.Retry:
		first := markRetried(dec.Task)
		outs = append(outs, e.onTier(dec.Task, dec.At), e.retrying(p, dec.Task, first))
	case delivery.Defer:
		o := e.onTier(dec.Task, dec.At)
		reason := dec.Reason
		o.count = func() { metrics.Deferred.WithLabelValues(reason).Inc() }
		outs = append(outs, o)
	case delivery.Failover:
		first := markRetried(dec.Task)
		outs = append(outs, out{rec: dec.Task.Record(e.Topics.Failover), role: roleTask, task: dec.Task},
			e.retrying(p, dec.Task, first))
	case delivery.Dead:
		ev, _ := dec.Task.Decoded()
		outs = append(outs, e.deadLetter(dlq.ForDecision(dec, ev, e.now())))
		if dec.Continue != nil {
			return outs, dec.Continue
		}
		outs = append(outs, e.execution(p, dec.Task, dec.Status))
	}
	return outs, nil
}

// onTier places t on the retry tier that fits its wait until at. The wait
// is measured a moment after it was decided; the slack keeps a wait of
// exactly a tier's length on that tier (the tier's consumer waits in place
// for up to the same slack).
func (e *Engine) onTier(t *delivery.Task, at time.Time) out {
	tier := e.Topics.TierFor(at.Sub(e.now()) + tierSlack)
	t.NotBefore = at
	t.AddTier(tier.Name)
	return out{rec: t.Record(tier.Topic), role: roleTask, task: t}
}

func (e *Engine) deadLetter(dl *dlq.Record) out {
	return out{rec: dl.Encode(e.Topics.DLQ), role: roleDLQ, dl: dl, count: func() { metrics.DeadLetters.WithLabelValues(dl.Reason).Inc() }}
}

func (e *Engine) log(key string, v any) out {
	var b []byte
	ok := false
	switch x := v.(type) { // the records of every delivery, without reflection
	case *delivery.Attempt:
		b, ok = x.AppendJSON(make([]byte, 0, x.JSONSizeHint()))
	case *delivery.Execution:
		b, ok = x.AppendJSON(make([]byte, 0, x.JSONSizeHint()))
	}
	var err error
	if !ok {
		b, err = json.Marshal(v)
	}
	if err != nil {
		panic(fmt.Sprintf("encode %T: %v", v, err)) // plain data; a failure is a bug
	}
	return out{rec: &kgo.Record{Topic: e.Topics.Executions, Key: []byte(key), Value: b}, role: roleLog}
}

// markRetried records on t, before it is written anywhere, that its
// execution has gone into retry; true the first time.
func markRetried(t *delivery.Task) bool {
	first := !t.Retried
	t.Retried = true
	return first
}

// retrying is the execution's "retrying" state record.
func (e *Engine) retrying(p *pipeline.Compiled, t *delivery.Task, first bool) out {
	return e.state(p, t, delivery.ExecRetrying, first)
}

// execution is the execution's state record after a decision.
func (e *Engine) execution(p *pipeline.Compiled, t *delivery.Task, status string) out {
	return e.state(p, t, status, false)
}

func (e *Engine) state(p *pipeline.Compiled, t *delivery.Task, status string, firstRetry bool) out {
	now := e.now()
	x := &delivery.Execution{
		V: delivery.Version, Kind: delivery.KindExecution, ExecutionID: t.ExecutionID, DeliveryID: t.DeliveryID,
		PipelineID: t.PipelineID, Status: status, StartedAt: t.ExecStartedAt, Seq: now.UnixNano(),
	}
	if p == nil {
		p, _ = e.Pipes.Get(t.PipelineID)
	}
	if p != nil {
		x.PipelineName = p.Name
	}
	if ev, err := t.Decoded(); err == nil {
		x.TriggerType, x.TriggerID, x.EventID = ev.TriggerType, ev.TriggerID, ev.ID
	}
	if status != delivery.ExecRetrying {
		x.CompletedAt = now
		x.Retried = t.Retried
	} else {
		x.FirstRetry = firstRetry
	}
	o := e.log(t.ExecutionID, x)
	o.count = func() { metrics.Deliveries.WithLabelValues(status, x.TriggerType).Inc() }
	return o
}

// Kafka's transient refusals (no leader, not enough replicas, a record timed
// out after the client's own retries) are tried again, a bounded number of
// times, before the send gives up.
var transientBackoff = []time.Duration{time.Second, 5 * time.Second}

// transient: Kafka may take the record if it is sent again. A topic that does
// not exist is not transient (the client already waited for it).
func transient(err error) bool {
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return false
	}
	return errors.Is(err, kgo.ErrRecordTimeout) || errors.Is(err, kgo.ErrRecordRetries) || kerr.IsRetriable(err)
}

// send produces outs and deals with every refusal (see the package doc).
// A refusal moves a delivery further down task → DLQ item → reduced DLQ
// item → fatal, and a transient one is tried again at most
// len(transientBackoff) times, so it ends.
func (e *Engine) send(ctx context.Context, cl *kgo.Client, outs []out) error {
	if b := bus.BufferOf(ctx); b != nil {
		// Inside a transaction: the records go with the source offset's
		// commit (consumer package), and a refusal is dealt with then.
		b.Add(e.deferred(outs)...)
		return nil
	}
	for len(outs) > 0 {
		recs := make([]*kgo.Record, len(outs))
		for i, o := range outs {
			recs[i] = o.rec
		}
		errs := bus.Produce(ctx, cl, recs...)
		var again []out
		wait := time.Duration(0)
		for i, err := range errs {
			if err == nil {
				if outs[i].count != nil {
					outs[i].count()
				}
				continue
			}
			if ctx.Err() != nil {
				return ErrAborted
			}
			o := outs[i]
			cause := "other"
			switch {
			case bus.TooLarge(err):
				cause = "too_large"
			case transient(err):
				cause = "transient"
			}
			metrics.ProduceFailures.WithLabelValues(o.role.String(), cause).Inc()
			if o.role == roleOrder && cause != "transient" {
				// A lost release would hold the key for ever.
				return &FatalError{Err: fmt.Errorf("Kafka refused the release of a key lock: %w", err)}
			}
			if cause == "transient" && o.role != roleLog {
				if o.tries < len(transientBackoff) {
					e.Log.Warn("Kafka refused a record for now; trying again", "topic", o.rec.Topic, "err", err)
					wait = max(wait, transientBackoff[o.tries])
					o.tries++
					o.rec = cloneRecord(o.rec)
					again = append(again, o)
					continue
				}
				// Kafka keeps refusing: nothing can be decided here. The
				// offset stays unmarked; the process stops and the delivery
				// runs again after the restart.
				return &FatalError{Err: fmt.Errorf("Kafka refused a record for %s %d times: %w", o.rec.Topic, o.tries+1, err)}
			}
			switch o.role {
			case roleLog:
				e.Log.Error("Kafka refused an execution log record; the delivery goes on without it", "topic", o.rec.Topic, "err", err)
			case roleTask:
				again = append(again, e.refusedTask(o.task, o.rec.Topic, err)...)
			case roleDLQ:
				if bus.TooLarge(err) && !o.dl.PayloadTruncated {
					again = append(again, e.deadLetter(o.dl.Reduce()))
					continue
				}
				return &FatalError{Err: fmt.Errorf("DLQ item %s (%s): %w", o.dl.ID, o.dl.Reason, err)}
			}
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return ErrAborted
			case <-time.After(wait):
			}
		}
		outs = again
	}
	return nil
}

// deferred is outs for a transaction: each with what takes its place if Kafka
// refuses it for good, decided as send decides (a transient refusal aborts
// the transaction, which is tried again).
func (e *Engine) deferred(outs []out) []bus.Deferred {
	ds := make([]bus.Deferred, len(outs))
	for i, o := range outs {
		ds[i] = bus.Deferred{Rec: o.rec, Committed: o.count, Refused: func(err error) ([]bus.Deferred, error) {
			cause := "other"
			if bus.TooLarge(err) {
				cause = "too_large"
			}
			metrics.ProduceFailures.WithLabelValues(o.role.String(), cause).Inc()
			switch o.role {
			case roleLog:
				e.Log.Error("Kafka refused an execution log record; the delivery goes on without it", "topic", o.rec.Topic, "err", err)
				return nil, nil
			case roleTask:
				return e.deferred(e.refusedTask(o.task, o.rec.Topic, err)), nil
			case roleDLQ:
				if bus.TooLarge(err) && !o.dl.PayloadTruncated {
					return e.deferred([]out{e.deadLetter(o.dl.Reduce())}), nil
				}
				return nil, &FatalError{Err: fmt.Errorf("DLQ item %s (%s): %w", o.dl.ID, o.dl.Reason, err)}
			default:
				return nil, &FatalError{Err: fmt.Errorf("Kafka refused the release of a key lock: %w", err)}
			}
		}}
	}
	return ds
}

// refusedTask is the DLQ item (and execution) of a task Kafka refused for
// good on topic.
func (e *Engine) refusedTask(t *delivery.Task, topic string, err error) []out {
	reason := delivery.ReasonProduceFailed
	if bus.TooLarge(err) {
		reason = delivery.ReasonTooLarge
	}
	text := fmt.Sprintf("Kafka refused the task for %s: %v", topic, err)
	e.Log.Warn("task refused by Kafka; sent to the DLQ", "delivery_id", t.DeliveryID, "topic", topic, "reason", reason, "err", err)
	dec := &delivery.Decision{Verdict: delivery.Dead, Task: t.Resumable(text), Reason: reason, Error: text, Attempts: t.Attempt, Status: delivery.ExecFailed}
	more, _ := e.Apply(nil, dec)
	return more
}

// Refused hands t, which Kafka refused on topic (a park topic), to the DLQ
// as a refused task is: too_large, or produce_failed for another refusal
// that is not transient. A transient refusal is returned as it is: the
// caller stops without marking, and t runs again.
func (e *Engine) Refused(ctx context.Context, cl *kgo.Client, t *delivery.Task, topic string, err error) error {
	if ctx.Err() != nil {
		return ErrAborted
	}
	if transient(err) && !bus.TooLarge(err) {
		return &FatalError{Err: fmt.Errorf("Kafka refused a record for %s: %w", topic, err)}
	}
	return e.send(ctx, cl, e.refusedTask(t, topic, err))
}

// cloneRecord is a record ready to be produced again (a produced record's
// fields were set by the client).
func cloneRecord(r *kgo.Record) *kgo.Record {
	return &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: r.Headers}
}
