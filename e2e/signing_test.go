package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/signing"
)

// nodeWith finds node and the npm package the signature tests verify with
// (make test-tools installs both); under CI a missing one is a failure.
func nodeWith(t *testing.T, pkg string) (node string, env []string) {
	t.Helper()
	modules, _ := filepath.Abs("../.cache/node/node_modules")
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(modules, pkg))
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("node and %s are required in CI (make test-tools installs them): %v", pkg, err)
		}
		t.Skipf("node or %s not installed (make test-tools): %v", pkg, err)
	}
	return node, []string{"NODE_PATH=" + modules}
}

// receiverVerifies runs a verification script on a received request's body
// (written to a file) and the given arguments: nil when it accepts.
func receiverVerifies(t *testing.T, node string, env []string, script string, body []byte, args ...string) error {
	t.Helper()
	f := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(f, body, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, append([]string{"../signing/testdata/" + script, f}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("%s: %v: %s", script, err, out)
	}
	return err
}

// jwtKid verifies a JWT with key and returns its kid ("" if it does not verify).
func jwtKid(tok, key string) string {
	parsed, err := jwt.ParseWithClaims(tok, &signing.Claims{}, func(*jwt.Token) (any, error) { return []byte(key), nil }, jwt.WithValidMethods([]string{"HS256"}))
	if err != nil {
		return ""
	}
	kid, _ := parsed.Header["kid"].(string)
	return kid
}

// TestSigningKeyRotationThroughKafka: Standard Webhooks, hmac and jwt steps
// get a request per event through Kafka; the Standard Webhooks reference
// library (npm standardwebhooks) and the spec's snippets verify them; after
// each step's key is changed, a receiver holding the old key and one holding
// the new key both verify the next event's request; a change with grace 0
// leaves only the new key.
func TestSigningKeyRotationThroughKafka(t *testing.T) {
	node, nodeEnv := nodeWith(t, "standardwebhooks")
	rcv := newReceiver(t)
	const oldHMAC, newHMAC, oldJWT, newJWT = "rot-old-hmac-key", "rot-new-hmac-key", "rot-old-jwt-key", "rot-new-jwt-key"
	step := func(path, sig string) string {
		return `{"order":1,"url":"` + rcv.URL + path + `","body_template":{"pb":"{{postback.id}}","n":"日本 \"q\""}` + sig + `}`
	}
	create := func(name, s string) map[string]any {
		return createPipeline(t, `{"name":"`+name+`","trigger_type":"postback","steps":[`+s+`]}`)
	}
	std := create("rot-std", step("/std", `,"signature_mode":"standard"`))
	oldStd, _ := std["steps"].([]any)[0].(map[string]any)["signing_key"].(string)
	if _, err := signing.ParseSecret(oldStd); err != nil {
		t.Fatalf("create answered no usable generated key: %v (%v)", err, std)
	}
	hm := create("rot-hmac", step("/hmac", `,"signature_mode":"hmac","signing_key":"`+oldHMAC+`"`))
	jw := create("rot-jwt", step("/jwt", `,"signature_mode":"jwt","signing_key":"`+oldJWT+`"`))
	ids := map[string]string{"/std": std["id"].(string), "/hmac": hm["id"].(string), "/jwt": jw["id"].(string)}

	// deliver produces one event and returns the three requests by path.
	deliver := func(evID string) map[string]captured {
		t.Helper()
		produce(t, "afftok.postbacks", evID, `{"id":"`+evID+`","type":"postback.received","data":{"id":"pb_`+evID+`"}}`)
		got := map[string]captured{}
		for range 3 {
			c := rcv.next(t)
			got[c.Path] = c
		}
		for path, id := range ids {
			c, ok := got[path]
			if !ok {
				t.Fatalf("%s: no request for %s (got %v)", evID, path, got)
			}
			if want := delivery.ID(delivery.EventKey(evID, "", 0, 0), id); c.Header.Get("X-Afftok-Delivery-ID") != want {
				t.Fatalf("%s %s: delivery id %q, want %q", evID, path, c.Header.Get("X-Afftok-Delivery-ID"), want)
			}
		}
		return got
	}
	stdVerifies := func(c captured, key string) bool {
		return receiverVerifies(t, node, nodeEnv, "verify_standard.js", c.Body, c.Header.Get("webhook-id"), c.Header.Get("webhook-timestamp"), c.Header.Get("webhook-signature"), key) == nil
	}
	// The guide's Node snippet, on either signature header.
	snippetVerifies := func(c captured, header, key string) bool {
		return receiverVerifies(t, node, nil, "verify_hmac.js", c.Body, c.Header.Get(header), key) == nil
	}
	bearer := func(c captured) string { return strings.TrimPrefix(c.Header.Get("Authorization"), "Bearer ") }

	// Before any rotation: one key each.
	got := deliver("evt_rot_1")
	s := got["/std"]
	if s.Header.Get("webhook-id") != s.Header.Get("X-Afftok-Delivery-ID") || s.Header.Get("webhook-timestamp") != s.Header.Get("X-Afftok-Timestamp") ||
		len(strings.Fields(s.Header.Get("webhook-signature"))) != 1 || !stdVerifies(s, oldStd) {
		t.Fatalf("standard request before the rotation: %v", s.Header)
	}
	if stdVerifies(s, signing.NewSecret()) {
		t.Fatal("the reference library verified with an unrelated key: the check could not fail")
	}
	if h := got["/hmac"]; !verifyHMAC(h.Body, h.Header.Get("X-Afftok-Signature"), oldHMAC) || !snippetVerifies(h, "X-Afftok-Signature", oldHMAC) || h.Header.Get("X-Afftok-Signature-Previous") != "" {
		t.Fatalf("hmac request before the rotation: %v", h.Header)
	}
	if j := got["/jwt"]; jwtKid(bearer(j), oldJWT) != signing.KeyID(oldJWT) || j.Header.Get("X-Afftok-Signature-Previous") != "" {
		t.Fatalf("jwt request before the rotation: %v", j.Header)
	}

	// Rotate every key (default grace, a day).
	newStd := signing.NewSecret()
	rotate := func(path, sig string) map[string]any {
		code, out := api(t, "PUT", "/api/admin/webhooks/pipelines/"+ids[path], `{"steps":[`+step(path, sig)+`]}`)
		if code != 200 {
			t.Fatalf("rotate %s: %d %v", path, code, out)
		}
		st := out["data"].(map[string]any)["steps"].([]any)[0].(map[string]any)
		if st["has_previous_signing_key"] != true || st["previous_signing_key_expires_at"] == nil || st["signing_key"] != nil {
			t.Fatalf("rotate %s: answer %v", path, st)
		}
		return st
	}
	rotate("/std", `,"signature_mode":"standard","signing_key":"`+newStd+`"`)
	rotate("/hmac", `,"signature_mode":"hmac","signing_key":"`+newHMAC+`"`)
	rotate("/jwt", `,"signature_mode":"jwt","signing_key":"`+newJWT+`"`)

	// During the grace a receiver with either key verifies.
	got = deliver("evt_rot_2")
	s = got["/std"]
	if sigs := strings.Fields(s.Header.Get("webhook-signature")); len(sigs) != 2 {
		t.Fatalf("webhook-signature during the grace: %q, want two", sigs)
	}
	if !stdVerifies(s, newStd) || !stdVerifies(s, oldStd) {
		t.Fatalf("the reference library did not verify the two-signature header with both keys: %v", s.Header)
	}
	h := got["/hmac"]
	if sig := h.Header.Values("X-Afftok-Signature"); len(sig) != 1 || !verifyHMAC(h.Body, sig[0], newHMAC) || !snippetVerifies(h, "X-Afftok-Signature", newHMAC) || snippetVerifies(h, "X-Afftok-Signature", oldHMAC) {
		t.Fatalf("X-Afftok-Signature during the grace: %q", sig)
	}
	if prev := h.Header.Get("X-Afftok-Signature-Previous"); !verifyHMAC(h.Body, prev, oldHMAC) || !snippetVerifies(h, "X-Afftok-Signature-Previous", oldHMAC) {
		t.Fatalf("X-Afftok-Signature-Previous %q does not verify with the old key", prev)
	}
	j := got["/jwt"]
	if jwtKid(bearer(j), newJWT) != signing.KeyID(newJWT) || jwtKid(j.Header.Get("X-Afftok-Signature-Previous"), oldJWT) != signing.KeyID(oldJWT) {
		t.Fatalf("jwt during the grace: %v", j.Header)
	}

	// GET shows the grace, never a key; no key is in any answer or log line.
	code, out := api(t, "GET", "/api/admin/webhooks/pipelines/"+ids["/std"], nil)
	raw, _ := json.Marshal(out)
	if code != 200 || !strings.Contains(string(raw), `"has_previous_signing_key":true`) {
		t.Fatalf("GET: %d %s", code, raw)
	}
	for _, k := range []string{oldStd, newStd, oldHMAC, newHMAC, oldJWT, newJWT} {
		b64 := strings.TrimPrefix(k, "whsec_")
		if strings.Contains(string(raw), b64) {
			t.Fatalf("GET shows a key: %s", raw)
		}
		for _, l := range shared.Logs() {
			if strings.Contains(l, b64) {
				t.Fatalf("a key was logged: %s", l)
			}
		}
	}

	// On the pipelines topic both keys are sealed.
	readTopic(t, "webhooks.pipelines", func(r *kgo.Record) bool {
		for _, k := range []string{oldStd, newStd, oldHMAC, newHMAC, oldJWT, newJWT} {
			if bytes.Contains(r.Value, []byte(strings.TrimPrefix(k, "whsec_"))) {
				t.Fatalf("a key in clear on the pipelines topic: %s", r.Value)
			}
		}
		return string(r.Key) == ids["/hmac"] && bytes.Contains(r.Value, []byte(`"previous_signing_key":"enc:v1:`))
	})

	// A change with grace 0: the replaced key signs no more.
	newer := signing.NewSecret()
	code, out = api(t, "PUT", "/api/admin/webhooks/pipelines/"+ids["/std"], `{"steps":[`+step("/std", `,"signature_mode":"standard","signing_key":"`+newer+`","signing_key_grace_seconds":0`)+`]}`)
	if code != 200 {
		t.Fatalf("rotate with grace 0: %d %v", code, out)
	}
	got = deliver("evt_rot_3")
	s = got["/std"]
	if len(strings.Fields(s.Header.Get("webhook-signature"))) != 1 || !stdVerifies(s, newer) || stdVerifies(s, newStd) || stdVerifies(s, oldStd) {
		t.Fatalf("after a grace-0 rotation: %v", s.Header)
	}
	for _, id := range ids {
		waitExecution(t, id, "pb_evt_rot_3")
	}
	rcv.noneSoFar(t)
}
