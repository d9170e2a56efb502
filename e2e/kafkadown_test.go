package e2e

import (
	"os"
	"strings"
	"testing"
)

// With the broker gone, a pipeline write is answered 503 unavailable (the
// write is bounded), not left hanging; reads still answer from memory.
func TestPipelineWritesAnswer503WhenKafkaIsGone(t *testing.T) {
	klog := newLogBuffer("devkafka-down")
	k, err := launch(devkafkaBin, []string{"-addr", "127.0.0.1:0"}, os.Environ(), klog)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if !k.exited() {
			_ = k.cmd.Process.Kill()
			<-k.done
		}
	}()
	addr, err := klog.waitLine(0, func(l string) (string, bool) { return strings.CutPrefix(l, "listening ") }, k.done, readyWithin)
	if err != nil {
		t.Fatal(err)
	}
	in := newInstance(t, "dev", merge(ownTopics("down."), map[string]string{"WEBHOOKD_KAFKA_BROKERS": addr}))
	in.Start(t)
	defer in.Kill() // it cannot shut down cleanly without its broker
	p := in.CreatePipeline(t, `{"name":"down","trigger_type":"click","steps":[{"order":1,"url":"https://hooks.example.com/x"}]}`)
	path := "/api/admin/webhooks/pipelines/" + p["id"].(string)

	_ = k.cmd.Process.Kill()
	<-k.done
	// apiClient gives up after a minute: an answer at all proves the bound.
	for _, c := range []struct{ method, path, body string }{
		{"PUT", path, `{"description":"broker gone"}`},
		{"DELETE", path, ``},
		{"POST", "/api/admin/webhooks/pipelines", `{"name":"d2","trigger_type":"click","steps":[{"order":1,"url":"https://hooks.example.com/x"}]}`},
	} {
		var body any
		if c.body != "" {
			body = c.body
		}
		code, _, out := in.Call(t, c.method, c.path, body)
		if code != 503 || out["error"].(map[string]any)["code"] != "unavailable" {
			t.Errorf("%s %s with the broker gone: %d %v", c.method, c.path, code, out)
		}
	}
	if code, out := in.API(t, "GET", path, nil); code != 200 || out["data"].(map[string]any)["description"] == "broker gone" {
		t.Errorf("GET with the broker gone: %d %v", code, out)
	}
}
