// Package delivery is the model of one delivery — one (event, pipeline) pair —
// from fan-out to the DLQ: the Task that carries it between roles over Kafka,
// the Decision each run of its current step yields, deterministic ids, and
// the attempt and execution records of the executions topic. Everything here
// is plain data; what a decision turns into on Kafka is the engine's job.
package delivery

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/event"
)

// Version is the schema version written into every record.
const Version = 1

// hashID is prefix and the first 24 hex digits of the SHA-256 of parts,
// each followed by a zero byte. Ids are stored and compared across
// versions: TestHashIDIsStable holds the form. Made for every delivery and
// attempt, it works in stack buffers (ids of ordinary parts allocate only
// the result).
func hashID(prefix string, parts ...string) string {
	var in [256]byte
	b := in[:0]
	for _, p := range parts {
		b = append(b, p...)
		b = append(b, 0)
	}
	sum := sha256.Sum256(b)
	var out [64]byte
	return string(hex.AppendEncode(append(out[:0], prefix...), sum[:12]))
}

// EventKey identifies a source event: its id, or where it was read from when
// the producer gave none. A redelivered record has the same key.
func EventKey(eventID, topic string, partition int32, offset int64) string {
	if eventID != "" {
		return "id:" + eventID
	}
	return fmt.Sprintf("at:%s/%d/%d", topic, partition, offset)
}

// ID is the delivery id (X-Afftok-Delivery-ID) of one (event, pipeline) pair.
// It is derived, not random, so a replay after a crash carries the same id and
// receivers can de-duplicate; it never changes across retries or failover.
func ID(eventKey, pipelineID string) string { return hashID("wh_del_", eventKey, pipelineID) }

// OrderKey is the key lock of a pipeline ordered by key for events with the
// Kafka key k: "pipelineID|k", with k as it is when it is printable UTF-8
// not starting with "~", else "~" and its hex form (keys are unique either
// way, and survive JSON).
func OrderKey(pipelineID string, k []byte) string {
	s := string(k)
	printable := utf8.Valid(k) && !strings.HasPrefix(s, "~")
	for _, r := range s {
		if !printable || !unicode.IsPrint(r) {
			printable = false
			break
		}
	}
	if !printable {
		s = "~" + hex.EncodeToString(k)
	}
	return pipelineID + "|" + s
}

// ExecutionID identifies one attempt cycle of a delivery: cycle 0 is the
// first, each DLQ retry starts a new one.
func ExecutionID(deliveryID string, cycle int) string {
	return hashID("exec_", deliveryID, strconv.Itoa(cycle))
}

// ReplayExecutionID identifies the execution a replay job makes of a
// delivery: its own attempts and DLQ items, apart from the original's, and
// the same if the replay redoes it after a takeover. It starts with
// ReplayExecutionPrefix, so the replay's executions can be counted.
func ReplayExecutionID(deliveryID, replayID string) string {
	return hashID(ReplayExecutionPrefix(replayID), deliveryID, "replay", replayID)
}

// ReplayExecutionPrefix is what the ids of a replay's executions start with.
func ReplayExecutionPrefix(replayID string) string { return "exec_" + replayID + "_" }

// AttemptID identifies one HTTP attempt, so a replayed record is recognised by
// the analytics store.
func AttemptID(executionID string, stepOrder, attempt int, failover bool) string {
	return hashID("att_", executionID, strconv.Itoa(stepOrder), strconv.Itoa(attempt), strconv.FormatBool(failover))
}

// DeadLetterID identifies a DLQ item: one dead step of one execution, or one
// source record that could not be read.
func DeadLetterID(parts ...string) string { return hashID("dlq_", parts...) }

// Record kinds on the executions topic.
const (
	KindAttempt   = "attempt"
	KindExecution = "execution"
)

// Attempt statuses.
const (
	AttemptSuccess = "success"
	AttemptFailed  = "failed"
)

