package dispatcher

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/afftok/webhookd/delivery"
)

// Hosts guards each receiver host (DESIGN.md §3): a limit on requests in
// flight to it — requests, not connections, so HTTP/2 multiplexing cannot get
// around it — and a circuit breaker. A request that cannot go soon is
// deferred rather than waiting in its delivery slot, so work for a slow or
// dead host leaves its partition and healthy pipelines never queue behind it.
// State is per replica: a load-shedding hint, not data anything depends on.
//
// A full host: a request waits in place only while it can expect a place
// within its wait bound (the host's pace — its requests' latency over the
// limit — times the queue ahead of it): QueueWait, or four of the host's
// requests' latency if longer, at most eight QueueWaits (waitBoundLocked,
// which also says why); otherwise it is deferred to when a place can
// be expected, each deferral booked one pace after the previous one, so
// deferred work comes back at the rate the host takes it, not all at once
// and not in a fixed loop. A host that finished nothing for QueueWait while
// full is stalled: deferrals come back after as long again as it has been
// quiet (doubling while it stays quiet), never later than its oldest
// request's deadline.
//
// The breaker: after Failures consecutive failures (network errors, timeouts,
// 5xx) a host's circuit opens for Cooldown; then one probe is let through and
// its outcome closes or re-opens the circuit. While the probe is out, others
// are deferred until the probe's deadline — the earliest moment anything can
// change — never re-checked in a loop.
type Hosts struct {
	// Limit is the requests in flight per host (WEBHOOKD_MAX_IN_FLIGHT_PER_HOST).
	Limit int
	// Failures opens a circuit (0: no breaker); Cooldown keeps it open.
	Failures int
	Cooldown time.Duration
	// QueueWait is the shortest bound of a wait in place for a place at a
	// full host (default 250 ms; waitBoundLocked); it is also the shortest
	// deferral.
	QueueWait time.Duration
	Now       func() time.Time

	mu    sync.Mutex
	hosts map[string]*hostState
	swept time.Time
}

type hostState struct {
	inflight  permits
	waiters   []*waiter
	latency   time.Duration // moving average of finished requests' durations
	fullSince time.Time     // when inflight reached the limit (zero: not full)
	lastDone  time.Time     // when a request to the host last finished
	booked    time.Time     // the last deferral's due time
	fails     int
	openUntil time.Time
	probe     *Permit // the probe in flight while half-open
	// turns: deferred requests holding their slot until one of the
	// host's requests finishes (AwaitTurn).
	turns []chan struct{}
}

type waiter struct {
	ready   chan struct{}
	granted *Permit
}

// Permit is one request's place at a host; Done must be called once.
type Permit struct {
	h        *Hosts
	key      string
	started  time.Time
	deadline time.Time
	// Its place in the host's permits while it is held.
	prev, next *Permit
	held       bool
}

// permits are a host's requests in flight, in the order they started (each
// is added, or moved to the back, with the time read under the lock that
// guards them): the first is the oldest, found without looking at the
// others — a full host is asked for it on every request.
type permits struct {
	first, last *Permit
	n           int
}

func (l *permits) len() int { return l.n }

// push adds p at the back: it started last.
func (l *permits) push(p *Permit) {
	p.prev, p.next, p.held = l.last, nil, true
	if l.last != nil {
		l.last.next = p
	} else {
		l.first = p
	}
	l.last = p
	l.n++
}

// remove takes p out; false if it was not held. A permit is only ever in
// its own host's list (held says it is in one), so p must be l's.
func (l *permits) remove(p *Permit) bool {
	if !p.held {
		return false
	}
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		l.first = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	} else {
		l.last = p.prev
	}
	p.prev, p.next, p.held = nil, nil, false
	l.n--
	return true
}

// Outcome is what a finished request tells the breaker.
type Outcome uint8

const (
	// Healthy: the host answered (any status below 500).
	Healthy Outcome = iota + 1
	// Unhealthy: network error, timeout or 5xx.
	Unhealthy
	// Neutral: says nothing about the host (shutdown cut it short, or the
	// request never left: blocked address, invalid URL).
	Neutral
)

// Deferral says why a request cannot go now and when to look again.
type Deferral struct {
	Reason string // delivery.ReasonCircuitOpen or delivery.ReasonHostSaturated
	Until  time.Time
}

