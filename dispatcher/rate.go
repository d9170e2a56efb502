package dispatcher

import (
	"context"
	"time"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/pipeline"
)

// RateLimiter books places in time for a pipeline's attempts
// (*ratelimit.Limiter): at this replica's share of the pipeline's
// deployment-wide limit, one place after another in the order they are
// asked for. within bounds how far ahead a place may be booked (negative:
// any time); a place further ahead is not booked (false). The zero time
// means this replica holds no share now.
//
// Send is the emission guard: a send on its place goes; one later than
// that (a late ticket, a sleeper woken late) goes only within this
// replica's share of the limit, counting every send (true: send now,
// counted; false: ask again at the time given).
type RateLimiter interface {
	Reserve(pipelineID string, limit float64, within time.Duration) (time.Time, bool)
	Send(pipelineID string, limit float64, place time.Time) (time.Time, bool)
}

// RateQueueWait is the longest a delivery waits in its slot for its place
// under a rate limit; a place further ahead is waited for in the retry tiers.
const RateQueueWait = 250 * time.Millisecond

// RateTicketGrace is how late a booked place (a ticket) may be used. A
// deferred task is due back rateComeBackEarly before its place and waits
// for it in its slot, so it is late only when its tier is (a stalled
// consumer, a tier partition's head held for a later due time — up to its
// delay under load); one held up longer than this — a rebalance, a long
// stall — books a new place rather than going at once with every other
// late one (a burst over the limit).
const RateTicketGrace = 2 * time.Second

// rateComeBackEarly is how long before its place a task deferred to it is
// due back (less than RateQueueWait: it then waits for the place in its slot).
const rateComeBackEarly = RateQueueWait / 2

// rateMoveGain is how much sooner a place on the replica a deferred task
// comes back to must be for the task to move there from its ticket's.
const rateMoveGain = time.Second

// rateLookAgain is the shortest look again at a task deferred to its place
// (see rate).
const rateLookAgain = time.Second

// noShareWait is how long a delivery this replica holds no budget for (its
// partitions were just revoked) waits on a tier before it is tried again,
// by whichever replica owns that tier's partition then.
const noShareWait = time.Second

