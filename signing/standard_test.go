package signing

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The Standard Webhooks reference libraries' own test vector.
const (
	vectorSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTS     = 1614265330
	vectorBody   = `{"test": 2432232314}`
	vectorSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestStandardSignatureMatchesTheReferenceVector(t *testing.T) {
	h := http.Header{}
	err := Apply(h, ModeStandard, vectorSecret, Request{Body: []byte(vectorBody), DeliveryID: vectorID, RetryCount: 1, Now: time.Unix(vectorTS, 0)})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"webhook-id": vectorID, "webhook-timestamp": "1614265330", "webhook-signature": vectorSig,
		"X-Afftok-Delivery-ID": vectorID, "X-Afftok-Timestamp": "1614265330", "X-Afftok-Retry-Count": "1"}
	for k, v := range want {
		if h.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, h.Get(k), v)
		}
	}
	if h.Get(HeaderSignature) != "" || h.Get("Authorization") != "" || h.Get(HeaderSignaturePrevious) != "" {
		t.Errorf("standard mode set another mode's headers: %v", h)
	}
}

func TestParseSecret(t *testing.T) {
	b24 := base64.StdEncoding.EncodeToString(make([]byte, 24))
	for _, tc := range []struct {
		secret string
		ok     bool
	}{
		{vectorSecret, true},
		{NewSecret(), true},
		{"whsec_" + b24, true},
		{"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 64)), true},
		{"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 23)), false},                         // too short
		{"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 65)), false},                         // too long
		{strings.TrimPrefix(vectorSecret, "whsec_"), false},                                             // no prefix
		{"whsec_" + strings.TrimRight(base64.StdEncoding.EncodeToString(make([]byte, 25)), "="), false}, // unpadded
		{"whsec_" + base64.URLEncoding.EncodeToString([]byte(strings.Repeat("\xfb\xff", 16))), false},   // URL alphabet
		{"whsec_", false},
		{"", false},
		{"WHSEC_" + b24, false},
	} {
		key, err := ParseSecret(tc.secret)
		if (err == nil) != tc.ok {
			t.Errorf("ParseSecret(%q): %v, want ok=%v", tc.secret, err, tc.ok)
		}
		if err != nil && tc.secret != "" && strings.Contains(err.Error(), strings.TrimPrefix(tc.secret, "whsec_")) && len(tc.secret) > 8 {
			t.Errorf("ParseSecret(%q): the error quotes the secret: %v", tc.secret, err)
		}
		if err == nil && (len(key) < MinSecretBytes || len(key) > MaxSecretBytes) {
			t.Errorf("ParseSecret(%q) = %d bytes", tc.secret, len(key))
		}
	}
	if a, b := NewSecret(), NewSecret(); a == b {
		t.Error("NewSecret repeats itself")
	}
}

func FuzzParseSecret(f *testing.F) {
	for _, s := range []string{vectorSecret, "whsec_", "whsec_====", "whsec_" + strings.Repeat("A", 88), "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		key, err := ParseSecret(s)
		if err != nil {
			return
		}
		if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
			t.Fatalf("%q: %d bytes accepted", s, len(key))
		}
		// What parses signs, and round-trips to the same text.
		if SecretPrefix+base64.StdEncoding.EncodeToString(key) != s {
			t.Fatalf("%q does not round-trip", s)
		}
		if _, err := Standard(Request{DeliveryID: "id", Now: time.Unix(1, 0)}, s); err != nil {
			t.Fatal(err)
		}
	})
}

func TestRotationSignsWithBothKeysInEveryMode(t *testing.T) {
	body := bodies["guide"]
	r := Request{Body: body, DeliveryID: "wh_del_1", PipelineID: "pipe_1", TriggerType: "conversion", TriggerID: "c1", Now: time.Unix(1701432000, 0)}

	t.Run("hmac", func(t *testing.T) {
		r := r
		r.PreviousKey = "old-key"
		h := http.Header{}
		if err := Apply(h, ModeHMAC, "new-key", r); err != nil {
			t.Fatal(err)
		}
		if got := h.Values(HeaderSignature); len(got) != 1 || !verifyHMAC(body, got[0], "new-key") || verifyHMAC(body, got[0], "old-key") {
			t.Errorf("X-Afftok-Signature %q: want one sha256= signature by the new key", got)
		}
		if !verifyHMAC(body, h.Get(HeaderSignaturePrevious), "old-key") || !strings.HasPrefix(h.Get(HeaderSignaturePrevious), "sha256=") {
			t.Errorf("X-Afftok-Signature-Previous %q does not verify with the old key", h.Get(HeaderSignaturePrevious))
		}
	})

	t.Run("jwt", func(t *testing.T) {
		r := r
		r.Now = time.Now()
		r.PreviousKey = "old-jwt-key"
		h := http.Header{}
		if err := Apply(h, ModeJWT, "new-jwt-key", r); err != nil {
			t.Fatal(err)
		}
		check := func(tok, key string) {
			t.Helper()
			parsed, err := jwt.ParseWithClaims(tok, &Claims{}, func(*jwt.Token) (any, error) { return []byte(key), nil }, jwt.WithValidMethods([]string{"HS256"}))
			if err != nil {
				t.Fatalf("token does not verify with %s: %v", key, err)
			}
			if parsed.Header["kid"] != KeyID(key) {
				t.Errorf("kid %v, want %s", parsed.Header["kid"], KeyID(key))
			}
			if c := parsed.Claims.(*Claims); c.DeliveryID != "wh_del_1" || c.PipelineID != "pipe_1" {
				t.Errorf("claims %+v", c)
			}
		}
		check(strings.TrimPrefix(h.Get("Authorization"), "Bearer "), "new-jwt-key")
		check(h.Get(HeaderSignaturePrevious), "old-jwt-key")
	})

	t.Run("standard", func(t *testing.T) {
		r := r
		old := NewSecret()
		r.PreviousKey = old
		h := http.Header{}
		if err := Apply(h, ModeStandard, vectorSecret, r); err != nil {
			t.Fatal(err)
		}
		sigs := strings.Split(h.Get(HeaderWebhookSignature), " ")
		rNew, _ := Standard(r, vectorSecret)
		rOld, _ := Standard(r, old)
		if len(sigs) != 2 || sigs[0] != rNew || sigs[1] != rOld {
			t.Errorf("webhook-signature %q, want %q then %q", sigs, rNew, rOld)
		}
		if h.Get(HeaderSignaturePrevious) != "" {
			t.Errorf("standard mode set %s", HeaderSignaturePrevious)
		}
	})

	t.Run("no previous key, or the same key", func(t *testing.T) {
		for _, prev := range []string{"", "same"} {
			r := r
			r.PreviousKey = prev
			h := http.Header{HeaderSignaturePrevious: {"forged"}}
			if err := Apply(h, ModeHMAC, "same", r); err != nil {
				t.Fatal(err)
			}
			if h.Get(HeaderSignaturePrevious) != "" {
				t.Errorf("previous %q: %s = %q", prev, HeaderSignaturePrevious, h.Get(HeaderSignaturePrevious))
			}
		}
	})
}

func TestKeyIDIsTheDocumentedHashPrefix(t *testing.T) {
	// printf %s your_secret_key | sha256sum | cut -c1-16
	if got := KeyID("your_secret_key"); got != "a9ee59cf6f8bbd8b" {
		t.Errorf("KeyID = %q", got)
	}
	if KeyID("a") == KeyID("b") || KeyID("a") != KeyID("a") {
		t.Error("KeyID is not a stable per-key id")
	}
}

// TestStandardWebhooksLibraryVerifiesWhatWeSend runs the standard's
// reference library (npm standardwebhooks) on our requests: one key, and a
// rotation's two-signature header with either key.
func TestStandardWebhooksLibraryVerifiesWhatWeSend(t *testing.T) {
	node := tool(t, "node")
	modules, _ := filepath.Abs("../.cache/node/node_modules")
	if _, err := os.Stat(filepath.Join(modules, "standardwebhooks")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("standardwebhooks is required in CI (make test-tools installs it)")
		}
		t.Skip("standardwebhooks not installed (make test-tools)")
	}
	env := []string{"NODE_PATH=" + modules}
	dir := t.TempDir()
	newKey, oldKey, otherKey := NewSecret(), NewSecret(), NewSecret()
	verify := func(f string, h http.Header, secret string) error {
		return run(t, env, node, "testdata/verify_standard.js", f, h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature"), secret)
	}
	for name, body := range bodies {
		f := filepath.Join(dir, name+".json")
		if err := os.WriteFile(f, body, 0o644); err != nil {
			t.Fatal(err)
		}
		r := Request{Body: body, DeliveryID: "wh_del_" + name, Now: time.Now()}
		single, rotated := http.Header{}, http.Header{}
		if err := Apply(single, ModeStandard, newKey, r); err != nil {
			t.Fatal(err)
		}
		r.PreviousKey = oldKey
		if err := Apply(rotated, ModeStandard, newKey, r); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			what   string
			h      http.Header
			secret string
			ok     bool
		}{
			{"one signature, the key", single, newKey, true},
			{"one signature, another key", single, oldKey, false},
			{"rotation, new key", rotated, newKey, true},
			{"rotation, old key", rotated, oldKey, true},
			{"rotation, neither key", rotated, otherKey, false},
		} {
			if err := verify(f, c.h, c.secret); (err == nil) != c.ok {
				t.Errorf("%s body, %s: library verified=%v, want %v", name, c.what, err == nil, c.ok)
			}
		}
		tampered := filepath.Join(dir, name+".tampered.json")
		_ = os.WriteFile(tampered, append(append([]byte(nil), body...), ' '), 0o644)
		if err := verify(tampered, rotated, newKey); err == nil {
			t.Errorf("%s body: the library accepted a tampered body", name)
		}
	}
	// The reference vector, through the library (its tolerance is 5 minutes,
	// so the vector's own 2021 timestamp cannot be used; the id and body can).
	h := http.Header{}
	_ = Apply(h, ModeStandard, vectorSecret, Request{Body: []byte(vectorBody), DeliveryID: vectorID, Now: time.Now()})
	f := filepath.Join(dir, "vector.json")
	_ = os.WriteFile(f, []byte(vectorBody), 0o644)
	if err := verify(f, h, vectorSecret); err != nil {
		t.Errorf("the library rejected the vector's body: %v", err)
	}
	raw, _ := json.Marshal(h)
	t.Logf("standard headers: %s", raw)
}

// BenchmarkApply: the cost of signing a 1 KB body in each mode, with one
// key and during a rotation (two keys).
func BenchmarkApply(b *testing.B) {
	body := []byte(strings.Repeat(`{"k":"v"},`, 100))
	keys := map[string][2]string{ModeHMAC: {"new-key", "old-key"}, ModeJWT: {"new-key", "old-key"}, ModeStandard: {NewSecret(), NewSecret()}}
	for _, mode := range []string{ModeHMAC, ModeJWT, ModeStandard} {
		for _, rotating := range []bool{false, true} {
			name := mode + "/one-key"
			r := Request{Body: body, DeliveryID: "wh_del_1", PipelineID: "pipe_1", Now: time.Unix(1701432000, 0)}
			if rotating {
				name, r.PreviousKey = mode+"/rotating", keys[mode][1]
			}
			b.Run(name, func(b *testing.B) {
				for b.Loop() {
					_ = Apply(http.Header{}, mode, keys[mode][0], r)
				}
			})
		}
	}
}
