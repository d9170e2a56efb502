package dispatcher

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/event"
	"github.com/afftok/webhookd/filter"
	"github.com/afftok/webhookd/pipeline"
	"github.com/afftok/webhookd/template"
)

// roundTrip is a fake transport: the state machine's tests decide what the
// "receiver" answers, and what the network does, per request.
type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func answer(status int, body string, header ...string) roundTrip {
	return func(r *http.Request) (*http.Response, error) {
		h := http.Header{}
		for i := 0; i+1 < len(header); i += 2 {
			h.Set(header[i], header[i+1])
		}
		return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
	}
}

func fail(err error) roundTrip {
	return func(*http.Request) (*http.Response, error) { return nil, err }
}

// hang blocks until the request's context ends (a receiver that never answers).
func hang(r *http.Request) (*http.Response, error) {
	<-r.Context().Done()
	return nil, r.Context().Err()
}

func compile(t *testing.T, raw string) *pipeline.Compiled {
	t.Helper()
	var p pipeline.Pipeline
	if err := pipeline.Decode([]byte(raw), &p); err != nil {
		t.Fatal(err)
	}
	p.ID = "pipe_sm"
	for i := range p.Steps {
		p.Steps[i].ID = "step_" + string(rune('a'+i))
	}
	p.Normalize()
	if err := p.Validate(envAllow{"SECRET_TOKEN"}, pipeline.DefaultRetryLimits, nil); err != nil {
		t.Fatal(err)
	}
	c, err := pipeline.Compile(&p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type envAllow []string

func (e envAllow) EnvAllowed(n string) bool {
	for _, x := range e {
		if x == n {
			return true
		}
	}
	return false
}

const testEvent = `{"id":"evt_1","type":"click.tracked","data":{"id":"clk_1","country":"US"}}`

func newTask(t *testing.T, p *pipeline.Compiled, raw string) *delivery.Task {
	t.Helper()
	ev, err := event.Decode([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return delivery.NewTask(ev, []byte(raw), &delivery.Source{Topic: "afftok.clicks"}, "id:"+ev.ID, p.ID, p.Steps[0].Order, time.Now())
}

func newDispatcher(rt http.RoundTripper, hosts *Hosts) *Dispatcher {
	env := template.NewEnvSource([]string{"SECRET_TOKEN"}, "")
	return New(Options{Client: &http.Client{Transport: rt}, Hosts: hosts, Env: env})
}

// Every verdict of the state machine, from the receiver's answer and the
// pipeline's state (DESIGN.md §3a). Time is synctest's: delays are exact.
func TestStepDecisions(t *testing.T) {
	oneStep := `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"https://rcv.example/a","signing_key":"k1"}]}`
	twoSteps := `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"https://rcv.example/a"},{"order":2,"url":"https://rcv.example/b"}]}`
	fixed3 := `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"https://rcv.example/a","retry_policy":{"max_attempts":3,"backoff_type":"fixed","initial_delay_seconds":7,"max_delay_seconds":60}}]}`
	withFailover := `{"name":"p","trigger_type":"click","failover_url":"https://backup.example/f","steps":[{"order":1,"url":"https://rcv.example/a","retry_policy":{"max_attempts":1}}]}`
	ownFailover := `{"name":"p","trigger_type":"click","failover_url":"https://backup.example/f","failover_retry_policy":{"max_attempts":2,"backoff_type":"fixed","initial_delay_seconds":7},"steps":[{"order":1,"url":"https://rcv.example/a","retry_policy":{"max_attempts":1}}]}`
	goOn := `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"https://rcv.example/a","retry_policy":{"max_attempts":1}},{"order":2,"url":"https://rcv.example/b"}]}`
	stop := `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"https://rcv.example/a","stop_on_failure":true,"retry_policy":{"max_attempts":1}},{"order":2,"url":"https://rcv.example/b"}]}`
	badHost := `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"https://{{click.host}}/a"}]}`

	cases := []struct {
		name     string
		pipeline string
		status   string // pipeline status; "" active; "deleted": nil pipeline
		rt       roundTrip
		prepare  func(*delivery.Task)
		want     delivery.Verdict
		check    func(t *testing.T, d delivery.Decision, start time.Time)
	}{
		{name: "2xx on the last step is done", pipeline: oneStep, rt: answer(200, `{"ok":true}`), want: delivery.Done,
			check: func(t *testing.T, d delivery.Decision, _ time.Time) {
				if d.Status != delivery.ExecCompleted || d.Attempt == nil || d.Attempt.Status != delivery.AttemptSuccess || d.Attempt.HTTPStatus != 200 {
					t.Fatalf("%+v / %+v", d, d.Attempt)
				}
			}},
		{name: "2xx with steps left runs the next step in place", pipeline: twoSteps, rt: answer(204, ""), want: delivery.Next,
			check: func(t *testing.T, d delivery.Decision, _ time.Time) {
				if d.Task.StepOrder != 2 || d.Task.Attempt != 0 || d.Attempt.StepOrder != 1 {
					t.Fatalf("next task %+v", d.Task)
				}
			}},
		{name: "5xx with attempts left retries after the schedule's delay", pipeline: oneStep, rt: answer(503, "busy"), want: delivery.Retry,
			check: func(t *testing.T, d delivery.Decision, start time.Time) {
				if d.At.Sub(start) != 5*time.Second || d.Task.Attempt != 1 || d.Task.NotBefore != d.At || d.Error != "HTTP 503" || d.Attempt.Status != delivery.AttemptFailed {
					t.Fatalf("%+v", d)
				}
			}},
		{name: "every non-2xx is transient, as the spec says", pipeline: oneStep, rt: answer(404, ""), want: delivery.Retry},
		{name: "429 Retry-After is honoured up to max_delay", pipeline: fixed3, rt: answer(429, "", "Retry-After", "3600"), want: delivery.Retry,
			check: func(t *testing.T, d delivery.Decision, start time.Time) {
				if d.At.Sub(start) != time.Minute {
					t.Fatalf("retry at +%v, want the 60 s cap", d.At.Sub(start))
				}
			}},
		{name: "a later retry follows the policy", pipeline: fixed3, rt: answer(500, ""), prepare: func(t *delivery.Task) { t.Attempt = 1 }, want: delivery.Retry,
			check: func(t *testing.T, d delivery.Decision, start time.Time) {
				if d.At.Sub(start) != 7*time.Second || d.Task.Attempt != 2 || d.Attempt.Attempt != 1 {
					t.Fatalf("%+v", d)
				}
			}},
		{name: "connection refused is transient", pipeline: oneStep, rt: fail(&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}), want: delivery.Retry,
			check: func(t *testing.T, d delivery.Decision, _ time.Time) {
				if d.Error != "Connection refused" {
					t.Fatalf("error %q", d.Error)
				}
			}},
		{name: "a timeout is transient", pipeline: oneStep, rt: hang, want: delivery.Retry,
			check: func(t *testing.T, d delivery.Decision, _ time.Time) {
				if d.Error != "Connection timeout" || d.Attempt.LatencyMS != 30000 {
					t.Fatalf("%q after %d ms", d.Error, d.Attempt.LatencyMS)
				}
			}},
		{name: "a TLS failure is transient", pipeline: oneStep, rt: fail(&tls.CertificateVerificationError{Err: errors.New("x509: certificate signed by unknown authority")}), want: delivery.Retry,
			check: func(t *testing.T, d delivery.Decision, _ time.Time) {
				if !strings.HasPrefix(d.Error, "TLS error: ") {
					t.Fatalf("error %q", d.Error)
				}
			}},
		{name: "exhausted with a failover URL goes to the failover", pipeline: withFailover, rt: answer(500, ""), want: delivery.Failover,
			check: func(t *testing.T, d delivery.Decision, start time.Time) {
				if !d.Task.Failover || d.Task.Attempt != 0 || d.At != start {
					t.Fatalf("%+v", d.Task)
				}
			}},
		{name: "a failed failover attempt retries on the failover's policy", pipeline: withFailover, rt: answer(500, ""),
			prepare: func(t *delivery.Task) { t.Failover = true }, want: delivery.Retry,
			check: func(t *testing.T, d delivery.Decision, start time.Time) {
				if !d.Task.Failover || d.Task.Attempt != 1 || d.At.Sub(start) != 5*time.Second {
					t.Fatalf("%+v", d.Task)
				}
			}},
		{name: "the failover's last attempt is dead", pipeline: withFailover, rt: answer(502, ""),
			prepare: func(t *delivery.Task) { t.Failover, t.Attempt = true, 2 }, want: delivery.Dead,
			check: func(t *testing.T, d delivery.Decision, _ time.Time) {
				if d.Reason != delivery.ReasonExhausted || d.Attempts != 3 || d.Task.Failover || d.Task.Attempt != 0 || d.Status != delivery.ExecFailed {
					t.Fatalf("%+v", d)
				}
			}},
		{name: "a failover_retry_policy sets the failover's schedule", pipeline: ownFailover, rt: answer(500, ""),
			prepare: func(t *delivery.Task) { t.Failover = true }, want: delivery.Retry,
			check: func(t *testing.T, d delivery.Decision, start time.Time) {
				if !d.Task.Failover || d.Task.Attempt != 1 || d.At.Sub(start) != 7*time.Second {
					t.Fatalf("%+v", d.Task)
				}
			}},
		{name: "a failover_retry_policy sets the failover's attempts", pipeline: ownFailover, rt: answer(500, ""),
			prepare: func(t *delivery.Task) { t.Failover, t.Attempt = true, 1 }, want: delivery.Dead,
			check: func(t *testing.T, d delivery.Decision, _ time.Time) {
				if d.Reason != delivery.ReasonExhausted || d.Attempts != 2 || d.Status != delivery.ExecFailed {
					t.Fatalf("%+v", d)
				}
			}},
		{name: "exhausted without failover is dead", pipeline: oneStep, rt: answer(500, ""), prepare: func(t *delivery.Task) { t.Attempt = 5 }, want: delivery.Dead,
			check: func(t *testing.T, d delivery.Decision, _ time.Time) {
				if d.Reason != delivery.ReasonExhausted || d.Attempts != 6 || d.Continue != nil || d.Error != "HTTP 500" {
					t.Fatalf("%+v", d)
				}
			}},
		{name: "a dead step with stop_on_failure false goes on with the next", pipeline: goOn, rt: answer(500, ""), want: delivery.Dead,
			check: func(t *testing.T, d delivery.Decision, _ time.Time) {
				if d.Continue == nil || d.Continue.StepOrder != 2 || d.Continue.Dead != 1 || !d.Task.OnlyStep || d.Task.StepOrder != 1 {
					t.Fatalf("%+v / continue %+v", d, d.Continue)
				}
			}},
		{name: "a dead step with stop_on_failure true ends the execution", pipeline: stop, rt: answer(500, ""), want: delivery.Dead,
			check: func(t *testing.T, d delivery.Decision, _ time.Time) {
				if d.Continue != nil || d.Status != delivery.ExecFailed {
					t.Fatalf("%+v", d)
				}
			}},
		{name: "a render error is permanent: dead at once", pipeline: badHost, rt: answer(200, ""), want: delivery.Dead,
			check: func(t *testing.T, d delivery.Decision, _ time.Time) {
				if d.Reason != delivery.ReasonPermanent || !strings.HasPrefix(d.Error, "Render error:") || d.Attempts != 1 || d.Attempt.Status != delivery.AttemptFailed {
					t.Fatalf("%+v", d)
				}
			}},
		{name: "an address the guard blocks is permanent", pipeline: oneStep, rt: fail(&net.OpError{Op: "dial", Err: &blockedError{addr: "10.0.0.1"}}), want: delivery.Dead,
			check: func(t *testing.T, d delivery.Decision, _ time.Time) {
				if d.Reason != delivery.ReasonPermanent || !strings.HasPrefix(d.Error, "Blocked: 10.0.0.1") {
					t.Fatalf("%+v", d)
				}
			}},
		{name: "a paused pipeline defers without spending an attempt", pipeline: oneStep, status: pipeline.StatusPaused, rt: answer(200, ""), want: delivery.Defer,
			prepare: func(t *delivery.Task) { t.Attempt = 2 },
			check: func(t *testing.T, d delivery.Decision, start time.Time) {
				if d.Reason != delivery.ReasonPipelinePaused || d.Task.Attempt != 2 || d.Attempt != nil || d.At.Sub(start) != 30*time.Second || d.Task.DeferredSince != start {
					t.Fatalf("%+v", d)
				}
			}},
		{name: "a disabled pipeline dead-letters pending work", pipeline: oneStep, status: pipeline.StatusDisabled, rt: answer(200, ""), want: delivery.Dead,
			check: func(t *testing.T, d delivery.Decision, _ time.Time) {
				if d.Reason != delivery.ReasonPipelineDisabled || d.Attempt != nil {
					t.Fatalf("%+v", d)
				}
			}},
		{name: "a deleted pipeline cancels", pipeline: oneStep, status: "deleted", rt: answer(200, ""), want: delivery.Cancelled,
			check: func(t *testing.T, d delivery.Decision, _ time.Time) {
				if d.Status != delivery.ExecCancelled {
					t.Fatalf("%+v", d)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				p := compile(t, c.pipeline)
				task := newTask(t, p, testEvent)
				if c.prepare != nil {
					c.prepare(task)
				}
				if c.status != "" {
					p.Status = c.status
				}
				if c.status == "deleted" {
					p = nil
				}
				d := newDispatcher(c.rt, nil).Step(context.Background(), p, task)
				if d.Verdict != c.want {
					t.Fatalf("verdict %v, want %v (%+v)", d.Verdict, c.want, d)
				}
				if c.check != nil {
					c.check(t, d, start)
				}
			})
		})
	}
}

// Shutdown mid-attempt decides nothing: the delivery runs again.
func TestStepAbortsWhenCancelledMidAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := compile(t, `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"https://rcv.example/a"}]}`)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			time.Sleep(time.Second)
			cancel()
		}()
		d := newDispatcher(roundTrip(hang), &Hosts{Limit: 1, Failures: 1, Cooldown: time.Minute}).Step(ctx, p, newTask(t, p, testEvent))
		if d.Verdict != delivery.Abort {
			t.Fatalf("%+v", d)
		}
	})
}

