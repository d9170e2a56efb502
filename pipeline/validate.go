package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/afftok/webhookd/backoff"
	"github.com/afftok/webhookd/event"
	"github.com/afftok/webhookd/filter"
	"github.com/afftok/webhookd/signing"
	"github.com/afftok/webhookd/strictjson"
	"github.com/afftok/webhookd/template"
)

// FieldError is one invalid field, with its path ("steps[0].url").
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError lists every invalid field of a pipeline.
type ValidationError struct{ Fields []FieldError }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid pipeline: " + strings.Join(parts, "; ")
}

// Merge lists decoded's problems (how a body was written: types, unknown or
// repeated keys), then checked's (what it says) except those about a field
// decoded already names or a part of one, so that one answer lists every
// problem once. Either may be nil; the result is nil or a *ValidationError.
func Merge(decoded, checked error) error {
	var all []FieldError
	var d, c *ValidationError
	if errors.As(decoded, &d) {
		all = append(all, d.Fields...)
	}
	if errors.As(checked, &c) {
		for _, f := range c.Fields {
			if !slices.ContainsFunc(all, func(g FieldError) bool { return covers(g.Field, f.Field) }) {
				all = append(all, f)
			}
		}
	}
	if all == nil {
		return nil
	}
	return &ValidationError{Fields: all}
}

// covers reports whether a problem at path outer is about field (the field
// itself or a part of it).
func covers(outer, field string) bool {
	return field == outer || strings.HasPrefix(field, outer+".") || strings.HasPrefix(field, outer+"[")
}

func (e *ValidationError) add(field, format string, a ...any) {
	e.Fields = append(e.Fields, FieldError{Field: field, Message: fmt.Sprintf(format, a...)})
}

// EnvPolicy says which names {{env.NAME}} may read.
type EnvPolicy interface {
	EnvAllowed(name string) bool
}

// TargetPolicy is the outbound guard's verdict on a URL host known when the
// pipeline is saved: an error (its message reads "points to a loopback
// address the outbound guard blocks") when no call to that host could ever
// pass the guard. Hosts that are names are judged when they are dialled:
// what they resolve to can change.
type TargetPolicy interface {
	CheckHost(host string) error
}

// RetryLimits bounds retry policies to what the retry tiers can express.
type RetryLimits struct {
	MaxAttempts     int
	MaxDelaySeconds float64
	// Horizon is the longest total wait of a step's retries: the retry
	// topics' retention must outlive every waiting task.
	Horizon time.Duration
}

// DefaultRetryLimits apply when the caller sets none (retry topics keep 7 days).
var DefaultRetryLimits = RetryLimits{MaxAttempts: 25, MaxDelaySeconds: 24 * 3600, Horizon: 6 * 24 * time.Hour}

var methods = map[string]bool{"POST": true, "PUT": true, "PATCH": true, "GET": true, "DELETE": true}

// Normalize fills defaults the spec implies (method POST, timeout 30 s, status
// active, signature mode from the key) so stored pipelines are explicit.
func (p *Pipeline) Normalize() {
	p.Name = strings.TrimSpace(p.Name)
	if p.Status == "" {
		p.Status = StatusActive
	}
	if p.Ordering == "" {
		p.Ordering = OrderingNone
	}
	for i := range p.Steps {
		s := &p.Steps[i]
		if s.pos == 0 {
			s.pos = i + 1
		}
		s.Method = strings.ToUpper(strings.TrimSpace(s.Method))
		if s.Method == "" {
			s.Method = DefaultMethod
		}
		if s.TimeoutSeconds == 0 {
			s.TimeoutSeconds = DefaultTimeoutSeconds
		}
		if s.SignatureMode == "" {
			s.SignatureMode = signing.ModeNone
			if s.SigningKey != "" {
				s.SignatureMode = signing.ModeHMAC
			}
		}
		if s.Name == "" {
			s.Name = "Step " + strconv.Itoa(s.Order)
		}
		s.RetryPolicy.normalize()
	}
	p.FailoverRetryPolicy.normalize()
	if filter.IsEmpty(p.Filter) {
		p.Filter = nil // {} and null: no filter
	} else if b := new(bytes.Buffer); json.Compact(b, p.Filter) == nil {
		p.Filter = b.Bytes() // as written, without the whitespace
	}
	sort.SliceStable(p.Steps, func(i, j int) bool { return p.Steps[i].Order < p.Steps[j].Order })
}

