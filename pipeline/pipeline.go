// Package pipeline is the webhook pipeline model: its fields as the spec names
// them, validation with field paths, and compilation of its templates.
package pipeline

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/afftok/webhookd/backoff"
)

// Statuses (DESIGN.md §4).
const (
	StatusActive   = "active"
	StatusPaused   = "paused"
	StatusDisabled = "disabled"
)

// Pipeline is the stored form of a pipeline: the value of its record on the
// compacted pipelines topic. It holds signing keys; the API only ever shows
// Redacted copies.
type Pipeline struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	TriggerType string    `json:"trigger_type"`
	Status      string    `json:"status"`
	Steps       []Step    `json:"steps"`
	FailoverURL string    `json:"failover_url,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	// Revision increases with every saved change.
	Revision int64 `json:"revision"`

	// FailoverRetryPolicy is the failover URL's schedule (nil: 3 attempts,
	// 5 s then 10 s apart).
	FailoverRetryPolicy *RetryPolicy `json:"failover_retry_policy,omitempty"`
	// Filter is the content filter as saved (compact JSON; nil: every event
	// of the trigger type). See package filter.
	Filter json.RawMessage `json:"filter,omitempty"`
	// AutoDisableAfterSeconds overrides WEBHOOKD_AUTO_DISABLE_AFTER for this
	// pipeline (nil: the setting; 0: never auto-disabled).
	AutoDisableAfterSeconds *int `json:"auto_disable_after_seconds,omitempty"`
	// DisabledReason and DisabledAt say why and when the pipeline was last
	// disabled (set with status disabled, cleared when it leaves it).
	DisabledReason string     `json:"disabled_reason,omitempty"`
	DisabledAt     *time.Time `json:"disabled_at,omitempty"`
	// ReenabledAt is when the status last became active again (from paused
	// or disabled): the auto-disable failure streak counts from it.
	ReenabledAt *time.Time `json:"reenabled_at,omitempty"`
	// Ordering: "key" delivers events with the same Kafka key in offset
	// order (a delivery waiting for a retry holds its key's later ones
	// back); "none" (the default) delivers each event independently.
	Ordering string `json:"ordering,omitempty"`
	// RateLimitPerSecond paces attempts to this pipeline across the whole
	// deployment (package ratelimit); nil: unlimited.
	RateLimitPerSecond *float64 `json:"rate_limit_per_second,omitempty"`
}

// Orderings.
const (
	OrderingNone = "none"
	OrderingKey  = "key"
)

// OrderedByKey reports whether deliveries of events with one Kafka key are
// made in offset order (a pipeline stored before the field existed is not).
func (p *Pipeline) OrderedByKey() bool { return p.Ordering == OrderingKey }

// Step is one HTTP call of a pipeline (spec: "Step Structure").
type Step struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Order          int               `json:"order"`
	URL            string            `json:"url"`
	Method         string            `json:"method"`
	Headers        map[string]string `json:"headers,omitempty"`
	BodyTemplate   json.RawMessage   `json:"body_template,omitempty"`
	TimeoutSeconds int               `json:"timeout_seconds"`
	RetryPolicy    *RetryPolicy      `json:"retry_policy,omitempty"`
	StopOnFailure  bool              `json:"stop_on_failure"`
	SignatureMode  string            `json:"signature_mode"`
	SigningKey     string            `json:"signing_key,omitempty"`
	// SigningKeyGraceSeconds is how long, after signing_key changes, the
	// key it replaced keeps signing too (nil: DefaultSigningKeyGraceSeconds;
	// 0: the old key stops at once).
	SigningKeyGraceSeconds *int `json:"signing_key_grace_seconds,omitempty"`
	// PreviousSigningKey is the key the last change of signing_key
	// replaced; requests are signed with it too until
	// PreviousSigningKeyExpiresAt. It is stored (sealed like signing_key)
	// and never taken from or shown by the API.
	PreviousSigningKey          string     `json:"previous_signing_key,omitempty"`
	PreviousSigningKeyExpiresAt *time.Time `json:"previous_signing_key_expires_at,omitempty"`
	// HasSigningKey is set on redacted copies so clients can tell a key is configured.
	HasSigningKey bool `json:"has_signing_key,omitempty"`
	// HasPreviousSigningKey is set on redacted copies during a rotation's grace.
	HasPreviousSigningKey bool `json:"has_previous_signing_key,omitempty"`

	// pos is 1 + the step's index in the request that wrote it (Normalize
	// sorts steps by order), so that problems name the step as sent.
	pos int
}

// index is the step's index as sent, given its index i after sorting.
func (s *Step) index(i int) int {
	if s.pos > 0 {
		return s.pos - 1
	}
	return i
}

// RetryPolicy is a step's retry schedule (spec: "Retry Policy").
type RetryPolicy struct {
	MaxAttempts         int     `json:"max_attempts,omitempty"`
	BackoffType         string  `json:"backoff_type,omitempty"`
	InitialDelaySeconds float64 `json:"initial_delay_seconds,omitempty"`
	BackoffMultiplier   float64 `json:"backoff_multiplier,omitempty"`
	MaxDelaySeconds     float64 `json:"max_delay_seconds,omitempty"`
	JitterFactor        float64 `json:"jitter_factor,omitempty"`
}

// Policy resolves the step's retry schedule (nil: the spec's default).
func (s *Step) Policy() backoff.Policy {
	if s.RetryPolicy == nil {
		return backoff.Default()
	}
	p := backoff.Params(*s.RetryPolicy)
	return backoff.For(&p)
}

// FailoverPolicy resolves the failover URL's schedule: the pipeline's
// failover_retry_policy, else backoff.FailoverPolicy (3 attempts, 5 s then
// 10 s apart).
func (p *Pipeline) FailoverPolicy() backoff.Policy {
	if p.FailoverRetryPolicy == nil {
		return backoff.FailoverPolicy
	}
	bp := backoff.Params(*p.FailoverRetryPolicy)
	return backoff.For(&bp)
}

// Backoff types.
const (
	BackoffFixed             = "fixed"
	BackoffExponential       = "exponential"
	BackoffExponentialJitter = "exponential_jitter"
)

// Defaults.
const (
	DefaultTimeoutSeconds = 30
	MaxTimeoutSeconds     = 300
	MaxSteps              = 20
	DefaultMethod         = "POST"
	// MaxRateLimitPerSecond bounds rate_limit_per_second.
	MaxRateLimitPerSecond = 100000
	// DefaultSigningKeyGraceSeconds: a day for receivers to take a new key.
	DefaultSigningKeyGraceSeconds = 86400
	// MaxSigningKeyGraceSeconds: 30 days; a key replaced because it leaked
	// should not sign for long (0 stops it at once).
	MaxSigningKeyGraceSeconds = 30 * 86400
)

// SigningKeyGrace is how long a replaced signing key keeps signing.
func (s *Step) SigningKeyGrace() time.Duration {
	g := DefaultSigningKeyGraceSeconds
	if s.SigningKeyGraceSeconds != nil {
		g = *s.SigningKeyGraceSeconds
	}
	return time.Duration(g) * time.Second
}

// PreviousKeyAt is the previous signing key if it still signs at now.
func (s *Step) PreviousKeyAt(now time.Time) string {
	if s.PreviousSigningKey == "" || s.PreviousSigningKeyExpiresAt == nil || !now.Before(*s.PreviousSigningKeyExpiresAt) {
		return ""
	}
	return s.PreviousSigningKey
}

// RotateKeys carries each step's signing-key state over from old, the
// stored pipeline p replaces (nil on create), at now. A step (matched by
// id) whose signing_key changed, in the same signature mode, keeps the key
// it had as its previous key for its grace; a step whose key did not
// change keeps its previous key while that has not expired; any other step
// has none. Whatever the request said about previous keys is discarded.
func RotateKeys(p, old *Pipeline, now time.Time) {
	for i := range p.Steps {
		s := &p.Steps[i]
		s.PreviousSigningKey, s.PreviousSigningKeyExpiresAt = "", nil
		var prev *Step
		if old != nil {
			for j := range old.Steps {
				if old.Steps[j].ID == s.ID {
					prev = &old.Steps[j]
				}
			}
		}
		if prev == nil || prev.SigningKey == "" || s.SigningKey == "" || prev.SignatureMode != s.SignatureMode {
			continue
		}
		if s.SigningKey == prev.SigningKey {
			if k := prev.PreviousKeyAt(now); k != "" {
				s.PreviousSigningKey, s.PreviousSigningKeyExpiresAt = k, prev.PreviousSigningKeyExpiresAt
			}
			continue
		}
		if g := s.SigningKeyGrace(); g > 0 {
			exp := now.UTC().Add(g)
			s.PreviousSigningKey, s.PreviousSigningKeyExpiresAt = prev.SigningKey, &exp
		}
	}
}

// MaxAutoDisableAfterSeconds is 30 days: ClickHouse keeps the attempts the
// failure streak is judged on for 30 days by default.
const MaxAutoDisableAfterSeconds = 30 * 24 * 3600

// RateLimit is the pipeline's rate limit in attempts per second (0: none).
func (p *Pipeline) RateLimit() float64 {
	if p.RateLimitPerSecond == nil {
		return 0
	}
	return *p.RateLimitPerSecond
}

// Redacted returns a copy without secrets, for API responses.
func (p *Pipeline) Redacted() *Pipeline {
	c := *p
	c.Steps = make([]Step, len(p.Steps))
	for i, s := range p.Steps {
		s.HasSigningKey = s.SigningKey != ""
		s.SigningKey = ""
		s.HasPreviousSigningKey = s.PreviousSigningKey != ""
		s.PreviousSigningKey = ""
		c.Steps[i] = s
	}
	return &c
}

// NewID returns a random id with the given prefix ("pipe_", "step_").
func NewID(prefix string) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return prefix + hex.EncodeToString(b[:])
}

// StreakStart is when the pipeline's auto-disable failure streak may start:
// its creation, or the last time it was set active again.
func (p *Pipeline) StreakStart() time.Time {
	if p.ReenabledAt != nil && p.ReenabledAt.After(p.CreatedAt) {
		return *p.ReenabledAt
	}
	return p.CreatedAt
}

// AutoDisableAfter is the pipeline's auto-disable window given the
// deployment's default; 0 means never.
func (p *Pipeline) AutoDisableAfter(def time.Duration) time.Duration {
	if p.AutoDisableAfterSeconds != nil {
		return time.Duration(*p.AutoDisableAfterSeconds) * time.Second
	}
	return def
}

// SetStatus changes the status as an operator does, with the fields that go
// with it: leaving disabled clears disabled_reason and disabled_at; becoming
// active again restarts the failure streak (reenabled_at); becoming disabled
// stamps disabled_at.
func (p *Pipeline) SetStatus(status string, now time.Time) {
	if status == p.Status {
		return
	}
	if p.Status != "" && status == StatusActive {
		t := now
		p.ReenabledAt = &t
	}
	p.Status = status
	if status == StatusDisabled {
		t := now
		p.DisabledAt = &t
	} else {
		p.DisabledReason, p.DisabledAt = "", nil
	}
}
