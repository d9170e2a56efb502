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
	Now   func() time.Time

	mu    sync.Mutex
	pipes map[string]*pace
	swept time.Time
}

type pace struct {
	limit float64   // the pipeline limit the bookings were made under
	next  time.Time // the next free place (a virtual clock)
}

// minRate is the smallest budget (places a second) this replica books with;
// below it the replica holds no share (it would book a place days away).
const minRate = 1e-6

func (l *Limiter) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// Interval is the time between two places of a pipeline limited to limit
// per second on a replica holding share of it; 0 when it holds none.
func Interval(limit, share float64) time.Duration {
	rate := limit * share
	if !(rate >= minRate) || math.IsInf(rate, 0) {
		return 0
	}
	return time.Duration(math.Ceil(float64(time.Second) / rate))
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
	l.sweepLocked(now)
	if l.pipes == nil {
		l.pipes = map[string]*pace{}
	}
	p := l.pipes[pipelineID]
	if p == nil || p.limit != limit {
		p = &pace{limit: limit}
		l.pipes[pipelineID] = p
	}
	at := p.next
	if at.Before(now) {
		at = now // idle: no burst is saved up
	}
	if within >= 0 && at.Sub(now) > within {
		return at, false
	}
	p.next = at.Add(step)
	return at, true
}

// sweepLocked forgets pipelines with nothing booked for a while (at most
// once a minute), so memory stays bounded over many pipelines.
func (l *Limiter) sweepLocked(now time.Time) {
	if now.Sub(l.swept) < time.Minute {
		return
	}
	l.swept = now
	for id, p := range l.pipes {
		if now.Sub(p.next) > time.Minute {
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
