package dispatcher

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/afftok/webhookd/bus"
)

// TestTransactionalDeferralToAHungHostHoldsNoSlotLong: a host that answers nothing (its one request hangs) must not
// hold delivery slots: DESIGN §3 "a slow or dead endpoint must not stall
// healthy pipelines". Inside a transaction each further deferral to the
// hung host holds its slot longer (booked places pile up one pace apart).
func TestTransactionalDeferralToAHungHostHoldsNoSlotLong(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hosts := &Hosts{Limit: 1}
		slow := newDispatcher(roundTrip(hang), hosts)
		p := compile(t, `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"https://busy.example/a","timeout_seconds":300}]}`)
		ctx, cancel := context.WithCancel(context.Background())
		defer synctest.Wait()
		defer cancel()
		go slow.Step(ctx, p, newTask(t, p, testEvent))
		synctest.Wait()
		time.Sleep(20 * time.Second) // the host has answered nothing for 20 s
		txn := bus.WithBuffer(context.Background(), discardBuffer{})
		var worst time.Duration
		for i := range 3 {
			start := time.Now()
			d := slow.Step(txn, p, newTask(t, p, testEvent))
			held := time.Since(start)
			t.Logf("deferral %d: %v, slot held %v", i, d.Verdict, held)
			worst = max(worst, held)
		}
		if worst > 2*time.Second {
			t.Fatalf("a transactional deferral to a hung host held its delivery slot %v (non-transactional path: at most 2 s)", worst)
		}
	})
}
