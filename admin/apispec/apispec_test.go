package apispec_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/afftok/webhookd/admin/apispec"
)

// pipeline is a valid GET /pipelines/{id} answer; change edits its data.
func pipeline(t *testing.T, change func(data, step map[string]any)) []byte {
	t.Helper()
	step := map[string]any{"id": "step_1", "name": "Step 1", "order": 1, "url": "https://hooks.example.com/x", "method": "POST",
		"timeout_seconds": 30, "stop_on_failure": false, "signature_mode": "hmac", "has_signing_key": true,
		"stats": map[string]any{"executions": 0, "successful": 0, "avg_latency_ms": 0,
			"latency_ms": map[string]any{"p50": 0, "p95": 0, "p99": 0}, "time_to_success_ms": map[string]any{"p50": 0, "p95": 0, "p99": 0}}}
	data := map[string]any{"id": "pipe_1", "name": "p", "description": "", "trigger_type": "click", "status": "active",
		"steps": []any{step}, "last_triggered": nil, "created_at": "2026-01-02T03:04:05Z", "updated_at": "2026-01-02T03:04:05Z",
		"revision": 3}
	if change != nil {
		change(data, step)
	}
	b, err := json.Marshal(map[string]any{"success": true, "data": data})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func errorBody(code string, details string) []byte {
	return []byte(`{"success":false,"error":{"code":"` + code + `","message":"m","details":` + details + `}}`)
}

func jsonHeader(kv ...string) http.Header {
	h := http.Header{"Content-Type": {"application/json"}}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// The checker passes answers the document describes and fails every kind of
// drift: it would not catch anything otherwise.
func TestCheckCatchesDrift(t *testing.T) {
	c, err := apispec.New()
	if err != nil {
		t.Fatal(err)
	}
	const pipe = "/api/admin/webhooks/pipelines/pipe_1"
	for _, tc := range []struct {
		name         string
		method, path string
		status       int
		header       http.Header
		body         []byte
		wantErr      string // "" when the answer is valid
	}{
		{name: "valid pipeline", method: "GET", path: pipe, status: 200, header: jsonHeader("ETag", `"3"`), body: pipeline(t, nil)},
		{name: "valid pipeline, case-insensitive path", method: "GET", path: "/API/admin/webhooks/Pipelines/pipe_1/", status: 200,
			header: jsonHeader("ETag", `"3"`), body: pipeline(t, nil)},
		{name: "signing key in an answer", method: "GET", path: pipe, status: 200, header: jsonHeader("ETag", `"3"`),
			body: pipeline(t, func(_, s map[string]any) { s["signing_key"] = "secret" }), wantErr: "signing_key"},
		{name: "missing required field", method: "GET", path: pipe, status: 200, header: jsonHeader("ETag", `"3"`),
			body: pipeline(t, func(d, _ map[string]any) { delete(d, "revision") }), wantErr: "revision"},
		{name: "extra field", method: "GET", path: pipe, status: 200, header: jsonHeader("ETag", `"3"`),
			body: pipeline(t, func(d, _ map[string]any) { d["secret"] = "x" }), wantErr: "secret"},
		{name: "null where not nullable", method: "GET", path: pipe, status: 200, header: jsonHeader("ETag", `"3"`),
			body: pipeline(t, func(d, _ map[string]any) { d["created_at"] = nil }), wantErr: "created_at"},
		{name: "no ETag", method: "GET", path: pipe, status: 200, header: jsonHeader(), body: pipeline(t, nil), wantErr: "ETag"},
		{name: "undocumented status", method: "GET", path: pipe, status: 409, header: jsonHeader(), body: errorBody("conflict", "[]"),
			wantErr: "status is not supported"},
		{name: "valid 404", method: "GET", path: pipe, status: 404, header: jsonHeader(), body: errorBody("not_found", "[]")},
		{name: "code of another status", method: "GET", path: pipe, status: 404, header: jsonHeader(), body: errorBody("conflict", "[]"),
			wantErr: "code"},
		{name: "details null", method: "GET", path: pipe, status: 404, header: jsonHeader(), body: errorBody("not_found", "null"),
			wantErr: "details"},
		{name: "details outside validation", method: "GET", path: pipe, status: 404, header: jsonHeader(),
			body: errorBody("not_found", `[{"field":"id","message":"m"}]`), wantErr: "details"},
		{name: "valid 412", method: "PUT", path: pipe, status: 412, header: jsonHeader("ETag", `"4"`), body: errorBody("precondition_failed", "[]")},
		{name: "412 without the current ETag", method: "PUT", path: pipe, status: 412, header: jsonHeader(),
			body: errorBody("precondition_failed", "[]"), wantErr: "ETag"},
		{name: "415 on an operation", method: "PUT", path: pipe, status: 415, header: jsonHeader(), body: errorBody("unsupported_media_type", "[]")},
		{name: "error not in the envelope", method: "GET", path: pipe, status: 404, header: jsonHeader(), body: []byte(`{"error":"not found"}`),
			wantErr: "success"},
		{name: "valid HEAD", method: "HEAD", path: pipe, status: 200, header: jsonHeader("ETag", `"3"`)},
		{name: "HEAD with an undocumented status", method: "HEAD", path: pipe, status: 409, header: jsonHeader(), wantErr: "status is not supported"},
		{name: "valid OPTIONS", method: "OPTIONS", path: pipe, status: 204, header: http.Header{"Allow": {"DELETE, GET, HEAD, PUT"}}},
		{name: "OPTIONS without Allow", method: "OPTIONS", path: pipe, status: 204, header: http.Header{}, wantErr: "Allow"},
		{name: "unknown route answered with an error", method: "GET", path: "/nope", status: 404, header: jsonHeader(), body: errorBody("not_found", "[]")},
		{name: "unknown route answered with a success", method: "GET", path: "/nope", status: 200, header: jsonHeader(), body: []byte(`{}`),
			wantErr: "undocumented operation"},
		{name: "unknown method answered with a non-envelope", method: "PATCH", path: pipe, status: 405, header: http.Header{"Content-Type": {"text/plain"}},
			body: []byte("Method Not Allowed"), wantErr: "not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, "http://127.0.0.1:1"+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Check(req, tc.status, tc.header, tc.body)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("valid answer refused: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("answer accepted; want an error about %s", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("error does not mention %q: %v", tc.wantErr, err)
			}
		})
	}
}
