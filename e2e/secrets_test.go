package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/analytics"
)

// guardedEnv runs an instance with the production SSRF guard: only
// 127.0.0.1 (the test's receivers) is allowed; 127.0.0.2 stands for any
// internal address. A URL with 127.0.0.2 written out is refused when the
// pipeline is saved, so tests of the dial-time guard take the host from
// the event ({{click.internal}}).
func guardedEnv(prefix string, extra map[string]string) map[string]string {
	return merge(ownTopics(prefix), map[string]string{
		"WEBHOOKD_ALLOW_PRIVATE_TARGETS": "false", "WEBHOOKD_ALLOWED_TARGET_CIDRS": "127.0.0.1/32",
		"WEBHOOKD_RETRY_TIERS": testTiers, "WEBHOOKD_RETRY_DELAY_SCALE": "0.02",
	}, extra)
}

// A permanent failure — an address the guard blocks, a URL that cannot be
// rendered — is attempted once and dead-lettered at once with reason
// `permanent` and the cause: no retry schedule, no failover.
func TestPermanentErrorsGoToTheDLQAtOnce(t *testing.T) {
	in := startInstance(t, "dev", guardedEnv("perm.", nil))
	backup := newReceiver(t)
	blocked := in.CreatePipeline(t, `{"name":"blocked","trigger_type":"click","failover_url":"`+backup.URL+`/backup",
	  "steps":[{"order":1,"url":"http://{{click.internal}}/internal"}]}`)
	unrenderable := in.CreatePipeline(t, `{"name":"no-host","trigger_type":"click","failover_url":"`+backup.URL+`/backup",
	  "steps":[{"order":1,"url":"https://{{click.host}}/x"}]}`)
	produce(t, "perm.events", "k", `{"id":"evt_perm","type":"click.tracked","data":{"id":"clk_perm","internal":"127.0.0.2:9"}}`)
	for _, c := range []struct {
		p      map[string]any
		prefix string
	}{{blocked, "Blocked: 127.0.0.2 is a private, loopback"}, {unrenderable, "Render error: the URL"}} {
		it := in.DLQItems(t, "/api/admin/webhooks/logs/dlq", c.p["id"].(string), 1)[0]
		if it["reason"] != "permanent" || it["attempts"] != 1.0 || !strings.HasPrefix(it["last_error"].(string), c.prefix) {
			t.Errorf("%s: DLQ item %v", c.p["name"], it)
		}
		l := in.WaitExecution(t, c.p["id"].(string), "clk_perm")
		if steps := l["steps"].([]any); l["status"] != "failed" || len(steps) != 1 || steps[0].(map[string]any)["attempts"] != 1.0 {
			t.Errorf("%s: log %v", c.p["name"], l)
		}
	}
	backup.noneSoFar(t) // both steps are dead: a failover would have come before
}

