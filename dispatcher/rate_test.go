package dispatcher

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/pipeline"
	"github.com/afftok/webhookd/ratelimit"
	"github.com/afftok/webhookd/template"
)

func rateDispatcher(rt http.RoundTripper, rates RateLimiter) *Dispatcher {
	return New(Options{Client: &http.Client{Transport: rt}, Env: template.NewEnvSource(nil, ""), Rates: rates})
}

func limited(t *testing.T, limit string) *pipeline.Compiled {
	return compile(t, `{"name":"p","trigger_type":"click","rate_limit_per_second":`+limit+`,"steps":[{"order":1,"url":"https://rcv.example/a"}]}`)
}

// counting answers 200 and counts requests.
func counting(n *atomic.Int32) roundTrip {
	return func(r *http.Request) (*http.Response, error) {
		n.Add(1)
		return answer(200, "")(r)
	}
}

// book asks for a place for a new delivery: a place soon is waited for in
// place (Done); otherwise the delivery hops (due at once) and is booked
// where it lands — here — and deferred to its place with a ticket.
func book(t *testing.T, d *Dispatcher, p *pipeline.Compiled) delivery.Decision {
	t.Helper()
	dec := d.Step(context.Background(), p, newTask(t, p, testEvent))
	if dec.Verdict != delivery.Defer || !dec.Task.RateHop {
		return dec
	}
	return d.Step(context.Background(), p, dec.Task)
}

// A place within RateQueueWait is waited for in place. A delivery with no
// place soon where it first asks hops at once through a tier — no attempt
// made or spent — and is booked where it lands, deferred to its place with
// a ticket that holds that place: when the task comes back it goes at once
// and nothing else is booked for it.
func TestStepRateLimitWaitsInPlaceOrDefersToItsPlace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var sent atomic.Int32
		lim := &ratelimit.Limiter{}
		d := rateDispatcher(counting(&sent), lim)
		p := limited(t, "5") // a place every 200 ms
		start := time.Now()
		if dec := d.Step(context.Background(), p, newTask(t, p, testEvent)); dec.Verdict != delivery.Done || time.Since(start) != 0 {
			t.Fatalf("first: %v after %v", dec.Verdict, time.Since(start))
		}
		// The second's place is 200 ms ahead: waited for in place.
		if dec := d.Step(context.Background(), p, newTask(t, p, testEvent)); dec.Verdict != delivery.Done || time.Since(start) != 200*time.Millisecond {
			t.Fatalf("second: %v after %v", dec.Verdict, time.Since(start))
		}
		// Two more asked at once: the first waits 200 ms in place; the
		// second's place (+400 ms) is beyond the wait: it hops, not booked.
		now := time.Now()
		done := make(chan delivery.Decision)
		go func() { done <- d.Step(context.Background(), p, newTask(t, p, testEvent)) }()
		synctest.Wait()
		hop := d.Step(context.Background(), p, newTask(t, p, testEvent))
		if hop.Verdict != delivery.Defer || hop.Reason != delivery.ReasonRateLimited || hop.Attempt != nil || hop.Task.Attempt != 0 ||
			!hop.Task.RateHop || !hop.Task.RateAt.IsZero() || hop.At.Sub(now) > time.Millisecond {
			t.Fatalf("hop: %+v at +%v", hop, hop.At.Sub(now))
		}
		if b := lim.Booked(p.ID); b != 400*time.Millisecond { // the next free place: the hop took none
			t.Fatalf("the hop booked a place: %v ahead", b)
		}
		// It lands (here): booked however far ahead, deferred to a little
		// before its place (to wait for it in its slot, not come back late).
		def := d.Step(context.Background(), p, hop.Task)
		if def.Verdict != delivery.Defer || def.Task.RateAt.Sub(now) != 400*time.Millisecond || def.Task.RateAt.Sub(def.At) != rateComeBackEarly ||
			def.Task.RateLimit != 5 || def.Task.RateHop {
			t.Fatalf("deferred to +%v with ticket +%v/%v (hop %v)", def.At.Sub(now), def.Task.RateAt.Sub(now), def.Task.RateLimit, def.Task.RateHop)
		}
		if got := <-done; got.Verdict != delivery.Done {
			t.Fatalf("third: %v", got.Verdict)
		}
		if sent.Load() != 3 {
			t.Fatalf("%d requests", sent.Load())
		}
		// A new delivery asks now: its place comes after the deferred one's.
		if late := book(t, d, p); late.Verdict != delivery.Defer || late.Task.RateAt.Sub(now) != 600*time.Millisecond {
			t.Fatalf("a later delivery jumped the queue: %v to +%v", late.Verdict, late.Task.RateAt.Sub(now))
		}
		// The deferred task comes back before its place: it waits for it
		// in its slot and goes at its place, on its ticket, booking
		// nothing more.
		time.Sleep(time.Until(def.At))
		booked := time.Now().Add(lim.Booked(p.ID)) // booked until
		dec := d.Step(context.Background(), p, def.Task)
		if dec.Verdict != delivery.Done || dec.Attempt == nil || dec.Attempt.Attempt != 0 || time.Now() != def.Task.RateAt {
			t.Fatalf("back on its ticket: %v, attempt %+v, at +%v", dec.Verdict, dec.Attempt, time.Now().Sub(now))
		}
		if after := time.Now().Add(lim.Booked(p.ID)); !dec.Task.RateAt.IsZero() || dec.Task.RateHop || !after.Equal(booked) {
			t.Fatalf("the ticket was not used up: %v; booked until +%v → +%v", dec.Task.RateAt, booked.Sub(now), after.Sub(now))
		}
	})
}