// rate applies p's rate limit to t's attempt. It returns the task to attempt
// now (t itself, or a copy without its used ticket), perhaps after a wait in
// place of up to RateQueueWait; or a decision: Defer (no attempt made or
// spent), Dead past the deferral window, or Abort when ctx ends during the
// wait.
//
// Places are booked in the order they are asked for, and a delivery
// deferred to its place keeps it: the task carries the place (a ticket),
// which is used wherever the task comes back, and nothing books that place
// again. A ticket booked under another limit than the pipeline's current
// one is void (the new limit applies at once).
//
// Work reaches replicas unevenly: a pipeline's events may crowd on one
// replica's event partitions (uneven keys), though every replica holds a
// share of the budget. So a delivery that finds no place soon where it
// first asks is not booked there: it hops at once through a retry tier —
// keyed by delivery id, so the hops spread over every replica by their
// tier partitions — and is booked by the replica it lands on (RateHop).
// A deferred task also comes back halfway to its place (at least a second,
// at most RateRecheck ahead — so a changed limit reaches it within that),
// on whichever replica owns its tier partition then, and moves to a place
// of that replica's if one is at least rateMoveGain sooner (or free now),
// or waits on for its ticket: replicas that booked unevenly even out, spare
// places of an idle one serve work a busy one booked, and the place left
// goes unused — the deployment never goes faster than the limit.
func (d *Dispatcher) rate(ctx context.Context, p *pipeline.Compiled, idx int, t *delivery.Task, now time.Time) (*delivery.Task, *delivery.Decision) {
	limit := p.RateLimit()
	if limit <= 0 || d.o.Rates == nil {
		return untick(t), nil
	}
	// hold defers the task to until, with a ticket for its place (or
	// none: then it is booked where it lands).
	hold := func(until, ticket time.Time) (*delivery.Task, *delivery.Decision) {
		held := t.Clone()
		held.RateAt, held.RateLimit, held.RateHop = ticket, 0, ticket.IsZero()
		if !ticket.IsZero() {
			held.RateLimit = limit
		}
		if wait := until.Sub(now); !ticket.IsZero() && wait > rateLookAgain {
			until = now.Add(min(max(wait/2, rateLookAgain), d.o.RateRecheck))
		} else if !ticket.IsZero() {
			// Back a little before its place, to wait for it in its slot:
			// a task due at its place would come back late by the tier's
			// own delay, and late places used together are a burst.
			until = until.Add(-rateComeBackEarly)
		}
		dec := d.deferral(p, idx, held, delivery.ReasonRateLimited, until, d.o.MaxHold, now)
		return nil, &dec
	}
	// wait waits in place for the place at (at most RateQueueWait ahead:
	// a ticket's, or one just booked here),
	// then for the emission guard (Limiter.Send): after a stall, late
	// tickets and sleepers whose timers fired late come to their sends
	// together, and the guard spaces them at this replica's share. The
	// whole wait in the slot ends by RateQueueWait from now; a send the
	// guard puts later is deferred with its place as its ticket (used
	// within RateTicketGrace wherever it comes back, else booked anew).
	wait := func(at time.Time) (*delivery.Task, *delivery.Decision) {
		place, deadline := at, now.Add(RateQueueWait)
		var last time.Time
		for {
			if !sleep(ctx, at.Sub(d.o.Now())) {
				return nil, &delivery.Decision{Verdict: delivery.Abort, Task: t}
			}
			next, ok := d.o.Rates.Send(p.ID, limit, place)
			if ok {
				return untick(t), nil
			}
			// Each look again is later than the last (another send
			// went in between), and none is past the deadline: the
			// loop ends.
			if next.After(deadline) || !next.After(last) {
				// Its place was taken by sends that came before it: a
				// new place after them (booked however far ahead), or —
				// with no share here now — its own, used elsewhere.
				now = d.o.Now() // deferred from here, after the wait
				if again, _ := d.o.Rates.Reserve(p.ID, limit, -1); !again.IsZero() {
					return hold(again, again)
				}
				return hold(next, place)
			}
			at, last = next, next
		}
	}
	if at := t.RateAt; !at.IsZero() && t.RateLimit == limit {
		ahead := at.Sub(now)
		switch {
		case ahead <= 0 && -ahead <= RateTicketGrace:
			return wait(at) // its place is now (the guard still spaces the send)
		case ahead > 0 && ahead <= RateQueueWait:
			return wait(at)
		case ahead > 0:
			// Back before its place: a place here at least rateMoveGain
			// sooner (or free now) serves it instead — the ticket's place
			// then goes unused, never more than the limit — so the queues
			// of replicas that booked unevenly even out; otherwise it
			// waits on for its place.
			if sooner, ok := d.o.Rates.Reserve(p.ID, limit, max(RateQueueWait, ahead-rateMoveGain)); ok {
				if sooner.Sub(now) <= RateQueueWait {
					return wait(sooner)
				}
				return hold(sooner, sooner)
			}
			return hold(at, at)
		}
		// Far too late for its place: a new one, below.
	}
	within := RateQueueWait
	if t.RateHop || !t.RateAt.IsZero() {
		// Passed on to be booked here, or its ticket is void or stale:
		// booked here, however far ahead.
		within = -1
	}
	at, ok := d.o.Rates.Reserve(p.ID, limit, within)
	switch {
	case at.IsZero():
		// No share here (this replica owns no partitions right now).
		return hold(now.Add(noShareWait), time.Time{})
	case !ok:
		// No place soon here: hop (due at once) to be booked wherever
		// the task lands.
		return hold(now, time.Time{})
	case at.Sub(now) <= RateQueueWait:
		return wait(at)
	}
	return hold(at, at)
}

// untick is t without a ticket (its place is being used now).
func untick(t *delivery.Task) *delivery.Task {
	if t.RateAt.IsZero() && t.RateLimit == 0 && !t.RateHop {
		return t
	}
	n := t.Clone()
	n.RateAt, n.RateLimit, n.RateHop = time.Time{}, 0, false
	return n
}

// sleep waits d, or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