// The breaker: failures open a host's circuit; work for it is deferred to the
// circuit's next probe time without spending an attempt; one probe is let
// through, and while it is out the rest wait until its deadline — not a
// fixed re-check. A task deferred past its policy's window is dead
// (circuit_open).
func TestStepDefersWhileTheCircuitIsOpenAndWaitsForTheProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var calls atomic.Int32
		release := make(chan struct{})
		rt := roundTrip(func(r *http.Request) (*http.Response, error) {
			if calls.Add(1) == 3 { // the probe hangs until released
				select {
				case <-release:
				case <-r.Context().Done():
					return nil, r.Context().Err()
				}
			}
			return answer(500, "")(r)
		})
		hosts := &Hosts{Limit: 10, Failures: 2, Cooldown: 20 * time.Second}
		d := newDispatcher(rt, hosts)
		p := compile(t, `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"https://rcv.example/a","timeout_seconds":10,
		  "retry_policy":{"max_attempts":4,"backoff_type":"fixed","initial_delay_seconds":30}}]}`)
		for range 2 {
			if v := d.Step(context.Background(), p, newTask(t, p, testEvent)).Verdict; v != delivery.Retry {
				t.Fatalf("verdict %v", v)
			}
		}
		// Open: deferred to the end of the cooldown, attempt not spent.
		task := newTask(t, p, testEvent)
		task.Attempt = 1
		dec := d.Step(context.Background(), p, task)
		if dec.Verdict != delivery.Defer || dec.Reason != delivery.ReasonCircuitOpen || dec.At.Sub(start) != 20*time.Second || dec.Task.Attempt != 1 || dec.Attempt != nil || calls.Load() != 2 {
			t.Fatalf("open circuit: %+v (calls %d)", dec, calls.Load())
		}
		time.Sleep(20 * time.Second)
		// Half-open: one probe goes (and hangs); the others wait for its deadline.
		probeDone := make(chan delivery.Decision)
		go func() { probeDone <- d.Step(context.Background(), p, newTask(t, p, testEvent)) }()
		synctest.Wait()
		other := d.Step(context.Background(), p, dec.Task)
		if other.Verdict != delivery.Defer || other.Reason != delivery.ReasonCircuitOpen || other.At.Sub(time.Now()) != 10*time.Second {
			t.Fatalf("while probing: %+v, at +%v", other, other.At.Sub(time.Now()))
		}
		close(release) // the probe fails: open again for the cooldown
		if pd := <-probeDone; pd.Verdict != delivery.Retry {
			t.Fatalf("probe: %+v", pd)
		}
		again := d.Step(context.Background(), p, other.Task)
		if again.Verdict != delivery.Defer || again.At.Sub(time.Now()) != 20*time.Second || again.Task.DeferredSince != dec.Task.DeferredSince {
			t.Fatalf("after a failed probe: %+v", again)
		}
	})
}

