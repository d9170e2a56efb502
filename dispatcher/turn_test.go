package dispatcher

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/afftok/webhookd/bus"
)

type discardBuffer struct{}

func (discardBuffer) Add(...bus.Deferred) {}

// With Kafka transactions a deferral is buffered, not acknowledged, so it
// would free its delivery slot at once and the next delivery would queue at
// the same full host. A delivery deferred for a saturated host inside a
// transaction keeps its slot until one of the host's requests finishes (or
// its deferral is due, or the hold's bound passes), so a consumer defers no
// faster than the host answers (outside a transaction it returns at once:
// TestStepDefersForASaturatedHost).
//
// TestAwaitTurnHoldsUntilTheHostsNextFinish: a turn taken at a full host
// that is answering is held until one of its requests finishes (one finish
// per turn, in order), and no longer than the hold's bound when none does;
// a stalled host (full, finishing nothing) holds no turn at all.
func TestAwaitTurnHoldsUntilTheHostsNextFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hosts := &Hosts{Limit: 1}
		ctx := context.Background()
		take := func() *Permit {
			p, def, err := hosts.Acquire(ctx, "h", 30*time.Second)
			if p == nil || def != nil || err != nil {
				t.Fatalf("acquire: %v %v %v", p, def, err)
			}
			return p
		}
		take().Done(Healthy) // the host has answered
		p := take()          // and is full again
		var returned atomic.Int32
		for range 2 {
			go func() {
				hosts.AwaitTurn(ctx, "h", time.Now().Add(time.Hour))
				returned.Add(1)
			}()
		}
		synctest.Wait()
		if n := returned.Load(); n != 0 {
			t.Fatalf("%d turns returned before the host finished anything", n)
		}
		p.Done(Healthy)
		synctest.Wait()
		if n := returned.Load(); n != 1 {
			t.Fatalf("%d turns returned after one finish, want 1", n)
		}
		take()
		start := time.Now()
		for returned.Load() < 2 {
			time.Sleep(10 * time.Millisecond)
		}
		if held := time.Since(start); held > 2*time.Second {
			t.Fatalf("a turn with nothing finishing was held %v, want at most the 2 s bound", held)
		}

		// Full and finishing nothing for longer than QueueWait: stalled.
		time.Sleep(time.Second)
		start = time.Now()
		hosts.AwaitTurn(ctx, "h", time.Now().Add(time.Hour))
		if held := time.Since(start); held != 0 {
			t.Fatalf("a turn at a stalled host was held %v", held)
		}
	})
}
