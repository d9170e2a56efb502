package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/dispatcher"
	"github.com/afftok/webhookd/pipeline"
)

// The test endpoints call out through the same SSRF guard as deliveries: with
// the production guard, a loopback target is refused after resolution.
func TestTestStepIsGuardedAgainstSSRF(t *testing.T) {
	hit := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hit = true }))
	defer srv.Close()
	s := New(Options{Token: testToken, Tester: dispatcher.New(dispatcher.Options{Client: dispatcher.NewHTTPClient(dispatcher.Guard{}, 4)})})
	for _, target := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1), "http://169.254.169.254/latest/meta-data/"} {
		_, b := serve(t, s, "POST", "/api/admin/webhooks/test/step", `{"url":"`+target+`/x","timeout_seconds":2}`)
		var out struct {
			Data struct {
				Status string
				Steps  []struct{ Error string }
			}
		}
		_ = json.Unmarshal(b, &out)
		if out.Data.Status != "failed" || len(out.Data.Steps) != 1 || !strings.HasPrefix(out.Data.Steps[0].Error, "Blocked:") {
			t.Fatalf("%s: %s", target, b)
		}
	}
	if hit {
		t.Fatal("a guarded test call reached the loopback server")
	}
}

// With the production guard as the target policy, a URL whose host can
// only ever reach a blocked address is refused when saved or tested: 400
// validation_failed naming each field. Names are left to call time.
func TestBlockedTargetsAreRefusedWhenSaved(t *testing.T) {
	p := &pipeline.Pipeline{ID: "p1", Name: "n", TriggerType: "click", Revision: 1, Steps: []pipeline.Step{{Order: 1, URL: "https://x.io"}}}
	p.Normalize()
	cp, err := pipeline.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	server := func(g dispatcher.Guard) *Server {
		return New(Options{Token: "tok-0123456789abcdef", Registry: onePipeline{p: cp}, Tester: unusedTester{}, Targets: g})
	}
	const guardMsg = "points to a loopback address the outbound guard blocks"
	for _, c := range []struct {
		name, method, path, body string
		fields                   []string // refused fields; none: accepted
	}{
		{"create", "POST", "/api/admin/webhooks/pipelines",
			`{"name":"n","trigger_type":"click","failover_url":"http://0x7f.1/fo","steps":[{"order":1,"url":"http://[::ffff:127.0.0.1]:8080/x"},{"order":2,"url":"https://hooks.example.com/x"}]}`,
			[]string{"failover_url", "steps[0].url"}},
		{"update", "PUT", "/api/admin/webhooks/pipelines/p1", `{"steps":[{"order":1,"url":"http://localhost:9/x"}]}`, []string{"steps[0].url"}},
		{"test step", "POST", "/api/admin/webhooks/test/step", `{"url":"http://[::127.0.0.1]/x"}`, []string{"url"}},
		{"public name", "POST", "/api/admin/webhooks/test/step", `{"url":"https://hooks.example.com/x"}`, nil},
		{"templated host", "POST", "/api/admin/webhooks/test/step", `{"url":"http://{{conversion.host}}/x"}`, nil},
	} {
		for _, g := range []dispatcher.Guard{{}, {AllowPrivate: true}} {
			status, e := send(t, server(g), c.method, c.path, c.body)
			want := c.fields
			if g.AllowPrivate {
				want = nil // dev and tests: nothing refused for its address
			}
			var got []string
			for _, d := range e.Details {
				if strings.HasPrefix(d.Message, guardMsg) {
					got = append(got, d.Field)
				}
			}
			if strings.Join(got, ",") != strings.Join(want, ",") || want != nil && (status != 400 || e.Code != "validation_failed") || want == nil && status == 400 {
				t.Errorf("%s (private allowed %v): %d %+v, want refused %v", c.name, g.AllowPrivate, status, e, want)
			}
		}
	}
}

// countingTester answers every trial completed and counts them.
type countingTester struct{ calls *int }

func (c countingTester) Trial(context.Context, *pipeline.Compiled, *delivery.Task) (string, []dispatcher.Trace) {
	*c.calls++
	return "completed", []dispatcher.Trace{}
}

// A pipeline test with test_data its filter rejects makes no call and says
// so (status filtered, filtered true); data it accepts is tested as before.
func TestTestPipelineSaysWhenTheFilterRejectsTheSample(t *testing.T) {
	p := &pipeline.Pipeline{ID: "p1", Name: "n", TriggerType: "conversion", Revision: 1, Steps: []pipeline.Step{{Order: 1, URL: "https://x.io"}},
		Filter: []byte(`{"conversion.amount": {"$gte": 10}}`)}
	p.Normalize()
	cp, err := pipeline.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	s := New(Options{Token: testToken, Registry: onePipeline{p: cp}, Tester: countingTester{&calls}})
	for _, c := range []struct {
		data     string
		status   string
		filtered bool
		calls    int
	}{
		{`{"conversion":{"amount":5}}`, "filtered", true, 0},
		{`{"conversion":{"amount":"50"}}`, "filtered", true, 0}, // a string is not a number
		{`{"conversion":{"amount":50}}`, "completed", false, 1},
	} {
		code, b := serve(t, s, "POST", "/api/admin/webhooks/test/pipeline/p1", `{"test_data":`+c.data+`}`)
		var out struct{ Data map[string]any }
		if err := json.Unmarshal(b, &out); err != nil || code != 200 {
			t.Fatalf("%s: %d %s", c.data, code, b)
		}
		if out.Data["status"] != c.status || out.Data["filtered"] != c.filtered || calls != c.calls {
			t.Fatalf("%s: %s after %d calls", c.data, b, calls)
		}
	}
}