// A ticket booked under another limit is void: the task books a place
// under the new one. A ticket far too late is not used either (a burst):
// a new place is booked.
func TestStepRateTicketVoidAfterALimitChangeOrFarTooLate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := &ratelimit.Limiter{}
		d := rateDispatcher(answer(200, ""), lim)
		slow := limited(t, "1")
		d.Step(context.Background(), slow, newTask(t, slow, testEvent))
		def := book(t, d, slow)
		if def.Verdict != delivery.Defer || def.Task.RateAt.IsZero() {
			t.Fatalf("%v", def.Verdict)
		}
		// The limit is raised to 100/s: the task comes back before its old
		// place and goes on a new one at once.
		fast := limited(t, "100")
		fast.ID = slow.ID
		if dec := d.Step(context.Background(), fast, def.Task); dec.Verdict != delivery.Done {
			t.Fatalf("under the new limit: %v %s", dec.Verdict, dec.Reason)
		}
		// Far too late: a new place, after those booked since.
		for range 3 {
			book(t, d, slow)
		}
		stale := book(t, d, slow)
		time.Sleep(time.Until(stale.Task.RateAt) + RateTicketGrace + time.Second)
		now := time.Now()
		d.Step(context.Background(), slow, newTask(t, slow, testEvent)) // takes the place now
		book(t, d, slow)                                                // +1 s
		again := d.Step(context.Background(), slow, stale.Task)
		if again.Verdict != delivery.Defer || again.Task.RateHop || again.Task.RateAt.Sub(now) != 2*time.Second {
			t.Fatalf("a stale ticket: %v, new place at +%v (hop %v)", again.Verdict, again.Task.RateAt.Sub(now), again.Task.RateHop)
		}
	})
}

