package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/afftok/webhookd/pipeline"
	"github.com/afftok/webhookd/registry"
	"github.com/afftok/webhookd/signing"
)

// memRegistry is an in-memory registry with the real one's compare-and-set:
// these tests are about what a write stores and what answers show.
type memRegistry struct {
	mu sync.Mutex
	m  map[string]*pipeline.Compiled
}

func (r *memRegistry) Get(id string) (*pipeline.Compiled, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.m[id]
	return c, ok
}

func (r *memRegistry) List() []*pipeline.Compiled { return nil }

func (r *memRegistry) Put(_ context.Context, p *pipeline.Pipeline, base int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.m[p.ID]; (ok && cur.Revision != base) || (!ok && base != 0) {
		return registry.ErrConflict
	}
	// Stored as the registry would: a deep copy, through JSON.
	raw, _ := json.Marshal(p)
	var c pipeline.Pipeline
	_ = json.Unmarshal(raw, &c)
	cp, err := pipeline.Compile(&c)
	if err != nil {
		return err
	}
	r.m[p.ID] = cp
	return nil
}

func (r *memRegistry) Delete(context.Context, string, int64) error { return nil }
func (r *memRegistry) Sync(context.Context) error                  { return nil }

// keyServer is an admin server on a memRegistry whose clock the test sets
// and whose log it reads.
type keyServer struct {
	*Server
	reg *memRegistry
	now time.Time
	log bytes.Buffer
}