// The canary: an env value and signing keys, sent for real across success,
// a DNS failure, a TLS failure, a blocked address, a timeout and the test
// endpoints — to a receiver that echoes everything back — never appear in
// any API answer, log line, Kafka record or ClickHouse row.
func TestSecretsNeverLeaveADelivery(t *testing.T) {
	// The second canary has what JSON, URLs and HTML escape differently.
	const canary, canary2, signKey, jwtKey = "crmSECRETkey777", `Zq+/9=&x y%41<é>"Kw`, "sk-canary-SIGN-4242", "jwt-canary-KEY-9090"
	os.Setenv("CANARY", canary)
	os.Setenv("CANARY2", canary2)
	defer os.Unsetenv("CANARY")
	defer os.Unsetenv("CANARY2")
	in := startInstance(t, "dev", guardedEnv("leak.", map[string]string{"WEBHOOKD_TEMPLATE_ENV_ALLOW": "CANARY,CANARY2"}))
	var answers []string
	call := func(method, path string, body any) map[string]any {
		code, out := in.API(t, method, path, body)
		raw, _ := json.Marshal(out)
		answers = append(answers, string(raw))
		if code >= 300 {
			t.Fatalf("%s %s: %d %s", method, path, code, raw)
		}
		return out
	}
	// A receiver that echoes the request — URL, headers, body — in its answer.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 1<<16)
		n, _ := r.Body.Read(b)
		w.Header().Set("X-Echo", r.Header.Get("X-K"))
		status := 200
		if strings.HasPrefix(r.URL.Path, "/fail") {
			status = 500
		}
		w.WriteHeader(status)
		echoed, _ := json.Marshal(map[string]string{"url": r.URL.String(), "k2": r.Header.Get("X-K2")}) // JSON-escaped, HTML-escaped
		_, _ = w.Write([]byte(r.URL.String() + " " + r.Header.Get("X-K") + " " + r.Header.Get("X-K2") + " " + r.Header.Get("Authorization") + " " + string(b[:n]) + " " + string(echoed)))
	}))
	defer echo.Close()
	tlsServer := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer tlsServer.Close()
	hanging := newHangingReceiver(t)
	step := func(u string, extra string) string {
		return `{"order":1,"url":"` + u + `","timeout_seconds":2,"headers":{"X-K":"{{env.CANARY}}","X-K2":"{{env.CANARY2}}"},
		  "body_template":{"k":"{{env.CANARY}}","k2":"{{env.CANARY2}}","id":"{{click.id}}"},"retry_policy":{"max_attempts":1}` + extra + `}`
	}
	pipes := []string{
		step(echo.URL+"/ok/{{env.CANARY}}?k={{env.CANARY}}&k2={{env.CANARY2}}", `,"signing_key":"`+signKey+`"`),
		step(echo.URL+"/fail/{{env.CANARY}}", `,"signature_mode":"jwt","signing_key":"`+jwtKey+`"`),
		step("https://{{env.CANARY}}.invalid/x", ""),
		step(tlsServer.URL+"/tls/{{env.CANARY}}", ""),
		step("http://{{click.internal}}/{{env.CANARY}}", ""), // 127.0.0.2: blocked when dialled
		step(hanging.URL+"/slow/{{env.CANARY}}", ""),
	}
	var ids []string
	for i, s := range pipes {
		out := in.CreatePipeline(t, `{"name":"leak-`+string(rune('a'+i))+`","trigger_type":"click","steps":[`+s+`]}`)
		ids = append(ids, out["id"].(string))
	}
	produce(t, "leak.events", "k", `{"id":"evt_leak","type":"click.tracked","data":{"id":"clk_leak","internal":"127.0.0.2:9"}}`)
	for _, id := range ids {
		in.WaitExecution(t, id, "clk_leak")
	}
	in.DLQItems(t, "/api/admin/webhooks/logs/dlq", ids[1], 1)
	// The test endpoints make real calls too.
	call("POST", "/api/admin/webhooks/test/pipeline/"+ids[0], `{"test_data":{"click":{"id":"clk_test"}}}`)
	call("POST", "/api/admin/webhooks/test/pipeline/"+ids[2], `{}`)
	call("POST", "/api/admin/webhooks/test/step", `{"url":"`+echo.URL+`/t/{{env.CANARY}}","headers":{"X-K":"{{env.CANARY}}"},"body":{"k":"{{env.CANARY}}"},"signing_key":"`+signKey+`","timeout_seconds":2}`)
	call("POST", "/api/admin/webhooks/test/step", `{"url":"https://{{env.CANARY}}.invalid/t","timeout_seconds":2}`)
	for _, id := range ids {
		call("GET", "/api/admin/webhooks/pipelines/"+id, nil)
	}
	for _, path := range []string{"/api/admin/webhooks/pipelines", "/api/admin/webhooks/logs/recent?limit=100", "/api/admin/webhooks/logs/failures?limit=100",
		"/api/admin/webhooks/logs/dlq?limit=100", "/api/admin/webhooks/stats"} {
		call("GET", path, nil)
	}

	forms := func(v string) []string {
		var out []string
		for _, b := range []string{v, url.QueryEscape(v), url.PathEscape(v)} {
			j, _ := json.Marshal(b) // HTML-escaped
			var nb strings.Builder
			enc := json.NewEncoder(&nb)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(b)
			plain := strings.TrimSpace(nb.String())
			out = append(out, strings.ToLower(b), strings.ToLower(string(j[1:len(j)-1])), strings.ToLower(plain[1:len(plain)-1]))
		}
		return out
	}
	var needles []string
	for _, s := range []string{canary, canary2, signKey, jwtKey} {
		needles = append(needles, forms(s)...)
	}
	leaks := 0
	check := func(where, text string) {
		low := strings.ToLower(text)
		for _, n := range needles {
			if strings.Contains(low, n) {
				leaks++
				if leaks <= 10 {
					t.Errorf("a secret (%q) appears in %s: %.300s", n, where, text)
				}
			}
		}
	}
	for _, a := range answers {
		check("an API answer", a)
	}
	// Every record of every topic the instance uses.
	topics, err := kadm.NewClient(producer).ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, name := range topics.Names() {
		if strings.HasPrefix(name, "leak.") {
			names = append(names, name)
		}
	}
	records := 0
	for _, name := range names {
		recs := readAll(t, name)
		records += len(recs)
		for _, r := range recs {
			check("a record on "+name, string(r.Key)+" "+string(r.Value))
		}
	}
	// Every log line, after the instance has stopped (nothing more to come).
	if took, err := in.Stop(); err != nil {
		t.Fatalf("stop after %v: %v", took, err)
	}
	for _, l := range in.Logs() {
		check("the service log", l)
	}
	// Every row the sink wrote, read from the instance's ClickHouse files.
	rows := 0
	lib := os.Getenv("WEBHOOKD_CHDB_LIBRARY")
	if lib == "" {
		lib = analytics.FindChDB()
	}
	store, err := analytics.OpenChDB(lib, filepath.Join(in.DataDir, "clickhouse"), analytics.Options{})
	if err != nil {
		t.Fatalf("open the instance's chDB: %v", err)
	}
	defer store.Close()
	for _, table := range []string{"attempts", "executions", "dlq_items"} {
		rs, err := store.Rows(context.Background(), table)
		if err != nil {
			t.Fatal(err)
		}
		rows += len(rs)
		for _, r := range rs {
			check("a ClickHouse row of "+table, strings.Join(r, "\t"))
		}
	}
	t.Logf("checked %d API answers, %d records on %d topics, %d log lines, %d ClickHouse rows: %d leaks", len(answers), records, len(names), len(in.Logs()), rows, leaks)
	if records == 0 || rows == 0 || len(in.Logs()) == 0 {
		t.Fatal("nothing was checked")
	}
}

// readAll reads every record a topic holds now.
func readAll(t *testing.T, topic string) []*kgo.Record {
	t.Helper()
	ends, err := kadm.NewClient(producer).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	var out []*kgo.Record
	if len(want) == 0 {
		return out
	}
	readTopic(t, topic, func(r *kgo.Record) bool {
		out = append(out, r)
		if r.Offset+1 >= want[r.Partition] {
			delete(want, r.Partition)
		}
		return len(want) == 0
	})
	return out
}