// A task deferred longer than its policy's window (at least two cooldowns)
// goes to the DLQ as circuit_open: no delivery waits forever.
func TestStepDeferredPastItsWindowIsDead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		var calls atomic.Int32
		rt := roundTrip(func(r *http.Request) (*http.Response, error) {
			if calls.Add(1) == 1 {
				return answer(500, "")(r)
			}
			return hang(r)
		})
		d := newDispatcher(rt, &Hosts{Limit: 10, Failures: 1, Cooldown: time.Minute})
		p := compile(t, `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"https://rcv.example/a","timeout_seconds":300,
		  "retry_policy":{"max_attempts":2,"backoff_type":"fixed","initial_delay_seconds":5}}]}`)
		if v := d.Step(context.Background(), p, newTask(t, p, testEvent)).Verdict; v != delivery.Retry {
			t.Fatalf("verdict %v", v)
		}
		dec := d.Step(context.Background(), p, newTask(t, p, testEvent))
		if dec.Verdict != delivery.Defer || dec.At.Sub(t0) != time.Minute || dec.Task.DeferredSince != t0 {
			t.Fatalf("%+v", dec)
		}
		time.Sleep(time.Minute)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go d.Step(ctx, p, newTask(t, p, testEvent)) // the probe: hangs for 300 s
		synctest.Wait()
		dec = d.Step(context.Background(), p, dec.Task)
		if dec.Verdict != delivery.Defer || dec.At.Sub(t0) != 2*time.Minute {
			t.Fatalf("deferral not clamped to the window (2 cooldowns): %+v at +%v", dec, dec.At.Sub(t0))
		}
		time.Sleep(time.Minute)
		dec = d.Step(context.Background(), p, dec.Task)
		if dec.Verdict != delivery.Dead || dec.Reason != delivery.ReasonCircuitOpen || dec.Attempts != 0 || dec.Attempt != nil || !strings.Contains(dec.Error, "deferred for 2m0s") {
			t.Fatalf("%+v", dec)
		}
		cancel()
	})
}

