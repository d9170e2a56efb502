package dispatcher

import (
	"context"
	"sync"
	"time"

	"github.com/afftok/webhookd/delivery"
)

// Hosts guards each receiver host (DESIGN.md §3): a limit on requests in
// flight to it — requests, not connections, so HTTP/2 multiplexing cannot get
// around it — and a circuit breaker. A request that cannot go now is deferred
// rather than waiting in its delivery slot, so work for a slow or dead host
// leaves its partition and healthy pipelines never queue behind it. State is
// per replica: a load-shedding hint, not data anything depends on.
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
	// Wait is how long a request may queue for a busy host that is still
	// answering (default 1 s). A host that answers nothing for Wait while
	// full is stalled: requests for it are deferred at once.
	Wait time.Duration
	Now  func() time.Time

	mu    sync.Mutex
	hosts map[string]*hostState
}

type hostState struct {
	inflight  map[*Permit]struct{}
	waiters   []*waiter
	fullSince time.Time // when inflight reached the limit (zero: not full)
	lastDone  time.Time // when a request to the host last finished
	fails     int
	openUntil time.Time
	probe     *Permit // the probe in flight while half-open
}

type waiter struct {
	ready   chan struct{}
	granted *Permit
	gone    bool
}

// Permit is one request's place at a host; Done must be called once.
type Permit struct {
	h        *Hosts
	key      string
	deadline time.Time
	probe    bool
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

const defaultHostWait = time.Second

func (h *Hosts) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Hosts) wait() time.Duration {
	if h.Wait > 0 {
		return h.Wait
	}
	return defaultHostWait
}

// Acquire takes a place at host for a request that may take up to timeout.
// It returns a permit, or a deferral, or ctx's error.
func (h *Hosts) Acquire(ctx context.Context, host string, timeout time.Duration) (*Permit, *Deferral, error) {
	if h == nil {
		return nil, nil, nil
	}
	h.mu.Lock()
	now := h.now()
	hs := h.state(host)
	if h.Failures > 0 && hs.fails >= h.Failures {
		switch {
		case now.Before(hs.openUntil):
			h.mu.Unlock()
			return nil, &Deferral{Reason: delivery.ReasonCircuitOpen, Until: hs.openUntil}, nil
		case hs.probe != nil:
			until := hs.probe.deadline
			h.mu.Unlock()
			return nil, &Deferral{Reason: delivery.ReasonCircuitOpen, Until: until}, nil
		}
	}
	if h.Limit <= 0 || len(hs.inflight) < h.Limit {
		p := h.grantLocked(hs, host, now, timeout)
		h.mu.Unlock()
		return p, nil, nil
	}
	if hs.fullSince.IsZero() {
		hs.fullSince = now
	}
	if h.stalledLocked(hs, now) || len(hs.waiters) >= h.Limit {
		d := h.saturatedLocked(hs, now)
		h.mu.Unlock()
		return nil, d, nil
	}
	w := &waiter{ready: make(chan struct{}, 1)}
	hs.waiters = append(hs.waiters, w)
	h.mu.Unlock()

	timer := time.NewTimer(h.wait())
	defer timer.Stop()
	var ctxErr error
	select {
	case <-w.ready:
	case <-timer.C:
	case <-ctx.Done():
		ctxErr = ctx.Err()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.granted != nil {
		w.granted.deadline = h.now().Add(timeout)
		if ctxErr != nil {
			h.releaseLocked(w.granted, Neutral)
			return nil, nil, ctxErr
		}
		return w.granted, nil, nil
	}
	w.gone = true
	if ctxErr != nil {
		return nil, nil, ctxErr
	}
	return nil, h.saturatedLocked(h.state(host), h.now()), nil
}

func (h *Hosts) state(host string) *hostState {
	if h.hosts == nil {
		h.hosts = map[string]*hostState{}
	}
	hs := h.hosts[host]
	if hs == nil {
		hs = &hostState{inflight: map[*Permit]struct{}{}}
		h.hosts[host] = hs
	}
	return hs
}

func (h *Hosts) grantLocked(hs *hostState, host string, now time.Time, timeout time.Duration) *Permit {
	p := &Permit{h: h, key: host, deadline: now.Add(timeout)}
	if h.Failures > 0 && hs.fails >= h.Failures {
		// Half-open: this request is the probe.
		p.probe = true
		hs.probe = p
	}
	hs.inflight[p] = struct{}{}
	if h.Limit > 0 && len(hs.inflight) >= h.Limit && hs.fullSince.IsZero() {
		hs.fullSince = now
	}
	return p
}

// stalledLocked: full for longer than Wait with nothing finishing meanwhile.
func (h *Hosts) stalledLocked(hs *hostState, now time.Time) bool {
	w := h.wait()
	return !hs.fullSince.IsZero() && now.Sub(hs.fullSince) >= w && now.Sub(hs.lastDone) >= w
}

// saturatedLocked defers a request for a full host: to the earliest deadline
// of the requests holding it when it is stalled (a place is certain to free
// up then), else by Wait.
func (h *Hosts) saturatedLocked(hs *hostState, now time.Time) *Deferral {
	until := now.Add(h.wait())
	if h.stalledLocked(hs, now) {
		var earliest time.Time
		for p := range hs.inflight {
			if earliest.IsZero() || p.deadline.Before(earliest) {
				earliest = p.deadline
			}
		}
		if earliest.After(until) {
			until = earliest
		}
	}
	return &Deferral{Reason: delivery.ReasonHostSaturated, Until: until}
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
	if _, ok := hs.inflight[p]; !ok {
		return // released already
	}
	delete(hs.inflight, p)
	now := h.now()
	hs.lastDone = now
	if hs.probe == p {
		hs.probe = nil
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
	// Hand the place to the first waiter still waiting.
	for len(hs.waiters) > 0 {
		w := hs.waiters[0]
		hs.waiters[0] = nil
		hs.waiters = hs.waiters[1:]
		if w.gone {
			continue
		}
		if h.Failures > 0 && hs.fails >= h.Failures {
			// The circuit opened meanwhile: the waiter is deferred by its
			// timer, not handed a place.
			hs.waiters = append([]*waiter{w}, hs.waiters...)
			break
		}
		np := &Permit{h: h, key: p.key, deadline: now}
		hs.inflight[np] = struct{}{}
		w.granted = np
		w.ready <- struct{}{}
		break
	}
	if h.Limit <= 0 || len(hs.inflight) < h.Limit {
		hs.fullSince = time.Time{}
	}
	if len(hs.inflight) == 0 && len(hs.waiters) == 0 && hs.fails == 0 {
		delete(h.hosts, p.key) // bounded memory over many hosts
	}
}

// InFlight reports requests in flight to host (for tests and metrics).
func (h *Hosts) InFlight(host string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if hs := h.hosts[host]; hs != nil {
		return len(hs.inflight)
	}
	return 0
}