// Execution statuses (spec: logs/recent "status").
const (
	ExecCompleted = "completed"
	ExecFailed    = "failed"
	ExecPartial   = "partial" // some steps dead, the rest done (stop_on_failure=false)
	ExecRetrying  = "retrying"
	ExecCancelled = "cancelled"
)

// Attempt is one HTTP attempt of one step. Every string in it has had the
// delivery's secrets replaced by [redacted] before it was set.
type Attempt struct {
	V            int       `json:"v"`
	Kind         string    `json:"kind"`
	AttemptID    string    `json:"attempt_id"`
	ExecutionID  string    `json:"execution_id"`
	DeliveryID   string    `json:"delivery_id"`
	PipelineID   string    `json:"pipeline_id"`
	PipelineName string    `json:"pipeline_name"`
	TriggerType  string    `json:"trigger_type"`
	TriggerID    string    `json:"trigger_id"`
	EventID      string    `json:"event_id"`
	StepID       string    `json:"step_id"`
	StepName     string    `json:"step_name"`
	StepOrder    int       `json:"step_order"`
	Attempt      int       `json:"attempt"` // 0-based, = X-Afftok-Retry-Count
	Failover     bool      `json:"failover"`
	Tier         string    `json:"tier"`
	Status       string    `json:"status"`
	HTTPStatus   int       `json:"http_status"`
	LatencyMS    int64     `json:"latency_ms"`
	Error        string    `json:"error"`
	RequestURL   string    `json:"request_url"`
	RequestBody  string    `json:"request_body"`
	ResponseBody string    `json:"response_body"`
	StartedAt    time.Time `json:"started_at"`
}

// Execution is the state of one execution after a change.
type Execution struct {
	V            int       `json:"v"`
	Kind         string    `json:"kind"`
	ExecutionID  string    `json:"execution_id"`
	DeliveryID   string    `json:"delivery_id"`
	PipelineID   string    `json:"pipeline_id"`
	PipelineName string    `json:"pipeline_name"`
	TriggerType  string    `json:"trigger_type"`
	TriggerID    string    `json:"trigger_id"`
	EventID      string    `json:"event_id"`
	Status       string    `json:"status"`
	StartedAt    time.Time `json:"started_at"`
	CompletedAt  time.Time `json:"completed_at,omitzero"` // absent while not final
	// Seq orders state changes of one execution; the highest wins.
	Seq int64 `json:"seq"`
	// FirstRetry marks the execution's first "retrying" record; Retried a
	// final record of an execution that went into retry. Executions in
	// retry = first retries − finals that retried, a sum the per-minute
	// aggregates keep.
	FirstRetry bool `json:"first_retry,omitempty"`
	Retried    bool `json:"retried,omitempty"`
}

// Source is where a record was read from: an event, or a task or record that
// could not be decoded. Value is empty in a reduced record (too large for the
// broker); the record can then be read again from its topic, partition and
// offset while the topic retains it.
type Source struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Key       []byte `json:"key,omitempty"`
	Value     []byte `json:"value,omitempty"`
}

