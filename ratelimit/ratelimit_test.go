package ratelimit

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Places are booked one pace apart in the order they are asked for; the
// first goes at once (no burst is saved up while idle).
func TestLimiterBooksPlacesOnePaceApartInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &Limiter{}
		start := time.Now()
		for i := range 5 {
			at, ok := l.Reserve("p", 20, -1)
			if !ok || at.Sub(start) != time.Duration(i)*50*time.Millisecond {
				t.Fatalf("place %d at +%v (%v), want +%v", i, at.Sub(start), ok, time.Duration(i)*50*time.Millisecond)
			}
		}
		// Idle for a while: the next place is now, and the one after it a
		// pace later — idle time is not saved up as a burst.
		time.Sleep(10 * time.Second)
		now := time.Now()
		a, _ := l.Reserve("p", 20, -1)
		b, _ := l.Reserve("p", 20, -1)
		if a != now || b.Sub(now) != 50*time.Millisecond {
			t.Fatalf("after idle: +%v, +%v", a.Sub(now), b.Sub(now))
		}
		// Pipelines do not share places.
		if c, _ := l.Reserve("q", 20, -1); c != now {
			t.Fatalf("another pipeline waits %v", c.Sub(now))
		}
	})
}

// A replica paces at its share of the limit; one with no share books nothing.
func TestLimiterPacesAtTheReplicasShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		share := 0.25
		l := &Limiter{Share: func() float64 { return share }}
		start := time.Now()
		l.Reserve("p", 20, -1)
		if at, _ := l.Reserve("p", 20, -1); at.Sub(start) != 200*time.Millisecond { // 5/s
			t.Fatalf("share 1/4 of 20/s: second place at +%v", at.Sub(start))
		}
		share = 0
		if at, ok := l.Reserve("p", 20, -1); !at.IsZero() || ok {
			t.Fatalf("no share booked %v %v", at, ok)
		}
	})
}

// within bounds how far ahead a place is booked; a place further ahead is
// reported but not taken.
func TestLimiterWithinDoesNotBookFarPlaces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &Limiter{}
		start := time.Now()
		l.Reserve("p", 1, -1)
		at, ok := l.Reserve("p", 1, 250*time.Millisecond)
		if ok || at.Sub(start) != time.Second {
			t.Fatalf("got +%v %v; want +1s, not booked", at.Sub(start), ok)
		}
		if at, ok := l.Reserve("p", 1, -1); !ok || at.Sub(start) != time.Second {
			t.Fatalf("the place a refused within left is +%v %v, want +1s", at.Sub(start), ok)
		}
	})
}

// A new limit applies at once: bookings start afresh at its pace.
func TestLimiterLimitChangeStartsAfresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &Limiter{}
		start := time.Now()
		for range 100 {
			l.Reserve("p", 1, -1) // 100 s booked ahead
		}
		if b := l.Booked("p"); b != 100*time.Second {
			t.Fatalf("booked %v ahead", b)
		}
		a, _ := l.Reserve("p", 100, -1)
		b, _ := l.Reserve("p", 100, -1)
		if a != start || b.Sub(start) != 10*time.Millisecond {
			t.Fatalf("after the change: +%v, +%v", a.Sub(start), b.Sub(start))
		}
	})
}

// Many deliveries asking at once, each going at its place: over 10 s of
// virtual time exactly the limit's worth go, in the order they asked.
func TestLimiterHoldsTheRateUnderConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &Limiter{}
		start := time.Now()
		var mu sync.Mutex
		var sent []time.Time
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second-time.Millisecond)
		defer cancel()
		var wg sync.WaitGroup
		for range 8 { // eight workers, each taking the next place as soon as its last one went
			wg.Go(func() {
				for {
					at, _ := l.Reserve("p", 20, -1)
					select {
					case <-time.After(time.Until(at)):
					case <-ctx.Done():
						return
					}
					mu.Lock()
					sent = append(sent, time.Now())
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(sent) != 200 {
			t.Fatalf("%d sent in 10 s at 20/s", len(sent))
		}
		for i := 1; i < len(sent); i++ {
			if gap := sent[i].Sub(sent[i-1]); gap != 50*time.Millisecond {
				t.Fatalf("gap %d is %v (started %v)", i, gap, sent[0].Sub(start))
			}
		}
	})
}

func TestLimiterForgetsIdlePipelines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &Limiter{}
		l.Reserve("p", 1, -1)
		time.Sleep(3 * time.Minute)
		l.Reserve("q", 1, -1)
		l.mu.Lock()
		defer l.mu.Unlock()
		if _, ok := l.pipes["p"]; ok || len(l.pipes) != 1 {
			t.Fatalf("pipes %v", l.pipes)
		}
	})
}

