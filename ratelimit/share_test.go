package ratelimit

import (
	"testing"
	"time"
)

// TestATinyShareForAMomentDoesNotHoldLaterBookings: a replica that held a tiny share for a moment (a rebalance)
// books one place a pace of that tiny share ahead; when its share grows
// back, the pipeline's next place here is still that far away (bookings
// restart only on a change of limit), so every delivery to it on this
// replica is refused a place within its window. Before 4eaf546 a rate
// below 1e-6 booked nothing ("no share") and recovered at once.
func TestATinyShareForAMomentDoesNotHoldLaterBookings(t *testing.T) {
	now := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	share := 1e-4
	l := &Limiter{Share: func() float64 { return share }, Now: func() time.Time { return now }}
	const limit = 1e-3 // one a 1000 s
	l.Reserve("p", limit, time.Hour)
	share = 1 // the rebalance settles: this replica holds the whole budget
	now = now.Add(time.Hour)
	at, ok := l.Reserve("p", limit, time.Hour)
	if !ok {
		t.Fatalf("with the whole budget (one a 1000 s), next place is %v away", at.Sub(now))
	}
}
