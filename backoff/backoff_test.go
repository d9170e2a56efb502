package backoff

import (
	"net/http"
	"testing"
	"time"
)

func delays(p Policy) []time.Duration {
	var out []time.Duration
	for n := 1; n < p.MaxAttempts; n++ {
		out = append(out, p.Delay(n))
	}
	return out
}

func eq(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPolicies(t *testing.T) {
	s := time.Second
	cases := []struct {
		name string
		rp   *Params
		want []time.Duration
	}{
		{"spec default", nil, []time.Duration{5 * s, 10 * s, 30 * s, 60 * s, 300 * s}},
		{"exponential (spec: 5s, 10s, 20s, …)", &Params{MaxAttempts: 5, BackoffType: "exponential", InitialDelaySeconds: 5}, []time.Duration{5 * s, 10 * s, 20 * s, 40 * s}},
		{"guide custom policy", &Params{MaxAttempts: 3, InitialDelaySeconds: 10, BackoffMultiplier: 3, MaxDelaySeconds: 300}, []time.Duration{10 * s, 30 * s}},
		{"capped", &Params{MaxAttempts: 6, BackoffType: "exponential", InitialDelaySeconds: 60, MaxDelaySeconds: 300}, []time.Duration{60 * s, 120 * s, 240 * s, 300 * s, 300 * s}},
		{"fixed", &Params{MaxAttempts: 4, BackoffType: "fixed", InitialDelaySeconds: 7}, []time.Duration{7 * s, 7 * s, 7 * s}},
		{"single attempt", &Params{MaxAttempts: 1}, nil},
	}
	for _, c := range cases {
		if got := delays(For(c.rp)); !eq(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestJitterStaysWithinFactorAndCap(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999} {
		j := Jitter{Exponential: Exponential{Initial: 10 * time.Second, Multiplier: 2, Max: 35 * time.Second}, Factor: 0.2, Rand: func() float64 { return r }}
		for n, base := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second} {
			d := j.Delay(n + 1)
			lo, hi := time.Duration(float64(base)*0.8), min(time.Duration(float64(base)*1.2), 35*time.Second)
			if d < lo || d > hi {
				t.Errorf("r=%v n=%d: %v outside [%v, %v]", r, n+1, d, lo, hi)
			}
		}
	}
}

func TestRetryAfterIsHonouredAndCapped(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := http.Header{"Retry-After": {"120"}}
	if d := RetryAfter(429, h, now); d != 2*time.Minute {
		t.Fatalf("seconds form: %v", d)
	}
	if d := RetryAfter(503, http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, now); d != 90*time.Second {
		t.Fatalf("date form: %v", d)
	}
	if d := RetryAfter(500, h, now); d != 0 {
		t.Fatalf("500 honoured Retry-After: %v", d)
	}
	p := For(&Params{MaxAttempts: 3, BackoffType: "fixed", InitialDelaySeconds: 5, MaxDelaySeconds: 60})
	if d := p.Next(1, 2*time.Minute); d != time.Minute {
		t.Fatalf("capped Retry-After: %v", d)
	}
	if d := p.Next(1, time.Second); d != 5*time.Second {
		t.Fatalf("a shorter Retry-After must not shorten the policy's wait: %v", d)
	}
}
