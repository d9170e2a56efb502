package app_test

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/afftok/webhookd/admin/ui"
)

var fuzzMethods = []string{"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "PROPFIND"}

var fuzzPaths = []string{
	"/api/admin/webhooks/pipelines", "/api/admin/webhooks/pipelines/{id}", "/api/admin/webhooks/logs/recent",
	"/api/admin/webhooks/logs/failures", "/api/admin/webhooks/stats", "/api/admin/webhooks/test/pipeline/{id}",
	"/api/admin/webhooks/test/step", "/api/admin/webhooks/logs/dlq", "/api/admin/webhooks/dlq/retry",
	"/api/admin/webhooks/dlq/{id}", "/api/admin/webhooks/dlq/{id}/retry", "/api/admin/webhooks/logs/dlq/{id}/retry",
	"/api/admin/webhooks/openapi.yaml", "/healthz", "/readyz", "/metrics", "/nope", "/api/admin/webhooks/",
	"/api/admin/webhooks/stats/timeseries", "/ui/", "/ui/pipelines/{id}", "/ui/js/{id}", "/",
}

var fuzzContentTypes = []string{"application/json", "", "text/plain", "application/json; charset=utf-8", "application/x-www-form-urlencoded",
	"application/merge-patch+json", "multipart/form-data; boundary=x", "application/json; charset=latin1", ";;;"}

var fuzzAuth = []string{"Bearer " + adminToken, "bearer " + readToken, "", "Bearer", "Basic YTpi", "BEARER  " + adminToken, "Bearer x.y.z"}

// FuzzAdminAPI drives the admin API of a real webhookd with random methods,
// paths, query strings, headers and bodies: no answer is a 5xx, and every
// error answer is the envelope with its status's stable code. A selector of
// 200 or more uses the raw string instead of the list.
func FuzzAdminAPI(f *testing.F) {
	type seed struct {
		method        uint8
		rawMethod     string
		path          uint8
		id, query     string
		ct, auth      uint8
		ifMatch, body string
	}
	for _, s := range []seed{
		{1, "", 0, "", "", 0, 0, "", `{"name":"f","trigger_type":"click","steps":[{"order":1,"url":"https://hooks.example.com/x","body_template":{"id":"{{data.id}}"}}]}`},
		{2, "", 1, "pipe_0123456789abcdef", "", 0, 0, `"1"`, `{"name":"g","revision":1}`},
		{1, "", 0, "", "", 0, 0, "", `{"name":"h","trigger_type":"conversion","failover_url":"https://hooks.example.com/fo","failover_retry_policy":{"max_attempts":2,"backoff_type":"fixed","initial_delay_seconds":1},
		  "filter":{"conversion.amount":{"$gte":10},"$or":[{"click.country":{"$in":["US","CA"]}},{"click.ua":{"$regex":"(?i)iphone"}}]},"steps":[{"order":1,"url":"https://hooks.example.com/x"}]}`},
		{0, "", 0, "", "page=2&limit=3&status=active&trigger_type=click", 2, 1, "", ""},
		{0, "", 2, "", "page=9223372036854775807&status=failed,success", 2, 0, "", ""},
		{1, "", 6, "", "", 0, 0, "", `{"step":{"order":1,"url":"http://127.0.0.1:1/x","timeout_seconds":1},"test_data":{"id":"1"}}`},
		{1, "", 8, "", "", 0, 0, "", `{"pipeline_id":"p","rate_per_second":1,"limit":1}`},
		{3, "", 9, "dlq_x", "", 2, 0, "", ""},
		{6, "", 1, "%2e%2e", "", 2, 3, "*", "a=b"},
		{200, "M-SEARCH", 200, "/api/admin/webhooks//pipelines/../stats", "hours=-1", 8, 4, "", ""},
		{2, "", 1, strings.Repeat("z", 300), "", 4, 5, `W/"1", "2"`, `{"steps":[{"order":1,"url":"http://[::ffff:127.0.0.1]/"}]}`},
	} {
		f.Add(s.method, s.rawMethod, s.path, s.id, s.query, s.ct, s.auth, s.ifMatch, []byte(s.body))
	}
	a := startStack(f)
	checker(f)
	f.Fuzz(func(t *testing.T, methodSel uint8, rawMethod string, pathSel uint8, id, query string, ctSel, authSel uint8, ifMatch string, body []byte) {
		method := pick(fuzzMethods, methodSel, rawMethod)
		path := strings.ReplaceAll(pick(fuzzPaths, pathSel, id), "{id}", id)
		req, err := http.NewRequest(method, "http://"+a.Admin.Addr(), bytes.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		req.URL = &url.URL{Scheme: "http", Host: a.Admin.Addr(), Path: path, RawQuery: query}
		for name, v := range map[string]string{"Authorization": pick(fuzzAuth, authSel, ""), "Content-Type": pick(fuzzContentTypes, ctSel, ""), "If-Match": ifMatch} {
			if v != "" {
				req.Header.Set(name, v)
			}
		}
		if len(body) == 0 {
			req.Body = nil
		}
		if !sendable(req) {
			return
		}
		r, err := send(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, req.URL, err)
		}
		if r.status >= 500 {
			t.Fatalf("%s %s: %d %s", method, req.URL, r.status, r.body)
		}
		if r.header.Get("Content-Security-Policy") == ui.CSP {
			// The web UI's files (/ui/…, / redirects there): GET and HEAD
			// only, every other method goes to the API's routes.
			if method != "GET" && method != "HEAD" {
				t.Fatalf("%s %s answered by the web UI: %d", method, req.URL, r.status)
			}
			return
		}
		if method != "HEAD" {
			if err := checkEnvelope(r); err != nil {
				t.Fatalf("%s %s: %v", method, req.URL, err)
			}
		}
		if err := checker(t).Check(req, r.status, r.header, r.body); err != nil {
			t.Fatal(err)
		}
	})
}

func pick(list []string, sel uint8, raw string) string {
	if sel >= 200 {
		return raw
	}
	return list[int(sel)%len(list)]
}

// sendable rejects requests net/http would refuse to send or that are not
// HTTP at all (a query with a space or control byte).
func sendable(req *http.Request) bool {
	for _, vs := range req.Header {
		for _, v := range vs {
			if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
				return false
			}
		}
	}
	return !strings.ContainsFunc(req.URL.RawQuery, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '#' })
}