func TestInterval(t *testing.T) {
	for _, c := range []struct {
		limit, share float64
		want         time.Duration
	}{
		{20, 1, 50 * time.Millisecond},
		{20, 0.5, 100 * time.Millisecond},
		{100000, 1, 10 * time.Microsecond},
		{3, 1, 333333334 * time.Nanosecond}, // rounded up: never faster than the limit
		{20, 0, 0},
		{1e-9, 1, 1e18 * time.Nanosecond}, // one in 31.7 years: a budget, not none
		{1e-10, 0.5, maxInterval},
		{5e-324, 1, maxInterval},
		{20, 5e-324, maxInterval},
		{-1, 1, 0},
		{math.Inf(1), 1, 0},
		{math.NaN(), 1, 0},
	} {
		if got := Interval(c.limit, c.share); got != c.want {
			t.Errorf("Interval(%v, %v) = %v, want %v", c.limit, c.share, got, c.want)
		}
	}
}

// The shares of replicas add up to the whole: every partition that carries
// deliveries has one owner, whatever roles the replicas run.
func TestOwnershipSharesAddUpAcrossReplicas(t *testing.T) {
	count := func(context.Context) (int, error) { return 21, nil } // 3 event + 5×3 tier + 3 failover partitions
	a := &Ownership{Count: count}
	b := &Ownership{Count: count}
	for _, o := range []*Ownership{a, b} {
		if err := o.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if s := a.Share(); s != 0 {
		t.Fatalf("a replica owning nothing has share %v", s)
	}
	// a: dispatcher and retry roles; b: retry only.
	a.SetTotal(21)
	a.owned = map[string]int{"dispatcher": 3, "retry-100ms": 1, "retry-200ms": 2, "retry-600ms": 1, "retry-1200ms": 2, "retry-6s": 1, "failover": 2}
	b.owned = map[string]int{"dispatcher": 0, "retry-100ms": 2, "retry-200ms": 1, "retry-600ms": 2, "retry-1200ms": 1, "retry-6s": 2, "failover": 1}
	if sum := a.Share() + b.Share(); math.Abs(sum-1) > 1e-12 {
		t.Fatalf("shares %v + %v = %v", a.Share(), b.Share(), sum)
	}
	// A failed count keeps the last one.
	a.Count = func(context.Context) (int, error) { return 0, errors.New("broker away") }
	before := a.Share()
	if err := a.Refresh(context.Background()); err == nil || a.Share() != before {
		t.Fatalf("share after a failed count: %v (was %v)", a.Share(), before)
	}
}

// Set records a consumer's partitions and Run counts the total again (new
// partitions cause a rebalance); a failed count is taken again at the next
// Recount interval; Run ends with its context.
func TestOwnershipRunRecounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		total, broken := 10, false
		o := &Ownership{Recount: 30 * time.Second, Count: func(context.Context) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			if broken {
				return 0, errors.New("broker away")
			}
			return total, nil
		}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- o.Run(ctx) }()
		o.Set("dispatcher", 5)
		synctest.Wait()
		if s := o.Share(); s != 0.5 {
			t.Fatalf("share %v", s)
		}
		mu.Lock()
		total = 20
		mu.Unlock()
		o.Set("dispatcher", 5)
		synctest.Wait()
		if s := o.Share(); s != 0.25 {
			t.Fatalf("share after partitions were added %v", s)
		}
		// A count that fails keeps the last one, and is taken again later.
		mu.Lock()
		broken, total = true, 10
		mu.Unlock()
		o.Set("failover", 0)
		synctest.Wait()
		if s := o.Share(); s != 0.25 {
			t.Fatalf("share after a failed count %v", s)
		}
		mu.Lock()
		broken = false
		mu.Unlock()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if s := o.Share(); s != 0.5 {
			t.Fatalf("share after the recount %v", s)
		}
		o.Set("dispatcher", 0)
		synctest.Wait()
		if s := o.Share(); s != 0 {
			t.Fatalf("share after a revoke %v", s)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// The emission guard spaces late sends at the replica's share: 30 callers
// whose places are long past ask together (late tickets after a stall,
// sleepers whose timers fired together), each asking again when told, and
// send no more than rate + 1 in any second; a late send taken now books the
// next places after it. Sends on their places go (a quarter pace of
// tolerance for timer jitter) and leave late ones less room.
func TestLimiterSendSpacesSendsAtTheShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &Limiter{Share: func() float64 { return 0.5 }} // 10/s of 20/s
		var mu sync.Mutex
		var sends []time.Time
		var wg sync.WaitGroup
		for range 30 {
			wg.Go(func() {
				for range 1000 {
					next, ok := l.Send("p", 20, time.Time{})
					if ok {
						mu.Lock()
						sends = append(sends, time.Now())
						mu.Unlock()
						return
					}
					time.Sleep(time.Until(next))
				}
				t.Error("never sent")
			})
		}
		wg.Wait()
		if len(sends) != 30 {
			t.Fatalf("%d sends", len(sends))
		}
		for i := range sends {
			n := 0
			for _, s := range sends[i:] {
				if s.Before(sends[i].Add(time.Second)) {
					n++
				}
			}
			if n > 11 {
				t.Fatalf("%d sends in the second from +%v, share 10/s", n, sends[i].Sub(sends[0]))
			}
		}
		if span := sends[29].Sub(sends[0]); span > 3*time.Second {
			t.Fatalf("30 sends over %v at 10/s", span)
		}
		// The places booked next come after the sends taken.
		if b := l.Booked("p"); b <= 0 {
			t.Fatalf("next place %v ahead", b)
		}
		// Sends on their places go and are counted (the booking clocks
		// pace them); a late one waits for the room they leave. A send 20
		// ms after its place is on time (tolerance 25 ms), and does not
		// push the next back.
		time.Sleep(time.Minute)
		start := time.Now()
		time.Sleep(20 * time.Millisecond)
		if _, ok := l.Send("p", 20, start); !ok {
			t.Fatal("a send on its place waits")
		}
		time.Sleep(start.Add(100 * time.Millisecond).Sub(time.Now()))
		if _, ok := l.Send("p", 20, time.Time{}); !ok {
			t.Fatal("a late send with room (a pace after the last) waits")
		}
		if next, ok := l.Send("p", 20, time.Time{}); ok || next.Sub(start) != 195*time.Millisecond {
			t.Fatalf("a second late one at once: %v, next at +%v", ok, next.Sub(start))
		}
		if _, ok := l.Send("p", 20, time.Now()); !ok {
			t.Fatal("a send on its place is held back")
		}
	})
}

// A send that waited in its slot under the old limit (read before the
// change) keeps the places booked under the new one: only Reserve starts
// bookings afresh.
func TestLimiterSendUnderAnOldLimitKeepsTheNewBookings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &Limiter{}
		for range 10 {
			l.Reserve("p", 20, -1)
		}
		before := l.Booked("p")
		l.Send("p", 10, time.Now())
		if after := l.Booked("p"); after != before {
			t.Fatalf("booked %v ahead before a send under the old limit, %v after", before, after)
		}
	})
}

// Sends on places another replica booked (tickets) move the guard's clock:
// a place booked here is never one the guard would refuse.
func TestLimiterBooksNoPlaceTheGuardWouldRefuse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &Limiter{}
		now := time.Now()
		for range 20 { // twenty tickets booked elsewhere, all on their place now
			if _, ok := l.Send("p", 20, now); !ok {
				t.Fatal("a send on its place was refused")
			}
		}
		at, _ := l.Reserve("p", 20, -1)
		if next, ok := l.Send("p", 20, now.Add(-time.Second)); ok || at.Before(next) {
			t.Fatalf("booked at +%v while the guard refuses a late send until +%v (%v)", at.Sub(now), next.Sub(now), ok)
		}
	})
}
