package admin

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/afftok/webhookd/pipeline"
)

// rate_limit_per_second is validated when saved (a number > 0, at most
// 100000, with its field path), shown in the answer, kept by updates that
// do not name it and removed by an update's 0.
func TestRateLimitPerSecondIsValidatedAndShown(t *testing.T) {
	const pipelines = "/api/admin/webhooks/pipelines"
	body := func(v string) string {
		return `{"name":"n","trigger_type":"click","rate_limit_per_second":` + v + `,"steps":[{"order":1,"url":"https://x.io"}]}`
	}
	s := decodeTestServer(t)
	msg := "must be a number greater than 0 and at most 100000 (attempts per second; omit it for no limit)"
	for _, bad := range []string{"0", "-1", "100000.5", "1e9"} {
		status, e := send(t, s, "POST", pipelines, body(bad))
		want := []pipeline.FieldError{{Field: "rate_limit_per_second", Message: msg}}
		if status != 400 || e.Code != "validation_failed" || !reflect.DeepEqual(e.Details, want) {
			t.Errorf("%s: %d %s %+v", bad, status, e.Code, e.Details)
		}
	}
	status, e := send(t, s, "POST", pipelines, body(`"20"`))
	if status != 400 || len(e.Details) != 1 || e.Details[0] != (pipeline.FieldError{Field: "rate_limit_per_second", Message: "must be a number"}) {
		t.Errorf("a string: %d %+v", status, e.Details)
	}
	limitOf := func(b []byte) any {
		var out struct{ Data map[string]any }
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return out.Data["rate_limit_per_second"]
	}
	for _, good := range []string{"0.5", "20", "100000"} {
		code, b := serve(t, s, "POST", pipelines, body(good))
		var want float64
		_ = json.Unmarshal([]byte(good), &want)
		if code != 201 || limitOf(b) != want {
			t.Errorf("%s: %d %s", good, code, b)
		}
	}
	// Without one there is no limit, and none is shown.
	if code, b := serve(t, s, "POST", pipelines, `{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io"}]}`); code != 201 || limitOf(b) != nil {
		t.Errorf("no limit: %d %s", code, b)
	}
	// An update sets, keeps (other fields changed) and removes (0) it.
	if code, b := serve(t, s, "PUT", pipelines+"/p1", `{"rate_limit_per_second":7.5}`); code != 200 || limitOf(b) != 7.5 {
		t.Errorf("set: %d %s", code, b)
	}
	limited := decodeTestServerWith(t, 7.5)
	if code, b := serve(t, limited, "PUT", pipelines+"/p1", `{"name":"renamed"}`); code != 200 || limitOf(b) != 7.5 {
		t.Errorf("kept: %d %s", code, b)
	}
	if code, b := serve(t, limited, "PUT", pipelines+"/p1", `{"rate_limit_per_second":0}`); code != 200 || limitOf(b) != nil {
		t.Errorf("removed: %d %s", code, b)
	}
	if code, b := serve(t, limited, "GET", pipelines+"/p1", ""); code != 200 || limitOf(b) != 7.5 {
		t.Errorf("GET: %d %s", code, b)
	}
	if status, e := send(t, limited, "PUT", pipelines+"/p1", `{"rate_limit_per_second":-3}`); status != 400 || e.Details[0].Field != "rate_limit_per_second" {
		t.Errorf("update to -3: %d %+v", status, e.Details)
	}
}

// decodeTestServerWith is decodeTestServer whose pipeline p1 has a rate limit.
func decodeTestServerWith(t *testing.T, limit float64) *Server {
	t.Helper()
	p := &pipeline.Pipeline{ID: "p1", Name: "n", TriggerType: "click", Revision: 1, Steps: []pipeline.Step{{Order: 1, URL: "https://x.io"}}, RateLimitPerSecond: &limit}
	p.Normalize()
	cp, err := pipeline.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return New(Options{Token: testToken, Registry: onePipeline{p: cp},
		DLQ: unusedDLQ{}, Redriver: unusedRedriver{}, Tester: unusedTester{}})
}