func newKeyServer(t *testing.T) *keyServer {
	k := &keyServer{reg: &memRegistry{m: map[string]*pipeline.Compiled{}}, now: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	k.Server = New(Options{Token: testToken, Registry: k.reg, Now: func() time.Time { return k.now },
		Log: slog.New(slog.NewJSONHandler(&k.log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	return k
}

// call sends a request and decodes the answer's data (or error).
func (k *keyServer) call(t *testing.T, method, path, body string) (int, map[string]any, string) {
	t.Helper()
	status, raw := serve(t, k.Server, method, path, body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: %d %s", method, path, status, raw)
	}
	data, _ := out["data"].(map[string]any)
	return status, data, string(raw)
}

func step0(d map[string]any) map[string]any { return d["steps"].([]any)[0].(map[string]any) }

func (k *keyServer) stored(t *testing.T, id string) *pipeline.Step {
	t.Helper()
	c, ok := k.reg.Get(id)
	if !ok {
		t.Fatalf("pipeline %s not stored", id)
	}
	return &c.Pipeline.Steps[0]
}

func TestStandardModeKeyIsGeneratedAndShownOnce(t *testing.T) {
	k := newKeyServer(t)
	var answers []string
	status, d, raw := k.call(t, "POST", "/api/admin/webhooks/pipelines",
		`{"name":"std","trigger_type":"click","steps":[{"order":1,"url":"https://rcv.example/a","signature_mode":"standard"}]}`)
	if status != 201 {
		t.Fatalf("create: %d %s", status, raw)
	}
	id, key := d["id"].(string), step0(d)["signing_key"].(string)
	if _, err := signing.ParseSecret(key); err != nil {
		t.Fatalf("generated key %q: %v", key, err)
	}
	if got := k.stored(t, id).SigningKey; got != key {
		t.Fatalf("stored key %q, answered %q", got, key)
	}
	// Never again: not on GET, not on a PUT that keeps it.
	_, d, raw = k.call(t, "GET", "/api/admin/webhooks/pipelines/"+id, "")
	answers = append(answers, raw)
	if step0(d)["has_signing_key"] != true || step0(d)["signature_mode"] != "standard" {
		t.Fatalf("GET %s", raw)
	}
	getBody, _ := json.Marshal(d) // GET → PUT unchanged
	status, _, raw = k.call(t, "PUT", "/api/admin/webhooks/pipelines/"+id, string(getBody))
	answers = append(answers, raw)
	if status != 200 || k.stored(t, id).SigningKey != key {
		t.Fatalf("PUT of the GET answer: %d %s", status, raw)
	}
	status, _, raw = k.call(t, "PUT", "/api/admin/webhooks/pipelines/"+id, `{"steps":[{"order":1,"url":"https://rcv.example/b","signature_mode":"standard"}]}`)
	answers = append(answers, raw)
	if status != 200 || k.stored(t, id).SigningKey != key {
		t.Fatalf("PUT without signing_key changed it: %d %s", status, raw)
	}
	for _, a := range answers {
		if strings.Contains(a, strings.TrimPrefix(key, "whsec_")) {
			t.Fatalf("the key was shown again: %s", a)
		}
	}

	// A step moved to standard mode without a key gets one in the PUT answer.
	_, d, _ = k.call(t, "POST", "/api/admin/webhooks/pipelines", `{"name":"h","trigger_type":"click","steps":[{"order":1,"url":"https://rcv.example/a","signing_key":"hmac-key-1"}]}`)
	id2 := d["id"].(string)
	status, d, raw = k.call(t, "PUT", "/api/admin/webhooks/pipelines/"+id2, `{"steps":[{"order":1,"url":"https://rcv.example/a","signature_mode":"standard"}]}`)
	if status != 200 {
		t.Fatalf("PUT: %d %s", status, raw)
	}
	key2, _ := step0(d)["signing_key"].(string)
	if _, err := signing.ParseSecret(key2); err != nil || k.stored(t, id2).SigningKey != key2 {
		t.Fatalf("PUT answer %s: generated key %q (%v)", raw, key2, err)
	}
	// Another mode's key is no previous key of a standard step.
	if s := k.stored(t, id2); s.PreviousSigningKey != "" || step0(d)["has_previous_signing_key"] != nil {
		t.Fatalf("mode change kept a previous key: %+v", s)
	}
	// A key given by the client is never echoed.
	given := signing.NewSecret()
	status, d, raw = k.call(t, "POST", "/api/admin/webhooks/pipelines", `{"name":"g","trigger_type":"click","steps":[{"order":1,"url":"https://rcv.example/a","signature_mode":"standard","signing_key":"`+given+`"}]}`)
	if status != 201 || strings.Contains(raw, strings.TrimPrefix(given, "whsec_")) || step0(d)["has_signing_key"] != true {
		t.Fatalf("create with a key: %d %s", status, raw)
	}
	if strings.Contains(k.log.String(), strings.TrimPrefix(key, "whsec_")) || strings.Contains(k.log.String(), strings.TrimPrefix(key2, "whsec_")) {
		t.Fatalf("a key was logged:\n%s", k.log.String())
	}
}

func TestStandardModeRejectsMalformedKeysWithoutQuotingThem(t *testing.T) {
	k := newKeyServer(t)
	for _, key := range []string{"not-a-whsec-key-123", "whsec_dG9vLXNob3J0LWtleQ==", "whsec_***invalid***"} {
		status, _, raw := k.call(t, "POST", "/api/admin/webhooks/pipelines",
			`{"name":"std","trigger_type":"click","steps":[{"order":1,"url":"https://rcv.example/a","signature_mode":"standard","signing_key":"`+key+`"}]}`)
		if status != 400 || !strings.Contains(raw, `"field":"steps[0].signing_key"`) || strings.Contains(raw, strings.TrimPrefix(key, "whsec_")) {
			t.Errorf("%s: %d %s", key, status, raw)
		}
	}
	if strings.Contains(k.log.String(), "dG9vLXNob3J0") {
		t.Fatalf("a rejected key was logged: %s", k.log.String())
	}
}

func TestChangingASigningKeyKeepsTheOldOneForItsGrace(t *testing.T) {
	k := newKeyServer(t)
	_, d, _ := k.call(t, "POST", "/api/admin/webhooks/pipelines", `{"name":"rot","trigger_type":"click","steps":[{"order":1,"url":"https://rcv.example/a","signing_key":"old-hmac-key-1"}]}`)
	id := d["id"].(string)
	path := "/api/admin/webhooks/pipelines/" + id
	rotatedAt := k.now

	status, d, raw := k.call(t, "PUT", path, `{"steps":[{"order":1,"url":"https://rcv.example/a","signing_key":"new-hmac-key-2"}]}`)
	if status != 200 {
		t.Fatalf("rotate: %d %s", status, raw)
	}
	s := k.stored(t, id)
	wantExp := rotatedAt.Add(24 * time.Hour)
	if s.SigningKey != "new-hmac-key-2" || s.PreviousSigningKey != "old-hmac-key-1" || s.PreviousSigningKeyExpiresAt == nil || !s.PreviousSigningKeyExpiresAt.Equal(wantExp) {
		t.Fatalf("stored %+v", s)
	}
	if step0(d)["has_previous_signing_key"] != true || step0(d)["previous_signing_key_expires_at"] != wantExp.Format(time.RFC3339) {
		t.Fatalf("PUT answer %s", raw)
	}

	// GET shows the grace, never the keys; sending the GET back changes nothing.
	_, d, raw = k.call(t, "GET", path, "")
	if step0(d)["has_previous_signing_key"] != true || step0(d)["previous_signing_key_expires_at"] != wantExp.Format(time.RFC3339) {
		t.Fatalf("GET %s", raw)
	}
	rev := d["revision"]
	back, _ := json.Marshal(d)
	status, d, raw = k.call(t, "PUT", path, string(back))
	if status != 200 || d["revision"] != rev || k.stored(t, id).PreviousSigningKey != "old-hmac-key-1" {
		t.Fatalf("PUT of the GET answer: %d %s", status, raw)
	}

	// previous_signing_key cannot be written.
	status, _, raw = k.call(t, "PUT", path, `{"steps":[{"order":1,"url":"https://rcv.example/a","previous_signing_key":"injected-key-9"}]}`)
	if status != 400 || !strings.Contains(raw, `"field":"steps[0].previous_signing_key"`) || strings.Contains(raw, "injected-key-9") {
		t.Fatalf("writing previous_signing_key: %d %s", status, raw)
	}

	// Within the grace an unrelated change keeps it; after it, a write drops it.
	k.now = wantExp.Add(-time.Second)
	if status, _, raw = k.call(t, "PUT", path, `{"name":"rot2"}`); status != 200 || k.stored(t, id).PreviousSigningKey != "old-hmac-key-1" {
		t.Fatalf("a change within the grace: %d %s, stored %+v", status, raw, k.stored(t, id))
	}
	k.now = wantExp
	if _, d, raw = k.call(t, "GET", path, ""); step0(d)["has_previous_signing_key"] != nil || step0(d)["previous_signing_key_expires_at"] != nil {
		t.Fatalf("GET after the grace shows a previous key: %s", raw)
	}
	status, d, raw = k.call(t, "PUT", path, `{"name":"rot3"}`)
	if s := k.stored(t, id); status != 200 || s.PreviousSigningKey != "" || s.PreviousSigningKeyExpiresAt != nil || step0(d)["has_previous_signing_key"] != nil {
		t.Fatalf("a change after the grace: %d %s, stored %+v", status, raw, s)
	}

	// The step's own grace; 0 drops the old key at once.
	status, _, raw = k.call(t, "PUT", path, `{"steps":[{"order":1,"url":"https://rcv.example/a","signing_key":"third-key-3","signing_key_grace_seconds":3600}]}`)
	if s := k.stored(t, id); status != 200 || s.PreviousSigningKey != "new-hmac-key-2" || !s.PreviousSigningKeyExpiresAt.Equal(k.now.Add(time.Hour)) {
		t.Fatalf("grace 3600: %d %s, stored %+v", status, raw, s)
	}
	status, _, raw = k.call(t, "PUT", path, `{"steps":[{"order":1,"url":"https://rcv.example/a","signing_key":"fourth-key-4","signing_key_grace_seconds":0}]}`)
	if s := k.stored(t, id); status != 200 || s.PreviousSigningKey != "" {
		t.Fatalf("grace 0: %d %s, stored %+v", status, raw, s)
	}
	status, _, raw = k.call(t, "PUT", path, `{"steps":[{"order":1,"url":"https://rcv.example/a","signing_key_grace_seconds":-5}]}`)
	if status != 400 || !strings.Contains(raw, `"field":"steps[0].signing_key_grace_seconds"`) {
		t.Fatalf("grace -5: %d %s", status, raw)
	}
	for _, key := range []string{"old-hmac-key-1", "new-hmac-key-2", "third-key-3", "fourth-key-4", "injected-key-9"} {
		if strings.Contains(k.log.String(), key) {
			t.Fatalf("%s was logged:\n%s", key, k.log.String())
		}
	}
}
