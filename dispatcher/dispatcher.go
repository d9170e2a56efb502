// Package dispatcher turns a delivery into HTTP calls: it renders each step's
// templates, signs the request, sends it, classifies the answer, and runs a
// pipeline's steps in order. It returns the Kafka records that describe what
// happened; the caller produces them (acknowledged) before committing.
package dispatcher

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/backoff"
	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/event"
	"github.com/afftok/webhookd/metrics"
	"github.com/afftok/webhookd/pipeline"
	"github.com/afftok/webhookd/signing"
	"github.com/afftok/webhookd/template"
)

// Options configure a Dispatcher.
type Options struct {
	Client            *http.Client
	Env               *template.EnvSource
	ExecutionsTopic   string
	DLQTopic          string
	ResponseBodyLimit int // bytes read from a response
	LogBodyLimit      int // bytes kept in execution logs
	Now               func() time.Time
	Log               *slog.Logger
	// Router places retry and failover tasks; nil: one attempt per step.
	Router Router
	// DelayScale multiplies every retry delay (1 in production; tests and
	// staging shrink the schedule with it).
	DelayScale float64
	// Breaker sheds work for receivers that keep failing; nil: none.
	Breaker *Breaker
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
	return &Dispatcher{o: o}
}

// Job is one delivery of one event to one pipeline.
type Job struct {
	Event       *event.Event
	Raw         []byte // the source record's value
	EventKey    string
	DeliveryID  string
	ExecutionID string
	StartedAt   time.Time
	// Steps holds earlier steps' results for chaining ({{steps.1.…}}).
	Steps map[string]any
}

// NewJob derives a first-cycle job for an event and pipeline.
func NewJob(ev *event.Event, raw []byte, eventKey, pipelineID string, now time.Time) *Job {
	id := delivery.ID(eventKey, pipelineID)
	return &Job{Event: ev, Raw: raw, EventKey: eventKey, DeliveryID: id, ExecutionID: delivery.ExecutionID(id, 0), StartedAt: now, Steps: map[string]any{}}
}

// JobForTask rebuilds the job a task belongs to.
func JobForTask(t *delivery.Task) (*Job, error) {
	ev, err := event.Decode(t.Event)
	if err != nil {
		return nil, err
	}
	return &Job{Event: ev, Raw: t.Event, EventKey: t.EventKey, DeliveryID: t.DeliveryID, ExecutionID: t.ExecutionID, StartedAt: t.ExecStartedAt, Steps: copySteps(t.Steps)}, nil
}

// Request is a rendered, signed HTTP request.
type Request struct {
	Method  string
	URL     string
	Host    string // the URL's host[:port], the circuit breaker's key
	Header  http.Header
	Body    []byte
	Timeout time.Duration
	// secrets are resolved env values, removed from anything logged or shown.
	secrets []string
}

// Response is the classified outcome of one HTTP attempt.
type Response struct {
	Status  int
	Header  http.Header
	Body    []byte
	Latency time.Duration
	Err     error
	// Deferred is set with ErrCircuitOpen: when the host may be tried again.
	Deferred time.Duration
}

// OK reports a delivered attempt: a 2xx answer.
func (r *Response) OK() bool { return r.Err == nil && r.Status >= 200 && r.Status < 300 }

// ErrorText is the attempt's error as operators read it ("HTTP 500",
// "Connection timeout", …); "" for a 2xx answer.
func (r *Response) ErrorText() string {
	switch {
	case r.Err != nil:
		return classify(r.Err)
	case !r.OK():
		return "HTTP " + strconv.Itoa(r.Status)
	}
	return ""
}

func classify(err error) string {
	var ne net.Error
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, ErrBlockedAddress):
		return "Blocked: " + err.Error()
	case errors.Is(err, ErrCircuitOpen):
		return "Circuit open"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "Connection timeout"
	case errors.As(err, &dnsErr):
		return "DNS error: " + dnsErr.Err + " (" + dnsErr.Name + ")"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "Connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "Connection reset"
	case errors.Is(err, errRender):
		return err.Error()
	}
	return "Request failed: " + err.Error()
}

var errRender = errors.New("render error")