// A task deferred to its place comes back halfway there (at most
// RateRecheck ahead, so a changed limit reaches it): on a replica with a
// place free now it goes — another replica's spare budget serves work
// booked elsewhere — and on a busy one it keeps its ticket and waits on.
func TestStepRateEarlyReturnAndRecheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		busy := &ratelimit.Limiter{}
		idle := &ratelimit.Limiter{}
		a := rateDispatcher(answer(200, ""), busy)
		b := rateDispatcher(answer(200, ""), idle)
		p := limited(t, "0.01") // a place every 100 s
		start := time.Now()
		a.Step(context.Background(), p, newTask(t, p, testEvent))
		def := book(t, a, p)
		if def.Verdict != delivery.Defer || def.At.Sub(start) != 50*time.Second || def.Task.RateAt.Sub(start) != 100*time.Second {
			t.Fatalf("deferred to +%v with its place at +%v; want halfway (+50s) and +100s", def.At.Sub(start), def.Task.RateAt.Sub(start))
		}
		time.Sleep(time.Until(def.At))
		// Back on the busy replica: waits on for its place, ticket kept,
		// halfway again.
		again := a.Step(context.Background(), p, def.Task)
		if again.Verdict != delivery.Defer || again.At.Sub(start) != 75*time.Second || !again.Task.RateAt.Equal(def.Task.RateAt) {
			t.Fatalf("back early on the busy replica: %v to +%v", again.Verdict, again.At.Sub(start))
		}
		// Back on an idle replica: goes now.
		if dec := b.Step(context.Background(), p, def.Task); dec.Verdict != delivery.Done {
			t.Fatalf("back early on an idle replica: %v", dec.Verdict)
		}
		// A place far ahead is looked at again after RateRecheck at most;
		// one close by is come back to a little early, to be waited for
		// in the slot.
		slow := limited(t, "0.001")
		slow.ID = "pipe_slow"
		a.Step(context.Background(), slow, newTask(t, slow, testEvent))
		now := time.Now()
		if far := book(t, a, slow); far.At.Sub(now) != time.Minute {
			t.Fatalf("a place 1000 s ahead is looked at again after %v", far.At.Sub(now))
		}
		fast := limited(t, "2")
		fast.ID = "pipe_fast"
		a.Step(context.Background(), fast, newTask(t, fast, testEvent))
		if near := book(t, a, fast); near.At.Sub(time.Now()) != 500*time.Millisecond-rateComeBackEarly {
			t.Fatalf("a place 500 ms ahead is looked at after %v", near.At.Sub(time.Now()))
		}
	})
}

// A task back before its place on a replica that can give it one at least
// rateMoveGain sooner moves there (the queues of replicas that booked
// unevenly even out); the place it leaves goes unused.
func TestStepRateTaskMovesToASoonerPlace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		crowded := rateDispatcher(answer(200, ""), &ratelimit.Limiter{Share: func() float64 { return 0.25 }})
		light := rateDispatcher(answer(200, ""), &ratelimit.Limiter{})
		p := limited(t, "0.01") // 100 s apart on the light replica, 400 s on the crowded one
		start := time.Now()
		crowded.Step(context.Background(), p, newTask(t, p, testEvent))
		x := book(t, crowded, p)
		if x.Task.RateAt.Sub(start) != 400*time.Second || x.At.Sub(start) != time.Minute {
			t.Fatalf("booked +%v, back at +%v", x.Task.RateAt.Sub(start), x.At.Sub(start))
		}
		for range 3 {
			book(t, light, p) // places now, +100 s, +200 s: the next is +300 s
		}
		time.Sleep(time.Until(x.At))
		moved := light.Step(context.Background(), p, x.Task)
		if moved.Verdict != delivery.Defer || moved.Task.RateAt.Sub(start) != 300*time.Second {
			t.Fatalf("back on the light replica: %v, place +%v (was +400s)", moved.Verdict, moved.Task.RateAt.Sub(start))
		}
		// Not without a gain of rateMoveGain: the light replica's next place
		// (+800 s, once it booked up to +700 s) is no sooner than the ticket.
		y := book(t, crowded, p) // +800 s
		time.Sleep(time.Until(y.At))
		for range 4 {
			book(t, light, p) // +400 s … +700 s
		}
		if stay := light.Step(context.Background(), p, y.Task); !stay.Task.RateAt.Equal(y.Task.RateAt) {
			t.Fatalf("moved for less than rateMoveGain: +%v → +%v", y.Task.RateAt.Sub(start), stay.Task.RateAt.Sub(start))
		}
	})
}

// A replica that holds no share (it owns no partitions right now) makes no
// attempt: the delivery waits a moment on a tier for the partition's owner.
func TestStepRateWithoutShareDefers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := rateDispatcher(answer(200, ""), &ratelimit.Limiter{Share: func() float64 { return 0 }})
		p := limited(t, "50")
		start := time.Now()
		dec := d.Step(context.Background(), p, newTask(t, p, testEvent))
		if dec.Verdict != delivery.Defer || dec.Reason != delivery.ReasonRateLimited || dec.At.Sub(start) != noShareWait || !dec.Task.RateAt.IsZero() || !dec.Task.RateHop {
			t.Fatalf("%+v", dec)
		}
	})
}

// Shutdown during a wait in place: nothing is decided.
func TestStepRateWaitAbortsOnShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := rateDispatcher(answer(200, ""), &ratelimit.Limiter{})
		p := limited(t, "5")
		d.Step(context.Background(), p, newTask(t, p, testEvent))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if dec := d.Step(ctx, p, newTask(t, p, testEvent)); dec.Verdict != delivery.Abort {
			t.Fatalf("%v", dec.Verdict)
		}
	})
}