// normalize fills a retry policy's implied defaults (nil: nothing to do).
func (rp *RetryPolicy) normalize() {
	if rp == nil {
		return
	}
	if rp.BackoffType == "" {
		rp.BackoffType = BackoffExponential
	}
	if rp.BackoffMultiplier == 0 && rp.BackoffType != BackoffFixed {
		rp.BackoffMultiplier = 2
	}
}

// Validate checks every field of a normalized pipeline and returns a
// *ValidationError listing all problems, or nil. targets may be nil: then
// URL hosts are only checked when called.
func (p *Pipeline) Validate(env EnvPolicy, limits RetryLimits, targets TargetPolicy) error {
	ve := &ValidationError{}
	if p.Name == "" {
		ve.add("name", "is required")
	} else if len(p.Name) > 200 {
		ve.add("name", "is longer than 200 characters")
	}
	if len(p.Description) > 2000 {
		ve.add("description", "is longer than 2000 characters")
	}
	if !event.IsTriggerType(p.TriggerType) {
		ve.add("trigger_type", "must be one of %s", strings.Join(event.TriggerTypes, ", "))
	}
	switch p.Status {
	case StatusActive, StatusPaused, StatusDisabled:
	default:
		ve.add("status", "must be active, paused or disabled")
	}
	if a := p.AutoDisableAfterSeconds; a != nil && (*a < 0 || *a > MaxAutoDisableAfterSeconds) {
		ve.add("auto_disable_after_seconds", "must be between 0 (never) and %d (30 days)", MaxAutoDisableAfterSeconds)
	}
	switch p.Ordering {
	case OrderingNone, OrderingKey:
	default:
		ve.add("ordering", "must be none or key")
	}
	if len(p.Steps) == 0 {
		ve.add("steps", "at least one step is required")
	} else if len(p.Steps) > MaxSteps {
		ve.add("steps", "at most %d steps are allowed", MaxSteps)
	}
	if p.FailoverURL != "" {
		checkURLTemplate(ve, "failover_url", p.FailoverURL, env, targets, nil)
	}
	if p.FailoverRetryPolicy != nil {
		checkRetryPolicy(ve, "failover_retry_policy", p.FailoverRetryPolicy, limits)
	}
	if _, err := filter.Parse(p.Filter); err != nil {
		var fe *filter.Error
		errors.As(err, &fe)
		for _, pr := range fe.Problems {
			f := "filter"
			if pr.Path != "" {
				f += "." + pr.Path
			}
			ve.add(f, "%s", pr.Message)
		}
	}
	if r := p.RateLimitPerSecond; r != nil && !(*r > 0 && *r <= MaxRateLimitPerSecond) {
		ve.add("rate_limit_per_second", "must be a number greater than 0 and at most %d (attempts per second; omit it for no limit)", MaxRateLimitPerSecond)
	}
	orders := map[int]bool{}
	earlier := map[string]bool{} // orders and names of steps that come before
	for i, s := range p.Steps {
		f := fmt.Sprintf("steps[%d]", s.index(i))
		if s.Order < 1 {
			ve.add(f+".order", "must be 1 or more")
		} else if orders[s.Order] {
			ve.add(f+".order", "%d is used by another step; orders must be unique", s.Order)
		}
		orders[s.Order] = true
		if len(s.Name) > 200 {
			ve.add(f+".name", "is longer than 200 characters")
		}
		if !methods[s.Method] {
			ve.add(f+".method", "must be one of POST, PUT, PATCH, GET, DELETE")
		}
		if strings.TrimSpace(s.URL) == "" {
			ve.add(f+".url", "is required")
		} else {
			checkURLTemplate(ve, f+".url", s.URL, env, targets, earlier)
		}
		if s.TimeoutSeconds < 1 || s.TimeoutSeconds > MaxTimeoutSeconds {
			ve.add(f+".timeout_seconds", "must be between 1 and %d", MaxTimeoutSeconds)
		}
		names := make([]string, 0, len(s.Headers))
		for k := range s.Headers {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			hf := f + ".headers." + k
			if !validHeaderName(k) {
				ve.add(hf, "is not a valid HTTP header name")
				continue
			}
			if reservedHeader(k) {
				ve.add(hf, "is set by webhookd and cannot be templated")
				continue
			}
			if v := s.Headers[k]; template.SanitizeHeaderValue(v) != v {
				// Rendering would turn them into spaces (no header can be
				// split), but a value saved with a line break is a mistake
				// worth saying at once.
				ve.add(hf, "must not contain control characters (CR, LF, NUL, …); only tab is allowed")
				continue
			}
			h, err := template.ParseHeader(s.Headers[k])
			if err != nil {
				ve.add(hf, "%v", err)
				continue
			}
			checkPlaceholders(ve, hf, h.Placeholders(), env, earlier)
		}
		if len(bytes.TrimSpace(s.BodyTemplate)) > 0 && !bytes.Equal(bytes.TrimSpace(s.BodyTemplate), []byte("null")) {
			b, err := template.ParseBody(s.BodyTemplate)
			if err != nil {
				ve.add(f+".body_template", "%v", err)
			} else {
				checkPlaceholders(ve, f+".body_template", b.Placeholders(), env, earlier)
			}
		}
		switch s.SignatureMode {
		case signing.ModeNone:
		case signing.ModeHMAC, signing.ModeJWT, signing.ModeStandard:
			if s.SigningKey == "" {
				ve.add(f+".signing_key", "is required when signature_mode is %s", s.SignatureMode)
			} else if t, err := template.Parse(s.SigningKey); err != nil {
				ve.add(f+".signing_key", "%v", err)
			} else {
				for _, ph := range t.Placeholders() {
					if ph.Root() != "env" {
						ve.add(f+".signing_key", "may only reference {{env.NAME}}, not {{%s}}", ph)
					}
				}
				checkPlaceholders(ve, f+".signing_key", t.Placeholders(), env, nil)
				// A key read from {{env.NAME}} is checked when it is used.
				if s.SignatureMode == signing.ModeStandard && len(t.Placeholders()) == 0 {
					if _, err := signing.ParseSecret(s.SigningKey); err != nil {
						ve.add(f+".signing_key", "%v", err)
					}
				}
			}
		default:
			ve.add(f+".signature_mode", "must be none, hmac, jwt or standard")
		}
		// Set by RotateKeys from a key that was valid; checked so that what
		// validates compiles whatever wrote it.
		if _, err := template.Parse(s.PreviousSigningKey); err != nil {
			ve.add(f+".previous_signing_key", "is not a valid key")
		}
		if g := s.SigningKeyGraceSeconds; g != nil && (*g < 0 || *g > MaxSigningKeyGraceSeconds) {
			ve.add(f+".signing_key_grace_seconds", "must be between 0 and %d (30 days)", MaxSigningKeyGraceSeconds)
		}
		if s.RetryPolicy != nil {
			checkRetryPolicy(ve, f+".retry_policy", s.RetryPolicy, limits)
		}
		earlier[strconv.Itoa(s.Order)] = true
		if s.Name != "" {
			earlier[s.Name] = true
		}
	}
	if len(ve.Fields) > 0 {
		return ve
	}
	return nil
}