// Scope builds the template variables of one attempt. Timestamp, nonce and
// uuid are fresh per attempt; everything else is stable across retries.
func (d *Dispatcher) Scope(p *pipeline.Compiled, job *Job, retryCount int, now time.Time) *template.Scope {
	ev := job.Event
	var nonce [12]byte
	_, _ = rand.Read(nonce[:])
	return &template.Scope{
		System: map[string]any{
			"trigger_type": ev.TriggerType, "trigger_id": ev.TriggerID, "event_id": ev.ID,
			"event_type": ev.Type, "event_timestamp": ev.Timestamp,
			"pipeline_id": p.ID, "pipeline_name": p.Name,
			"delivery_id": job.DeliveryID, "execution_id": job.ExecutionID,
			"timestamp": now.UTC().Format(time.RFC3339), "timestamp_unix": json.Number(strconv.FormatInt(now.Unix(), 10)),
			"uuid": uuid.NewString(), "nonce": hex.EncodeToString(nonce[:]),
			"retry_count": json.Number(strconv.Itoa(retryCount)),
		},
		Objects: ev.Objects,
		Data:    ev.Data,
		Env:     d.o.Env.Lookup,
		Steps:   stepAliases(p, job.Steps),
	}
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

// Build renders and signs a step's request. failoverURL, when set, replaces
// the step URL (the failover path sends the same request elsewhere).
func (d *Dispatcher) Build(p *pipeline.Compiled, s *pipeline.CompiledStep, job *Job, retryCount int, failoverURL *template.URL) (*Request, error) {
	now := d.o.Now()
	scope := d.Scope(p, job, retryCount, now)
	var secrets []string
	env := scope.Env
	scope.Env = func(name string) (string, bool) {
		v, ok := env(name)
		if ok && len(v) >= 4 {
			secrets = append(secrets, v)
		}
		return v, ok
	}
	ut := s.URL
	if failoverURL != nil {
		ut = failoverURL
	}
	rawURL := ut.Render(scope)
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: rendered URL %q is not a valid http(s) URL", errRender, redact(rawURL, secrets))
	}
	req := &Request{Method: s.Method, URL: rawURL, Host: u.Host, Header: http.Header{}, Timeout: s.Timeout}
	for k, h := range s.Headers {
		req.Header.Set(k, h.Render(scope))
	}
	if s.Method != http.MethodGet && s.Method != http.MethodDelete {
		req.Body = s.Body.Render(scope)
	}
	key := s.SigningKey.Interpolate(scope, nil)
	if key != "" {
		secrets = append(secrets, key)
	}
	err = signing.Apply(req.Header, s.SignatureMode, key, signing.Request{
		Body: req.Body, DeliveryID: job.DeliveryID, PipelineID: p.ID,
		TriggerType: job.Event.TriggerType, TriggerID: job.Event.TriggerID,
		RetryCount: retryCount, Now: now,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errRender, err)
	}
	if failoverURL != nil {
		req.Header.Set(signing.HeaderFailover, "true")
	}
	req.Header.Set("User-Agent", "webhookd/1 (+AffTok webhooks)")
	req.secrets = secrets
	return req, nil
}

// Do sends a request and classifies the answer. It never returns an error:
// a failed call is a Response with Err set.
func (d *Dispatcher) Do(ctx context.Context, r *Request) *Response {
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	start := time.Now()
	var body io.Reader
	if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	hr, err := http.NewRequestWithContext(ctx, r.Method, r.URL, body)
	if err != nil {
		return &Response{Err: fmt.Errorf("%w: %v", errRender, err)}
	}
	hr.Header = r.Header.Clone()
	resp, err := d.o.Client.Do(hr)
	if err != nil {
		return &Response{Err: err, Latency: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(d.o.ResponseBodyLimit)))
	// Drain a little more so the connection can be reused, but never much.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	out := &Response{Status: resp.StatusCode, Header: resp.Header, Body: b, Latency: time.Since(start)}
	if err != nil && !out.OK() {
		out.Err = err
	}
	return out
}

// Redacted returns s with the request's secrets replaced.
func (r *Request) Redacted(s string) string { return redact(s, r.secrets) }

