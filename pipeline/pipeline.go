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
}

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
	// HasSigningKey is set on redacted copies so clients can tell a key is configured.
	HasSigningKey bool `json:"has_signing_key,omitempty"`

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
)

// MaxAutoDisableAfterSeconds is 30 days: ClickHouse keeps the attempts the
// failure streak is judged on for 30 days by default.
const MaxAutoDisableAfterSeconds = 30 * 24 * 3600

// Redacted returns a copy without secrets, for API responses.
func (p *Pipeline) Redacted() *Pipeline {
	c := *p
	c.Steps = make([]Step, len(p.Steps))
	for i, s := range p.Steps {
		s.HasSigningKey = s.SigningKey != ""
		s.SigningKey = ""
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
