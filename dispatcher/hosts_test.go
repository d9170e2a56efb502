package dispatcher

import (
	"context"
	"sync"
	"testing"
	"time"
)

// BenchmarkAcquireFullHost is the bench's peak at one host: many more
// deliveries than the host's limit, each taking a place, holding it a
// moment and giving it back, so most Acquires find the host full and wait
// in place. ns/op is one request's bookkeeping at the host, its waits
// included.
func BenchmarkAcquireFullHost(b *testing.B) {
	h := &Hosts{Limit: 64, QueueWait: time.Second}
	const workers = 512
	ctx := context.Background()
	var wg sync.WaitGroup
	ops := make(chan struct{}, workers)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		for range b.N {
			ops <- struct{}{}
		}
		close(ops)
	}()
	var deferred sync.Map
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range ops {
				p, def, err := h.Acquire(ctx, "receiver:8080", 5*time.Second)
				if err != nil || def != nil {
					deferred.Store(w, true)
					continue
				}
				for range 50 { // the request's own work: a moment with the place held
				}
				p.Done(Healthy)
			}
		}()
	}
	wg.Wait()
	n := 0
	deferred.Range(func(any, any) bool { n++; return true })
	if n > 0 {
		b.Logf("%d workers saw a deferral", n)
	}
}

// The host's latency is at least its oldest request's age: the oldest of
// those still in flight, whichever finished first, and a request that
// waited for its place counts from when it got it.
func TestTheOldestRequestInFlightSetsTheHostsPace(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	h := &Hosts{Limit: 3, QueueWait: time.Hour, Now: clock}
	latency := func() time.Duration {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.latencyLocked(h.state("r"), h.now())
	}
	acquire := func() *Permit {
		p, def, err := h.Acquire(context.Background(), "r", time.Minute)
		if p == nil || def != nil || err != nil {
			t.Fatalf("Acquire: %v %v %v", p, def, err)
		}
		return p
	}
	p1 := acquire()
	advance(time.Second)
	p2 := acquire()
	advance(time.Second)
	p3 := acquire()
	advance(time.Second)
	if got := latency(); got != 3*time.Second {
		t.Fatalf("latency %v with requests 3, 2 and 1 s old, want 3 s", got)
	}
	p2.Done(Neutral) // finishing out of order: the oldest stays
	p2.Done(Neutral) // and twice: once counts
	if got := latency(); got != 3*time.Second {
		t.Fatalf("latency %v after the middle request finished, want 3 s", got)
	}
	p1.Done(Neutral) // Neutral: no latency sample, so the age alone shows
	if got := latency(); got != time.Second {
		t.Fatalf("latency %v with one request 1 s old, want 1 s", got)
	}
	// The host full again; a fourth request waits for a place.
	p4, p5 := acquire(), acquire()
	got := make(chan *Permit)
	go func() {
		p, _, _ := h.Acquire(context.Background(), "r", time.Minute)
		got <- p
	}()
	for waiting := false; !waiting; {
		h.mu.Lock()
		waiting = len(h.state("r").waiters) == 1
		h.mu.Unlock()
		if !waiting {
			time.Sleep(time.Millisecond) // polling the waiter's arrival: no signal exposes it
		}
	}
	advance(10 * time.Second)
	p3.Done(Neutral)
	p6 := <-got
	if p6 == nil {
		t.Fatal("the waiting request got no place")
	}
	advance(time.Second)
	if got := latency(); got != 11*time.Second {
		t.Fatalf("latency %v with requests 11, 11 and 1 s old, want 11 s", got)
	}
	p4.Done(Neutral)
	p5.Done(Neutral)
	if got := latency(); got != time.Second {
		t.Fatalf("latency %v with the waiter's request alone (1 s old), want 1 s", got)
	}
	p6.Done(Neutral)
	if got, n := latency(), h.InFlight("r"); got != 0 || n != 0 {
		t.Fatalf("latency %v, %d in flight after every request finished, want 0, 0", got, n)
	}
}
