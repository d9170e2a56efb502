// Package ratelimit paces the attempts made to a pipeline to its
// rate_limit_per_second across the whole deployment, with no coordination
// between replicas beyond Kafka's own consumer groups.
//
// Every attempt of a delivery — a first attempt, a retry, a failover, a DLQ
// redrive — is made by whichever replica owns the partition its record is on:
// an event topic's, a retry tier's or the failover topic's. So each replica
// takes a share of every pipeline's budget in proportion to the partitions of
// those topics it owns (Ownership): share = limit × owned ÷ all. Every
// partition has exactly one owner, so the shares of all replicas add up to
// the limit whatever roles they run, and they follow every rebalance; a
// replica that owns nothing has no share (and no work). Within a replica,
// Limiter books each pipeline's places one pace apart (pace = 1 ÷ share), in
// the order they were asked for: a virtual clock, like the per-host pacing of
// package dispatcher, so a place is never given twice and nothing jumps the
// queue.
//
// A place further ahead than a short wait is not waited for in a delivery
// slot: the dispatcher (dispatcher/rate.go) defers the delivery to the retry
// tiers — first through a hop, so it is booked by whichever replica its
// record lands on and uneven keys do not crowd one replica's share — and the
// task carries its booked place (a ticket), so it keeps its place wherever it
// comes back. A ticket is a place one replica's share already paid for, so
// honouring it anywhere adds nothing to the deployment's rate.
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// Limiter books places in time per pipeline at this replica's share of each
// pipeline's limit. It is safe for concurrent use.
type Limiter struct {
	// Share is the fraction (0..1) of every pipeline's limit this replica
	// holds (Ownership.Share); nil: all of it (a single replica).
	Share func() float64
	// Now is the clock (nil: time.Now); it must be the dispatcher's
	// (dispatcher.Options.Now), which waits for the places it gives.
	Now func() time.Time

	mu    sync.Mutex
	pipes map[string]*pace
	swept time.Time
}

type pace struct {
	limit float64       // the pipeline limit the bookings were made under
	step  time.Duration // the pace they were made at (limit × share)
	next  time.Time     // the next free place (a virtual clock)
	// sent is when the next send is due by the emission guard (Send):
	// the theoretical time of the next send, one pace after the last.
	sent time.Time
}

// maxInterval is the longest pace booked: a smaller budget (a limit of
// 1e-9 a second, which the API accepts, or any limit at a tiny share) books
// its places this far apart. Longer than any deferral window, so a delivery
// waiting for such a place is dead-lettered when its window ends; a place
// that far is never reached, and time arithmetic stays far from overflow.
const maxInterval = 100 * 365 * 24 * time.Hour

func (l *Limiter) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// Interval is the time between two places of a pipeline limited to limit
// per second on a replica holding share of it (at most maxInterval); 0 when
// it holds none. A budget however small but above zero is a budget: taken
// for none, a delivery would bounce through a tier every second.
func Interval(limit, share float64) time.Duration {
	rate := limit * share
	if !(rate > 0) || math.IsInf(rate, 0) {
		return 0
	}
	if step := float64(time.Second) / rate; step < float64(maxInterval) {
		return time.Duration(math.Ceil(step))
	}
	return maxInterval
}