// Task is a delivery: the one value that travels from fan-out through the
// retry tiers and the failover topic to the DLQ. It carries everything an
// attempt needs, so no process memory is involved in a retry.
type Task struct {
	V           int    `json:"v"`
	DeliveryID  string `json:"delivery_id"`
	ExecutionID string `json:"execution_id"`
	PipelineID  string `json:"pipeline_id"`
	Cycle       int    `json:"cycle"`
	// Event is the source record's value. It is empty only in a reduced DLQ
	// record, whose Source says where to read it again.
	Event    json.RawMessage `json:"event,omitempty"`
	EventKey string          `json:"event_key"`
	Source   *Source         `json:"source,omitempty"`
	// StepOrder is the step to attempt; Attempt its 0-based attempt number.
	StepOrder int  `json:"step_order"`
	Attempt   int  `json:"attempt"`
	Failover  bool `json:"failover"`
	// NotBefore is when the attempt is due.
	NotBefore     time.Time `json:"not_before"`
	ExecStartedAt time.Time `json:"exec_started_at"`
	StepStartedAt time.Time `json:"step_started_at"`
	// DeferredSince is when the current run of deferrals began (circuit
	// open, host saturated, pipeline paused: attempts not made and not
	// spent); zero once an attempt is made, when the run's length is added
	// to DeferredFor. Their sum is how long this step has been deferred.
	DeferredSince  time.Time     `json:"deferred_since,omitzero"`
	DeferredFor    time.Duration `json:"deferred_for,omitempty"`
	LastError      string        `json:"last_error,omitempty"`
	LastHTTPStatus int           `json:"last_http_status,omitempty"`
	// Tiers lists the last retry topics the task went through, for diagnosis.
	Tiers []string `json:"tiers,omitempty"`
	// Steps holds earlier steps' results for {{steps.…}}, dead steps' included
	// (bounded in size).
	Steps map[string]any `json:"steps,omitempty"`
	// Dead counts steps of this execution already dead-lettered.
	Dead int `json:"dead,omitempty"`
	// Retried: this execution has gone into retry (any step) — its state
	// records say when that first happened and, at the end, that it did
	// (the analytics count executions in retry from them).
	Retried bool `json:"retried,omitempty"`
	// OnlyStep: run this step alone, not the ones after it (a DLQ retry of a
	// step the pipeline already went on past).
	OnlyStep bool `json:"only_step,omitempty"`
	// Replay is the replay job that made this delivery (X-Afftok-Replay on
	// every attempt, retries and failover included); empty otherwise.
	Replay string `json:"replay,omitempty"`
	// Order is the key lock ("pipelineID|key", OrderKey) of a delivery of a
	// pipeline ordered by key; empty otherwise.
	Order string `json:"order,omitempty"`
	// Blocks: the delivery left for a retry tier or the failover topic while
	// holding its key (Order) — later events of the key are parked behind
	// it — so its end (delivered, dead, cancelled) releases the key.
	Blocks bool `json:"blocks,omitempty"`
	// RateAt is the place the pipeline's rate limiter booked for this
	// step's next attempt (a ticket: zero when none), under the limit
	// RateLimit; a task deferred by the limiter keeps it, so it keeps its
	// place in the queue wherever it comes back (package ratelimit).
	RateAt    time.Time `json:"rate_at,omitzero"`
	RateLimit float64   `json:"rate_limit,omitempty"`
	// RateHop: the limiter had no place soon where the delivery first
	// asked and passed it on through a retry tier, to be booked by
	// whichever replica it lands on.
	RateHop bool `json:"rate_hop,omitempty"`

	ev *event.Event // Event, decoded once per run
}

// MaxTaskStepsBytes bounds the step results a task carries.
const MaxTaskStepsBytes = 64 << 10

// maxTiers bounds the tier history a task carries (a paused pipeline's task
// can hop for days).
const maxTiers = 16

// NewTask is the first-cycle delivery of a decoded event to a pipeline whose
// first step has the given order. ev is shared, read-only, by every delivery
// fanned out from the same record.
func NewTask(ev *event.Event, raw []byte, src *Source, eventKey, pipelineID string, firstStep int, now time.Time) *Task {
	id := ID(eventKey, pipelineID)
	return &Task{
		V: Version, DeliveryID: id, ExecutionID: ExecutionID(id, 0), PipelineID: pipelineID,
		Event: raw, EventKey: eventKey, Source: src, StepOrder: firstStep,
		NotBefore: now, ExecStartedAt: now, StepStartedAt: now, ev: ev,
	}
}

// DecodeTask reads a task record's value.
func DecodeTask(b []byte) (*Task, error) {
	var t Task
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("undecodable task: %w", err)
	}
	if t.DeliveryID == "" || t.PipelineID == "" || t.ExecutionID == "" {
		return nil, fmt.Errorf("task without delivery, execution or pipeline id")
	}
	if t.Attempt < 0 || t.StepOrder < 0 || t.Cycle < 0 || t.Dead < 0 || t.DeferredFor < 0 || t.RateLimit < 0 {
		return nil, fmt.Errorf("task with a negative attempt, step, cycle or count")
	}
	return &t, nil
}