// RedactedHeader returns the request headers fit to show: signatures and
// values carrying secrets are replaced.
func (r *Request) RedactedHeader() map[string]string {
	out := map[string]string{}
	for k := range r.Header {
		v := r.Header.Get(k)
		switch http.CanonicalHeaderKey(k) {
		case "Authorization", http.CanonicalHeaderKey(signing.HeaderSignature):
			v = "[redacted]"
		default:
			v = redact(v, r.secrets)
		}
		out[k] = v
	}
	return out
}

func redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

// stepResult is what later steps see as {{steps.N.…}}.
func stepResult(resp *Response) map[string]any {
	var body any = string(resp.Body)
	dec := json.NewDecoder(bytes.NewReader(resp.Body))
	dec.UseNumber()
	var parsed any
	if len(resp.Body) > 0 && dec.Decode(&parsed) == nil {
		body = parsed
	}
	headers := map[string]any{}
	for k := range resp.Header {
		headers[strings.ToLower(k)] = resp.Header.Get(k)
	}
	status := json.Number(strconv.Itoa(resp.Status))
	return map[string]any{"status": status, "response": map[string]any{"status": status, "body": body, "headers": headers}}
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…[truncated]"
}

// Outcome is what Run did.
type Outcome struct {
	// Status is the execution's status after this run: completed, failed,
	// partial, or retrying when a task was handed to a retry or failover topic.
	Status  string
	Records []*kgo.Record
}

// Router places tasks on the retry-tier and failover topics.
type Router interface {
	// Retry returns the record that holds t until t.NotBefore.
	Retry(t *delivery.Task) *kgo.Record
	// Failover returns the record that sends t to the failover URL now.
	Failover(t *delivery.Task) *kgo.Record
}

// Execute starts a new execution: every step in order from the first.
func (d *Dispatcher) Execute(ctx context.Context, p *pipeline.Compiled, job *Job) Outcome {
	t := &delivery.Task{
		V: delivery.Version, DeliveryID: job.DeliveryID, ExecutionID: job.ExecutionID, PipelineID: p.ID,
		Event: job.Raw, EventKey: job.EventKey, ExecStartedAt: job.StartedAt,
	}
	if len(p.Steps) > 0 {
		t.StepOrder = p.Steps[0].Order
	}
	return d.Run(ctx, p, t, job)
}

