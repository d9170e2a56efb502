// Package delivery defines what travels between webhookd's roles over Kafka:
// deterministic ids, the per-attempt and per-execution records of the
// executions topic, and dead-letter records. Every record is versioned JSON.
package delivery

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Version is the schema version written into every record.
const Version = 1

func hashID(prefix string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return prefix + hex.EncodeToString(h.Sum(nil))[:24]
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

// ExecutionID identifies one attempt cycle of a delivery: cycle 0 is the
// first, each DLQ retry starts a new one.
func ExecutionID(deliveryID string, cycle int) string {
	return hashID("exec_", deliveryID, fmt.Sprint(cycle))
}

// AttemptID identifies one HTTP attempt, so a replayed record is recognised by
// the analytics store.
func AttemptID(executionID string, stepOrder, attempt int, failover bool) string {
	return hashID("att_", executionID, fmt.Sprint(stepOrder), fmt.Sprint(attempt), fmt.Sprint(failover))
}

// DeadLetterID identifies a DLQ item: one dead step of one execution, or one
// undecodable source record.
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

// Attempt is one HTTP attempt of one step.
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
	CompletedAt  time.Time `json:"completed_at"` // zero while not final
	// Seq orders state changes of one execution; the highest wins.
	Seq int64 `json:"seq"`
}

// DeadLetter reasons.
const (
	ReasonInvalidEvent     = "invalid_event"
	ReasonExhausted        = "retries_exhausted"
	ReasonPipelineDisabled = "pipeline_disabled"
)

// DeadLetter is a record on the DLQ topic. Source is set for undecodable
// events (the raw record is kept so nothing is lost).
type DeadLetter struct {
	V           int             `json:"v"`
	ID          string          `json:"id"`
	State       string          `json:"state"` // dead, retried, deleted
	Reason      string          `json:"reason"`
	Error       string          `json:"error"`
	DeliveryID  string          `json:"delivery_id,omitempty"`
	ExecutionID string          `json:"execution_id,omitempty"`
	PipelineID  string          `json:"pipeline_id,omitempty"`
	TriggerType string          `json:"trigger_type,omitempty"`
	TriggerID   string          `json:"trigger_id,omitempty"`
	StepOrder   int             `json:"step_order,omitempty"`
	Attempts    int             `json:"attempts"`
	FailedAt    time.Time       `json:"failed_at"`
	Source      *SourceRecord   `json:"source,omitempty"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	// Task is what a retry of this item resumes from (nil for invalid events).
	Task *Task `json:"task,omitempty"`
}

// DeadLetter states.
const (
	StateDead    = "dead"
	StateRetried = "retried"
	StateDeleted = "deleted"
)

// SourceRecord is where an undecodable event came from, and its bytes.
type SourceRecord struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Key       []byte `json:"key,omitempty"`
	Value     []byte `json:"value"`
}

// Task is a delivery waiting for its next attempt: the value of records on
// the retry-tier and failover topics, and what a DLQ item keeps so it can be
// retried. It carries everything the attempt needs, so no process memory is
// involved in a retry.
type Task struct {
	V           int    `json:"v"`
	DeliveryID  string `json:"delivery_id"`
	ExecutionID string `json:"execution_id"`
	PipelineID  string `json:"pipeline_id"`
	Cycle       int    `json:"cycle"`
	// Event is the source record's value, decoded again when the task runs.
	Event    json.RawMessage `json:"event"`
	EventKey string          `json:"event_key"`
	// StepOrder is the step to attempt; Attempt its 0-based attempt number.
	StepOrder int  `json:"step_order"`
	Attempt   int  `json:"attempt"`
	Failover  bool `json:"failover"`
	// NotBefore is when the attempt is due.
	NotBefore      time.Time `json:"not_before"`
	ExecStartedAt  time.Time `json:"exec_started_at"`
	StepStartedAt  time.Time `json:"step_started_at"`
	LastError      string    `json:"last_error,omitempty"`
	LastHTTPStatus int       `json:"last_http_status,omitempty"`
	// Tiers lists the retry topics the task went through, for diagnosis.
	Tiers []string `json:"tiers,omitempty"`
	// Steps holds earlier steps' results for {{steps.…}} (bounded in size).
	Steps map[string]any `json:"steps,omitempty"`
	// Dead counts steps of this execution already dead-lettered.
	Dead int `json:"dead,omitempty"`
	// OnlyStep: run this step alone, not the ones after it (a DLQ retry of a
	// step the pipeline already went on past).
	OnlyStep bool `json:"only_step,omitempty"`
}

// MaxTaskStepsBytes bounds the step results a task carries.
const MaxTaskStepsBytes = 64 << 10