// Decoded returns the task's event, decoding it on first use.
func (t *Task) Decoded() (*event.Event, error) {
	if t.ev != nil {
		return t.ev, nil
	}
	if len(t.Event) == 0 {
		return nil, fmt.Errorf("task carries no event (reduced record): read it again from its source")
	}
	ev, err := event.Decode(t.Event)
	if err != nil {
		return nil, err
	}
	t.ev = ev
	return ev, nil
}

// Clone returns a copy that can be changed without touching t (the event and
// step results are shared read-only; the maps are copied).
func (t *Task) Clone() *Task {
	c := *t
	c.Tiers = append([]string(nil), t.Tiers...)
	if t.Steps != nil {
		c.Steps = make(map[string]any, len(t.Steps))
		for k, v := range t.Steps {
			c.Steps[k] = v
		}
	}
	return &c
}

// AtStep is the task moved on to the step with the given order: its first
// attempt, nothing deferred, no error yet.
func (t *Task) AtStep(order int, now time.Time) *Task {
	n := t.Clone()
	n.StepOrder, n.Attempt, n.Failover, n.Tiers = order, 0, false, nil
	n.StepStartedAt, n.DeferredSince, n.DeferredFor, n.LastError, n.LastHTTPStatus = now, time.Time{}, 0, "", 0
	n.RateAt, n.RateLimit, n.RateHop = time.Time{}, 0, false
	return n
}

// NewCycle is the task of a DLQ retry of the item itemID: a new attempt
// cycle (a new execution) of the same delivery, from the dead step's first
// attempt. The execution id derives from the item, so two items of one
// execution retried make two executions, and one item retried twice (two
// replicas at once) makes one.
func (t *Task) NewCycle(itemID string, now time.Time) *Task {
	n := t.AtStep(t.StepOrder, now)
	n.V, n.Cycle, n.Dead, n.Retried = Version, t.Cycle+1, 0, false
	// A DLQ retry comes after its key was released: it is nobody's blocker.
	n.Order, n.Blocks = "", false
	n.ExecutionID = hashID("exec_", t.DeliveryID, itemID, strconv.Itoa(n.Cycle))
	n.NotBefore, n.ExecStartedAt = now, now
	return n
}

// Resumable is what a DLQ item of t's current step keeps: the step again
// from its first attempt, in a new cycle when retried, with the error that
// killed it.
func (t *Task) Resumable(lastError string) *Task {
	r := t.Clone()
	r.Attempt, r.Failover, r.Tiers, r.Dead, r.DeferredSince, r.DeferredFor = 0, false, nil, 0, time.Time{}, 0
	r.RateAt, r.RateLimit, r.RateHop = time.Time{}, 0, false
	r.LastError = lastError
	return r
}

// Record is the task as a record on topic (a retry tier or the failover
// topic), keyed by delivery id so all of a delivery's tasks share a partition
// — except a task waiting with a rate-limit ticket: each of its looks is
// keyed apart (by when it is due), so its looks land on every replica's
// partitions and it can move to a sooner place where there is one (see
// dispatcher/rate.go).
func (t *Task) Record(topic string) *kgo.Record {
	t.V = Version
	b, err := json.Marshal(t)
	if err != nil {
		panic("encode task: " + err.Error()) // plain data; a failure is a bug
	}
	key := []byte(t.DeliveryID)
	if !t.RateAt.IsZero() {
		key = strconv.AppendInt(append(key, '@'), t.NotBefore.UnixNano(), 10)
	}
	return &kgo.Record{Topic: topic, Key: key, Value: b}
}

// Deferred is how long the current step has been deferred in all, up to now.
func (t *Task) Deferred(now time.Time) time.Duration {
	d := t.DeferredFor
	if !t.DeferredSince.IsZero() {
		d += now.Sub(t.DeferredSince)
	}
	return d
}