// Run executes a task: the step it names at its attempt number, then the
// steps after it, until the pipeline ends or a step has to wait for a retry.
// Records describe every attempt and hand-off; the caller produces them.
func (d *Dispatcher) Run(ctx context.Context, p *pipeline.Compiled, t *delivery.Task, job *Job) Outcome {
	var out Outcome
	if job.Steps == nil {
		job.Steps = map[string]any{}
	}
	for k, v := range t.Steps {
		job.Steps[k] = v
	}
	dead, stopped := t.Dead, false
	start := len(p.Steps)
	for i := range p.Steps {
		if p.Steps[i].Order >= t.StepOrder {
			start = i
			break
		}
	}
	end := len(p.Steps)
	if t.OnlyStep && start < end {
		end = start + 1
	}
	for i := start; i < end; i++ {
		s := &p.Steps[i]
		attempt, failover, tier, stepStart := 0, false, "", d.o.Now()
		if i == start {
			attempt, failover = t.Attempt, t.Failover
			if n := len(t.Tiers); n > 0 {
				tier = t.Tiers[n-1]
			}
			if !t.StepStartedAt.IsZero() {
				stepStart = t.StepStartedAt
			}
		}
		resp, att := d.Attempt(ctx, p, s, job, attempt, tier, failover)
		if ctx.Err() != nil {
			// Cut short by shutdown: the caller discards this outcome.
			return Outcome{Status: delivery.ExecRetrying}
		}
		if errors.Is(resp.Err, ErrCircuitOpen) && d.o.Router != nil {
			// Not attempted: wait for the circuit without spending the attempt.
			next := followUp(p, s, t, job, stepStart, dead)
			next.Attempt, next.Failover, next.LastError = attempt, failover, "Circuit open"
			next.NotBefore = d.o.Now().Add(resp.Deferred)
			out.Records = append(out.Records, d.o.Router.Retry(next))
			return d.finish(out, p, job, delivery.ExecRetrying)
		}
		out.Records = append(out.Records, d.record(d.o.ExecutionsTopic, job.ExecutionID, att))
		if resp.OK() {
			if p.UsesSteps {
				job.Steps[strconv.Itoa(s.Order)] = boundedResult(resp, delivery.MaxTaskStepsBytes/max(len(p.Steps), 1))
			}
			continue
		}
		next := followUp(p, s, t, job, stepStart, dead)
		next.Failover, next.LastError, next.LastHTTPStatus = failover, att.Error, att.HTTPStatus
		if i == start {
			next.Tiers = append([]string(nil), t.Tiers...)
		}
		policy := s.Policy()
		if failover {
			policy = backoff.FailoverPolicy
		}
		if attempt+1 < policy.MaxAttempts && d.o.Router != nil {
			delay := policy.Next(attempt+1, backoff.RetryAfter(resp.Status, resp.Header, d.o.Now()))
			next.Attempt = attempt + 1
			next.NotBefore = d.o.Now().Add(time.Duration(float64(delay) * d.o.DelayScale))
			out.Records = append(out.Records, d.o.Router.Retry(next))
			return d.finish(out, p, job, delivery.ExecRetrying)
		}
		if !failover && p.Failover != nil && d.o.Router != nil {
			next.Attempt, next.Failover, next.NotBefore, next.Tiers = 0, true, d.o.Now(), nil
			out.Records = append(out.Records, d.o.Router.Failover(next))
			return d.finish(out, p, job, delivery.ExecRetrying)
		}
		// Dead. A retry from the DLQ resumes at this step; when the pipeline
		// goes on past it, the retry runs this step only (the later steps
		// have already run).
		dead++
		next.Attempt, next.Failover, next.Tiers, next.Dead = 0, false, nil, 0
		next.OnlyStep = t.OnlyStep || !s.StopOnFailure
		out.Records = append(out.Records, d.deadLetter(p, s, job, att, attempt+1, next, delivery.ReasonExhausted))
		if s.StopOnFailure {
			stopped = true
			break
		}
	}
	status := delivery.ExecCompleted
	switch {
	case dead == 0:
	case stopped || dead >= len(p.Steps):
		status = delivery.ExecFailed
	default:
		status = delivery.ExecPartial
	}
	return d.finish(out, p, job, status)
}

// followUp is the task that continues job at step s: the same delivery and
// execution, the results so far, the same step-only scope.
func followUp(p *pipeline.Compiled, s *pipeline.CompiledStep, t *delivery.Task, job *Job, stepStart time.Time, dead int) *delivery.Task {
	return &delivery.Task{
		V: delivery.Version, DeliveryID: job.DeliveryID, ExecutionID: job.ExecutionID, PipelineID: p.ID, Cycle: t.Cycle,
		Event: job.Raw, EventKey: job.EventKey, StepOrder: s.Order, OnlyStep: t.OnlyStep,
		ExecStartedAt: job.StartedAt, StepStartedAt: stepStart, Steps: copySteps(job.Steps), Dead: dead,
	}
}

// finish appends the execution's state record.
func (d *Dispatcher) finish(out Outcome, p *pipeline.Compiled, job *Job, status string) Outcome {
	now := d.o.Now()
	e := &delivery.Execution{
		V: delivery.Version, Kind: delivery.KindExecution, ExecutionID: job.ExecutionID, DeliveryID: job.DeliveryID,
		PipelineID: p.ID, PipelineName: p.Name, TriggerType: job.Event.TriggerType, TriggerID: job.Event.TriggerID,
		EventID: job.Event.ID, Status: status, StartedAt: job.StartedAt, Seq: now.UnixNano(),
	}
	if status != delivery.ExecRetrying {
		e.CompletedAt = now
	}
	out.Status = status
	out.Records = append(out.Records, d.record(d.o.ExecutionsTopic, job.ExecutionID, e))
	return out
}

// Finish records an execution's end without an attempt (cancelled, or a
// pending retry dead-lettered because its pipeline was disabled).
func (d *Dispatcher) Finish(p *pipeline.Compiled, job *Job, status string) Outcome {
	return d.finish(Outcome{}, p, job, status)
}