// The deferral window counts every deferral of a step, across the probe
// attempts in between: being picked as a probe does not start it again.
func TestStepDeferralWindowSurvivesProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		hosts := &Hosts{Limit: 10, Failures: 1, Cooldown: time.Minute}
		d := newDispatcher(answer(500, ""), hosts)
		p := compile(t, `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"https://rcv.example/a",
		  "retry_policy":{"max_attempts":20,"backoff_type":"fixed","initial_delay_seconds":1}}]}`)
		tk := d.Step(context.Background(), p, newTask(t, p, testEvent)).Task // fails: the circuit opens
		for range 10 {
			time.Sleep(tk.NotBefore.Sub(time.Now()))
			dec := d.Step(context.Background(), p, tk)
			if dec.Verdict == delivery.Dead {
				if dec.Reason != delivery.ReasonCircuitOpen || time.Since(t0) > 3*time.Minute {
					t.Fatalf("%+v after %v", dec, time.Since(t0))
				}
				return
			}
			tk = dec.Task // deferred, or retried after being the probe
		}
		t.Fatalf("still pending after %v (deferred %v)", time.Since(t0), tk.Deferred(time.Now()))
	})
}

// The per-host limit counts requests; a delivery to a host at its limit that
// answers nothing is deferred at once to the earliest moment a place frees up,
// and a host that keeps answering makes a delivery wait briefly instead.
func TestStepDefersForASaturatedHost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		hosts := &Hosts{Limit: 2}
		slow := newDispatcher(roundTrip(hang), hosts)
		p := compile(t, `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"https://stuck.example/a","timeout_seconds":30}]}`)
		ctx, cancel := context.WithCancel(context.Background())
		defer synctest.Wait()
		defer cancel()
		for range 2 {
			go slow.Step(ctx, p, newTask(t, p, testEvent))
		}
		synctest.Wait()
		if n := hosts.InFlight("stuck.example:443"); n != 2 {
			t.Fatalf("%d in flight", n)
		}
		// Full, nothing finished while it waited (250 ms): stalled. The
		// third is deferred for as long again as the host has been quiet
		// (+500 ms), not for a whole timeout: a host that only looked
		// stalled (a busy machine) is not put off for 30 s.
		d := slow.Step(context.Background(), p, newTask(t, p, testEvent))
		if d.Verdict != delivery.Defer || d.Reason != delivery.ReasonHostSaturated || d.At.Sub(start) != 500*time.Millisecond || d.Attempt != nil {
			t.Fatalf("%+v at +%v", d, d.At.Sub(start))
		}
		// Now stalled: the next is deferred without waiting at all.
		before := time.Now()
		d = slow.Step(context.Background(), p, newTask(t, p, testEvent))
		if d.Verdict != delivery.Defer || time.Since(before) != 0 {
			t.Fatalf("%+v after %v", d, time.Since(before))
		}
		// While it stays quiet the deferrals grow with the quiet (here the
		// host's pace, its oldest request's age over the limit, is longer
		// still), to about the oldest request's deadline (+30 s).
		time.Sleep(20 * time.Second) // synctest: fake clock
		d = slow.Step(context.Background(), p, newTask(t, p, testEvent))
		if at := d.At.Sub(start); d.Verdict != delivery.Defer || at < 30*time.Second || at > 31*time.Second {
			t.Fatalf("quiet for 20 s: %+v at +%v, want about the first deadline (+30 s)", d, at)
		}
		// Another host is not affected.
		fast := newDispatcher(answer(200, ""), hosts)
		q := compile(t, `{"name":"q","trigger_type":"click","steps":[{"order":1,"url":"https://healthy.example/a"}]}`)
		if v := fast.Step(context.Background(), q, newTask(t, q, testEvent)).Verdict; v != delivery.Done {
			t.Fatalf("healthy host: %v", v)
		}
	})
}