// Attempted records that an attempt is being made: a run of deferrals ends.
func (t *Task) Attempted(now time.Time) {
	t.DeferredFor, t.DeferredSince = t.Deferred(now), time.Time{}
}

// AddTier records a retry topic the task goes through, keeping the last few.
func (t *Task) AddTier(name string) {
	t.Tiers = append(t.Tiers, name)
	if n := len(t.Tiers); n > maxTiers {
		t.Tiers = append([]string(nil), t.Tiers[n-maxTiers:]...)
	}
}

// Verdict is what running a delivery's current step decided.
type Verdict uint8

// Verdicts (DESIGN.md §3a).
const (
	// Next: the step succeeded and the next one runs in place.
	Next Verdict = iota + 1
	// Done: every step finished; the execution has its final status.
	Done
	// Retry: a transient failure with attempts left; the task waits in the
	// retry tiers until At. The attempt is spent.
	Retry
	// Defer: no attempt was made (circuit open, host saturated, pipeline
	// paused, rate limited); the task waits until At without spending one.
	Defer
	// Failover: the step's attempts are exhausted and the pipeline has a
	// failover URL; the task goes to the failover topic.
	Failover
	// Dead: the step is dead (Reason); its task goes to the DLQ. With
	// Continue set, the execution goes on with the next step in place.
	Dead
	// Cancelled: the pipeline was deleted while the delivery was pending.
	Cancelled
	// Abort: shutdown cut the attempt short; nothing is recorded and the
	// source offset is not marked, so the delivery runs again.
	Abort
)

var verdictNames = map[Verdict]string{Next: "next", Done: "done", Retry: "retry", Defer: "defer", Failover: "failover", Dead: "dead", Cancelled: "cancelled", Abort: "abort"}

func (v Verdict) String() string {
	if s, ok := verdictNames[v]; ok {
		return s
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}

// Reasons a delivery is deferred or dead-lettered.
const (
	ReasonInvalidEvent     = "invalid_event"     // the source record is not an event
	ReasonInvalidTask      = "invalid_task"      // a retry or failover record could not be decoded
	ReasonExhausted        = "retries_exhausted" // every attempt (and the failover's) failed
	ReasonPermanent        = "permanent"         // render error, blocked address, invalid URL: retrying cannot help
	ReasonPipelineDisabled = "pipeline_disabled" // disabled while a retry was pending
	ReasonPipelinePaused   = "pipeline_paused"   // deferred: paused
	ReasonPipelineUnknown  = "pipeline_unknown"  // deferred: this replica's registry has not seen the pipeline yet
	ReasonCircuitOpen      = "circuit_open"      // deferred: the receiver host's circuit is open
	ReasonHostSaturated    = "host_saturated"    // deferred: the host has its limit of requests in flight
	ReasonRateLimited      = "rate_limited"      // deferred: the pipeline's rate_limit_per_second has no place sooner
	ReasonTooLarge         = "too_large"         // the task is too large for the broker
	ReasonProduceFailed    = "produce_failed"    // Kafka refused the task for another reason
)

// Decision is the outcome of running a delivery's current step.
type Decision struct {
	Verdict Verdict
	// Task is the delivery after the decision: what runs next in place
	// (Next), what waits on a tier (Retry, Defer) or the failover topic, or
	// what a DLQ retry resumes from (Dead).
	Task *Task
	// At is when the task is due (Retry, Defer, Failover).
	At time.Time
	// Reason says why (Defer, Dead).
	Reason string
	// Error is the cause as operators read it, secrets redacted.
	Error string
	// Attempt is the attempt made, nil when none was.
	Attempt *Attempt
	// Attempts is how many attempts the dead step had.
	Attempts int
	// Continue, with Dead: the execution goes on with this task (the next
	// step, stop_on_failure false).
	Continue *Task
	// Status is the execution's final status (Done, Cancelled, and Dead
	// without Continue).
	Status string
}
