// Package dispatcher makes webhook HTTP calls and the decisions that follow
// from them. Step runs a delivery's current step — render, sign, take a place
// at the receiver host, send, classify — and returns one typed decision
// (delivery.Decision): the delivery state machine's transition. It knows no
// Kafka topics and builds no records; the engine turns decisions into them.
package dispatcher

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/afftok/webhookd/backoff"
	"github.com/afftok/webhookd/bus"
	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/event"
	"github.com/afftok/webhookd/filter"
	"github.com/afftok/webhookd/metrics"
	"github.com/afftok/webhookd/pipeline"
	"github.com/afftok/webhookd/signing"
	"github.com/afftok/webhookd/template"
)

// Options configure a Dispatcher.
type Options struct {
	Client            *http.Client
	Env               *template.EnvSource
	Hosts             *Hosts // per-host limit and breaker; nil: none
	ResponseBodyLimit int    // bytes read from a response
	LogBodyLimit      int    // bytes kept in execution logs
	// DelayScale multiplies every retry delay (1 in production; tests and
	// staging shrink the schedule with it).
	DelayScale float64
	// PauseRecheck is how long a paused pipeline's task waits before it is
	// looked at again.
	PauseRecheck time.Duration
	// MaxHold bounds how long a paused pipeline's task is held (the retry
	// topics must still retain it); past it the task is dead-lettered.
	MaxHold time.Duration
	Now     func() time.Time
	Log     *slog.Logger

	// Rates paces pipelines that have a rate_limit_per_second (see
	// rate.go); nil: no pipeline is limited.
	Rates RateLimiter
	// RateRecheck is the longest a task deferred by a rate limit waits
	// before it is looked at again (default a minute), so a changed limit
	// reaches tasks already waiting.
	RateRecheck time.Duration
}

// Dispatcher executes deliveries. It is safe for concurrent use.
type Dispatcher struct{ o Options }