const defaultQueueWait = 250 * time.Millisecond

func (h *Hosts) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Hosts) queueWait() time.Duration {
	if h.QueueWait > 0 {
		return h.QueueWait
	}
	return defaultQueueWait
}

// Acquire takes a place at host for a request that may take up to timeout.
// It returns a permit, or a deferral, or ctx's error.
func (h *Hosts) Acquire(ctx context.Context, host string, timeout time.Duration) (*Permit, *Deferral, error) {
	if h == nil {
		return nil, nil, nil
	}
	h.mu.Lock()
	now := h.now()
	h.sweepLocked(now)
	hs := h.state(host)
	if h.open(hs) {
		var until time.Time
		switch {
		case now.Before(hs.openUntil):
			until = hs.openUntil
		case hs.probe != nil:
			until = maxTime(hs.probe.deadline, now.Add(h.queueWait()))
		}
		if !until.IsZero() {
			h.mu.Unlock()
			return nil, &Deferral{Reason: delivery.ReasonCircuitOpen, Until: until}, nil
		}
		// Half-open with no probe out: this request is the probe (below).
	}
	if h.Limit <= 0 || hs.inflight.len() < h.Limit {
		p := h.grantLocked(hs, host, now, timeout)
		h.mu.Unlock()
		return p, nil, nil
	}
	if hs.fullSince.IsZero() {
		hs.fullSince = now
	}
	// Admitted to wait only if its place can be expected within QueueWait:
	// the queue a slow host may hold in delivery slots stays what the
	// healthy pipelines sharing them can spare (QueueWait's worth of the
	// host's pace). Once admitted, a waiter's wait follows the host's
	// latency as it is learnt (below).
	if h.stalledLocked(hs, now) || time.Duration(len(hs.waiters)+1)*h.paceLocked(hs, now) > h.queueWait() {
		d := h.deferLocked(hs, now)
		h.mu.Unlock()
		return nil, d, nil
	}
	w := &waiter{ready: make(chan struct{}, 1)}
	hs.waiters = append(hs.waiters, w)
	// The wait is measured by the clock timers follow (h.now may be an
	// injected one): it ends within the longest bound whatever h.now says.
	start, bound := time.Now(), h.waitBoundLocked(hs, now)
	h.mu.Unlock()

	timer := time.NewTimer(bound)
	defer timer.Stop()
	var ctxErr error
	for waiting := true; waiting; {
		select {
		case <-w.ready:
			waiting = false
		case <-ctx.Done():
			ctxErr, waiting = ctx.Err(), false
		case <-timer.C:
			// The bound follows the host's latency as it is learnt (the
			// first requests to a host set it): a host that keeps
			// answering keeps its queue, up to the longest bound.
			h.mu.Lock()
			now = h.now()
			hs = h.state(host)
			if w.granted == nil && !h.open(hs) && !h.stalledLocked(hs, now) {
				if more := h.waitBoundLocked(hs, now) - time.Since(start); more > 0 {
					timer.Reset(more)
					h.mu.Unlock()
					continue
				}
			}
			h.mu.Unlock()
			waiting = false
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now = h.now()
	if p := w.granted; p != nil {
		// It starts now: at the back of the host's permits.
		hs = h.state(host)
		hs.inflight.remove(p)
		hs.inflight.push(p)
		p.started, p.deadline = now, now.Add(timeout)
		if ctxErr != nil {
			h.releaseLocked(p, Neutral)
			return nil, nil, ctxErr
		}
		return p, nil, nil
	}
	hs = h.state(host)
	hs.waiters = slices.DeleteFunc(hs.waiters, func(x *waiter) bool { return x == w })
	if ctxErr != nil {
		return nil, nil, ctxErr
	}
	if h.open(hs) && now.Before(hs.openUntil) {
		return nil, &Deferral{Reason: delivery.ReasonCircuitOpen, Until: hs.openUntil}, nil
	}
	return nil, h.deferLocked(hs, now), nil
}

func (h *Hosts) open(hs *hostState) bool { return h.Failures > 0 && hs.fails >= h.Failures }

func (h *Hosts) state(host string) *hostState {
	if h.hosts == nil {
		h.hosts = map[string]*hostState{}
	}
	hs := h.hosts[host]
	if hs == nil {
		hs = &hostState{}
		h.hosts[host] = hs
	}
	return hs
}

// sweepLocked forgets hosts idle for a while (at most once a minute), so
// memory stays bounded over many hosts; a host's failure count lives as
// long as it keeps being called.
func (h *Hosts) sweepLocked(now time.Time) {
	if now.Sub(h.swept) < time.Minute {
		return
	}
	h.swept = now
	idle := max(h.Cooldown, time.Minute)
	for k, hs := range h.hosts {
		if hs.inflight.len() == 0 && len(hs.waiters) == 0 && len(hs.turns) == 0 && now.Sub(hs.lastDone) > idle && !now.Before(hs.openUntil) {
			delete(h.hosts, k)
		}
	}
}

func (h *Hosts) grantLocked(hs *hostState, host string, now time.Time, timeout time.Duration) *Permit {
	p := &Permit{h: h, key: host, started: now, deadline: now.Add(timeout)}
	if h.open(hs) {
		hs.probe = p // half-open: this request is the probe
	}
	hs.inflight.push(p)
	if h.Limit > 0 && hs.inflight.len() >= h.Limit && hs.fullSince.IsZero() {
		hs.fullSince = now
	}
	return p
}

// paceLocked is how often the host can be expected to free a place: its
// requests' latency (at least the age of the oldest one in flight) over the
// limit.
func (h *Hosts) paceLocked(hs *hostState, now time.Time) time.Duration {
	return h.latencyLocked(hs, now) / time.Duration(max(h.Limit, 1))
}

// latencyLocked is the host's request latency: the moving average, at least
// the age of the oldest request in flight.
func (h *Hosts) latencyLocked(hs *hostState, now time.Time) time.Duration {
	lat := hs.latency
	if p := hs.inflight.first; p != nil {
		lat = max(lat, now.Sub(p.started))
	}
	return lat
}

// waitRounds: a request to a full host that is answering may wait in place
// for as long as this many of the host's requests take (at least QueueWait,
// at most maxWaitQueueWaits QueueWaits).
const waitRounds, maxWaitQueueWaits = 4, 8

// waitBoundLocked is how long a request may wait in place at a full host:
// waitRounds of its requests' latency, between QueueWait and
// maxWaitQueueWaits QueueWaits (250 ms to 2 s by default). Held that long, a
// delivery slot costs no more than a few of the host's own requests, so a
// host that keeps answering serves the queue admitted in place (QueueWait's
// worth of its pace, see Acquire) at the rate it answers, even when its
// latency was not yet known when the queue formed.
// Deferring them instead gives the host no fewer requests: it sends them
// round the retry tiers (a produce, a fetch and the tier's delay each time),
// where they come back to meet the next deliveries' queue; and a consumer
// whose deferrals cost it nothing (with transactions they are buffered, not
// acknowledged) turns its backlog into deferrals faster than the host
// answers. A stalled host (nothing finished for QueueWait) gets no wait at
// all, and a slow one's deliveries hold their slots at most 2 s longer than
// its requests do.
func (h *Hosts) waitBoundLocked(hs *hostState, now time.Time) time.Duration {
	w := h.queueWait()
	return min(max(w, waitRounds*h.latencyLocked(hs, now)), maxWaitQueueWaits*w)
}

// stalledLocked: full for QueueWait with nothing finishing meanwhile.
func (h *Hosts) stalledLocked(hs *hostState, now time.Time) bool {
	w := h.queueWait()
	return !hs.fullSince.IsZero() && now.Sub(hs.fullSince) >= w && now.Sub(hs.lastDone) >= w
}

// deferLocked books a deferred request a place in the host's future: after
// those queued in place and the deferrals before it, one pace apart — and,
// for a stalled host, after as long again as the host has been quiet, but
// not after its oldest request's deadline (a place is certain to free up
// then). The quiet doubling keeps a host that only looked stalled (a busy
// machine, a pause) from being put off for a whole timeout, and costs a hung
// host a handful of deferrals per timeout rather than one.
func (h *Hosts) deferLocked(hs *hostState, now time.Time) *Deferral {
	pace := h.paceLocked(hs, now)
	until := maxTime(now.Add(time.Duration(len(hs.waiters)+1)*pace), hs.booked.Add(pace))
	if h.stalledLocked(hs, now) {
		var earliest time.Time
		for p := hs.inflight.first; p != nil; p = p.next {
			if earliest.IsZero() || p.deadline.Before(earliest) {
				earliest = p.deadline
			}
		}
		quiet := now.Sub(maxTime(hs.lastDone, hs.fullSince))
		if back := now.Add(quiet); earliest.IsZero() || back.Before(earliest) {
			earliest = back
		}
		until = maxTime(until, earliest)
	}
	until = maxTime(until, now.Add(h.queueWait()))
	hs.booked = until
	return &Deferral{Reason: delivery.ReasonHostSaturated, Until: until}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Done releases the permit and feeds the request's outcome to the breaker.
func (p *Permit) Done(o Outcome) {
	if p == nil {
		return
	}
	p.h.mu.Lock()
	defer p.h.mu.Unlock()
	p.h.releaseLocked(p, o)
}

func (h *Hosts) releaseLocked(p *Permit, o Outcome) {
	hs := h.hosts[p.key]
	if hs == nil {
		return
	}
	if !hs.inflight.remove(p) {
		return // released already
	}
	now := h.now()
	hs.lastDone = now
	if hs.probe == p {
		hs.probe = nil
	}
	if o != Neutral {
		if d := now.Sub(p.started); hs.latency == 0 {
			hs.latency = d
		} else {
			hs.latency = (4*hs.latency + d) / 5
		}
	}
	if h.Failures > 0 {
		switch o {
		case Healthy:
			hs.fails, hs.openUntil = 0, time.Time{}
		case Unhealthy:
			hs.fails++
			if hs.fails >= h.Failures {
				hs.openUntil = now.Add(h.Cooldown)
			}
		}
	}
	// Hand the place to the first waiter, unless the circuit just opened
	// (the waiters are then deferred when their wait ends).
	if len(hs.waiters) > 0 && !h.open(hs) {
		w := hs.waiters[0]
		hs.waiters = hs.waiters[1:]
		np := &Permit{h: h, key: p.key, started: now, deadline: now}
		hs.inflight.push(np)
		w.granted = np
		w.ready <- struct{}{}
	}
	if len(hs.turns) > 0 {
		close(hs.turns[0])
		hs.turns = hs.turns[1:]
	}
	if h.Limit <= 0 || hs.inflight.len() < h.Limit {
		hs.fullSince = time.Time{}
	}
}

// AwaitTurn holds a request the host deferred until one of the host's
// requests finishes (one finish per request, in order), ctx ends or until.
// A delivery whose deferral costs it nothing (with Kafka transactions the
// task is buffered, not acknowledged) would otherwise free its slot at once,
// and the next delivery would queue at the same full host: deferred work
// then comes back from the retry tiers faster than the host finishes
// requests. Held this way, a consumer's deliveries are deferred at most as
// fast as the host answers. The hold is bounded like a wait in place (at
// most maxWaitQueueWaits × QueueWait, 2 s by default) and there is none for
// a stalled host (full and finishing nothing): a hung endpoint must not
// hold the slots of the healthy pipelines beside it, nor a shutdown.
func (h *Hosts) AwaitTurn(ctx context.Context, host string, until time.Time) {
	if h == nil {
		return
	}
	h.mu.Lock()
	hs := h.state(host)
	now := h.now()
	if hs.inflight.len() == 0 || h.stalledLocked(hs, now) {
		h.mu.Unlock()
		return
	}
	wait := min(until.Sub(now), h.waitBoundLocked(hs, now))
	if wait <= 0 {
		h.mu.Unlock()
		return
	}
	turn := make(chan struct{})
	hs.turns = append(hs.turns, turn)
	h.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-turn:
		return
	case <-ctx.Done():
	case <-t.C:
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if hs := h.hosts[host]; hs != nil {
		hs.turns = slices.DeleteFunc(hs.turns, func(c chan struct{}) bool { return c == turn })
	}
}

// InFlight reports requests in flight to host (for tests and metrics).
func (h *Hosts) InFlight(host string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if hs := h.hosts[host]; hs != nil {
		return hs.inflight.len()
	}
	return 0
}
