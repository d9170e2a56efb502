// Package retrytopics runs the tiered retry topics (webhooks.retry.5s, …) and
// the failover topic. A task waiting d goes to the largest tier not longer
// than d (bus.Topics.TierFor); a tier's consumer holds its partition until the
// head record has waited the tier's delay — records of a tier are in due
// order, since each was produced with the same hold ahead of it — then runs
// it through the engine if it is due, or hops it to the tier that fits the
// remainder (DESIGN.md §4). Nothing waits in memory or in a sleeping handler.
package retrytopics

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/bus"
	"github.com/afftok/webhookd/consumer"
	"github.com/afftok/webhookd/delivery"
)

// Runner is what the handlers need of the engine.
type Runner interface {
	Run(ctx context.Context, cl *kgo.Client, t *delivery.Task) error
	Hop(ctx context.Context, cl *kgo.Client, t *delivery.Task) error
	Unreadable(ctx context.Context, cl *kgo.Client, rec *kgo.Record, reason string, cause error) error
}

// TierHandler runs one retry tier's topic.
type TierHandler struct {
	Tier   bus.Tier
	Engine Runner
	Log    *slog.Logger
}

// Prepare implements consumer.Handler: the task is decoded once; the record
// is due at its tier's hold after it was produced, or at the task's own due
// time if that is earlier (a remainder hopped into a longer tier).
func (h *TierHandler) Prepare(rec *kgo.Record) consumer.Work {
	t, err := decode(rec)
	if err != nil {
		return unreadable(h.Engine, h.Log, rec, err)
	}
	// A record stamped in the future (a producer whose clock runs fast)
	// must not hold the partition beyond the tier's delay from now.
	produced := rec.Timestamp
	if now := time.Now(); produced.After(now) {
		produced = now
	}
	return consumer.Work{Due: Due(produced, h.Tier.Delay, t.NotBefore), Jobs: []consumer.Job{func(ctx context.Context, cl *kgo.Client) error {
		if time.Now().Before(t.NotBefore) {
			// Never early: hop to the tier that fits what is left.
			return h.Engine.Hop(ctx, cl, t)
		}
		return h.Engine.Run(ctx, cl, t)
	}}}
}

// FailoverHandler runs the failover topic: failover attempts and DLQ
// retries, due as soon as they are read.
type FailoverHandler struct {
	Engine Runner
	Log    *slog.Logger
}

// Prepare implements consumer.Handler.
func (h *FailoverHandler) Prepare(rec *kgo.Record) consumer.Work {
	t, err := decode(rec)
	if err != nil {
		return unreadable(h.Engine, h.Log, rec, err)
	}
	// Failover tasks are due when written; never hold the partition for one
	// that says otherwise.
	due := t.NotBefore
	if limit := time.Now().Add(time.Second); due.After(limit) {
		due = limit
	}
	return consumer.Work{Due: due, Jobs: []consumer.Job{func(ctx context.Context, cl *kgo.Client) error {
		return h.Engine.Run(ctx, cl, t)
	}}}
}

// MaxWait is the longest a task may wait for its next attempt: no policy,
// Retry-After or deferral asks for more (backoff.HardMaxDelay is a day).
// A task due later than that was not written by webhookd as it is: it would
// hop through the tiers for ever, so it is dead-lettered.
const MaxWait = 25 * time.Hour

func decode(rec *kgo.Record) (*delivery.Task, error) {
	t, err := delivery.DecodeTask(rec.Value)
	if err != nil {
		return nil, err
	}
	if wait := time.Until(t.NotBefore); wait > MaxWait {
		return nil, fmt.Errorf("task due in %v, more than any retry may wait (%v)", wait.Round(time.Second), MaxWait)
	}
	return t, nil
}

func unreadable(e Runner, log *slog.Logger, rec *kgo.Record, err error) consumer.Work {
	log.Error("undecodable task sent to the DLQ", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err)
	return consumer.Work{Jobs: []consumer.Job{func(ctx context.Context, cl *kgo.Client) error {
		return e.Unreadable(ctx, cl, rec, delivery.ReasonInvalidTask, err)
	}}}
}

// holdSlack lets a head wait slightly past its hold for its own due time.
// Kafka timestamps have millisecond resolution, so a task due exactly at the
// hold can look due a fraction of a millisecond after it; hopping it then
// would put it behind fresher records, up to a whole tier late. Waiting in
// place delays what is behind by at most the slack.
const holdSlack = 10 * time.Millisecond

// Due is when a tier record is looked at: produced+hold, or the task's own
// due time if that is earlier or within holdSlack after it. Never later than
// the hold: holding a head longer would delay every record behind it, which
// then hops late in turn.
func Due(produced time.Time, hold time.Duration, notBefore time.Time) time.Time {
	if end := produced.Add(hold); end.Add(holdSlack).Before(notBefore) {
		return end
	}
	return notBefore
}
