package dispatcher

import (
	"errors"
	"sync"
	"time"
)

// ErrCircuitOpen is the outcome of an attempt not made because its receiver
// host's circuit is open.
var ErrCircuitOpen = errors.New("circuit open")

// Breaker is a per-host circuit breaker (DESIGN.md §3): after Failures
// consecutive failures (network errors, timeouts, 5xx) a host's circuit opens
// for Cooldown, and work for it goes straight to the retry path without
// spending an attempt or a delivery slot; then one probe is let through, and
// its outcome closes or re-opens the circuit. State is per replica: it is a
// load-shedding hint, not data anything depends on.
type Breaker struct {
	Failures int
	Cooldown time.Duration
	Now      func() time.Time

	mu    sync.Mutex
	hosts map[string]*circuit
}

type circuit struct {
	fails     int
	openUntil time.Time
	probing   bool
}

func (b *Breaker) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// Allow reports whether a request to host may be sent now; if not, how long
// until the circuit lets a probe through.
func (b *Breaker) Allow(host string) (bool, time.Duration) {
	if b == nil || b.Failures <= 0 {
		return true, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.hosts[host]
	if c == nil || c.fails < b.Failures {
		return true, 0
	}
	now := b.now()
	if now.Before(c.openUntil) {
		return false, c.openUntil.Sub(now)
	}
	if c.probing {
		// One probe at a time; the rest wait a little and look again.
		return false, min(b.Cooldown, time.Second)
	}
	c.probing = true
	return true, 0
}

// Record feeds an attempt's outcome into host's circuit. failure is a
// network error, a timeout or a 5xx: the receiver is unwell. A 4xx is an
// answer and counts as healthy.
func (b *Breaker) Record(host string, failure bool) {
	if b == nil || b.Failures <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.hosts == nil {
		b.hosts = map[string]*circuit{}
	}
	c := b.hosts[host]
	if c == nil {
		c = &circuit{}
		b.hosts[host] = c
	}
	c.probing = false
	if !failure {
		delete(b.hosts, host)
		return
	}
	c.fails++
	if c.fails >= b.Failures {
		c.openUntil = b.now().Add(b.Cooldown)
	}
}
