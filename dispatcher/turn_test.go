package dispatcher

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/afftok/webhookd/bus"
	"github.com/afftok/webhookd/delivery"
)

type discardBuffer struct{}

func (discardBuffer) Add(...bus.Deferred) {}

// With Kafka transactions a deferral is buffered, not acknowledged, so it
// would free its delivery slot at once and the next delivery would queue at
// the same full host. A delivery deferred for a saturated host inside a
// transaction keeps its slot until one of the host's requests finishes (or
// its deferral is due), so a consumer defers no faster than the host answers;
// outside a transaction it returns at once, as before.
func TestTransactionalDeferralWaitsForTheHostsNextFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hosts := &Hosts{Limit: 2}
		slow := newDispatcher(roundTrip(hang), hosts)
		p := compile(t, `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"https://busy.example/a","timeout_seconds":30}]}`)
		var cancels []context.CancelFunc
		for range 2 {
			ctx, cancel := context.WithCancel(context.Background())
			cancels = append(cancels, cancel)
			go slow.Step(ctx, p, newTask(t, p, testEvent))
		}
		defer synctest.Wait()
		defer func() {
			for _, c := range cancels {
				c()
			}
		}()
		synctest.Wait()

		// Outside a transaction: deferred and returned at once.
		before := time.Now()
		if d := slow.Step(context.Background(), p, newTask(t, p, testEvent)); d.Verdict != delivery.Defer || d.Reason != delivery.ReasonHostSaturated || time.Since(before) > 250*time.Millisecond {
			t.Fatalf("outside a transaction: %+v after %v", d, time.Since(before))
		}

		// Inside one: held until a request to the host finishes.
		txn := bus.WithBuffer(context.Background(), discardBuffer{})
		var returned atomic.Bool
		var got delivery.Decision
		go func() {
			got = slow.Step(txn, p, newTask(t, p, testEvent))
			returned.Store(true)
		}()
		synctest.Wait()
		if returned.Load() {
			t.Fatalf("a transactional deferral returned before the host finished anything: %+v", got)
		}
		held := time.Now()
		cancels[0]() // one of the host's requests ends
		synctest.Wait()
		if !returned.Load() {
			t.Fatal("still held after the host finished a request")
		}
		if got.Verdict != delivery.Defer || got.Reason != delivery.ReasonHostSaturated || time.Since(held) != 0 {
			t.Fatalf("%+v, released %v after the finish", got, time.Since(held))
		}

		// Nothing finishing: held until its deferral is due, no longer.
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		go slow.Step(ctx, p, newTask(t, p, testEvent)) // full again
		synctest.Wait()
		start := time.Now()
		d := slow.Step(txn, p, newTask(t, p, testEvent))
		if d.Verdict != delivery.Defer || time.Since(start) <= 0 || !time.Now().Before(d.At.Add(time.Nanosecond)) {
			t.Fatalf("%+v after %v", d, time.Since(start))
		}
	})
}