// busyHost sends n deliveries at once to a host taking 2 requests at a time,
// each answered after 200 ms (in a synctest bubble), and fails the test
// unless every one is delivered without a deferral. It returns how many
// requests were in flight at once and when the last delivery finished.
func busyHost(t *testing.T, n int) (most int32, took time.Duration) {
	hosts := &Hosts{Limit: 2}
	var inflight, peak atomic.Int32
	rt := roundTrip(func(r *http.Request) (*http.Response, error) {
		n := inflight.Add(1)
		for m := peak.Load(); n > m && !peak.CompareAndSwap(m, n); m = peak.Load() {
		}
		time.Sleep(200 * time.Millisecond)
		inflight.Add(-1)
		return answer(200, "")(r)
	})
	d := newDispatcher(rt, hosts)
	p := compile(t, `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"https://busy.example/a"}]}`)
	start := time.Now()
	results := make(chan delivery.Verdict, n)
	for range n {
		go func() { results <- d.Step(context.Background(), p, newTask(t, p, testEvent)).Verdict }()
	}
	var got []delivery.Verdict
	for range n {
		got = append(got, <-results)
	}
	for _, v := range got {
		if v != delivery.Done {
			t.Fatalf("verdicts %v", got)
		}
	}
	return peak.Load(), time.Since(start)
}

