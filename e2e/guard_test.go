package e2e

import (
	"strings"
	"testing"
)

// With the production guard, a URL whose host can only ever reach a blocked
// address — any spelling of an IP literal, localhost — is refused when the
// pipeline is saved (or a step tested): 400 validation_failed naming the
// field. A public hostname is accepted (what it resolves to is checked when
// it is dialled).
func TestBlockedTargetsAreRefusedWhenSaved(t *testing.T) {
	// No allowed CIDR: 127.0.0.1 is as blocked as it is in production.
	in := startInstance(t, "dev", guardedEnv("ssrf.", map[string]string{"WEBHOOKD_ALLOWED_TARGET_CIDRS": ""}))
	refused := func(code int, out map[string]any, fields ...string) {
		t.Helper()
		e, _ := out["error"].(map[string]any)
		if code != 400 || e == nil || e["code"] != "validation_failed" {
			t.Fatalf("answer %d %v, want 400 validation_failed", code, out)
		}
		got := map[string]string{}
		for _, d := range e["details"].([]any) {
			dm := d.(map[string]any)
			got[dm["field"].(string)] = dm["message"].(string)
		}
		for _, f := range fields {
			if !strings.HasPrefix(got[f], "points to a loopback address the outbound guard blocks") {
				t.Errorf("%s: %q, want the guard's refusal (details %v)", f, got[f], got)
			}
		}
		if len(got) != len(fields) {
			t.Errorf("details %v, want only %v", got, fields)
		}
	}
	code, out := in.API(t, "POST", "/api/admin/webhooks/pipelines", `{"name":"mapped","trigger_type":"click",
	  "failover_url":"http://2130706433/fo","steps":[{"order":1,"url":"http://[::ffff:127.0.0.1]:8080/x"}]}`)
	refused(code, out, "steps[0].url", "failover_url")
	code, out = in.API(t, "POST", "/api/admin/webhooks/test/step", `{"url":"http://[::ffff:127.0.0.1]:8080/x","timeout_seconds":2}`)
	refused(code, out, "url")

	p := in.CreatePipeline(t, `{"name":"public","trigger_type":"click","steps":[{"order":1,"url":"https://hooks.example.com/x"}]}`)
	code, out = in.API(t, "PUT", "/api/admin/webhooks/pipelines/"+p["id"].(string), `{"failover_url":"http://localhost:8080/fo"}`)
	refused(code, out, "failover_url")
}

// Where private targets are allowed (dev mode's default), the same URL is
// accepted and called.
func TestPrivateTargetsAllowedAreNotRefused(t *testing.T) {
	rcv := newReceiver(t)
	port := rcv.URL[strings.LastIndex(rcv.URL, ":")+1:]
	code, out := api(t, "POST", "/api/admin/webhooks/test/step", `{"url":"http://[::ffff:127.0.0.1]:`+port+`/mapped","timeout_seconds":5}`)
	if code != 200 || out["data"].(map[string]any)["status"] != "completed" {
		t.Fatalf("test step: %d %v", code, out)
	}
	if c := rcv.next(t); c.Path != "/mapped" {
		t.Fatalf("receiver got %s", c.Path)
	}
}