func checkURLTemplate(ve *ValidationError, field, raw string, env EnvPolicy, targets TargetPolicy, earlier map[string]bool) {
	ut, err := template.ParseURL(raw)
	if err != nil {
		ve.add(field, "%v", err)
		return
	}
	checkPlaceholders(ve, field, ut.Placeholders(), env, earlier)
	// The literal parts must already form an http(s) URL with a host.
	probe := ut.Render(probeVars{})
	u, err := url.Parse(probe)
	if err != nil {
		ve.add(field, "is not a valid URL: %v", err)
		return
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		ve.add(field, "must be an http or https URL")
		return
	}
	if u.Host == "" {
		ve.add(field, "must have a host")
	}
	if u.User != nil {
		ve.add(field, "must not carry credentials; use a header with {{env.NAME}}")
	}
	// A host that is written out (no placeholder) and can only ever reach
	// an address the guard blocks is refused now rather than dead-lettered
	// on every event.
	if targets != nil && u.Hostname() != "" && !ut.TemplatedAuthority() {
		if err := targets.CheckHost(u.Hostname()); err != nil {
			ve.add(field, "%v", err)
		}
	}
}

// probeVars renders every placeholder as "x" so URL structure can be checked at save time.
type probeVars struct{}

func (probeVars) Lookup([]string) (any, bool) { return "x", true }

func checkPlaceholders(ve *ValidationError, field string, phs []template.Placeholder, env EnvPolicy, earlier map[string]bool) {
	for _, ph := range phs {
		if err := template.CheckNamespace(ph); err != nil {
			ve.add(field, "%v", err)
			continue
		}
		switch ph.Root() {
		case "env":
			if env == nil || !env.EnvAllowed(ph.Path[1]) {
				ve.add(field, "{{%s}}: env name %q is not allowed (operators allow names with WEBHOOKD_TEMPLATE_ENV_ALLOW or WEBHOOKD_TEMPLATE_SECRETS_DIR)", ph, ph.Path[1])
			}
		case "steps":
			if earlier == nil {
				ve.add(field, "{{%s}}: step results are not available here", ph)
			} else if !earlier[ph.Path[1]] {
				ve.add(field, "{{%s}}: step %q does not come before this one", ph, ph.Path[1])
			} else if k := ph.Path[2]; k != "status" && k != "response" {
				ve.add(field, "{{%s}}: a step result has status and response (response.status, response.body…)", ph)
			}
		}
	}
}