func TestBusyHostThatAnswersMakesADeliveryWaitNotDefer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		if most, _ := busyHost(t, 4); most != 2 { // two go, two queue (at most Limit wait)
			t.Fatalf("%d requests in flight at once, limit 2", most)
		}
	})
}

// A queue of several rounds of the limit at a host that keeps answering, its
// latency (longer than QueueWait) not yet known when the queue formed, waits
// for the host in place: none of it is deferred to the retry path.
func TestBusyHostQueueOfSeveralRoundsWaitsAsItsLatencyIsLearnt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Two go, six queue: the last gets a place after 600 ms.
		if most, took := busyHost(t, 8); most != 2 || took != 800*time.Millisecond {
			t.Fatalf("%d requests in flight at once (limit 2), all done after %v", most, took)
		}
	})
}

// Secrets never leave a delivery: an env value in the URL's host name shows
// as [redacted] in the error, the logged URL and the body.
func TestSecretsAreRedactedAtTheSource(t *testing.T) {
	t.Setenv("SECRET_TOKEN", "crmSECRETkey777")
	p := compile(t, `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"https://{{env.SECRET_TOKEN}}.invalid/x?k={{env.SECRET_TOKEN}}",
	  "headers":{"X-K":"{{env.SECRET_TOKEN}}"},"body_template":{"k":"{{env.SECRET_TOKEN}}"},"signing_key":"signKEY-0123"}]}`)
	rt := fail(&net.DNSError{Err: "no such host", Name: "crmsecretkey777.invalid", IsNotFound: true})
	d := newDispatcher(rt, nil).Step(context.Background(), p, newTask(t, p, testEvent))
	for _, s := range []string{d.Error, d.Attempt.Error, d.Attempt.RequestURL, d.Attempt.RequestBody, d.Task.LastError} {
		if strings.Contains(strings.ToLower(s), "secretkey777") || strings.Contains(s, "signKEY") {
			t.Fatalf("secret in %q", s)
		}
	}
	if d.Error != "DNS error: no such host ([redacted].invalid)" || !strings.Contains(d.Attempt.RequestURL, "[redacted]") {
		t.Fatalf("error %q url %q", d.Error, d.Attempt.RequestURL)
	}
	// An echo of the secret in the response is redacted too.
	echo := roundTrip(func(r *http.Request) (*http.Response, error) {
		return answer(500, "you sent "+r.Header.Get("X-K"), "X-Echo", r.Header.Get("X-K"))(r)
	})
	d = newDispatcher(echo, nil).Step(context.Background(), p, newTask(t, p, testEvent))
	if strings.Contains(d.Attempt.ResponseBody, "crmSECRETkey777") || d.Attempt.ResponseBody != "you sent [redacted]" {
		t.Fatalf("response body %q", d.Attempt.ResponseBody)
	}
}

