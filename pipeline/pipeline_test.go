package pipeline

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

type allowEnv map[string]bool

func (a allowEnv) EnvAllowed(n string) bool { return a[n] }

func TestSpecStepStructureIsValid(t *testing.T) {
	// The API reference's "Step Structure" example, as a one-step pipeline.
	raw := `{"name":"n","trigger_type":"conversion","steps":[{
	  "name": "Step Name", "order": 1, "url": "https://example.com/webhook", "method": "POST",
	  "headers": {"Content-Type": "application/json", "Authorization": "Bearer {{env.API_TOKEN}}"},
	  "body_template": {"event": "{{trigger_type}}", "data": "{{data}}"},
	  "timeout_seconds": 30,
	  "retry_policy": {"max_attempts": 5, "backoff_type": "exponential", "initial_delay_seconds": 5, "max_delay_seconds": 300},
	  "stop_on_failure": false, "signature_mode": "hmac", "signing_key": "{{env.SIGNING_KEY}}"}]}`
	var p Pipeline
	if err := Decode([]byte(raw), &p); err != nil {
		t.Fatal(err)
	}
	p.Normalize()
	if err := p.Validate(allowEnv{"API_TOKEN": true, "SIGNING_KEY": true}, DefaultRetryLimits, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Compile(&p); err != nil {
		t.Fatal(err)
	}
	err := p.Validate(allowEnv{"API_TOKEN": true}, DefaultRetryLimits, nil)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Fields[0].Field != "steps[0].signing_key" || !strings.Contains(ve.Fields[0].Message, "SIGNING_KEY") {
		t.Fatalf("env not allowed: %v", err)
	}
}

func TestRedactedHidesSigningKeys(t *testing.T) {
	p := &Pipeline{Steps: []Step{{SigningKey: "secret"}, {}}}
	r := p.Redacted()
	b, _ := json.Marshal(r)
	if strings.Contains(string(b), "secret") || !r.Steps[0].HasSigningKey || r.Steps[1].HasSigningKey || p.Steps[0].SigningKey != "secret" {
		t.Fatalf("redacted %s, original %+v", b, p.Steps[0])
	}
}

func TestStepReferencesMustComeEarlier(t *testing.T) {
	p := Pipeline{Name: "n", TriggerType: "click", Steps: []Step{
		{Order: 1, Name: "auth", URL: "https://a.io"},
		{Order: 2, URL: "https://a.io/{{steps.auth.response.body.id}}", Headers: map[string]string{"X": "{{steps.1.status}}"}},
		{Order: 3, URL: "https://a.io", BodyTemplate: json.RawMessage(`{"x":"{{steps.3.status}}"}`)},
	}}
	p.Normalize()
	err := p.Validate(nil, DefaultRetryLimits, nil)
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Field != "steps[2].body_template" {
		t.Fatalf("err = %v", err)
	}
}

func FuzzDecodePipeline(f *testing.F) {
	f.Add([]byte(`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io/{{click.id}}","body_template":"{\"a\": {{click.id}}}"}]}`))
	f.Add([]byte(`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","retry_policy":{"max_attempts":3,"jitter_factor":0.5}}]}`))
	f.Add([]byte(`{"steps":[{"headers":{"a b":"{{"}}]}`))
	f.Add([]byte(`{"name":"n","trigger_type":"click","auto_disable_after_seconds":60,"steps":[{"order":1,"url":"https://x.io"}]}`))
	f.Add([]byte(`{"name":"n","trigger_type":"click","rate_limit_per_second":0.5,"steps":[{"order":1,"url":"https://x.io"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Pipeline
		if Decode(b, &p) != nil {
			return
		}
		p.Normalize()
		if p.Validate(allowEnv{"K": true}, DefaultRetryLimits, nil) != nil {
			return
		}
		if r := p.RateLimit(); r < 0 || r > MaxRateLimitPerSecond || (p.RateLimitPerSecond != nil && r == 0) {
			t.Fatalf("rate_limit_per_second %v passed validation", r)
		}
		// Whatever validates must compile.
		if _, err := Compile(&p); err != nil {
			t.Fatalf("valid pipeline does not compile: %v\n%s", err, b)
		}
	})
}

func TestCompileNotesWhetherStepResultsAreUsed(t *testing.T) {
	for tpl, want := range map[string]bool{`{"a":"{{click.id}}"}`: false, `{"a":"{{steps.1.status}}"}`: true} {
		p := Pipeline{Name: "n", TriggerType: "click", Steps: []Step{{Order: 1, URL: "https://a.io"}, {Order: 2, URL: "https://a.io", BodyTemplate: json.RawMessage(tpl)}}}
		p.Normalize()
		c, err := Compile(&p)
		if err != nil || c.UsesSteps != want {
			t.Errorf("%s: UsesSteps=%v err=%v, want %v", tpl, c.UsesSteps, err, want)
		}
	}
	h := Pipeline{Name: "n", TriggerType: "click", Steps: []Step{{Order: 1, URL: "https://a.io"}, {Order: 2, URL: "https://a.io", Headers: map[string]string{"A": "{{steps.1.response.body.t}}"}}}}
	h.Normalize()
	if c, _ := Compile(&h); !c.UsesSteps {
		t.Error("a header reading step results was not noticed")
	}
}

// refuseHosts is a TargetPolicy that refuses the hosts it lists, and
// records every host it was asked about.
type refuseHosts struct {
	refuse map[string]bool
	asked  []string
}

func (r *refuseHosts) CheckHost(h string) error {
	r.asked = append(r.asked, h)
	if r.refuse[h] {
		return errors.New("points to a loopback address the outbound guard blocks")
	}
	return nil
}

// URL hosts written out in full are put to the target policy, each refusal
// under its field's path; hosts with a placeholder are left to call time.
func TestValidateAsksTheTargetPolicyAboutLiteralHosts(t *testing.T) {
	p := Pipeline{Name: "n", TriggerType: "click", FailoverURL: "http://[::ffff:127.0.0.1]:8080/fo", Steps: []Step{
		{Order: 1, URL: "https://hooks.example.com/a"},
		{Order: 2, URL: "http://[::ffff:127.0.0.1]:8080/x?id={{click.id}}"},
		{Order: 3, URL: "http://{{click.host}}/x"},
		{Order: 4, URL: "http://{{click.sub}}.localhost/x"},
		{Order: 5, URL: "http://ｌｏｃａｌｈｏｓｔ/x"},
	}}
	p.Normalize()
	pol := &refuseHosts{refuse: map[string]bool{"::ffff:127.0.0.1": true, "ｌｏｃａｌｈｏｓｔ": true}}
	err := p.Validate(nil, DefaultRetryLimits, pol)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	var got []string
	for _, f := range ve.Fields {
		if strings.Contains(f.Message, "outbound guard") {
			got = append(got, f.Field)
		}
	}
	if strings.Join(got, " ") != "failover_url steps[1].url steps[4].url" {
		t.Errorf("refused fields %v (all: %v)", got, ve.Fields)
	}
	if strings.Join(pol.asked, " ") != "::ffff:127.0.0.1 hooks.example.com ::ffff:127.0.0.1 ｌｏｃａｌｈｏｓｔ" {
		t.Errorf("asked about %q: a templated host must not be", pol.asked)
	}
	if err := p.Validate(nil, DefaultRetryLimits, nil); errors.As(err, &ve) {
		for _, f := range ve.Fields {
			if strings.Contains(f.Message, "outbound guard") {
				t.Errorf("no policy, yet %v", f)
			}
		}
	}
}

// TestFilterAndFailoverPolicyAreValidatedWithFieldPaths: a filter's and a
// failover_retry_policy's problems are listed with their field paths, like
// a step's retry_policy's.
func TestFilterAndFailoverPolicyAreValidatedWithFieldPaths(t *testing.T) {
	raw := `{"name":"n","trigger_type":"conversion","failover_url":"https://b.io/f",
	  "failover_retry_policy":{"max_attempts":0,"backoff_type":"linear","jitter_factor":2},
	  "filter":{"conversion.amount":{"$gte":"ten"},"click.country":{"$in":["US",["CA"]]},"$or":[{"env.KEY":"x"}],"click.ua":{"$regex":"a("}},
	  "steps":[{"order":1,"url":"https://a.io"}]}`
	var p Pipeline
	if err := Decode([]byte(raw), &p); err != nil {
		t.Fatal(err)
	}
	p.Normalize()
	err := p.Validate(allowEnv{"KEY": true}, DefaultRetryLimits, nil)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	got := map[string]string{}
	for _, f := range ve.Fields {
		got[f.Field] = f.Message
	}
	for field, msg := range map[string]string{
		"failover_retry_policy.max_attempts":  "must be between 1 and 25",
		"failover_retry_policy.backoff_type":  "must be fixed, exponential or exponential_jitter",
		"failover_retry_policy.jitter_factor": "must be between 0 and 1",
		"filter.conversion.amount.$gte":       "must be a number",
		"filter.click.country.$in[1]":         "must be a string, number, boolean or null",
		"filter.$or[0].env.KEY":               "env values cannot be filtered on",
		"filter.click.ua.$regex":              "is not a valid RE2 regular expression",
	} {
		if !strings.Contains(got[field], msg) {
			t.Errorf("%s: %q, want …%s…", field, got[field], msg)
		}
	}
	if len(ve.Fields) != 7 {
		t.Errorf("%d problems, want 7: %v", len(ve.Fields), ve)
	}
}

// TestFilterIsKeptAsWrittenAndCompiled: the saved filter is the one sent,
// whitespace aside; {} means none. failover_retry_policy resolves to the
// failover's schedule, the old fixed one without it.
func TestFilterIsKeptAsWrittenAndCompiled(t *testing.T) {
	p := Pipeline{Name: "n", TriggerType: "click", Steps: []Step{{Order: 1, URL: "https://a.io"}},
		Filter: json.RawMessage("{ \"click.country\" : { \"$in\" : [ \"US\" , \"CA\" ] },\n \"$or\": [{\"click.id\": 1.50}] }")}
	p.Normalize()
	if err := p.Validate(nil, DefaultRetryLimits, nil); err != nil {
		t.Fatal(err)
	}
	if string(p.Filter) != `{"click.country":{"$in":["US","CA"]},"$or":[{"click.id":1.50}]}` {
		t.Fatalf("saved filter %s", p.Filter)
	}
	c, err := Compile(&p)
	if err != nil || c.Filter == nil || c.Filter.Conditions != 2 {
		t.Fatalf("compiled %+v, %v", c, err)
	}
	if fp := c.FailoverPolicy(); fp.MaxAttempts != 3 || fp.Delay(1) != 5*time.Second || fp.Delay(2) != 10*time.Second {
		t.Fatalf("default failover policy %+v", fp)
	}
	p.Filter = json.RawMessage(" { } ")
	p.FailoverRetryPolicy = &RetryPolicy{MaxAttempts: 2, BackoffType: BackoffFixed, InitialDelaySeconds: 1}
	p.Normalize()
	if c, err := Compile(&p); err != nil || c.Filter != nil || p.Filter != nil {
		t.Fatalf("{} is no filter: %s %v", p.Filter, err)
	}
	if fp := p.FailoverPolicy(); fp.MaxAttempts != 2 || fp.Delay(1) != time.Second {
		t.Fatalf("failover policy %+v", fp)
	}
}