// New returns a Dispatcher.
func New(o Options) *Dispatcher {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ResponseBodyLimit <= 0 {
		o.ResponseBodyLimit = 64 << 10
	}
	if o.LogBodyLimit <= 0 {
		o.LogBodyLimit = 4 << 10
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.DelayScale <= 0 {
		o.DelayScale = 1
	}
	if o.PauseRecheck <= 0 {
		o.PauseRecheck = time.Duration(float64(30*time.Second) * o.DelayScale)
	}
	if o.MaxHold <= 0 {
		o.MaxHold = pipeline.DefaultRetryLimits.Horizon
	}
	if o.RateRecheck <= 0 {
		o.RateRecheck = time.Minute
	}
	if o.Client == nil {
		o.Client = NewHTTPClient(Guard{}, 64)
	}
	return &Dispatcher{o: o}
}

func (d *Dispatcher) scaled(x time.Duration) time.Duration {
	return time.Duration(float64(x) * d.o.DelayScale)
}

// Step runs t's current step once and decides what comes next (DESIGN.md
// §3a). p is the pipeline's current config, nil if it was deleted. ctx ending
// mid-attempt yields Abort: nothing is decided, and the delivery runs again.
func (d *Dispatcher) Step(ctx context.Context, p *pipeline.Compiled, t *delivery.Task) delivery.Decision {
	now := d.o.Now()
	if p == nil {
		return delivery.Decision{Verdict: delivery.Cancelled, Task: t, Status: delivery.ExecCancelled}
	}
	idx := stepIndex(p, t.StepOrder)
	if idx < 0 {
		// The steps this delivery waits for were removed from the pipeline
		// meanwhile: like a deleted pipeline's, its pending work is cancelled.
		return delivery.Decision{Verdict: delivery.Cancelled, Task: t, Status: delivery.ExecCancelled}
	}
	s := &p.Steps[idx]
	policy := s.Policy()
	if t.Failover {
		policy = p.FailoverPolicy()
	}
	switch p.Status {
	case pipeline.StatusPaused:
		// Held without spending an attempt; bounded by what the retry
		// topics retain.
		return d.deferral(p, idx, t, delivery.ReasonPipelinePaused, now.Add(d.o.PauseRecheck), d.o.MaxHold, now)
	case pipeline.StatusDisabled:
		return d.dead(p, idx, t, nil, nil, delivery.ReasonPipelineDisabled, "pipeline disabled while a retry was pending", t.Attempt)
	}
	ev, err := t.Decoded()
	if err != nil {
		return d.dead(p, idx, t, nil, nil, delivery.ReasonPermanent, "Invalid event: "+err.Error(), t.Attempt)
	}
	// The pipeline's rate limit: the attempt goes now (perhaps after a
	// short wait in place), or the delivery is deferred to its place.
	ready, dec := d.rate(ctx, p, idx, t, now)
	if dec != nil {
		return *dec
	}
	t, now = ready, d.o.Now()
	// A render error is the pipeline's, not the receiver's: retrying the
	// same template on the same event cannot help.
	renderFailed := func(err error) delivery.Decision {
		att := d.attemptRecord(p, s, t, ev, now)
		att.Status, att.Error = delivery.AttemptFailed, err.Error()
		metrics.Attempts.WithLabelValues(att.Status, att.TriggerType).Inc()
		return d.dead(p, idx, t, att, nil, delivery.ReasonPermanent, att.Error, t.Attempt+1)
	}
	r, err := d.target(p, s, t, ev, t.Attempt, t.Failover)
	if err != nil {
		return renderFailed(err)
	}
	req := r.Request
	permit, def, err := d.o.Hosts.Acquire(ctx, req.Host, req.Timeout)
	switch {
	case err != nil:
		return delivery.Decision{Verdict: delivery.Abort, Task: t}
	case def != nil:
		// An open circuit may hold a delivery as long as its policy would
		// have retried it (at least two cooldowns, so even a one-attempt
		// step sees a probe); a host that is only busy holds it as long as
		// the retry topics retain it: slowness is not failure.
		window := max(d.scaled(policy.Horizon()), 2*d.cooldown())
		if def.Reason == delivery.ReasonHostSaturated {
			window = d.o.MaxHold
			if bus.BufferOf(ctx) != nil {
				// A transaction's deferral costs the slot nothing:
				// pace it by the host (Hosts.AwaitTurn).
				d.o.Hosts.AwaitTurn(ctx, req.Host, def.Until)
				now = d.o.Now()
			}
		}
		return d.deferral(p, idx, t, def.Reason, def.Until, window, now)
	}
	if err := r.complete(); err != nil {
		permit.Done(Neutral)
		return renderFailed(err)
	}
	att := d.attemptRecord(p, s, t, ev, d.o.Now())
	att.RequestURL = req.Secrets.Redact(req.URL)
	att.RequestBody = truncate(req.Secrets.RedactBytes(req.Body), d.o.LogBodyLimit)
	resp := d.do(ctx, req)
	permit.Done(resp.outcome())
	if resp.Aborted || ctx.Err() != nil {
		return delivery.Decision{Verdict: delivery.Abort, Task: t}
	}
	body := req.Secrets.RedactBytes(resp.Body)
	att.HTTPStatus, att.LatencyMS, att.Error = resp.Status, resp.Latency.Milliseconds(), resp.Err
	att.ResponseBody = truncate(body, d.o.LogBodyLimit)
	att.Status = delivery.AttemptSuccess
	if resp.Class != Success {
		att.Status = delivery.AttemptFailed
		d.o.Log.Info("webhook attempt failed", "pipeline_id", p.ID, "step", s.Order, "delivery_id", t.DeliveryID, "attempt", t.Attempt, "error", att.Error)
	}
	metrics.Attempts.WithLabelValues(att.Status, att.TriggerType).Inc()
	metrics.AttemptLatency.Observe(resp.Latency.Seconds())

	last := &reply{status: resp.Status, body: body, header: resp.Header, secrets: req.Secrets}
	switch resp.Class {
	case Success:
		next := t.Clone()
		keepResult(p, s, next, last)
		if end := stepEnd(p, idx, t); idx+1 < end {
			return delivery.Decision{Verdict: delivery.Next, Task: next.AtStep(p.Steps[idx+1].Order, d.o.Now()), Attempt: att}
		}
		return delivery.Decision{Verdict: delivery.Done, Task: next, Attempt: att, Status: execStatus(p, next, false)}
	case Permanent:
		return d.dead(p, idx, t, att, last, delivery.ReasonPermanent, att.Error, t.Attempt+1)
	}
	// Transient: the next attempt, the failover, or the DLQ.
	next := t.Clone()
	next.LastError, next.LastHTTPStatus = att.Error, att.HTTPStatus
	next.Attempted(att.StartedAt)
	if t.Attempt+1 < policy.MaxAttempts {
		delay := d.scaled(policy.Next(t.Attempt+1, backoff.RetryAfter(resp.Status, resp.Header, now)))
		next.Attempt++
		at := d.o.Now().Add(delay)
		next.NotBefore = at
		return delivery.Decision{Verdict: delivery.Retry, Task: next, At: at, Attempt: att, Error: att.Error}
	}
	if !t.Failover && p.Failover != nil {
		at := d.o.Now()
		next.Attempt, next.Failover, next.NotBefore, next.Tiers = 0, true, at, nil
		return delivery.Decision{Verdict: delivery.Failover, Task: next, At: at, Attempt: att, Error: att.Error}
	}
	return d.dead(p, idx, t, att, last, delivery.ReasonExhausted, att.Error, t.Attempt+1)
}

// UnknownWindow is how long a delivery waits for its pipeline to show up in
// this replica's registry (created on another replica a moment ago) before
// it is cancelled as a deleted pipeline's would be.
const UnknownWindow = time.Minute

// Unknown decides for a delivery whose pipeline this replica does not know:
// not deleted, just not seen yet. It waits a little, then gives up.
func (d *Dispatcher) Unknown(t *delivery.Task) delivery.Decision {
	now := d.o.Now()
	if t.Deferred(now) >= UnknownWindow {
		return delivery.Decision{Verdict: delivery.Cancelled, Task: t, Status: delivery.ExecCancelled}
	}
	next := t.Clone()
	if next.DeferredSince.IsZero() {
		next.DeferredSince = now
	}
	next.NotBefore = now.Add(time.Second)
	return delivery.Decision{Verdict: delivery.Defer, Task: next, At: next.NotBefore, Reason: delivery.ReasonPipelineUnknown}
}

func (d *Dispatcher) cooldown() time.Duration {
	if d.o.Hosts != nil {
		return d.o.Hosts.Cooldown
	}
	return 0
}

// deferral holds t without spending an attempt until `until` — but a step
// deferred longer than window in all (across probes and real attempts in
// between) is dead-lettered with the deferral's reason: no delivery waits
// forever.
func (d *Dispatcher) deferral(p *pipeline.Compiled, idx int, t *delivery.Task, reason string, until time.Time, window time.Duration, now time.Time) delivery.Decision {
	deferred := t.Deferred(now)
	if deferred >= window {
		return d.dead(p, idx, t, nil, nil, reason, fmt.Sprintf("deferred for %v without an attempt (%s)", deferred.Round(time.Second), strings.ReplaceAll(reason, "_", " ")), t.Attempt)
	}
	if end := now.Add(window - deferred); until.After(end) {
		until = end // one last look when the window closes
	}
	if !until.After(now) {
		until = now.Add(time.Millisecond)
	}
	next := t.Clone()
	if next.DeferredSince.IsZero() {
		next.DeferredSince = now
	}
	next.NotBefore = until
	return delivery.Decision{Verdict: delivery.Defer, Task: next, At: until, Reason: reason}
}

// dead dead-letters t's current step. The DLQ keeps the task a retry resumes
// from: this step, from its first attempt. With stop_on_failure false the
// execution goes on with the next step in place (Continue), which sees the
// dead step's result as {{steps.N.…}} exactly as it would a successful
// one's (issue 8). last is what the step's final attempt got back, nil when
// this run made no request (see deadReply).
func (d *Dispatcher) dead(p *pipeline.Compiled, idx int, t *delivery.Task, att *delivery.Attempt, last *reply, reason, errText string, attempts int) delivery.Decision {
	s := &p.Steps[idx]
	resume := t.Resumable(errText)
	resume.OnlyStep = t.OnlyStep || !s.StopOnFailure
	dec := delivery.Decision{Verdict: delivery.Dead, Task: resume, Attempt: att, Reason: reason, Error: errText, Attempts: attempts}
	after := t.Clone()
	after.Dead++
	if !s.StopOnFailure {
		if end := stepEnd(p, idx, t); idx+1 < end {
			// The result rides in the task, so it reaches the next step
			// whichever process runs it (a retry tier, another replica).
			keepResult(p, s, after, deadReply(t, att, last))
			dec.Continue = after.AtStep(p.Steps[idx+1].Order, d.o.Now())
			return dec
		}
	}
	dec.Status = execStatus(p, after, s.StopOnFailure)
	return dec
}

// execStatus is an execution's final status: completed, partial (some steps
// dead, the rest done) or failed (stopped, or every step dead).
func execStatus(p *pipeline.Compiled, t *delivery.Task, stopped bool) string {
	switch {
	case t.Dead == 0:
		return delivery.ExecCompleted
	case stopped || t.Dead >= len(p.Steps) || t.OnlyStep:
		return delivery.ExecFailed
	}
	return delivery.ExecPartial
}

// stepIndex is the index of the step with that order (-1: none).
func stepIndex(p *pipeline.Compiled, order int) int {
	for i := range p.Steps {
		if p.Steps[i].Order == order {
			return i
		}
	}
	return -1
}

// stepEnd is the index after the last step this execution runs: one step
// for a DLQ retry of a step the pipeline already went on past.
func stepEnd(p *pipeline.Compiled, idx int, t *delivery.Task) int {
	if t.OnlyStep {
		return idx + 1
	}
	return len(p.Steps)
}

func (d *Dispatcher) attemptRecord(p *pipeline.Compiled, s *pipeline.CompiledStep, t *delivery.Task, ev *event.Event, now time.Time) *delivery.Attempt {
	tier := ""
	if n := len(t.Tiers); n > 0 {
		tier = t.Tiers[n-1]
	}
	return &delivery.Attempt{
		V: delivery.Version, Kind: delivery.KindAttempt,
		AttemptID:   delivery.AttemptID(t.ExecutionID, s.Order, t.Attempt, t.Failover),
		ExecutionID: t.ExecutionID, DeliveryID: t.DeliveryID, PipelineID: p.ID, PipelineName: p.Name,
		TriggerType: ev.TriggerType, TriggerID: ev.TriggerID, EventID: ev.ID,
		StepID: s.ID, StepName: s.Name, StepOrder: s.Order, Attempt: t.Attempt, Tier: tier, Failover: t.Failover, StartedAt: now,
	}
}

// renderError is a request that could not be rendered or signed; its text
// is already redacted.
type renderError struct{ msg string }

func (e *renderError) Error() string { return e.msg }

// Scope builds the template variables of one attempt. Timestamp, nonce and
// uuid are fresh per attempt (the random ones made only for a pipeline whose
// templates read them); everything else is stable across retries.
func (d *Dispatcher) Scope(p *pipeline.Compiled, t *delivery.Task, ev *event.Event, retryCount int, now time.Time) *template.Scope {
	s := &template.Scope{System: filter.System(ev), Objects: ev.Objects, Data: ev.Data, Env: d.o.Env.Lookup}
	sys := &s.System
	sys.Delivery, sys.PipelineID, sys.PipelineName, sys.DeliveryID, sys.ExecutionID = true, p.ID, p.Name, t.DeliveryID, t.ExecutionID
	sys.Now, sys.RetryCount = now, retryCount
	if p.UsesRandom {
		var nonce [12]byte
		_, _ = rand.Read(nonce[:])
		sys.UUID, sys.Nonce = uuid.NewString(), hex.EncodeToString(nonce[:])
	}
	if p.UsesSteps {
		s.Steps = stepAliases(p, t.Steps)
	}
	return s
}

// stepAliases makes earlier results reachable by step name as well as order.
func stepAliases(p *pipeline.Compiled, byOrder map[string]any) map[string]any {
	out := make(map[string]any, 2*len(byOrder))
	for k, v := range byOrder {
		out[k] = v
	}
	for i := range p.Steps {
		if r, ok := byOrder[strconv.Itoa(p.Steps[i].Order)]; ok && p.Steps[i].Name != "" {
			if _, taken := out[p.Steps[i].Name]; !taken {
				out[p.Steps[i].Name] = r
			}
		}
	}
	return out
}

// Build renders and signs a step's request; a failover attempt sends the
// same request to the pipeline's failover URL. Every env value the templates
// read and the signing key are collected in the request's Secrets first, so
// every text made from the request can be redacted; an error's text already
// is.
func (d *Dispatcher) Build(p *pipeline.Compiled, s *pipeline.CompiledStep, t *delivery.Task, ev *event.Event, retryCount int, failover bool) (*Request, error) {
	r, err := d.target(p, s, t, ev, retryCount, failover)
	if err != nil {
		return nil, err
	}
	return r.Request, r.complete()
}

// rendering is a request whose URL is rendered, the rest still to do: what
// the host gate needs to know is known before the body is rendered and
// signed (work a deferred delivery does not need).
type rendering struct {
	*Request
	scope *template.Scope
	key   string
	sign  signing.Request
	mode  string
	step  *pipeline.CompiledStep
	fo    bool
	// replay is the replay job's id, sent as X-Afftok-Replay.
	replay string
}

func (d *Dispatcher) target(p *pipeline.Compiled, s *pipeline.CompiledStep, t *delivery.Task, ev *event.Event, retryCount int, failover bool) (*rendering, error) {
	now := d.o.Now()
	scope := d.Scope(p, t, ev, retryCount, now)
	secrets := &Secrets{}
	env := scope.Env
	scope.Env = func(name string) (string, bool) {
		v, ok := env(name)
		if ok {
			secrets.Add(v)
		}
		return v, ok
	}
	// The key first: it is a secret even if rendering the URL fails.
	key := s.SigningKey.Interpolate(scope, nil)
	addKey(secrets, key)
	// During a rotation's grace the replaced key signs too; a stored one
	// stays a secret after that.
	var prev string
	if s.Step.PreviousSigningKey != "" {
		old := s.PreviousSigningKey.Interpolate(scope, nil)
		addKey(secrets, old)
		if s.Step.PreviousKeyAt(now) != "" {
			prev = old
		}
	}
	ut := s.URL
	if failover && p.Failover != nil {
		ut = p.Failover
	}
	rawURL := ut.Render(scope)
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &renderError{secrets.Redact(fmt.Sprintf("Render error: the URL %q is not a valid http(s) URL", rawURL))}
	}
	return &rendering{
		Request: &Request{Method: s.Method, URL: rawURL, Host: hostKey(u), Header: http.Header{}, Timeout: s.Timeout, Secrets: secrets},
		scope:   scope, key: key, mode: s.SignatureMode, step: s, fo: failover, replay: t.Replay,
		sign: signing.Request{DeliveryID: t.DeliveryID, PipelineID: p.ID, TriggerType: ev.TriggerType, TriggerID: ev.TriggerID, RetryCount: retryCount, Now: now, PreviousKey: prev},
	}, nil
}

