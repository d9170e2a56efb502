package dispatcher

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/afftok/webhookd/pipeline"
	"github.com/afftok/webhookd/signing"
	"github.com/afftok/webhookd/signing/signingtest"
	"github.com/afftok/webhookd/template"
)

// rotated compiles a one-step pipeline whose signing key was rotated: the
// previous key signs until expires.
func rotated(t *testing.T, mode, key, prev string, expires time.Time) *pipeline.Compiled {
	t.Helper()
	c := compile(t, `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"https://rcv.example/a","signature_mode":"`+mode+`","signing_key":"`+key+`"}]}`)
	p := *c.Pipeline
	p.Steps = append([]pipeline.Step(nil), p.Steps...)
	p.Steps[0].PreviousSigningKey, p.Steps[0].PreviousSigningKeyExpiresAt = prev, &expires
	out, err := pipeline.Compile(&p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRotatedKeySignsUntilItsGraceEnds: with a controllable clock, the
// previous key signs (in each mode's way) before its expiry and not from
// its expiry on; the signature headers are never shown.
func TestRotatedKeySignsUntilItsGraceEnds(t *testing.T) {
	rotatedAt := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	expires := rotatedAt.Add(24 * time.Hour)
	oldStd, newStd := signing.NewSecret(), signing.NewSecret()
	for _, tc := range []struct {
		mode, key, prev string
		during, after   func(t *testing.T, h http.Header, body []byte)
	}{
		{mode: "hmac", key: "new-hmac-key", prev: "old-hmac-key",
			during: func(t *testing.T, h http.Header, body []byte) {
				if !signingtest.VerifyHMAC(body, h.Get("X-Afftok-Signature"), "new-hmac-key") || !signingtest.VerifyHMAC(body, h.Get("X-Afftok-Signature-Previous"), "old-hmac-key") {
					t.Errorf("during the grace: signature %q, previous %q", h.Get("X-Afftok-Signature"), h.Get("X-Afftok-Signature-Previous"))
				}
			},
			after: func(t *testing.T, h http.Header, body []byte) {
				if !signingtest.VerifyHMAC(body, h.Get("X-Afftok-Signature"), "new-hmac-key") || h.Get("X-Afftok-Signature-Previous") != "" {
					t.Errorf("after the grace: signature %q, previous %q", h.Get("X-Afftok-Signature"), h.Get("X-Afftok-Signature-Previous"))
				}
			}},
		{mode: "jwt", key: "new-jwt-key", prev: "old-jwt-key",
			during: func(t *testing.T, h http.Header, _ []byte) {
				if !strings.HasPrefix(h.Get("Authorization"), "Bearer ") || strings.Count(h.Get("X-Afftok-Signature-Previous"), ".") != 2 {
					t.Errorf("during the grace: %v", h)
				}
			},
			after: func(t *testing.T, h http.Header, _ []byte) {
				if !strings.HasPrefix(h.Get("Authorization"), "Bearer ") || h.Get("X-Afftok-Signature-Previous") != "" {
					t.Errorf("after the grace: %v", h)
				}
			}},
		{mode: "standard", key: newStd, prev: oldStd,
			during: func(t *testing.T, h http.Header, _ []byte) {
				if sigs := strings.Fields(h.Get("webhook-signature")); len(sigs) != 2 {
					t.Errorf("during the grace: webhook-signature %q, want two", sigs)
				}
			},
			after: func(t *testing.T, h http.Header, _ []byte) {
				if sigs := strings.Fields(h.Get("webhook-signature")); len(sigs) != 1 {
					t.Errorf("after the grace: webhook-signature %q, want one", sigs)
				}
			}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			now := rotatedAt
			d := New(Options{Env: template.NewEnvSource(nil, ""), Now: func() time.Time { return now }})
			p := rotated(t, tc.mode, tc.key, tc.prev, expires)
			build := func() *Request {
				task := newTask(t, p, testEvent)
				ev, _ := task.Decoded()
				r, err := d.Build(p, &p.Steps[0], task, ev, 0, false)
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range r.RedactedHeader() {
					if strings.Contains(v, tc.prev) || strings.Contains(v, tc.key) || (k != "Content-Type" && strings.Contains(strings.ToLower(k), "signature") && v != Redacted) {
						t.Errorf("shown header %s: %q", k, v)
					}
				}
				if got := r.Secrets.Redact("echo " + tc.prev + " " + strings.TrimPrefix(tc.prev, "whsec_")); strings.Contains(got, strings.TrimPrefix(tc.prev, "whsec_")) {
					t.Errorf("the previous key is not a secret of the request: %q", got)
				}
				return r
			}
			r := build()
			tc.during(t, r.Header, r.Body)
			now = expires.Add(-time.Second)
			r = build()
			tc.during(t, r.Header, r.Body)
			now = expires
			r = build()
			tc.after(t, r.Header, r.Body)
		})
	}
}

// TestStandardKeyFromEnvIsCheckedWhenUsed: a {{env.NAME}} key that is no
// whsec_ secret fails the request (permanently) without quoting it.
func TestStandardKeyFromEnvIsCheckedWhenUsed(t *testing.T) {
	t.Setenv("SECRET_TOKEN", "not-a-whsec-secret-0042")
	p := compile(t, `{"name":"p","trigger_type":"click","steps":[{"order":1,"url":"https://rcv.example/a","signature_mode":"standard","signing_key":"{{env.SECRET_TOKEN}}"}]}`)
	d := newDispatcher(answer(200, ""), nil)
	task := newTask(t, p, testEvent)
	ev, _ := task.Decoded()
	_, err := d.Build(p, &p.Steps[0], task, ev, 0, false)
	if err == nil || !strings.Contains(err.Error(), "whsec_") || strings.Contains(err.Error(), "0042") {
		t.Fatalf("err = %v", err)
	}
	good := signing.NewSecret()
	t.Setenv("SECRET_TOKEN", good)
	r, err := d.Build(p, &p.Steps[0], task, ev, 0, false)
	if err != nil || !strings.HasPrefix(r.Header.Get("webhook-signature"), "v1,") {
		t.Fatalf("a whsec_ key from env: %v %v", err, r)
	}
}
