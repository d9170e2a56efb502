package dispatcher

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/pipeline"
)

// chainBody reads step 1's result every way the template variables expose it.
const chainBody = `{"s":"{{steps.1.status}}","rs":"{{steps.Auth.response.status}}","e":"{{steps.1.response.body.error}}","h":"{{steps.1.response.headers.x-req}}"}`

// A dead step whose pipeline goes on (stop_on_failure false) is chained
// like a successful one (issue 8): the next step sees its status, body and
// headers — those of its last attempt, the failover's if it had one — and
// status 0 when that attempt got no HTTP response. The result travels in
// the task: step 2 runs here from the task as a retry tier would read it.
func TestDeadStepResultIsChainedToTheNextStep(t *testing.T) {
	twoSteps := `{"name":"p","trigger_type":"click","steps":[
	  {"order":1,"name":"Auth","url":"https://rcv.example/a","retry_policy":{"max_attempts":1}},
	  {"order":2,"url":"https://rcv.example/b","body_template":` + chainBody + `}]}`
	withFailover := `{"name":"p","trigger_type":"click","failover_url":"https://backup.example/f","steps":[
	  {"order":1,"name":"Auth","url":"https://rcv.example/a","retry_policy":{"max_attempts":1}},
	  {"order":2,"url":"https://rcv.example/b","body_template":` + chainBody + `}]}`
	cases := []struct {
		name     string
		pipeline string
		status   string // pipeline status while step 1 dies; "" active
		step1    roundTrip
		prepare  func(*delivery.Task)
		want     string // step 2's body
	}{
		{name: "a 500 answer is chained like a 2xx", pipeline: twoSteps, step1: answer(500, `{"error":"boom"}`, "X-Req", "r1"),
			want: `{"s":500,"rs":500,"e":"boom","h":"r1"}`},
		{name: "a 404 answer is chained", pipeline: twoSteps, step1: answer(404, `{"error":"no such user"}`),
			want: `{"s":404,"rs":404,"e":"no such user","h":null}`},
		{name: "a refused connection is chained as status 0", pipeline: twoSteps, step1: fail(&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}),
			want: `{"s":0,"rs":0,"e":null,"h":null}`},
		{name: "a timeout is chained as status 0", pipeline: twoSteps, step1: hang,
			want: `{"s":0,"rs":0,"e":null,"h":null}`},
		{name: "a blocked address is chained as status 0", pipeline: twoSteps, step1: fail(&net.OpError{Op: "dial", Err: &blockedError{addr: "10.0.0.1"}}),
			want: `{"s":0,"rs":0,"e":null,"h":null}`},
		{name: "a dead failover's last answer is the step's", pipeline: withFailover, step1: answer(503, `{"error":"backup down"}`),
			prepare: func(t *delivery.Task) { t.Failover, t.Attempt = true, 2 },
			want:    `{"s":503,"rs":503,"e":"backup down","h":null}`},
		{name: "a step dead without an attempt keeps its last attempt's status", pipeline: twoSteps, status: pipeline.StatusDisabled,
			step1:   answer(200, ""),
			prepare: func(t *delivery.Task) { t.Attempt, t.LastHTTPStatus, t.LastError = 1, 502, "HTTP 502" },
			want:    `{"s":502,"rs":502,"e":null,"h":null}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				got := make(chan string, 1)
				rt := roundTrip(func(r *http.Request) (*http.Response, error) {
					if r.URL.Path == "/b" {
						b, _ := io.ReadAll(r.Body)
						got <- string(b)
						return answer(200, "")(r)
					}
					return c.step1(r)
				})
				d := newDispatcher(rt, nil)
				p := compile(t, c.pipeline)
				task := newTask(t, p, testEvent)
				if c.prepare != nil {
					c.prepare(task)
				}
				p.Status = c.status
				dec := d.Step(context.Background(), p, task)
				if dec.Verdict != delivery.Dead || dec.Continue == nil || dec.Continue.StepOrder != 2 {
					t.Fatalf("step 1: %+v", dec)
				}
				// Step 2 runs from the task as Kafka carries it (a retry
				// tier, another replica).
				next, err := delivery.DecodeTask(dec.Continue.Record("webhooks.retry.5s").Value)
				if err != nil {
					t.Fatal(err)
				}
				p.Status = pipeline.StatusActive
				if dec := d.Step(context.Background(), p, next); dec.Verdict != delivery.Done {
					t.Fatalf("step 2: %+v", dec)
				}
				if body := <-got; body != c.want {
					t.Fatalf("step 2 body %s, want %s", body, c.want)
				}
			})
		})
	}
}

// A dead step's result is bounded like a successful one's: a huge error
// page does not make the task too large for Kafka.
func TestDeadStepResultIsBounded(t *testing.T) {
	p := compile(t, `{"name":"p","trigger_type":"click","steps":[
	  {"order":1,"url":"https://rcv.example/a","retry_policy":{"max_attempts":1}},
	  {"order":2,"url":"https://rcv.example/b","body_template":{"s":"{{steps.1.status}}"}}]}`)
	huge := `{"error":"` + strings.Repeat("x", 60<<10) + `"}`
	dec := newDispatcher(answer(500, huge), nil).Step(context.Background(), p, newTask(t, p, testEvent))
	if dec.Continue == nil {
		t.Fatalf("%+v", dec)
	}
	b, _ := json.Marshal(dec.Continue.Steps)
	if limit := delivery.MaxTaskStepsBytes / len(p.Steps); len(b) > limit {
		t.Fatalf("step results are %d bytes, more than the %d a step may carry", len(b), limit)
	}
	if r := dec.Continue.Steps["1"].(map[string]any); r["status"] != json.Number("500") {
		t.Fatalf("result %v", r["status"])
	}
}

// Without {{steps.…}} in its templates a pipeline carries no step results,
// dead or not.
func TestDeadStepResultIsKeptOnlyWhenTemplatesUseIt(t *testing.T) {
	p := compile(t, `{"name":"p","trigger_type":"click","steps":[
	  {"order":1,"url":"https://rcv.example/a","retry_policy":{"max_attempts":1}},{"order":2,"url":"https://rcv.example/b"}]}`)
	dec := newDispatcher(answer(500, "x"), nil).Step(context.Background(), p, newTask(t, p, testEvent))
	if dec.Continue == nil || dec.Continue.Steps != nil {
		t.Fatalf("%+v", dec.Continue)
	}
}

// The test endpoint chains a failed step the same way.
func TestTrialChainsAFailedStep(t *testing.T) {
	p := compile(t, `{"name":"p","trigger_type":"click","steps":[
	  {"order":1,"name":"Auth","url":"https://rcv.example/a"},
	  {"order":2,"url":"https://rcv.example/b","body_template":`+chainBody+`}]}`)
	rt := roundTrip(func(r *http.Request) (*http.Response, error) {
		if r.URL.Path == "/a" {
			return answer(500, `{"error":"boom"}`, "X-Req", "r1")(r)
		}
		return answer(200, "")(r)
	})
	status, traces := newDispatcher(rt, nil).Trial(context.Background(), p, newTask(t, p, testEvent))
	if status != delivery.ExecFailed || len(traces) != 2 {
		t.Fatalf("%s %+v", status, traces)
	}
	if got := string(traces[1].Request.Body); got != `{"s":500,"rs":500,"e":"boom","h":"r1"}` {
		t.Fatalf("step 2 body %s", got)
	}
}