// addKey registers a signing key as a secret; a Standard Webhooks secret's
// base64 part is one without its whsec_ prefix too.
func addKey(secrets *Secrets, key string) {
	secrets.Add(key)
	if b64, ok := strings.CutPrefix(key, signing.SecretPrefix); ok {
		secrets.Add(b64)
	}
}

// complete renders the headers and body and signs the request.
func (r *rendering) complete() error {
	for k, h := range r.step.Headers {
		r.Header.Set(k, h.Render(r.scope))
	}
	if r.Method != http.MethodGet && r.Method != http.MethodDelete {
		r.Body = r.step.Body.Render(r.scope)
	}
	r.sign.Body = r.Body
	if err := signing.Apply(r.Header, r.mode, r.key, r.sign); err != nil {
		return &renderError{r.Secrets.Redact("Signing error: " + err.Error())}
	}
	if r.fo {
		r.Header.Set(signing.HeaderFailover, "true")
	}
	// Only a replay says it is one (a stored template may set the header).
	r.Header.Del(signing.HeaderReplay)
	if r.replay != "" {
		r.Header.Set(signing.HeaderReplay, r.replay)
	}
	r.Header.Set("User-Agent", "webhookd/1 (+AffTok webhooks)")
	return nil
}

// hostKey is a URL's host:port (default port by scheme), lowercased: the key
// of the per-host limit and breaker.
func hostKey(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// reply is what a step's attempt got back, as far as {{steps.N.…}} shows it:
// the HTTP status (0: no HTTP response), the body (secrets already redacted)
// and the headers; secrets redacts the header values.
type reply struct {
	status  int
	body    []byte
	header  http.Header
	secrets *Secrets
}

// deadReply is a dead step's result for the steps after it: the reply to its
// final attempt — the failover's, when it had one, just as a failover that
// succeeds is the step's result — whatever its status. When that attempt
// got no HTTP response (timeout, connection refused, TLS or DNS error, an
// address the guard blocks, a request that could not be rendered) the
// status is 0, as http_status is 0 in the execution logs, the body "" and
// the headers empty: the variable still renders a number, so a template can
// tell "no answer" (0) from an answer, and {{steps.N.status}} is never null
// for a step that ran. A step that died without an attempt in this run
// (pipeline disabled, deferred past its window) keeps the status of the last
// attempt it made (t.LastHTTPStatus, 0 if none); its body and headers are
// not kept across hops, so they are "" and empty.
func deadReply(t *delivery.Task, att *delivery.Attempt, last *reply) *reply {
	switch {
	case last != nil:
		return last
	case att != nil:
		return &reply{status: att.HTTPStatus}
	}
	return &reply{status: t.LastHTTPStatus}
}

// keepResult records s's result in t for the steps after it, when the
// pipeline's templates read step results at all. Each step's share of the
// task's budget is bounded (boundedResult), so a chain of large answers
// cannot make a retry task too large for Kafka.
func keepResult(p *pipeline.Compiled, s *pipeline.CompiledStep, t *delivery.Task, r *reply) {
	if !p.UsesSteps {
		return
	}
	if t.Steps == nil {
		t.Steps = map[string]any{}
	}
	t.Steps[strconv.Itoa(s.Order)] = boundedResult(r.status, r.body, r.header, r.secrets, delivery.MaxTaskStepsBytes/max(len(p.Steps), 1))
}

// stepResult is what later steps see as {{steps.N.…}}: the status, the body
// (parsed when JSON) and the headers, secrets redacted. Successful and dead
// steps alike (see deadReply).
func stepResult(status int, body []byte, header http.Header, secrets *Secrets) map[string]any {
	var parsed any = string(body)
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if len(body) > 0 && dec.Decode(&v) == nil {
		parsed = v
	}
	headers := map[string]any{}
	for k := range header {
		headers[strings.ToLower(k)] = secrets.Redact(header.Get(k))
	}
	st := json.Number(strconv.Itoa(status))
	return map[string]any{"status": st, "response": map[string]any{"status": st, "body": parsed, "headers": headers}}
}

// boundedResult is a step's result for chaining, with the body dropped to a
// truncated string when it would make a retry task too large.
func boundedResult(status int, body []byte, header http.Header, secrets *Secrets, limit int) map[string]any {
	r := stepResult(status, body, header, secrets)
	if b, _ := json.Marshal(r); len(b) > limit {
		if len(body) > limit/2 {
			body = body[:limit/2]
		}
		r["response"].(map[string]any)["body"] = string(body)
	}
	return r
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…[truncated]"
}
