package admin

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/dispatcher"
	"github.com/afftok/webhookd/pipeline"
)

// onePipeline holds the pipeline p1; everything else is emptyRegistry's.
type onePipeline struct {
	emptyRegistry
	p *pipeline.Compiled
}

func (r onePipeline) Get(id string) (*pipeline.Compiled, bool) { return r.p, id == r.p.ID }

// Bodies these tests send never get past decoding, so the DLQ, the
// redriver and the tester are never called (a nil embedded interface would
// panic into a 500 if they were).
type (
	unusedDLQ      struct{ DLQ }
	unusedRedriver struct{ Redriver }
	unusedTester   struct{}
)

func (unusedTester) Trial(context.Context, *pipeline.Compiled, *delivery.Task) (string, []dispatcher.Trace) {
	return "unexpected", nil
}

type apiErr struct {
	Code    string                `json:"code"`
	Message string                `json:"message"`
	Details []pipeline.FieldError `json:"details"`
}

func decodeTestServer(t *testing.T) *Server {
	t.Helper()
	p := &pipeline.Pipeline{ID: "p1", Name: "n", TriggerType: "click", Revision: 1, Steps: []pipeline.Step{{Order: 1, URL: "https://x.io"}}}
	p.Normalize()
	cp, err := pipeline.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return New(Options{Token: testToken, Registry: onePipeline{p: cp},
		DLQ: unusedDLQ{}, Redriver: unusedRedriver{}, Tester: unusedTester{}})
}

func send(t *testing.T, s *Server, method, path, body string) (int, apiErr) {
	t.Helper()
	status, b := serve(t, s, method, path, body)
	var out struct {
		Success bool
		Error   apiErr
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: %d %s", method, path, status, b)
	}
	return status, out.Error
}