func TestSecretsRedactEveryForm(t *testing.T) {
	nested := &Secrets{}
	nested.Add("abcdefghij")
	nested.Add("XXXXabcdefghij YYYY")
	if got := nested.Redact("(XXXXabcdefghij YYYY)"); got != "([redacted])" {
		t.Errorf("a secret containing another: %q", got)
	}
	s := &Secrets{}
	s.Add("a b/c\"d")
	s.Add("abc") // too short to be a secret
	s.Add("Zq+/9=&x<y>")
	for in, want := range map[string]string{
		`{"s":"Zq+/9=&x<y>"}`:                  `{"s":"[redacted]"}`,
		`{"s":"Zq+/9=\u0026x\u003cy\u003e"}`:   `{"s":"[redacted]"}`,
		`{"u":"/p?k=Zq%2B%2F9%3D%26x%3Cy%3E"}`: `{"u":"/p?k=[redacted]"}`,
		`"Zq+%2F9=\u0026x%3Cy%3E"`:             `"[redacted]"`,
		`x a b/c"d y`:                          "x [redacted] y",
		`q=a+b%2Fc%22d`:                        "q=[redacted]",
		`/a%20b%2Fc%22d/`:                      "/[redacted]/",
		`{"k":"a b/c\"d"}`:                     `{"k":"[redacted]"}`,
		`A B/C"D and abc`:                      "[redacted] and abc",
		`nothing secret`:                       "nothing secret",
	} {
		if got := s.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// Whatever the secrets and the text, no form of a secret survives Redact.
func FuzzRedact(f *testing.F) {
	f.Add("crmSECRETkey777", "", "https://crmsecretkey777.invalid/x?k=crmSECRETkey777")
	f.Add("a b/c\"d", "", `{"k":"a b/c\"d"} q=a+b%2Fc%22d`)
	f.Add("abcdefghij", "XXXXabcdefghij YYYY", "(XXXXabcdefghij YYYY) abcdefghij")
	f.Add("ab", "", "ab ab")
	f.Fuzz(func(t *testing.T, secret, other, text string) {
		s := &Secrets{}
		s.Add(secret)
		s.Add(other)
		out := s.Redact(text)
		if len(secret) < minSecretLen && len(other) < minSecretLen {
			if out != text {
				t.Fatalf("a short value was redacted: %q → %q", text, out)
			}
			return
		}
		for _, f := range s.forms {
			if strings.Contains(asciiLower(out), f) && !strings.Contains(asciiLower(Redacted), f) {
				t.Fatalf("%q survives in %q (from %q)", f, out, text)
			}
		}
	})
}

// The per-host limit counts requests, not connections: over HTTP/2, where
// every request shares one connection, a host still gets at most Limit at
// once, and the rest are deferred.
func TestHostLimitCountsHTTP2Requests(t *testing.T) {
	release := make(chan struct{})
	var inflight, most atomic.Int32
	conns := map[string]bool{}
	var mu sync.Mutex
	arrived := make(chan struct{}, 5)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			t.Errorf("HTTP/%d", r.ProtoMajor)
		}
		mu.Lock()
		conns[r.RemoteAddr] = true
		mu.Unlock()
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		arrived <- struct{}{}
		<-release
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	hosts := &Hosts{Limit: 2, QueueWait: 100 * time.Millisecond}
	d := New(Options{Client: srv.Client(), Hosts: hosts})
	p := compile(t, `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"`+srv.URL+`/x"}]}`)
	verdicts := make(chan delivery.Verdict, 5)
	for range 5 {
		go func() { verdicts <- d.Step(context.Background(), p, newTask(t, p, testEvent)).Verdict }()
	}
	next := func() delivery.Verdict {
		select {
		case v := <-verdicts:
			return v
		case <-time.After(30 * time.Second): // more than two out at once hold the rest
			t.Fatalf("no verdict in 30 s: %d requests out at once", inflight.Load())
			return 0
		}
	}
	for range 3 { // three cannot go: they are deferred while two are out
		if v := next(); v != delivery.Defer {
			t.Fatalf("verdict %v", v)
		}
	}
	// The two that hold the places reach the receiver (on a busy machine
	// the second may still be setting up its stream when the others have
	// been deferred).
	for i := range 2 {
		select {
		case <-arrived:
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of the 2 requests holding places reached the receiver in 30 s", i)
		}
	}
	close(release)
	for range 2 {
		if v := next(); v != delivery.Done {
			t.Fatalf("verdict %v", v)
		}
	}
	if most.Load() != 2 || len(conns) != 1 {
		t.Fatalf("%d requests at once over %d connections", most.Load(), len(conns))
	}
}

// Many requests acquiring and releasing places at one host, with failures
// opening and closing its circuit: never more than Limit in flight, no
// deadlock, every permit released (run with -race).
func TestHostsUnderConcurrency(t *testing.T) {
	hosts := &Hosts{Limit: 4, Failures: 3, Cooldown: time.Millisecond, QueueWait: time.Millisecond}
	var inflight, most atomic.Int32
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				p, d, err := hosts.Acquire(context.Background(), "h:443", time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				if d != nil {
					if d.Until.IsZero() || (d.Reason != delivery.ReasonCircuitOpen && d.Reason != delivery.ReasonHostSaturated) {
						t.Errorf("deferral %+v", d)
					}
					continue
				}
				n := inflight.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				if (g+i)%7 == 0 {
					time.Sleep(50 * time.Microsecond)
				}
				inflight.Add(-1)
				p.Done([]Outcome{Healthy, Unhealthy, Neutral}[(g*i)%3])
			}
		}()
	}
	wg.Wait()
	if most.Load() > 4 || hosts.InFlight("h:443") != 0 {
		t.Fatalf("%d in flight at once (limit 4); %d left", most.Load(), hosts.InFlight("h:443"))
	}
}

