package dispatcher

import (
	"context"
	"net/http"
	"testing"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/signing"
)

// A replayed delivery carries X-Afftok-Replay on every attempt: the first,
// a retry (the task it travels in keeps the replay id) and the failover's.
func TestReplayedDeliveriesCarryTheReplayHeaderOnEveryAttempt(t *testing.T) {
	p := compile(t, `{"name":"p","trigger_type":"click","failover_url":"https://backup.example/f","steps":[{"order":1,"url":"https://rcv.example/a","retry_policy":{"max_attempts":2}}]}`)
	var seen []http.Header
	d := newDispatcher(roundTrip(func(r *http.Request) (*http.Response, error) {
		seen = append(seen, r.Header.Clone())
		return answer(503, "")(r)
	}), nil)
	task := newTask(t, p, testEvent)
	task.Replay = "rpl_0123"
	dec := d.Step(context.Background(), p, task)
	if dec.Verdict != delivery.Retry || dec.Task.Replay != "rpl_0123" {
		t.Fatalf("first attempt: %v, task replay %q", dec.Verdict, dec.Task.Replay)
	}
	retry, err := delivery.DecodeTask(dec.Task.Record("t").Value) // as the tier topic carries it
	if err != nil {
		t.Fatal(err)
	}
	dec = d.Step(context.Background(), p, retry)
	if dec.Verdict != delivery.Failover {
		t.Fatalf("second attempt: %v", dec.Verdict)
	}
	d.Step(context.Background(), p, dec.Task)
	if len(seen) != 3 {
		t.Fatalf("%d attempts", len(seen))
	}
	for i, h := range seen {
		if h.Get(signing.HeaderReplay) != "rpl_0123" || h.Get(signing.HeaderDeliveryID) != task.DeliveryID {
			t.Errorf("attempt %d: replay %q, delivery id %q", i, h.Get(signing.HeaderReplay), h.Get(signing.HeaderDeliveryID))
		}
	}
	if seen[2].Get(signing.HeaderFailover) != "true" {
		t.Error("the third attempt was not the failover")
	}
	// An ordinary delivery has none.
	seen = nil
	d.Step(context.Background(), p, newTask(t, p, testEvent))
	if len(seen) != 1 || seen[0].Get(signing.HeaderReplay) != "" {
		t.Fatalf("ordinary delivery: %v", seen)
	}
}
