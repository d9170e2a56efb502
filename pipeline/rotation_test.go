package pipeline

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/afftok/webhookd/signing"
)

func intp(v int) *int { return &v }

func TestRotateKeys(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	later := now.Add(time.Hour)
	step := func(mode, key string) Step { return Step{ID: "step_a", SignatureMode: mode, SigningKey: key} }
	withPrev := func(s Step, prev string, exp time.Time) Step {
		s.PreviousSigningKey, s.PreviousSigningKeyExpiresAt = prev, &exp
		return s
	}
	for _, tc := range []struct {
		name     string
		old, new Step
		wantPrev string
		wantExp  time.Time
	}{
		{name: "a changed key keeps the old one for the default grace", old: step("hmac", "k1"), new: step("hmac", "k2"), wantPrev: "k1", wantExp: now.Add(24 * time.Hour)},
		{name: "the step's grace applies", old: step("jwt", "k1"), new: func() Step { s := step("jwt", "k2"); s.SigningKeyGraceSeconds = intp(600); return s }(), wantPrev: "k1", wantExp: now.Add(10 * time.Minute)},
		{name: "grace 0 drops the old key at once", old: step("hmac", "k1"), new: func() Step { s := step("hmac", "k2"); s.SigningKeyGraceSeconds = intp(0); return s }()},
		{name: "an unchanged key keeps a previous key in its grace", old: withPrev(step("hmac", "k2"), "k1", later), new: step("hmac", "k2"), wantPrev: "k1", wantExp: later},
		{name: "an unchanged key drops an expired previous key", old: withPrev(step("hmac", "k2"), "k1", now), new: step("hmac", "k2")},
		{name: "a second rotation keeps only the key it replaced", old: withPrev(step("hmac", "k2"), "k1", later), new: step("hmac", "k3"), wantPrev: "k2", wantExp: now.Add(24 * time.Hour)},
		{name: "another signature mode keeps no previous key", old: step("hmac", "k1"), new: step("standard", signing.NewSecret())},
		{name: "signing turned off keeps no previous key", old: step("hmac", "k1"), new: step("none", "")},
		{name: "a request cannot set a previous key", old: step("hmac", "k1"), new: withPrev(step("hmac", "k1"), "injected", later)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Pipeline{Steps: []Step{tc.new}}
			RotateKeys(p, &Pipeline{Steps: []Step{tc.old}}, now)
			s := p.Steps[0]
			if s.PreviousSigningKey != tc.wantPrev {
				t.Fatalf("previous key %q, want %q", s.PreviousSigningKey, tc.wantPrev)
			}
			if tc.wantPrev == "" {
				if s.PreviousSigningKeyExpiresAt != nil {
					t.Fatalf("expiry %v without a previous key", s.PreviousSigningKeyExpiresAt)
				}
				return
			}
			if s.PreviousSigningKeyExpiresAt == nil || !s.PreviousSigningKeyExpiresAt.Equal(tc.wantExp) {
				t.Fatalf("expiry %v, want %v", s.PreviousSigningKeyExpiresAt, tc.wantExp)
			}
			if s.PreviousKeyAt(tc.wantExp.Add(-time.Second)) != tc.wantPrev || s.PreviousKeyAt(tc.wantExp) != "" {
				t.Fatal("PreviousKeyAt does not end at the expiry")
			}
		})
	}
	// A new pipeline (or a new step) has no previous key.
	p := &Pipeline{Steps: []Step{withPrev(step("hmac", "k1"), "x", later)}}
	RotateKeys(p, nil, now)
	if p.Steps[0].PreviousSigningKey != "" {
		t.Fatal("a created step has a previous key")
	}
}