func checkRetryPolicy(ve *ValidationError, f string, rp *RetryPolicy, lim RetryLimits) {
	before := len(ve.Fields)
	if rp.MaxAttempts < 1 || rp.MaxAttempts > lim.MaxAttempts {
		ve.add(f+".max_attempts", "must be between 1 and %d", lim.MaxAttempts)
	}
	switch rp.BackoffType {
	case BackoffFixed, BackoffExponential, BackoffExponentialJitter:
	default:
		ve.add(f+".backoff_type", "must be fixed, exponential or exponential_jitter")
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	if !finite(rp.InitialDelaySeconds) || rp.InitialDelaySeconds < 0 || rp.InitialDelaySeconds > lim.MaxDelaySeconds {
		ve.add(f+".initial_delay_seconds", "must be between 0 and %g", lim.MaxDelaySeconds)
	} else if rp.InitialDelaySeconds > 0 && rp.InitialDelaySeconds < 1 {
		// The finest retry tier holds work with 1 s resolution; shorter
		// retries would be a hot loop against a failing receiver anyway.
		ve.add(f+".initial_delay_seconds", "must be at least 1 (0 or absent means the default, 5)")
	}
	if rp.BackoffType != BackoffFixed && (!finite(rp.BackoffMultiplier) || rp.BackoffMultiplier < 1 || rp.BackoffMultiplier > 10) {
		ve.add(f+".backoff_multiplier", "must be between 1 and 10")
	}
	if !finite(rp.MaxDelaySeconds) || rp.MaxDelaySeconds < 0 || rp.MaxDelaySeconds > lim.MaxDelaySeconds {
		ve.add(f+".max_delay_seconds", "must be between 0 and %g", lim.MaxDelaySeconds)
	} else if rp.MaxDelaySeconds > 0 && rp.MaxDelaySeconds < rp.InitialDelaySeconds {
		ve.add(f+".max_delay_seconds", "must not be less than initial_delay_seconds")
	}
	if !finite(rp.JitterFactor) || rp.JitterFactor < 0 || rp.JitterFactor > 1 {
		ve.add(f+".jitter_factor", "must be between 0 and 1")
	} else if rp.JitterFactor > 0 && rp.BackoffType != BackoffExponentialJitter {
		ve.add(f+".jitter_factor", "only applies to backoff_type exponential_jitter")
	}
	if len(ve.Fields) == before && lim.Horizon > 0 {
		p := backoff.Params(*rp)
		if h := backoff.For(&p).Horizon(); h > lim.Horizon {
			ve.add(f, "retries would wait %v in all, longer than the retry topics keep tasks (%v); lower max_attempts or the delays", h.Round(time.Second), lim.Horizon)
		}
	}
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// reservedHeader: headers webhookd owns. Content-Type is allowed in the
// template (the spec's examples set it) but is always sent as application/json.
func reservedHeader(k string) bool {
	switch strings.ToLower(k) {
	case "x-afftok-signature", "x-afftok-timestamp", "x-afftok-delivery-id", "x-afftok-retry-count", "x-afftok-failover", "content-length", "host", "transfer-encoding",
		"x-afftok-signature-previous", "webhook-id", "webhook-timestamp", "webhook-signature", "x-afftok-replay":
		return true
	}
	return false
}

// Decode parses a request body strictly into `into` (see package strictjson):
// one JSON value, no duplicate keys, valid UTF-8, no unknown fields (a typo
// such as "retry_polcy" must not be silently ignored), and every value of
// its field's type. Problems with fields come back together as a
// *ValidationError; malformed JSON, or a body that is not even the right
// kind of value, as a plain error.
func Decode(b []byte, into any) error {
	err := strictjson.Decode(b, into)
	var se *strictjson.Error
	if !errors.As(err, &se) {
		if err != nil {
			return fmt.Errorf("request body is not valid JSON: %w", err)
		}
		return nil
	}
	ve := &ValidationError{}
	for _, p := range se.Problems {
		if p.Path == "" { // the body itself, e.g. an array where an object belongs
			return fmt.Errorf("request body %s", p.Message)
		}
		ve.add(p.Path, "%s", p.Message)
	}
	if se.Omitted > 0 {
		ve.add("", "%d more problems are not listed", se.Omitted)
	}
	return ve
}
