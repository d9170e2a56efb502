package app_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/app"
)

// fixtures are real objects the routes' :id parameters name.
type fixtures struct {
	pipelineID string
	dlqID      string
	replayID   string // a replay job
	redriveID  string // a bulk-redrive job
}

func makeFixtures(t *testing.T, a *app.App) fixtures {
	t.Helper()
	r := request(t, a, "POST", "/api/admin/webhooks/pipelines", []byte(`{"name":"fixture","trigger_type":"click","steps":[{"order":1,"url":"https://hooks.example.com/x"}]}`))
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	f := fixtures{pipelineID: dataOf(t, r)["id"].(string)}
	// An invalid event is dead-lettered: a DLQ item to name.
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(a.Config.KafkaBrokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	marker := fmt.Sprintf("not an event %d", time.Now().UnixNano())
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "afftok.clicks", Value: []byte(marker)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(2 * time.Minute)
	for f.dlqID == "" {
		r := request(t, a, "GET", "/api/admin/webhooks/dlq?limit=200", nil)
		for _, it := range dataOf(t, r)["items"].([]any) {
			item := it.(map[string]any)
			if src, _ := item["source"].(map[string]any); src != nil && src["value"] == marker {
				f.dlqID = item["id"].(string)
			}
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("the invalid event never reached the DLQ list")
		}
	}
	now := time.Now().UTC()
	r = request(t, a, "POST", "/api/admin/webhooks/replay", fmt.Appendf(nil, `{"from":%q,"to":%q,"pipeline_ids":[%q]}`,
		now.Add(-time.Hour).Format(time.RFC3339), now.Format(time.RFC3339), f.pipelineID))
	if r.status != 202 {
		t.Fatalf("replay: %d %s", r.status, r.body)
	}
	f.replayID = dataOf(t, r)["id"].(string)
	r = request(t, a, "POST", "/api/admin/webhooks/dlq/retry", []byte(`{"pipeline_id":"no-such-pipeline"}`))
	if r.status != 202 {
		t.Fatalf("bulk redrive: %d %s", r.status, r.body)
	}
	f.redriveID = dataOf(t, r)["job_id"].(string)
	return f
}

// concrete fills a route's parameters.
func (f fixtures) concrete(path string) string {
	switch {
	case strings.HasPrefix(path, "/debug/pprof/"):
		return "/debug/pprof/cmdline"
	case strings.Contains(path, "/replay/:id"):
		return strings.Replace(path, ":id", f.replayID, 1)
	case strings.Contains(path, "/redrive/:id"):
		return strings.Replace(path, ":id", f.redriveID, 1)
	case strings.Contains(path, "/dlq/:id"):
		return strings.Replace(path, ":id", f.dlqID, 1)
	}
	return strings.Replace(path, ":id", f.pipelineID, 1)
}

// takesBody: routes whose request body is a JSON document.
func takesBody(method, path string) bool {
	return method == "PUT" || method == "POST" && !strings.HasSuffix(path, "/:id/retry")
}

func lists(path string) bool {
	return slices.Contains([]string{"/api/admin/webhooks/pipelines", "/api/admin/webhooks/logs/recent", "/api/admin/webhooks/logs/failures",
		"/api/admin/webhooks/logs/dlq", "/api/admin/webhooks/dlq", "/api/admin/webhooks/operator-events"}, path)
}

// takesRange: routes with from, to and pipeline_id (stats over a time range).
func takesRange(path string) bool {
	return slices.Contains([]string{"/api/admin/webhooks/stats", "/api/admin/webhooks/stats/timeseries", "/api/admin/webhooks/pipelines",
		"/api/admin/webhooks/pipelines/:id"}, path)
}

// oversized stands for a body over the API's 1 MiB limit.
var oversized = []byte("oversized")

// declareOversizedBody sends a request that declares a 2 MiB body and sends
// one byte of it: the API answers from the declared length, without reading
// the body (a client sending it all might see the connection reset as the
// server closes, before it reads the answer).
func declareOversizedBody(t *testing.T, a *app.App, method, target string) *response {
	t.Helper()
	conn, err := net.Dial("tcp", a.Admin.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{",
		method, target, adminToken, 2<<20)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s with a 2 MiB body: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return &response{status: resp.StatusCode, header: resp.Header, body: body}
}

// Every route of the admin API, walked with every kind of bad input it can
// get: each answer is the error envelope with the status and the stable code
// of its kind, and nothing is a 5xx.
func TestEveryRouteAnswersBadInputInTheErrorModel(t *testing.T) {
	a := startStack(t)
	f := makeFixtures(t, a)
	type route struct{ method, path string }
	var routes []route
	for _, r := range a.Admin.Test().GetRoutes(true) {
		if r.Method == "HEAD" {
			continue
		}
		routes = append(routes, route{r.Method, r.Path})
	}
	if len(routes) < 20 {
		t.Fatalf("only %d routes", len(routes))
	}
	type badInput struct {
		name    string
		applies func(r route) bool
		target  func(r route) string
		method  func(r route) string
		body    []byte
		headers []string
		status  int
		code    string
		fields  []string // details that must be listed
	}
	same := func(r route) string { return f.concrete(r.path) }
	itsMethod := func(r route) string { return r.method }
	authed := func(r route) bool { return r.path != "/healthz" && r.path != "/readyz" }
	writes := func(r route) bool { return r.method != "GET" }
	withBody := func(r route) bool { return takesBody(r.method, r.path) }
	withID := func(r route) bool { return strings.Contains(r.path, ":id") }
	inputs := []badInput{
		{name: "no token", applies: authed, headers: []string{"Authorization", ""}, status: 401, code: "unauthorized"},
		{name: "wrong token", applies: authed, headers: []string{"Authorization", "Bearer not-the-token-0123456789"}, status: 401, code: "unauthorized"},
		{name: "basic auth", applies: authed, headers: []string{"Authorization", "Basic YWRtaW46YWRtaW4="}, status: 401, code: "unauthorized"},
		{name: "read token writing", applies: writes, headers: []string{"Authorization", "Bearer " + readToken}, body: []byte(`{}`), status: 403, code: "forbidden"},
		{name: "method no route takes", applies: func(route) bool { return true }, method: func(route) string { return "PATCH" }, status: 405, code: "method_not_allowed"},
		{name: "text/plain body", applies: withBody, body: []byte(`{}`), headers: []string{"Content-Type", "text/plain"}, status: 415, code: "unsupported_media_type"},
		{name: "form body", applies: withBody, body: []byte(`a=b`), headers: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 415, code: "unsupported_media_type"},
		{name: "UTF-16 JSON", applies: withBody, body: []byte(`{}`), headers: []string{"Content-Type", "application/json; charset=utf-16"}, status: 415, code: "unsupported_media_type"},
		{name: "malformed JSON", applies: withBody, body: []byte(`{"name":`), status: 400, code: "bad_request"},
		{name: "trailing garbage", applies: withBody, body: []byte(`{} garbage`), status: 400, code: "bad_request"},
		{name: "two values", applies: withBody, body: []byte(`{}{}`), status: 400, code: "bad_request"},
		{name: "not an object", applies: withBody, body: []byte(`[1,2]`), status: 400, code: "bad_request"},
		{name: "duplicate key", applies: withBody, body: []byte(`{"name":"a","name":"b"}`), status: 400},
		{name: "invalid UTF-8", applies: withBody, body: []byte("{\"name\":\"\xff\xfe\"}"), status: 400},
		{name: "body over 1 MiB", applies: withBody, body: oversized, status: 413, code: "payload_too_large"},
		{name: "unknown id", applies: withID, target: func(r route) string { return strings.Replace(r.path, ":id", "nope_0123", 1) }, status: 404, code: "not_found"},
		{name: "5,000-character id", applies: withID, target: func(r route) string { return strings.Replace(r.path, ":id", strings.Repeat("a", 5000), 1) }, status: 404, code: "not_found"},
		{name: "20,000-character id", applies: withID, target: func(r route) string { return strings.Replace(r.path, ":id", strings.Repeat("a", 20000), 1) }, status: 431, code: "header_too_large"},
		{name: "page beyond int64", applies: func(r route) bool { return r.method == "GET" && lists(r.path) },
			target: func(r route) string { return r.path + "?page=9223372036854775808" }, status: 400, code: "validation_failed", fields: []string{"page"}},
		{name: "page at int64 max", applies: func(r route) bool { return r.method == "GET" && lists(r.path) },
			target: func(r route) string { return r.path + "?page=9223372036854775807" }, status: 400, code: "validation_failed", fields: []string{"page"}},
		{name: "page and limit both bad", applies: func(r route) bool { return r.method == "GET" && lists(r.path) },
			target: func(r route) string { return r.path + "?page=0&limit=1e3" }, status: 400, code: "validation_failed", fields: []string{"page", "limit"}},
		{name: "bad stats range", applies: func(r route) bool { return r.method == "GET" && takesRange(r.path) },
			target: func(r route) string { return f.concrete(r.path) + "?from=yesterday&to=2026-13-01T00:00:00Z" }, status: 400, code: "validation_failed", fields: []string{"from", "to"}},
		{name: "to before from", applies: func(r route) bool { return r.method == "GET" && takesRange(r.path) },
			target: func(r route) string {
				return f.concrete(r.path) + "?from=2026-11-27T10:00:00Z&to=2026-11-27T09:00:00Z&pipeline_id=%01"
			}, status: 400, code: "validation_failed", fields: []string{"to", "pipeline_id"}},
		{name: "bad interval", applies: func(r route) bool { return r.method == "GET" && r.path == "/api/admin/webhooks/stats/timeseries" },
			target: func(r route) string { return r.path + "?interval=2m" }, status: 400, code: "validation_failed", fields: []string{"interval"}},
		{name: "too many buckets", applies: func(r route) bool { return r.method == "GET" && r.path == "/api/admin/webhooks/stats/timeseries" },
			target: func(r route) string { return r.path + "?interval=1m&from=2026-11-01T00:00:00Z&to=2026-11-03T00:00:00Z" }, status: 400, code: "validation_failed", fields: []string{"interval"}},
		{name: "header over 16 KiB", applies: authed, headers: []string{"X-Padding", strings.Repeat("p", 17<<10)}, status: 431, code: "header_too_large"},
	}
	var checked int
	for _, r := range routes {
		for _, in := range inputs {
			if !in.applies(r) {
				continue
			}
			target, method := same(r), itsMethod(r)
			if in.target != nil {
				target = in.target(r)
			}
			if in.method != nil {
				method = in.method(r)
			}
			var got *response
			if bytes.Equal(in.body, oversized) {
				got = declareOversizedBody(t, a, method, target)
			} else {
				got = request(t, a, method, target, in.body, in.headers...)
			}
			checked++
			where := fmt.Sprintf("%s %s, %s", r.method, r.path, in.name)
			if got.status != in.status || in.code != "" && errorCode(got) != in.code {
				t.Errorf("%s: %d %.300s, want %d %s", where, got.status, got.body, in.status, in.code)
				continue
			}
			if err := checkEnvelope(got); err != nil {
				t.Errorf("%s: %v", where, err)
			}
			for _, field := range in.fields {
				if !contains(details(got), field) {
					t.Errorf("%s: details %v do not name %s", where, details(got), field)
				}
			}
			if got.status == 405 {
				// Allow lists the route's own method (and others taking the
				// path, e.g. DELETE /dlq/:id takes /dlq/retry), never PATCH.
				allow := strings.Split(got.header.Get("Allow"), ", ")
				if !slices.Contains(allow, r.method) || slices.Contains(allow, "PATCH") || slices.Contains(allow, "GET") != slices.Contains(allow, "HEAD") {
					t.Errorf("%s: Allow %q", where, got.header.Get("Allow"))
				}
			}
		}
	}
	t.Logf("%d routes, %d bad requests, each answered in the error model", len(routes), checked)

	// Every bad field of a body is listed, not just the first.
	for _, c := range []struct {
		method, path, body string
		fields             []string
	}{
		{"POST", "/api/admin/webhooks/pipelines", `{"name":5,"trigger_type":7,"steps":"nope"}`, []string{"name", "trigger_type", "steps"}},
		{"POST", "/api/admin/webhooks/pipelines", `{"name":"n","trigger_type":"click","steps":[{"order":1.5,"url":7,"timeout_seconds":"x"}]}`, []string{"steps[0].order", "steps[0].url", "steps[0].timeout_seconds"}},
		{"PUT", "/api/admin/webhooks/pipelines/" + f.pipelineID, `{"status":5,"description":[],"revision":"3"}`, []string{"status", "description", "revision"}},
		{"POST", "/api/admin/webhooks/test/step", `{"step":{"url":1,"order":"a"},"test_data":5}`, nil},
		{"POST", "/api/admin/webhooks/dlq/retry", `{"limit":"all","rate_per_second":"fast"}`, []string{"limit", "rate_per_second"}},
		{"POST", "/api/admin/webhooks/replay", `{"from":"yesterday","to":5,"pipeline_ids":"x","rate_per_second":"fast"}`, []string{"from", "to", "pipeline_ids", "rate_per_second"}},
		{"POST", "/api/admin/webhooks/replay", `{}`, []string{"from", "to"}},
		{"POST", "/api/admin/webhooks/replay", `{"from":"2026-01-02T00:00:00Z","to":"2026-01-01T00:00:00Z","trigger_type":"nope","pipeline_ids":["nope_0123","nope_0123"],"rate_per_second":0}`,
			[]string{"to", "trigger_type", "pipeline_ids[0]", "pipeline_ids[1]", "rate_per_second"}},
		{"POST", "/api/admin/webhooks/replay", `{"from":"2026-01-01T00:00:00Z","to":"2999-01-01T00:00:00Z","trigger_type":"conversion","pipeline_ids":["` + f.pipelineID + `"]}`,
			[]string{"to", "pipeline_ids[0]"}},
	} {
		got := request(t, a, c.method, c.path, []byte(c.body))
		if got.status != 400 || errorCode(got) != "validation_failed" || checkEnvelope(got) != nil {
			t.Errorf("%s %s %s: %d %s", c.method, c.path, c.body, got.status, got.body)
			continue
		}
		for _, field := range c.fields {
			if !contains(details(got), field) {
				t.Errorf("%s %s %s: details %v do not name %s", c.method, c.path, c.body, details(got), field)
			}
		}
	}

	// Conditional writes: the ETag GET gives, 412 when stale.
	p := "/api/admin/webhooks/pipelines/" + f.pipelineID
	got := request(t, a, "GET", p, nil)
	etag := got.header.Get("ETag")
	if got.status != 200 || etag != fmt.Sprintf(`"%v"`, dataOf(t, got)["revision"]) {
		t.Fatalf("GET: %d ETag %q", got.status, etag)
	}
	if got = request(t, a, "PUT", p, []byte(`{"description":"one"}`), "If-Match", etag); got.status != 200 || got.header.Get("ETag") == etag {
		t.Fatalf("PUT If-Match current: %d %s", got.status, got.body)
	}
	for _, stale := range [][]string{{"If-Match", etag}, {"If-Match", `W/` + etag}, {"If-Match", `"999"`}} {
		if got = request(t, a, "PUT", p, []byte(`{"description":"two"}`), stale...); got.status != 412 || errorCode(got) != "precondition_failed" || checkEnvelope(got) != nil {
			t.Errorf("PUT %v: %d %s", stale, got.status, got.body)
		}
	}
	if got = request(t, a, "PUT", p, []byte(`{"description":"two","revision":1}`)); got.status != 412 {
		t.Errorf("PUT with a stale body revision: %d %s", got.status, got.body)
	}
	if got = request(t, a, "DELETE", p, nil, "If-Match", etag); got.status != 412 {
		t.Errorf("DELETE with a stale If-Match: %d %s", got.status, got.body)
	}
	if got = request(t, a, "GET", p, nil); dataOf(t, got)["description"] != "one" {
		t.Errorf("a refused write changed the pipeline: %s", got.body)
	}

	// A DLQ item handled twice: 409 the second time.
	d := "/api/admin/webhooks/dlq/" + url.PathEscape(f.dlqID)
	if got = request(t, a, "DELETE", d, nil); got.status != 200 {
		t.Fatalf("DELETE DLQ item: %d %s", got.status, got.body)
	}
	if got = request(t, a, "DELETE", d, nil); got.status != 409 || errorCode(got) != "already_handled" || checkEnvelope(got) != nil {
		t.Errorf("DELETE DLQ item again: %d %s", got.status, got.body)
	}

	// OPTIONS says what a path allows.
	if got = request(t, a, "OPTIONS", "/api/admin/webhooks/pipelines", nil); got.status != 204 || got.header.Get("Allow") != "GET, HEAD, POST" {
		t.Errorf("OPTIONS: %d Allow %q", got.status, got.header.Get("Allow"))
	}
}

// One 400 names every problem once, where the client wrote it: how the body
// is written (types, unknown keys) and what it says (values, URLs the guard
// blocks), steps by their index in the request, and every bad query
// parameter.
func TestEveryProblemIsListedWhereItWasWritten(t *testing.T) {
	a := startStack(t)
	for _, c := range []struct {
		method, path, body string
		want               []string
	}{
		{"POST", "/api/admin/webhooks/pipelines",
			`{"name":"","trigger_type":"nope","status":"zzz","nmae":1,"steps":[{"order":"1","url":"ftp://x"}],"failover_url":"http://10.0.0.1/"}`,
			[]string{"nmae", "steps[0].order", "name", "trigger_type", "status", "steps[0].url", "failover_url"}},
		{"POST", "/api/admin/webhooks/pipelines",
			`{"name":"o","trigger_type":"click","steps":[{"order":2,"url":"ftp://x","timeout_seconds":999},{"order":1,"url":"https://example.com/"}]}`,
			[]string{"steps[0].url", "steps[0].timeout_seconds"}},
		{"POST", "/api/admin/webhooks/pipelines",
			`{"name":"f","trigger_type":"click","steps":[{"order":1,"url":"https://example.com/"}],"failover_retry_policy":{"max_attempts":"2","jitter_factor":5},
			  "filter":{"click.country":"US","click.country":"CA","$or":[{"click.id":{"$gt":"x"}}]}}`,
			[]string{"failover_retry_policy.max_attempts", "failover_retry_policy.jitter_factor", "filter.click.country", "filter.$or[0].click.id.$gt"}},
		{"GET", "/api/admin/webhooks/pipelines?page=x&limit=y&status=z&trigger_type=w", "", []string{"page", "limit", "status", "trigger_type"}},
		{"GET", "/api/admin/webhooks/logs/recent?status=bogus&pipeline_id=%00", "", []string{"status", "pipeline_id"}},
		{"GET", "/api/admin/webhooks/logs/failures?status=completed", "", []string{"status"}},
		{"GET", "/api/admin/webhooks/dlq?state=gone&pipeline_id=a%00b", "", []string{"state", "pipeline_id"}},
	} {
		var body []byte
		if c.body != "" {
			body = []byte(c.body)
		}
		got := request(t, a, c.method, c.path, body)
		if got.status != 400 || errorCode(got) != "validation_failed" {
			t.Errorf("%s %s: %d %s", c.method, c.path, got.status, got.body)
			continue
		}
		if d := details(got); !slices.Equal(sorted(d), sorted(c.want)) {
			t.Errorf("%s %s %s: details %v, want %v", c.method, c.path, c.body, d, c.want)
		}
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

// A PUT that changes nothing keeps the revision (and the client's ETag); a
// DELETE takes the revision in its body too; several If-Match lines are one
// list; probes take no token and answer 405 to other methods; profiles are
// for admin tokens only.
func TestConditionalWritesNoOpsAndProbes(t *testing.T) {
	a := startStack(t)
	r := request(t, a, "POST", "/api/admin/webhooks/pipelines", []byte(`{"name":"noop","description":"d","trigger_type":"click","steps":[{"order":1,"url":"https://hooks.example.com/x"}]}`))
	p := "/api/admin/webhooks/pipelines/" + dataOf(t, r)["id"].(string)
	for _, body := range []string{`{}`, `{"description":"d"}`, `{"created_at":"2020-01-01T00:00:00Z","steps":[{"order":1,"url":"https://hooks.example.com/x"}]}`} {
		if got := request(t, a, "PUT", p, []byte(body), "If-Match", `"1"`); got.status != 200 || got.header.Get("ETag") != `"1"` {
			t.Errorf("PUT %s: %d ETag %q, want 200 and the revision kept", body, got.status, got.header.Get("ETag"))
		}
	}
	if got := request(t, a, "PUT", p, []byte(`{"description":"e"}`)); got.header.Get("ETag") != `"2"` {
		t.Fatalf("a change: ETag %q", got.header.Get("ETag"))
	}
	// If-Match on two lines: a match on either is a match.
	req, _ := http.NewRequest("PUT", "http://"+a.Admin.Addr()+p, strings.NewReader(`{"description":"f"}`))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Add("If-Match", `"2"`)
	req.Header.Add("If-Match", `"9"`)
	if got, err := send(req); err != nil || got.status != 200 {
		t.Fatalf("If-Match on two lines: %v %v", got, err)
	}
	if got := request(t, a, "DELETE", p, []byte(`{"revision":"3"}`)); got.status != 400 {
		t.Errorf("DELETE with a string revision: %d %s", got.status, got.body)
	}
	if got := request(t, a, "DELETE", p, []byte(`{"revision":2}`)); got.status != 412 || got.header.Get("ETag") != `"3"` {
		t.Errorf("DELETE with a stale body revision: %d %s", got.status, got.body)
	}
	if got := request(t, a, "DELETE", p, []byte(`{"revision":3}`)); got.status != 200 {
		t.Errorf("DELETE with the current revision: %d %s", got.status, got.body)
	}
	for _, m := range []string{"POST", "PROPFIND"} {
		if got := request(t, a, m, "/healthz", nil, "Authorization", ""); got.status != 405 || got.header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /healthz without a token: %d Allow %q", m, got.status, got.header.Get("Allow"))
		}
	}
	if got := request(t, a, "GET", "/debug/pprof/cmdline", nil, "Authorization", "Bearer "+readToken); got.status != 403 {
		t.Errorf("a read token's profile: %d", got.status)
	}
	if got := request(t, a, "GET", "/debug/pprof/cmdline", nil); got.status != 200 {
		t.Errorf("an admin token's profile: %d", got.status)
	}
}

// The fallback send uses when net/http reports a reset: an oversized
// request written whole still gets its 431 answer, every time.
func TestOversizedRequestsAreAnsweredNotReset(t *testing.T) {
	a := startStack(t)
	for range 20 {
		req, _ := http.NewRequest("GET", "http://"+a.Admin.Addr()+"/api/admin/webhooks/pipelines/"+strings.Repeat("a", 20000), nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		r, err := sendWhole(req)
		if err != nil {
			t.Fatal(err)
		}
		if r.status != 431 || !strings.Contains(string(r.body), `"header_too_large"`) {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
}
