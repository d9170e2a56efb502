package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// TestSIGTERMUnderLoadDrainsAndLosesNothing sends SIGTERM to a webhookd that
// is delivering a few thousand events to a slow receiver. It checks what an
// orchestrator and a receiver see: /readyz answers 503 "stopping" before the
// process exits, the exit status is 0, the analytics sink committed
// everything it was given (its group has no lag on the executions and DLQ
// topics: the last batch was written), and after a restart every event is
// delivered, with redeliveries no more than the requests in flight at SIGTERM.
func TestSIGTERMUnderLoadDrainsAndLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("delivers thousands of events and restarts a webhookd process")
	}
	const prefix, events = "drain.", 3000
	in := startInstance(t, "dev", merge(ownTopics(prefix), map[string]string{
		"WEBHOOKD_TOPIC_PARTITIONS": "3", "WEBHOOKD_RETRY_TIERS": "100ms,500ms,1s", "WEBHOOKD_RETRY_DELAY_SCALE": "0.1",
		"WEBHOOKD_BREAKER_FAILURES": "0", "WEBHOOKD_SHUTDOWN_GRACE": "20s",
		// 48 deliveries at a time (16 per partition), 50–90 ms each: several
		// hundred a second, so SIGTERM lands mid-run with work in flight.
		"WEBHOOKD_MAX_IN_FLIGHT": "48", "WEBHOOKD_PARTITION_MAX_IN_FLIGHT": "16", "WEBHOOKD_ANALYTICS_FLUSH_INTERVAL": "500ms",
	}))

	var inFlight atomic.Int64
	y := newEventTally(events * 2)
	rcv := newReceiver(t)
	go func() {
		for range rcv.reqs { // counted in respond
		}
	}()
	rcv.respondWith(func(c captured, w http.ResponseWriter) {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		time.Sleep(50*time.Millisecond + time.Duration(len(c.Body)%5)*10*time.Millisecond) // a slow-ish receiver
		w.WriteHeader(200)
		y.record(c.Body)
	})
	in.CreatePipeline(t, `{"name":"drain","trigger_type":"click","steps":[{"order":1,"url":"`+rcv.URL+`/d",
	  "body_template":{"id":"{{event_id}}"},"retry_policy":{"max_attempts":10,"backoff_type":"fixed","initial_delay_seconds":5}}]}`)
	produceClicks(t, prefix+"events", events)
	y.waitFor(t, events/3)

	// Probe /readyz as a kubelet would, but every few milliseconds, from
	// just before SIGTERM until the process is gone.
	type answer struct {
		code   int
		status string
		at     time.Time
	}
	var (
		probeMu sync.Mutex
		first   *answer // first non-200 answer
		last200 time.Time
	)
	probeCtx, stopProbe := context.WithCancel(t.Context())
	probing := make(chan struct{})
	addr := in.AdminAddr
	go func() {
		defer close(probing)
		for probeCtx.Err() == nil {
			resp, err := apiClient.Get("http://" + addr + "/readyz")
			if err == nil {
				var body struct{ Status string }
				_ = json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				probeMu.Lock()
				if resp.StatusCode == 200 {
					last200 = time.Now()
				} else if first == nil {
					first = &answer{resp.StatusCode, body.Status, time.Now()}
				}
				probeMu.Unlock()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	before := y.distinct()
	inFlightAtTerm := inFlight.Load()
	sigterm := time.Now()
	took, err := in.Stop()
	exited := time.Now()
	stopProbe()
	<-probing
	if err != nil {
		t.Fatalf("exit after SIGTERM (%v): %v, want status 0\n%s", took, err, in.logs.tail(30))
	}
	// Fetching stopped: what reached the receiver after SIGTERM is at most
	// the deliveries already admitted — WEBHOOKD_MAX_IN_FLIGHT (48) per
	// consumer: the event consumer, three retry tiers, failover — not the
	// ~2000 events of backlog.
	afterTerm := y.distinct() - before
	if afterTerm > 5*48 {
		t.Errorf("%d events were first delivered between SIGTERM and the exit: more than the %d admitted", afterTerm, 5*48)
	}
	probeMu.Lock()
	if first == nil || first.code != http.StatusServiceUnavailable || first.status != "stopping" || first.at.Before(sigterm) || !first.at.Before(exited) || last200.After(first.at) {
		t.Fatalf("/readyz did not turn 503 stopping between SIGTERM and exit: first non-200 %+v, last 200 at %v (SIGTERM %v, exit %v)", first, last200, sigterm, exited)
	}
	t.Logf("SIGTERM with %d of %d events delivered and %d requests at the receiver; /readyz 503 stopping after %v; %d more delivered while draining; exit 0 after %v",
		before, events, inFlightAtTerm, first.at.Sub(sigterm).Round(time.Millisecond), afterTerm, took.Round(time.Millisecond))
	probeMu.Unlock()

	// The sink wrote its last batch and committed it before the exit: its
	// group has nothing left on the executions and DLQ topics.
	lags, err := kadm.NewClient(producer).Lag(t.Context(), prefix+"group-analytics")
	if err != nil {
		t.Fatal(err)
	}
	lags.Each(func(l kadm.DescribedGroupLag) {
		if l.Error() != nil || l.Lag.Total() != 0 {
			t.Errorf("analytics group after the exit: lag %d (%v): the sink did not flush and commit", l.Lag.Total(), l.Error())
		}
	})

	in.Start(t)
	y.waitFor(t, events)
	in.WaitCaughtUp(t)
	dups := y.checkAll(t, events)
	t.Logf("%d events, SIGTERM mid-run and a restart: all delivered; %d redeliveries (bound: %d requests in flight at SIGTERM)", events, dups, inFlightAtTerm)
	// In-flight deliveries finish within the grace period (20 s, far more
	// than a request takes) and their offsets are committed, so none should
	// be redone; the bound is the work that was in flight.
	if int64(dups) > inFlightAtTerm {
		t.Errorf("%d redeliveries, more than the %d requests in flight at SIGTERM", dups, inFlightAtTerm)
	}
}