// DeadLetterTask dead-letters a waiting task without attempting it.
func (d *Dispatcher) DeadLetterTask(p *pipeline.Compiled, t *delivery.Task, job *Job, reason string) Outcome {
	s := &pipeline.CompiledStep{Step: &pipeline.Step{Order: t.StepOrder}}
	for i := range p.Steps {
		if p.Steps[i].Order == t.StepOrder {
			s = &p.Steps[i]
		}
	}
	att := &delivery.Attempt{Error: "pipeline " + p.Status + " while a retry was pending"}
	next := *t
	next.Attempt, next.Failover, next.Tiers = 0, false, nil
	out := Outcome{Records: []*kgo.Record{d.deadLetter(p, s, job, att, t.Attempt, &next, reason)}}
	return d.finish(out, p, job, delivery.ExecFailed)
}

func copySteps(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// boundedResult is a step's result for chaining, with the body dropped to a
// truncated string when it would make a retry task too large.
func boundedResult(resp *Response, limit int) map[string]any {
	r := stepResult(resp)
	if b, _ := json.Marshal(r); len(b) > limit {
		body := resp.Body
		if len(body) > limit/2 {
			body = body[:limit/2]
		}
		r["response"].(map[string]any)["body"] = string(body)
	}
	return r
}

// Attempt makes one attempt of one step and returns the response and its log record.
func (d *Dispatcher) Attempt(ctx context.Context, p *pipeline.Compiled, s *pipeline.CompiledStep, job *Job, retryCount int, tier string, failover bool) (*Response, *delivery.Attempt) {
	started := d.o.Now()
	att := &delivery.Attempt{
		V: delivery.Version, Kind: delivery.KindAttempt,
		AttemptID:   delivery.AttemptID(job.ExecutionID, s.Order, retryCount, failover),
		ExecutionID: job.ExecutionID, DeliveryID: job.DeliveryID, PipelineID: p.ID, PipelineName: p.Name,
		TriggerType: job.Event.TriggerType, TriggerID: job.Event.TriggerID, EventID: job.Event.ID,
		StepID: s.ID, StepName: s.Name, StepOrder: s.Order, Attempt: retryCount, Tier: tier, Failover: failover, StartedAt: started,
	}
	var failoverURL *template.URL
	if failover {
		failoverURL = p.Failover
	}
	req, err := d.Build(p, s, job, retryCount, failoverURL)
	var resp *Response
	if err != nil {
		resp = &Response{Err: err}
	} else if ok, wait := d.o.Breaker.Allow(req.Host); !ok {
		metrics.CircuitDeferred.Inc()
		return &Response{Err: ErrCircuitOpen, Deferred: wait}, att
	} else {
		att.RequestURL = req.Redacted(req.URL)
		att.RequestBody = req.Redacted(truncate(req.Body, d.o.LogBodyLimit))
		resp = d.Do(ctx, req)
		if ctx.Err() == nil {
			d.o.Breaker.Record(req.Host, resp.Err != nil || resp.Status >= 500)
		}
	}
	att.HTTPStatus = resp.Status
	att.LatencyMS = resp.Latency.Milliseconds()
	att.ResponseBody = truncate(resp.Body, d.o.LogBodyLimit)
	att.Error = resp.ErrorText()
	att.Status = delivery.AttemptSuccess
	metrics.AttemptLatency.Observe(resp.Latency.Seconds())
	defer func() { metrics.Attempts.WithLabelValues(att.Status).Inc() }()
	if !resp.OK() {
		att.Status = delivery.AttemptFailed
		d.o.Log.Info("webhook attempt failed", "pipeline_id", p.ID, "step", s.Order, "delivery_id", job.DeliveryID, "attempt", retryCount, "error", att.Error)
	}
	return resp, att
}

func (d *Dispatcher) deadLetter(p *pipeline.Compiled, s *pipeline.CompiledStep, job *Job, att *delivery.Attempt, attempts int, task *delivery.Task, reason string) *kgo.Record {
	payload, _ := json.Marshal(map[string]any{
		"event_id": job.Event.ID, "event_type": job.Event.Type, "trigger_type": job.Event.TriggerType,
		"trigger_id": job.Event.TriggerID, "timestamp": job.Event.Timestamp, "data": job.Event.Data,
	})
	dl := &delivery.DeadLetter{
		V: delivery.Version, ID: delivery.DeadLetterID(job.ExecutionID, strconv.Itoa(s.Order)),
		State: delivery.StateDead, Reason: reason, Error: att.Error,
		DeliveryID: job.DeliveryID, ExecutionID: job.ExecutionID, PipelineID: p.ID,
		TriggerType: job.Event.TriggerType, TriggerID: job.Event.TriggerID, StepOrder: s.Order,
		Attempts: attempts, FailedAt: d.o.Now(), Payload: payload, Task: task,
	}
	return d.record(d.o.DLQTopic, job.DeliveryID, dl)
}

func (d *Dispatcher) record(topic, key string, v any) *kgo.Record {
	b, err := json.Marshal(v)
	if err != nil {
		// Every record type here is plain data; failing to encode is a bug.
		panic(fmt.Sprintf("encode %T: %v", v, err))
	}
	return &kgo.Record{Topic: topic, Key: []byte(key), Value: b}
}

// InvalidEvent is the DLQ record for a source record that could not be
// decoded: the raw bytes are kept, so nothing is lost.
func InvalidEvent(dlqTopic string, rec *kgo.Record, cause error, now time.Time) *kgo.Record {
	src := &delivery.SourceRecord{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Key: rec.Key, Value: rec.Value}
	id := delivery.DeadLetterID("source", rec.Topic, strconv.Itoa(int(rec.Partition)), strconv.FormatInt(rec.Offset, 10))
	var payload json.RawMessage
	if json.Valid(rec.Value) {
		payload = rec.Value
	}
	b, _ := json.Marshal(&delivery.DeadLetter{
		V: delivery.Version, ID: id, State: delivery.StateDead, Reason: delivery.ReasonInvalidEvent,
		Error: cause.Error(), FailedAt: now, Source: src, Payload: payload,
	})
	return &kgo.Record{Topic: dlqTopic, Key: []byte(id), Value: b}
}

// Trace is one step of a test run, as the admin API shows it.
type Trace struct {
	StepName   string        `json:"step_name"`
	StepOrder  int           `json:"step_order"`
	Status     string        `json:"status"`
	HTTPStatus int           `json:"http_status"`
	LatencyMS  int64         `json:"latency_ms"`
	Error      string        `json:"error,omitempty"`
	Request    TraceRequest  `json:"request"`
	Response   TraceResponse `json:"response"`
}

// TraceRequest is the request as sent, with secrets redacted.
type TraceRequest struct {
	URL     string            `json:"url"`
	Method  string            `json:"method"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body"`
}

// TraceResponse is the receiver's answer (body bounded).
type TraceResponse struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

// Trial runs a pipeline's steps once each, for real, without retries and
// without writing anything to Kafka (the admin API's test endpoints). It
// honours stop_on_failure and step chaining.
func (d *Dispatcher) Trial(ctx context.Context, p *pipeline.Compiled, job *Job) (string, []Trace) {
	status := delivery.ExecCompleted
	traces := []Trace{}
	for i := range p.Steps {
		s := &p.Steps[i]
		tr := Trace{StepName: s.Name, StepOrder: s.Order, Request: TraceRequest{Body: json.RawMessage("null")}}
		req, err := d.Build(p, s, job, 0, nil)
		var resp *Response
		if err != nil {
			resp = &Response{Err: err}
		} else {
			tr.Request = TraceRequest{URL: req.Redacted(req.URL), Method: req.Method, Headers: req.RedactedHeader(), Body: json.RawMessage("null")}
			if b := []byte(req.Redacted(string(req.Body))); len(b) > 0 {
				if !json.Valid(b) {
					b, _ = json.Marshal(string(b))
				}
				tr.Request.Body = b
			}
			resp = d.Do(ctx, req)
		}
		tr.HTTPStatus, tr.LatencyMS, tr.Error = resp.Status, resp.Latency.Milliseconds(), resp.ErrorText()
		tr.Response = TraceResponse{Status: resp.Status, Body: truncate(resp.Body, d.o.LogBodyLimit)}
		tr.Status = delivery.AttemptSuccess
		traces = append(traces, tr)
		if resp.OK() {
			job.Steps[strconv.Itoa(s.Order)] = stepResult(resp)
			continue
		}
		traces[len(traces)-1].Status = delivery.AttemptFailed
		status = delivery.ExecFailed
		if s.StopOnFailure {
			break
		}
	}
	return status, traces
}