// Every admin body is decoded strictly: one JSON value, no repeated keys,
// valid UTF-8, and every field of the wrong type listed with its path (the
// top level and all steps together), as 400 validation_failed; malformed
// JSON is 400 bad_request saying where.
func TestRequestBodiesAreDecodedStrictly(t *testing.T) {
	const (
		pipelines = "/api/admin/webhooks/pipelines"
		p1        = "/api/admin/webhooks/pipelines/p1"
	)
	type fe = pipeline.FieldError
	cases := []struct {
		name, method, path, body string
		fields                   []fe   // validation_failed with exactly these details
		message                  string // or bad_request with a message containing this
	}{
		{"every bad field is listed", "POST", pipelines, `{"name":5,"trigger_type":7,"steps":"nope"}`,
			[]fe{{Field: "name", Message: "must be a string"}, {Field: "trigger_type", Message: "must be a string"}, {Field: "steps", Message: "must be an array"}}, ""},
		{"order 1.5 is not an integer", "POST", pipelines, `{"name":"n","trigger_type":"click","steps":[{"order":1.5,"url":"https://x.io"}]}`,
			[]fe{{Field: "steps[0].order", Message: "must be an integer"}}, ""},
		{"top-level and step problems together", "POST", pipelines,
			`{"name":5,"trigger_type":"click","steps":[{"order":"1","url":"https://x.io"},{"order":2,"url":7,"retry_policy":{"max_attempts":2.5,"backoff_type":"fixed"}}],"status":true}`,
			[]fe{{Field: "name", Message: "must be a string"}, {Field: "steps[0].order", Message: "must be an integer"}, {Field: "steps[1].url", Message: "must be a string"},
				{Field: "steps[1].retry_policy.max_attempts", Message: "must be an integer"}, {Field: "status", Message: "must be a string"}}, ""},
		{"out of range", "POST", pipelines, `{"name":"n","trigger_type":"click","steps":[{"order":99999999999999999999,"url":"https://x.io"}]}`,
			[]fe{{Field: "steps[0].order", Message: "must be an integer between -9223372036854775808 and 9223372036854775807"}}, ""},
		{"duplicate key names its path", "POST", pipelines, `{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","url":"https://y.io"}]}`,
			[]fe{{Field: "steps[0].url", Message: "duplicate key"}}, ""},
		{"duplicate key inside a body template", "POST", pipelines, `{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","body_template":{"a":1,"a":2}}]}`,
			[]fe{{Field: "steps[0].body_template.a", Message: "duplicate key"}}, ""},
		{"invalid UTF-8 in a name", "POST", pipelines, "{\"name\":\"caf\xe9\",\"trigger_type\":\"click\",\"steps\":[{\"order\":1,\"url\":\"https://x.io\"}]}",
			[]fe{{Field: "name", Message: "is not valid UTF-8"}}, ""},
		{"invalid UTF-8 in a template", "POST", pipelines, "{\"name\":\"n\",\"trigger_type\":\"click\",\"steps\":[{\"order\":1,\"url\":\"https://x.io\",\"body_template\":\"{\\\"a\\\":\\\"\xff\\\"}\"}]}",
			[]fe{{Field: "steps[0].body_template", Message: "is not valid UTF-8"}}, ""},
		{"unpaired surrogate escape", "POST", pipelines, `{"name":"\udead","trigger_type":"click","steps":[{"order":1,"url":"https://x.io"}]}`,
			[]fe{{Field: "name", Message: `contains an unpaired surrogate escape \udead`}}, ""},
		{"header values are strings", "POST", pipelines, `{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","headers":{"A":1,"B":null}}]}`,
			[]fe{{Field: "steps[0].headers.A", Message: "must be a string"}, {Field: "steps[0].headers.B", Message: "must be a string"}}, ""},
		{"trailing garbage", "POST", pipelines, `{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io"}]} garbage`,
			nil, "invalid character 'g' after the top-level value; a body holds exactly one JSON value (at offset 79)"},
		{"two values", "POST", pipelines, `{"name":"n"}{"name":"m"}`, nil, "after the top-level value; a body holds exactly one JSON value (at offset 12)"},
		{"malformed", "POST", pipelines, `{"name":"n",}`, nil, "request body is not valid JSON: invalid character '}' looking for the beginning of an object key string (at offset 12)"},
		{"not an object", "POST", pipelines, `["name"]`, nil, "request body must be an object"},

		{"update: duplicate key", "PUT", p1, `{"name":"a","name":"b"}`, []fe{{Field: "name", Message: "duplicate key"}}, ""},
		{"update: unknown and mistyped fields", "PUT", p1, `{"steps":[{"order":1,"url":"https://x.io","retry_polcy":{}}],"descripton":"x","failover_url":false}`,
			[]fe{{Field: "steps[0].retry_polcy", Message: "is not a known field"}, {Field: "descripton", Message: "is not a known field"}, {Field: "failover_url", Message: "must be a string"}}, ""},
		{"update: trailing garbage", "PUT", p1, `{"name":"a"} x`, nil, "after the top-level value"},

		{"test step", "POST", "/api/admin/webhooks/test/step", `{"url":"https://x.io","timeout_seconds":1.5,"headers":{"A":["b"]},"test_data":{"a":1,"a":2}}`,
			[]fe{{Field: "timeout_seconds", Message: "must be an integer"}, {Field: "headers.A", Message: "must be a string"}, {Field: "test_data.a", Message: "duplicate key"}}, ""},
		{"test step: trailing garbage", "POST", "/api/admin/webhooks/test/step", `{"url":"https://x.io"}]`, nil, "invalid character ']' after the top-level value"},
		{"test pipeline", "POST", "/api/admin/webhooks/test/pipeline/p1", `{"test_data":{"amount":1e400,"ok":true,"ok":false}}`,
			[]fe{{Field: "test_data.amount", Message: "is out of range for a 64-bit number"}, {Field: "test_data.ok", Message: "duplicate key"}}, ""},
		{"test pipeline: test_data is an object", "POST", "/api/admin/webhooks/test/pipeline/p1", `{"test_data":[1]}`,
			[]fe{{Field: "test_data", Message: "must be an object"}}, ""},

		{"bulk DLQ retry", "POST", "/api/admin/webhooks/dlq/retry", `{"limit":10.5,"failed_from":"yesterday","rate_per_second":"fast","pipeline_id":null}`,
			[]fe{{Field: "limit", Message: "must be an integer"}, {Field: "failed_from", Message: `must be an RFC 3339 time string (such as "2024-12-01T12:00:00Z")`},
				{Field: "rate_per_second", Message: "must be a number"}, {Field: "pipeline_id", Message: "must be a string"}}, ""},
		{"bulk DLQ retry (API reference path)", "POST", "/api/admin/webhooks/logs/dlq/retry", `{"limit":1}{}`, nil, "after the top-level value"},
	}
	s := decodeTestServer(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, e := send(t, s, c.method, c.path, c.body)
			if c.fields != nil {
				if status != 400 || e.Code != "validation_failed" || !reflect.DeepEqual(e.Details, c.fields) {
					t.Fatalf("%d %s %q\n got details %+v\nwant details %+v", status, e.Code, e.Message, e.Details, c.fields)
				}
				return
			}
			if status != 400 || e.Code != "bad_request" || !strings.Contains(e.Message, c.message) || len(e.Details) != 0 {
				t.Fatalf("%d %s %q %+v; want 400 bad_request containing %q", status, e.Code, e.Message, e.Details, c.message)
			}
		})
	}
}

// Strictness must not refuse what clients legitimately send: a GET
// response edited and sent back, read-only fields and all.
func TestAGetResponseCanBeSentBack(t *testing.T) {
	s := decodeTestServer(t)
	body := `{"id":"pipe_x","name":"n","description":"","trigger_type":"click","status":"active",
	  "steps":[{"id":"step_1","name":"s","order":1,"url":"https://x.io","method":"POST","headers":{"A":"b"},
	    "body_template":{"a":"{{click.id}}"},"timeout_seconds":30,"retry_policy":{"max_attempts":3},"stop_on_failure":false,
	    "signature_mode":"none","has_signing_key":false,"stats":{"total":1}}],
	  "stats":{"total_executions":0},"last_triggered":null,"created_at":"2024-01-01T00:00:00Z","updated_at":"2024-01-01T00:00:00Z","revision":1}`
	if status, b := serve(t, s, "POST", "/api/admin/webhooks/pipelines", body); status != 201 {
		t.Fatalf("%d %s", status, b)
	}
}
