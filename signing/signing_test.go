package signing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/afftok/webhookd/signing/signingtest"
)

var verifyHMAC = signingtest.VerifyHMAC

var bodies = map[string][]byte{
	"guide":   []byte(`{"conversion_id": "conv_456", "amount": 49.99}`),
	"unicode": []byte(`{"ua":"日本語 ✓ \"quoted\" \n line","x":[1,2]}`),
}

func signed(t *testing.T, mode, key string, body []byte) http.Header {
	t.Helper()
	h := http.Header{"X-Afftok-Signature": {"sha256=forged"}}
	err := Apply(h, mode, key, Request{Body: body, DeliveryID: "wh_del_123", PipelineID: "wh_pipe_456", TriggerType: "conversion", TriggerID: "conv_789", RetryCount: 2, Now: time.Unix(1701432000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestApplySetsTheSpecHeaders(t *testing.T) {
	h := signed(t, ModeHMAC, "your_secret_key", bodies["guide"])
	want := map[string]string{"Content-Type": "application/json", "X-Afftok-Timestamp": "1701432000", "X-Afftok-Delivery-Id": "wh_del_123", "X-Afftok-Retry-Count": "2"}
	for k, v := range want {
		if h.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, h.Get(k), v)
		}
	}
	mac := hmac.New(sha256.New, []byte("your_secret_key"))
	mac.Write(bodies["guide"])
	if got := h.Get("X-Afftok-Signature"); got != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
		t.Errorf("signature %q", got)
	}
	if n := signed(t, ModeNone, "", nil); n.Get("X-Afftok-Signature") != "" || n.Get("Authorization") != "" {
		t.Errorf("mode none signed: %v", n)
	}
	if err := Apply(http.Header{}, "rsa", "k", Request{}); err == nil {
		t.Error("unknown mode accepted")
	}
}

func TestGoSnippetAcceptsAndRejects(t *testing.T) {
	for name, body := range bodies {
		h := signed(t, ModeHMAC, "s3cret", body)
		if !verifyHMAC(body, h.Get("X-Afftok-Signature"), "s3cret") {
			t.Errorf("%s: rejected", name)
		}
		if verifyHMAC(append(body, ' '), h.Get("X-Afftok-Signature"), "s3cret") || verifyHMAC(body, h.Get("X-Afftok-Signature"), "other") {
			t.Errorf("%s: accepted a tampered body or wrong key", name)
		}
	}
}

// tool finds an interpreter; under CI a missing one is a failure, not a skip.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required in CI (make test-tools installs it)", name)
		}
		t.Skipf("%s not installed (make test-tools)", name)
	}
	return p
}

func run(t *testing.T, env []string, name string, args ...string) error {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("%s %v: %s", filepath.Base(name), args, out)
	}
	return err
}

// TestSpecSnippetsVerifyWhatWeSend runs the guide's Node, Python and PHP
// verification snippets, unmodified, against our signatures.
func TestSpecSnippetsVerifyWhatWeSend(t *testing.T) {
	node, py, php := tool(t, "node"), tool(t, "python3"), tool(t, "php")
	dir := t.TempDir()
	for name, body := range bodies {
		f := filepath.Join(dir, name+".json")
		if err := os.WriteFile(f, body, 0o644); err != nil {
			t.Fatal(err)
		}
		sig := signed(t, ModeHMAC, "your_secret_key", body).Get("X-Afftok-Signature")
		checks := [][]string{
			{node, "testdata/verify_quickstart.js"}, {node, "testdata/verify_hmac.js"},
			{py, "testdata/verify_hmac.py"}, {php, "testdata/verify_hmac.php"},
		}
		for _, c := range checks {
			if err := run(t, nil, c[0], c[1], f, sig, "your_secret_key"); err != nil {
				t.Errorf("%s (%s body) rejected our signature: %v", c[1], name, err)
			}
			if err := run(t, nil, c[0], c[1], f, sig, "wrong_key"); err == nil {
				t.Errorf("%s (%s body) accepted a wrong key: the test could not fail", c[1], name)
			}
		}
	}
}

func TestJSONWebTokenVerifiesOurJWT(t *testing.T) {
	node := tool(t, "node")
	modules, _ := filepath.Abs("../.cache/node/node_modules")
	if _, err := os.Stat(filepath.Join(modules, "jsonwebtoken")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("jsonwebtoken is required in CI (make test-tools installs it)")
		}
		t.Skip("jsonwebtoken not installed (make test-tools)")
	}
	h := http.Header{}
	if err := Apply(h, ModeJWT, "jwt-secret", Request{DeliveryID: "wh_del_123", PipelineID: "wh_pipe_456", TriggerType: "conversion", TriggerID: "conv_789", Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimPrefix(h.Get("Authorization"), "Bearer ")
	env := []string{"NODE_PATH=" + modules}
	if err := run(t, env, node, "testdata/verify_jwt.js", tok, "jwt-secret"); err != nil {
		t.Fatalf("jsonwebtoken rejected our JWT: %v", err)
	}
	if err := run(t, env, node, "testdata/verify_jwt.js", tok, "wrong"); err == nil {
		t.Fatal("jsonwebtoken accepted a wrong secret")
	}
}

func BenchmarkHMAC(b *testing.B) {
	body := []byte(strings.Repeat(`{"k":"v"},`, 100))
	for b.Loop() {
		HMAC(body, "secret")
	}
}