// A delivery whose pipeline this replica has not seen yet waits for the
// registry to catch up, then is cancelled if it never does.
func TestUnknownPipelineWaitsThenCancels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := compile(t, `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"https://rcv.example/a"}]}`)
		d := newDispatcher(answer(200, ""), nil)
		tk := newTask(t, p, testEvent)
		start := time.Now()
		for {
			dec := d.Unknown(tk)
			if dec.Verdict == delivery.Cancelled {
				if time.Since(start) < UnknownWindow {
					t.Fatalf("cancelled after %v", time.Since(start))
				}
				return
			}
			if dec.Verdict != delivery.Defer || dec.Reason != delivery.ReasonPipelineUnknown || dec.At.Sub(time.Now()) != time.Second {
				t.Fatalf("%+v", dec)
			}
			tk = dec.Task
			time.Sleep(time.Second)
		}
	})
}

// TestFilterReadsWhatTemplatesRender: the values a pipeline filter reads
// (filter.Vars) are the ones this package renders, path for path.
func TestFilterReadsWhatTemplatesRender(t *testing.T) {
	raw := `{"id":"evt_9","trigger_type":"conversion","trigger_id":"conv_9","timestamp":"2024-12-01T12:00:00Z","type":"conversion.created",
	  "data":{"conversion":{"id":"conv_9","amount":12.5,"tags":["x"]},"click":{"country":"CA"},"offer":{"id":"off_1"}}}`
	ev, err := event.Decode([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	p := compile(t, `{"name":"p","trigger_type":"conversion","steps":[{"order":1,"url":"https://rcv.example/a"}]}`)
	d := newDispatcher(answer(200, ""), nil)
	scope := d.Scope(p, newTask(t, p, raw), ev, 0, time.Now())
	fv := filter.Vars(ev)
	for _, path := range []string{"trigger_type", "trigger_id", "event_id", "event_type", "event_timestamp", "conversion.amount", "conversion.tags.0", "click.country", "offer", "data.conversion.id", "fraud.id"} {
		segs := strings.Split(path, ".")
		a, okA := scope.Lookup(segs)
		b, okB := fv.Lookup(segs)
		if okA != okB || template.Stringify(a) != template.Stringify(b) {
			t.Errorf("%s: templates see %v (%v), filters %v (%v)", path, a, okA, b, okB)
		}
	}
}

// A slow host that keeps answering gets only QueueWait's worth of its pace
// waiting in place (here 1 s requests, 8 at a time: a place every 125 ms,
// so two waiters); the rest is deferred at once and leaves the delivery
// slots healthy pipelines share. The admitted waiters still get their place
// as the host answers.
func TestSlowHostQueueInPlaceIsBoundedByQueueWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &Hosts{Limit: 8}
		ctx := context.Background()
		fill := func() []*Permit {
			var ps []*Permit
			for range 8 {
				p, def, err := h.Acquire(ctx, "slow.example", 30*time.Second)
				if p == nil || def != nil || err != nil {
					t.Fatalf("a free place: %v %v %v", p, def, err)
				}
				ps = append(ps, p)
			}
			return ps
		}
		first := fill()
		time.Sleep(time.Second) // the host's requests take 1 s
		for _, p := range first {
			p.Done(Healthy)
		}
		inFlight := fill()
		type result struct {
			p   *Permit
			def *Deferral
		}
		results := make(chan result, 10)
		for range 10 {
			go func() {
				p, def, _ := h.Acquire(ctx, "slow.example", 30*time.Second)
				results <- result{p, def}
			}()
		}
		synctest.Wait()
		deferred := 0
		for len(results) > 0 {
			if r := <-results; r.def != nil {
				deferred++
			} else {
				t.Fatalf("granted while the host was full: %+v", r)
			}
		}
		if deferred != 8 {
			t.Fatalf("%d of 10 deferred at once, want 8 (two wait in place)", deferred)
		}
		time.Sleep(100 * time.Millisecond)
		inFlight[0].Done(Healthy)
		inFlight[1].Done(Healthy)
		for range 2 {
			if r := <-results; r.p == nil {
				t.Fatalf("a waiter was not granted a freed place: %+v", r.def)
			}
		}
	})
}