// Paused pipelines hold their work without using places; pipelines without
// a limit never touch the limiter.
func TestStepRateLimitOnlyForActiveLimitedPipelines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := &ratelimit.Limiter{}
		d := rateDispatcher(answer(200, ""), lim)
		p := limited(t, "1")
		p.Status = pipeline.StatusPaused
		if dec := d.Step(context.Background(), p, newTask(t, p, testEvent)); dec.Reason != delivery.ReasonPipelinePaused || lim.Booked(p.ID) != 0 {
			t.Fatalf("paused: %s, booked %v", dec.Reason, lim.Booked(p.ID))
		}
		free := compile(t, `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"https://rcv.example/a"}]}`)
		for range 10 {
			if dec := d.Step(context.Background(), free, newTask(t, free, testEvent)); dec.Verdict != delivery.Done {
				t.Fatalf("unlimited: %v", dec.Verdict)
			}
		}
		if lim.Booked(free.ID) != 0 {
			t.Fatal("an unlimited pipeline booked places")
		}
	})
}

// Retries and failover attempts are paced like first attempts, and waiting
// for a place spends none: the attempt number a deferred task carries is the
// one it is finally sent with.
func TestStepRateLimitPacesRetriesAndFailoverWithoutSpendingAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var retryCounts []string
		rt := roundTrip(func(r *http.Request) (*http.Response, error) {
			retryCounts = append(retryCounts, r.Header.Get("X-Afftok-Retry-Count")+"/"+r.Header.Get("X-Afftok-Failover"))
			return answer(200, "")(r)
		})
		d := rateDispatcher(rt, &ratelimit.Limiter{})
		p := compile(t, `{"name":"p","trigger_type":"click","rate_limit_per_second":1,"failover_url":"https://backup.example/f","steps":[{"order":1,"url":"https://rcv.example/a"}]}`)
		d.Step(context.Background(), p, newTask(t, p, testEvent)) // takes the place now
		retry := newTask(t, p, testEvent)
		retry.Attempt = 2
		failover := newTask(t, p, testEvent)
		failover.Failover = true
		for _, task := range []*delivery.Task{retry, failover} {
			dec := d.Step(context.Background(), p, task)
			for dec.Verdict == delivery.Defer {
				if dec.Attempt != nil || dec.Task.Attempt != task.Attempt || dec.Task.Failover != task.Failover {
					t.Fatalf("deferred: attempt record %v, attempt %d → %d", dec.Attempt, task.Attempt, dec.Task.Attempt)
				}
				time.Sleep(time.Until(dec.At))
				dec = d.Step(context.Background(), p, dec.Task)
			}
			if dec.Verdict != delivery.Done || dec.Attempt.Attempt != task.Attempt {
				t.Fatalf("%v, attempt %d", dec.Verdict, dec.Attempt.Attempt)
			}
		}
		if got := strings.Join(retryCounts, " "); got != "0/ 2/ 0/true" {
			t.Fatalf("requests (retry count/failover): %s", got)
		}
	})
}

// busiestSecond is the most sends in any one-second window [at[i], +1 s).
func busiestSecond(at []time.Time) int {
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	most := 0
	for i := range at {
		n := 0
		for j := i; j < len(at) && at[j].Before(at[i].Add(time.Second)); j++ {
			n++
		}
		most = max(most, n)
	}
	return most
}

