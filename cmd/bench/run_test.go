package main

import (
	"math"
	"testing"
	"time"
)

// TestAllInCountsTheLogsCatchingUp: a phase whose execution log falls
// behind at the peak and catches up after the last delivery costs, in
// full, the CPU spent from its start until the log has a row for every
// delivery; the deliveries alone look cheaper and faster.
func TestAllInCountsTheLogsCatchingUp(t *testing.T) {
	t0 := time.Unix(0, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	const want = 1000
	samples := []sample{
		{at: at(0), delivered: 0, cpu: 0, logged: 5000},             // the phase starts, the sink settled
		{at: at(1), delivered: 200, cpu: time.Second, logged: 5000}, // the steady state starts (20 %)
		{at: at(2), delivered: 500, cpu: 2 * time.Second, logged: 5100},
		{at: at(3), delivered: 800, cpu: 3 * time.Second, logged: 5300}, // 80 %
		{at: at(4), delivered: 1000, cpu: 4 * time.Second, logged: 5500},
		// after the last delivery: the log catches up (800 rows since 20 %)
		{at: at(5), delivered: 1000, cpu: 5 * time.Second, logged: 5700},
		{at: at(6), delivered: 1000, cpu: 6 * time.Second, logged: 5800},
		{at: at(8), delivered: 1000, cpu: 6500 * time.Millisecond, logged: 6000}, // every row since the start
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if rate, cpu := steady(samples[:5], want); !near(rate, 300) || !near(cpu, 2000.0/600) {
		t.Errorf("steady = %v/s, %v CPU-s per 1000; want 300/s, %v", rate, cpu, 2000.0/600)
	}
	if rate, cpu := allIn(samples); !near(rate, 125) || !near(cpu, 6.5) {
		t.Errorf("allIn = %v/s, %v CPU-s per 1000; want 125/s (1000 in 8 s), 6.5 (6.5 CPU-s for 1000)", rate, cpu)
	}
}
