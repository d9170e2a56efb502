package e2e

import (
	"math/rand/v2"
	"net/http"
	"testing"
	"time"
)

// TestSIGKILLMidRunLosesNoEvent runs a `webhookd dev` of its own against the
// broker process, kills it with SIGKILL twice while deliveries and retries
// are in flight, restarts it on the same data directory each time, and
// checks that every event ends delivered. Redeliveries are counted:
// at-least-once allows them, bounded by what was in flight.
func TestSIGKILLMidRunLosesNoEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts a webhookd process")
	}
	const prefix, events = "crash.", 600
	in := startInstance(t, "dev", merge(ownTopics(prefix), map[string]string{
		"WEBHOOKD_TOPIC_PARTITIONS": "3", "WEBHOOKD_RETRY_TIERS": "100ms,500ms,1s", "WEBHOOKD_RETRY_DELAY_SCALE": "0.1",
		"WEBHOOKD_KAFKA_SESSION_TIMEOUT": "6s", "WEBHOOKD_PARTITION_MAX_IN_FLIGHT": "32",
		"WEBHOOKD_BREAKER_FAILURES": "0",
	}))

	y := newEventTally(events * 4)
	rcv := newReceiver(t)
	go func() {
		for range rcv.reqs { // the counts are kept in respond
		}
	}()
	rcv.respondWith(func(c captured, w http.ResponseWriter) {
		time.Sleep(time.Duration(rand.IntN(15)) * time.Millisecond) // keep work in flight
		if rand.IntN(5) == 0 {
			w.WriteHeader(503) // a fifth of attempts fail and go through the tiers
			return
		}
		y.record(c.Body)
	})

	pipe := in.CreatePipeline(t, `{"name":"crash","trigger_type":"click","steps":[{"order":1,"url":"`+rcv.URL+`/c",
	  "body_template":{"id":"{{event_id}}"},"retry_policy":{"max_attempts":10,"backoff_type":"fixed","initial_delay_seconds":5}}]}`)
	produceClicks(t, prefix+"events", events)
	for _, at := range []int{150, 350} {
		y.waitFor(t, at)
		in.Kill()
		in.Start(t) // same data directory: chDB and the consumer groups' offsets come back
	}
	y.waitFor(t, events)
	// The figures count each execution once, as the logs list them, though
	// the crashes made some deliver twice (each time writing its states).
	in.WaitCaughtUp(t)
	in.WaitAnalyticsCaughtUp(t)
	_, out := in.API(t, "GET", "/api/admin/webhooks/pipelines/"+pipe["id"].(string), nil)
	st, _ := out["data"].(map[string]any)["stats"].(map[string]any)
	if st["total_executions"] != float64(events) || st["successful"] != float64(events) || st["in_retry"] != 0.0 {
		t.Errorf("pipeline stats after the crashes: %v; want %d executions, all successful, none in retry", st, events)
	}
	_, out = in.API(t, "GET", "/api/admin/webhooks/logs/recent?pipeline_id="+pipe["id"].(string), nil)
	if total := out["data"].(map[string]any)["pagination"].(map[string]any)["total"]; total != float64(events) {
		t.Errorf("logs/recent total %v, want %d", total, events)
	}
	if took, err := in.Stop(); err != nil {
		t.Errorf("exit after SIGTERM (%v): %v", took, err)
	}

	dups := y.checkAll(t, events)
	hist := map[int]int{}
	for _, n := range y.delivered {
		hist[n]++
	}
	t.Logf("%d events, 2 SIGKILLs: all delivered; %d redeliveries (%.1f%%); deliveries per event: %v", events, dups, 100*float64(dups)/events, hist)
	// A crash redoes what was in flight or finished since the last commit
	// (250 ms), each redo with the same delivery id. Per crash, one delivery
	// can be redone by the re-read event, by its retry task already on a tier
	// topic, and (rarely) by that task's successor queued just before the
	// kill: at most three extra deliveries per crash. Anything more would
	// mean redeliveries that grow beyond the uncommitted work.
	const kills = 2
	for n := range hist {
		if n > 1+3*kills {
			t.Errorf("%d events were delivered %d times: more than three times per crash", hist[n], n)
		}
	}
}