// After a stall, every ticket that became late in it comes back at once,
// with new deliveries booked beside them that wait in their slots: the
// emission guard spaces the late sends in the room the sends on their
// places leave — any one-second window holds at most limit + 2 — where
// without it every late ticket within RateTicketGrace went together (60 in
// one second here). Deferred tasks
// come back when their tier says (a goroutine per deferral), every one is
// sent once, and on its first attempt.
func TestStepRateLimitNoBurstAfterAStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const limit, late, fresh = 20, 40, 20
		var mu sync.Mutex
		var sends []time.Time
		rt := roundTrip(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			sends = append(sends, time.Now())
			mu.Unlock()
			return answer(200, "")(r)
		})
		d := rateDispatcher(rt, &ratelimit.Limiter{})
		p := limited(t, "20")
		// The stall ends now: 40 tickets for the last two seconds' places
		// (each within RateTicketGrace), and 20 new deliveries.
		stall := time.Now().Add(3 * time.Second)
		time.Sleep(time.Until(stall))
		var tasks []*delivery.Task
		for i := range late {
			tk := newTask(t, p, testEvent)
			tk.RateAt, tk.RateLimit = stall.Add(-time.Duration(i)*RateTicketGrace/late), limit
			tasks = append(tasks, tk)
		}
		for range fresh {
			tasks = append(tasks, newTask(t, p, testEvent))
		}
		var wg sync.WaitGroup
		var done, deferrals, mostHops atomic.Int32
		var run func(tk *delivery.Task, hops int)
		run = func(tk *delivery.Task, hops int) {
			defer wg.Done()
			for m := mostHops.Load(); int32(hops) > m && !mostHops.CompareAndSwap(m, int32(hops)); m = mostHops.Load() {
			}
			if hops > 100 {
				t.Errorf("a delivery deferred %d times", hops)
				return
			}
			dec := d.Step(context.Background(), p, tk)
			switch dec.Verdict {
			case delivery.Done:
				done.Add(1)
			case delivery.Defer:
				deferrals.Add(1)
				time.Sleep(time.Until(dec.At))
				wg.Add(1)
				go run(dec.Task, hops+1)
			default:
				t.Errorf("%v %s", dec.Verdict, dec.Reason)
			}
		}
		for _, tk := range tasks {
			wg.Add(1)
			go run(tk, 0)
		}
		wg.Wait()
		if int(done.Load()) != late+fresh || len(sends) != late+fresh {
			t.Fatalf("%d done, %d sent; want %d each", done.Load(), len(sends), late+fresh)
		}
		most := busiestSecond(sends)
		span := sends[len(sends)-1].Sub(sends[0])
		t.Logf("%d deliveries after a stall at %d/s: busiest second %d, over %v, %d deferrals (at most %d for one delivery)", len(sends), limit, most, span, deferrals.Load(), mostHops.Load())
		// limit + 1 for a window's edges, + 1 for a late send that shares
		// an instant with a send on a place booked before it (the guard
		// counts those, it does not hold them: they are paced by the
		// booking clocks, and tickets move between replicas).
		if most > limit+2 {
			t.Errorf("%d sends in one second, limit %d/s", most, limit)
		}
		// A delivery is deferred a few times at most (a hop to be booked,
		// looks again halfway to a far place, back a little early): never
		// refused and booked anew round after round.
		if h := mostHops.Load(); h > 5 {
			t.Errorf("a delivery was deferred %d times", h)
		}
		// The guard spaces, it does not slow: the sends go at the limit.
		if want := time.Duration(len(sends)-1) * time.Second / limit; span > want+time.Second {
			t.Errorf("%d sends over %v, want about %v", len(sends), span, want)
		}
	})
}

// A limit the API accepts however small (rate_limit_per_second 1e-9, one
// place in 31 years) is a limit, not "no share here": the first delivery
// goes, the next is deferred to its place with a ticket — looked at again
// at most every RateRecheck, dead when the deferral window ends — not
// bounced through a tier every second as a replica without a share would
// (found on a running service: 36 deferrals in 12 s for 3 deliveries).
func TestStepTinyRateLimitDefersToItsPlace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var sent atomic.Int32
		d := rateDispatcher(counting(&sent), &ratelimit.Limiter{})
		for _, limit := range []string{"1e-9", "4.9e-324"} {
			p := limited(t, limit)
			if dec := d.Step(context.Background(), p, newTask(t, p, testEvent)); dec.Verdict != delivery.Done {
				t.Fatalf("%s: first delivery: %v", limit, dec.Verdict)
			}
			now := time.Now()
			dec := book(t, d, p)
			if dec.Verdict != delivery.Defer || dec.Task.RateAt.IsZero() || dec.Task.RateAt.Sub(now) < 365*24*time.Hour ||
				dec.At.Sub(now) < d.o.RateRecheck {
				t.Fatalf("%s: second delivery %v at +%v, ticket +%v (hop %v)", limit, dec.Verdict, dec.At.Sub(now), dec.Task.RateAt.Sub(now), dec.Task.RateHop)
			}
		}
		if sent.Load() != 2 {
			t.Fatalf("%d requests, want 2", sent.Load())
		}
	})
}
