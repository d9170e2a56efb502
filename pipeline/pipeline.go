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

	// RateLimitPerSecond paces attempts to this pipeline across the whole
	// deployment (package ratelimit); nil: unlimited.
	RateLimitPerSecond *float64 `json:"rate_limit_per_second,omitempty"`
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
	// MaxRateLimitPerSecond bounds rate_limit_per_second.
	MaxRateLimitPerSecond = 100000
)

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