func TestStandardModeValidation(t *testing.T) {
	valid := signing.NewSecret()
	for _, tc := range []struct {
		step  string
		field string // "" valid
		msg   string
	}{
		{step: `"signature_mode":"standard","signing_key":"` + valid + `"`},
		{step: `"signature_mode":"standard","signing_key":"{{env.K}}"`}, // checked when used
		{step: `"signature_mode":"standard"`, field: "steps[0].signing_key", msg: "required"},
		{step: `"signature_mode":"standard","signing_key":"plain-secret-value"`, field: "steps[0].signing_key", msg: "whsec_"},
		{step: `"signature_mode":"standard","signing_key":"whsec_c2hvcnQ="`, field: "steps[0].signing_key", msg: "24 to 64 bytes"},
		{step: `"signature_mode":"standard","signing_key":"whsec_!!!"`, field: "steps[0].signing_key", msg: "base64"},
		{step: `"signature_mode":"rsa","signing_key":"k"`, field: "steps[0].signature_mode", msg: "standard"},
		{step: `"signing_key":"k","signing_key_grace_seconds":0`},
		{step: `"signing_key":"k","signing_key_grace_seconds":2592000`},
		{step: `"signing_key":"k","signing_key_grace_seconds":-1`, field: "steps[0].signing_key_grace_seconds", msg: "between 0 and 2592000"},
		{step: `"signing_key":"k","signing_key_grace_seconds":2592001`, field: "steps[0].signing_key_grace_seconds", msg: "between 0 and 2592000"},
		{step: `"headers":{"webhook-signature":"v1,x"}`, field: "steps[0].headers.webhook-signature", msg: "set by webhookd"},
		{step: `"headers":{"X-Afftok-Signature-Previous":"x"}`, field: "steps[0].headers.X-Afftok-Signature-Previous", msg: "set by webhookd"},
	} {
		var p Pipeline
		if err := Decode([]byte(`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io",`+tc.step+`}]}`), &p); err != nil {
			t.Fatalf("%s: %v", tc.step, err)
		}
		p.Normalize()
		err := p.Validate(allowEnv{"K": true}, DefaultRetryLimits, nil)
		var ve *ValidationError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v", tc.step, err)
		case tc.field != "" && (!errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Field != tc.field || !strings.Contains(ve.Fields[0].Message, tc.msg)):
			t.Errorf("%s: %v, want %s: …%s…", tc.step, err, tc.field, tc.msg)
		case err != nil && strings.Contains(err.Error(), "c2hvcnQ") || err != nil && strings.Contains(err.Error(), "plain-secret"):
			t.Errorf("%s: the error quotes the key: %v", tc.step, err)
		}
	}
}

func TestPreviousSigningKeyIsSealedAndRedacted(t *testing.T) {
	exp := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	p := &Pipeline{ID: "pipe_1", Steps: []Step{{SigningKey: "current-key-1", PreviousSigningKey: "previous-key-0", PreviousSigningKeyExpiresAt: &exp}}}
	s, _ := NewSealer("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	sealed, err := s.SealKeys(p)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(sealed)
	if strings.Contains(string(raw), "previous-key-0") || strings.Contains(string(raw), "current-key-1") || strings.Count(string(raw), "enc:v1:") != 2 {
		t.Fatalf("stored form %s", raw)
	}
	var back Pipeline
	_ = json.Unmarshal(raw, &back)
	if err := s.OpenKeys(&back); err != nil || back.Steps[0].PreviousSigningKey != "previous-key-0" || back.Steps[0].SigningKey != "current-key-1" {
		t.Fatalf("opened %+v: %v", back.Steps[0], err)
	}
	var none *Sealer
	if err := none.OpenKeys(&Pipeline{Steps: []Step{{PreviousSigningKey: sealed.Steps[0].PreviousSigningKey}}}); !errors.Is(err, ErrSealed) {
		t.Fatalf("a sealed previous key opened without the key: %v", err)
	}
	r := p.Redacted()
	shown, _ := json.Marshal(r)
	if strings.Contains(string(shown), "previous-key-0") || !r.Steps[0].HasPreviousSigningKey || !strings.Contains(string(shown), `"previous_signing_key_expires_at":"2026-11-28T12:00:00Z"`) {
		t.Fatalf("redacted %s", shown)
	}
}
