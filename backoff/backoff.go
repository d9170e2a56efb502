// Package backoff computes how long a failed webhook attempt waits before the
// next one (spec: "Retry Policy"; DESIGN.md §4).
package backoff

import (
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// Backoff is the delay before retry n (n = 1 is the second attempt).
type Backoff interface {
	Delay(retry int) time.Duration
}

// DefaultSchedule is the spec's default: attempt 1 immediately, then 5 s,
// 10 s, 30 s, 1 min, 5 min (six attempts in all).
var DefaultSchedule = Schedule{5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute}

// DefaultInitialDelay applies when a policy gives no initial_delay_seconds.
const DefaultInitialDelay = 5 * time.Second

// Schedule is an explicit list of delays; past its end the last one repeats.
type Schedule []time.Duration

// Delay implements Backoff.
func (s Schedule) Delay(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	if n > len(s) {
		return s[len(s)-1]
	}
	return s[n-1]
}

// Fixed waits the same time before every retry.
type Fixed struct{ D time.Duration }

// Delay implements Backoff.
func (f Fixed) Delay(int) time.Duration { return f.D }

// Exponential waits Initial·Multiplier^(n-1), capped at Max (0: uncapped).
type Exponential struct {
	Initial    time.Duration
	Multiplier float64
	Max        time.Duration
}

// Delay implements Backoff.
func (e Exponential) Delay(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	d := float64(e.Initial) * math.Pow(e.Multiplier, float64(n-1))
	if e.Max > 0 && d > float64(e.Max) {
		return e.Max
	}
	if d > float64(math.MaxInt64/2) {
		return time.Duration(math.MaxInt64 / 2)
	}
	return time.Duration(d)
}

// Jitter spreads an exponential delay by ±Factor, uniformly, then caps it.
type Jitter struct {
	Exponential
	Factor float64
	Rand   func() float64 // [0,1); nil: math/rand/v2
}

// Delay implements Backoff.
func (j Jitter) Delay(n int) time.Duration {
	base := float64(Exponential{Initial: j.Initial, Multiplier: j.Multiplier}.Delay(n))
	r := rand.Float64
	if j.Rand != nil {
		r = j.Rand
	}
	d := time.Duration(base * (1 + j.Factor*(2*r()-1)))
	if j.Max > 0 && d > j.Max {
		d = j.Max
	}
	return max(d, 0)
}

// Policy is a step's resolved retry policy.
type Policy struct {
	Backoff
	MaxAttempts int           // attempts in all, the first included
	MaxDelay    time.Duration // caps Retry-After (0: no cap beyond the hard limit)
}

// FailoverPolicy is the short policy of the failover URL: three attempts,
// 5 s then 10 s apart.
var FailoverPolicy = Policy{Backoff: Schedule{5 * time.Second, 10 * time.Second}, MaxAttempts: 3}

// Params are a retry_policy's fields (spec: "Retry Policy").
type Params struct {
	MaxAttempts         int
	BackoffType         string // fixed, exponential (default), exponential_jitter
	InitialDelaySeconds float64
	BackoffMultiplier   float64
	MaxDelaySeconds     float64
	JitterFactor        float64
}

// Default is the spec's default policy (no retry_policy given).
func Default() Policy { return Policy{Backoff: DefaultSchedule, MaxAttempts: len(DefaultSchedule) + 1} }

// For resolves a step's retry_policy; nil is the spec's default schedule.
func For(rp *Params) Policy {
	if rp == nil {
		return Default()
	}
	initial := time.Duration(rp.InitialDelaySeconds * float64(time.Second))
	if initial == 0 {
		initial = DefaultInitialDelay
	}
	maxDelay := time.Duration(rp.MaxDelaySeconds * float64(time.Second))
	mult := rp.BackoffMultiplier
	if mult == 0 {
		mult = 2
	}
	p := Policy{MaxAttempts: rp.MaxAttempts, MaxDelay: maxDelay}
	switch rp.BackoffType {
	case "fixed":
		p.Backoff = Fixed{D: initial}
	case "exponential_jitter":
		p.Backoff = Jitter{Exponential: Exponential{Initial: initial, Multiplier: mult, Max: maxDelay}, Factor: rp.JitterFactor}
	default:
		p.Backoff = Exponential{Initial: initial, Multiplier: mult, Max: maxDelay}
	}
	return p
}

// RetryAfter parses a Retry-After header (seconds or an HTTP date) on a 429
// or 503 answer; 0 when absent or not applicable.
func RetryAfter(status int, h http.Header, now time.Time) time.Duration {
	if status != http.StatusTooManyRequests && status != http.StatusServiceUnavailable {
		return 0
	}
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return max(time.Duration(s)*time.Second, 0)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// HardMaxDelay bounds any single wait, whatever a policy or receiver asks.
const HardMaxDelay = 24 * time.Hour

// Next is the wait before retry n given the receiver's Retry-After (0 if
// none): the policy's delay, or longer if the receiver asked for longer,
// capped by the policy's max delay.
func (p Policy) Next(n int, retryAfter time.Duration) time.Duration {
	d := p.Delay(n)
	if retryAfter > d {
		d = retryAfter
		if p.MaxDelay > 0 && d > p.MaxDelay {
			d = p.MaxDelay
		}
	}
	return min(d, HardMaxDelay)
}

// Horizon is the total wait of a policy's retries (without Retry-After or
// jitter above the base): how long a task may live in the retry tiers.
func (p Policy) Horizon() time.Duration {
	var total time.Duration
	for n := 1; n < p.MaxAttempts; n++ {
		total += p.Delay(n)
	}
	return total
}