// Reserve books the pipeline's next place and returns when it is. within
// bounds how far ahead a place may be booked (negative: any time): a place
// further ahead is not booked, and Reserve returns when it would have been
// with false. The zero time means this replica holds no share of the
// pipeline's budget now (it owns no partitions): nothing can be booked here.
//
// A change of the pipeline's limit starts its bookings afresh (the
// dispatcher no longer honours places booked under the old limit), so the
// new limit applies at once.
func (l *Limiter) Reserve(pipelineID string, limit float64, within time.Duration) (time.Time, bool) {
	share := 1.0
	if l.Share != nil {
		share = l.Share()
	}
	step := Interval(limit, share)
	if step == 0 {
		return time.Time{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	p := l.paceLocked(pipelineID, limit, now)
	p.rescale(limit, step, now)
	// Never where the emission guard is full: sends on places another
	// replica booked (tickets) move the guard's clock, not this booking
	// clock, and a place the guard would refuse is a round trip through
	// a retry tier for nothing.
	at := later(p.next, p.sent.Add(-step/4))
	if at.Before(now) {
		at = now // idle: no burst is saved up
	}
	if within >= 0 && at.Sub(now) > within {
		return at, false
	}
	p.next = at.Add(step)
	return at, true
}

// Send is the emission guard: it spaces the sends this replica makes late
// for the pipeline at its share of the limit. Places are booked in time
// (Reserve) and a send on its place is paced by the booking clocks; but a
// place is used when its delivery comes to it, and tickets that became late
// together in a stall (a starved machine, a stalled tier) or sleepers whose
// timers fired late would all go at once, a burst over the limit. So the
// dispatcher asks Send at the moment it would send, with the place it
// sends on: a send on time (no later than a quarter pace after its place)
// goes and is counted; a late one goes only when the guard has room — true:
// send now (counted); false: ask again at the time given (nothing is
// booked: whoever asks first then goes).
//
// The guard is a cell-rate check (GCRA) over every send counted, with a
// tolerance of a quarter pace for timer jitter, so a send a little late
// does not push every later one back. Late sends only fill the room the
// sends on time leave at this replica's share: the guard never lets late
// sends take a second on this replica past ⌊rate + 1/4⌋ + 1 sends, rate =
// limit × share (rate + 1 for a whole rate), and sends on time are at
// most the places booked in it (a pace apart on each replica's clock).
// A late send takes the present, so this replica's next places are booked
// after it. Without a share here (zero time, true) nothing is guarded:
// such a replica books nothing either.
func (l *Limiter) Send(pipelineID string, limit float64, place time.Time) (time.Time, bool) {
	share := 1.0
	if l.Share != nil {
		share = l.Share()
	}
	step := Interval(limit, share)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if step == 0 {
		return now, true
	}
	l.sweepLocked(now)
	p := l.pipes[pipelineID]
	if p == nil {
		// Only Reserve starts a pipeline's bookings afresh under a new
		// limit: a send that waited in its slot under the old limit
		// (read before the change) must not wipe the places booked
		// under the new one.
		p = l.paceLocked(pipelineID, limit, now)
	}
	p.rescale(limit, step, now)
	onTime := !now.After(place.Add(step / 4))
	if at := p.sent.Add(-step / 4); !onTime && now.Before(at) {
		return at, false
	}
	p.sent = later(p.sent, now).Add(step)
	if !onTime {
		p.next = later(p.next, p.sent.Add(-step/4))
	}
	return now, true
}

// paceLocked is the pipeline's pace under limit: a new one when it has
// none or its bookings were made under another limit.
func (l *Limiter) paceLocked(pipelineID string, limit float64, now time.Time) *pace {
	l.sweepLocked(now)
	if l.pipes == nil {
		l.pipes = map[string]*pace{}
	}
	p := l.pipes[pipelineID]
	if p == nil || p.limit != limit {
		p = &pace{limit: limit}
		l.pipes[pipelineID] = p
	}
	return p
}

// rescale moves the pace's clocks to a new pace (this replica's share of
// the limit changed): the places booked ahead of now keep their number,
// spaced at the new pace. A replica that held a tiny share for a moment
// (a rebalance) and booked a place a tiny share's pace away books at its
// full share's pace again as soon as it holds it, not a century later.
// A send under an old limit (read before a change) moves nothing.
func (p *pace) rescale(limit float64, step time.Duration, now time.Time) {
	if p.step == step || limit != p.limit {
		return
	}
	if p.step > 0 {
		scale := func(t time.Time) time.Time {
			if !t.After(now) {
				return t
			}
			return now.Add(time.Duration(float64(t.Sub(now)) * float64(step) / float64(p.step)))
		}
		p.next, p.sent = scale(p.next), scale(p.sent)
	}
	p.step = step
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sweepLocked forgets pipelines with nothing booked for a while (at most
// once a minute), so memory stays bounded over many pipelines.
func (l *Limiter) sweepLocked(now time.Time) {
	if now.Sub(l.swept) < time.Minute {
		return
	}
	l.swept = now
	for id, p := range l.pipes {
		if now.Sub(later(p.next, p.sent)) > time.Minute {
			delete(l.pipes, id)
		}
	}
}

// Booked reports how far ahead the pipeline's next free place is on this
// replica (0: free now), for tests and diagnosis.
func (l *Limiter) Booked(pipelineID string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.pipes[pipelineID]; p != nil {
		return max(p.next.Sub(l.now()), 0)
	}
	return 0
}
