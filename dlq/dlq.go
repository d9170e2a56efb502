// Package dlq is the dead-letter queue's one home: the record written to
// webhooks.dlq when a delivery dies (or a source record cannot be read), its
// reduced form for records too large for the broker, and the redriver that
// retries and deletes items. Every state change of an item is a record on the
// DLQ topic; ClickHouse holds the queryable projection (analytics).
package dlq

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/event"
)

// Item states.
const (
	StateDead    = "dead"
	StateRetried = "retried"
	StateDeleted = "deleted"
)

// Record is an item on the DLQ topic. Task is what a retry resumes (nil for
// a source record that could not be read); Source is where an undecodable
// record came from.
type Record struct {
	V           int              `json:"v"`
	ID          string           `json:"id"`
	State       string           `json:"state"`
	Reason      string           `json:"reason"`
	Error       string           `json:"error"`
	DeliveryID  string           `json:"delivery_id,omitempty"`
	ExecutionID string           `json:"execution_id,omitempty"`
	PipelineID  string           `json:"pipeline_id,omitempty"`
	TriggerType string           `json:"trigger_type,omitempty"`
	TriggerID   string           `json:"trigger_id,omitempty"`
	StepOrder   int              `json:"step_order,omitempty"`
	Attempts    int              `json:"attempts"`
	FailedAt    time.Time        `json:"failed_at"`
	Source      *delivery.Source `json:"source,omitempty"`
	Payload     json.RawMessage  `json:"payload,omitempty"`
	// Payload is set in a reduced record only (the event's envelope without
	// its data); see PayloadView.
	// PayloadTruncated: the record was too large for the broker and was
	// reduced; the event is read again from Source (or Task.Source).
	PayloadTruncated bool           `json:"payload_truncated,omitempty"`
	Task             *delivery.Task `json:"task,omitempty"`
}

// ID identifies a DLQ item: one dead step of one execution, or one source
// record that could not be read.
func ID(parts ...string) string { return delivery.DeadLetterID(parts...) }

// MaxBytes bounds an encoded DLQ record. A larger one is written reduced
// (Reduce): a DLQ item is for people to read and retry, and a record the
// broker refuses would leave its delivery nowhere.
const MaxBytes = 512 << 10

// ForDecision is the DLQ record of a dead step (a Dead decision).
func ForDecision(dec *delivery.Decision, ev *event.Event, now time.Time) *Record {
	t := dec.Task
	r := &Record{
		V: delivery.Version, ID: ID(t.ExecutionID, strconv.Itoa(t.StepOrder)), State: StateDead,
		Reason: dec.Reason, Error: dec.Error, DeliveryID: t.DeliveryID, ExecutionID: t.ExecutionID,
		PipelineID: t.PipelineID, StepOrder: t.StepOrder, Attempts: dec.Attempts, FailedAt: now, Task: t,
	}
	if ev != nil {
		r.TriggerType, r.TriggerID = ev.TriggerType, ev.TriggerID
	}
	return r
}

// ForSource is the DLQ record of a record that could not be read (an
// undecodable event or task): its bytes are kept, so nothing is lost.
func ForSource(rec *kgo.Record, reason string, cause error, now time.Time) *Record {
	src := &delivery.Source{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Key: rec.Key, Value: rec.Value}
	return &Record{
		V: delivery.Version, ID: ID("source", rec.Topic, strconv.Itoa(int(rec.Partition)), strconv.FormatInt(rec.Offset, 10)),
		State: StateDead, Reason: reason, Error: cause.Error(), FailedAt: now, Source: src,
	}
}

// PayloadView is what the API shows of the event: the record's own payload
// (a reduced record's envelope), else the envelope and data of the task's
// event, else an unreadable record's bytes when they are JSON. A record
// carries the event once (in its task or source); the view is made from it.
func (r *Record) PayloadView() json.RawMessage {
	switch {
	case len(r.Payload) > 0:
		return r.Payload
	case r.Task != nil && len(r.Task.Event) > 0:
		if ev, err := r.Task.Decoded(); err == nil {
			return payload(ev, true)
		}
	case r.Source != nil && json.Valid(r.Source.Value):
		return r.Source.Value
	}
	return nil
}

// payload is what the API shows of the event: its envelope, with the data
// unless withData is false.
func payload(ev *event.Event, withData bool) json.RawMessage {
	m := map[string]any{
		"event_id": ev.ID, "event_type": ev.Type, "trigger_type": ev.TriggerType,
		"trigger_id": ev.TriggerID, "timestamp": ev.Timestamp,
	}
	if withData {
		m["data"] = ev.Data
	}
	b, _ := json.Marshal(m)
	return b
}

// Reduce returns the record without its large parts — the event data, the
// source bytes, the carried step results — marked payload_truncated. The
// source topic, partition and offset stay, so the event can be read again.
func (r *Record) Reduce() *Record {
	c := *r
	c.PayloadTruncated = true
	if c.Source != nil {
		s := *c.Source
		s.Value = nil
		c.Source = &s
	}
	c.Payload = nil
	if c.Task != nil {
		if ev, err := c.Task.Decoded(); err == nil {
			c.Payload = payload(ev, false)
		}
		t := c.Task.Clone()
		t.Event, t.Steps = nil, nil
		c.Task = t
	}
	if len(c.Error) > 1024 {
		c.Error = c.Error[:1024] + "…[truncated]"
	}
	return &c
}

// Key is the record's Kafka key: the delivery id (all of a delivery's
// records share a partition), or the item id.
func (r *Record) Key() []byte {
	if r.DeliveryID != "" {
		return []byte(r.DeliveryID)
	}
	return []byte(r.ID)
}

// Encode returns the record for topic, reduced if it would be larger than
// MaxBytes.
func (r *Record) Encode(topic string) *kgo.Record {
	b := r.encode()
	if len(b) > MaxBytes && !r.PayloadTruncated {
		b = r.Reduce().encode()
	}
	return &kgo.Record{Topic: topic, Key: r.Key(), Value: b}
}

func (r *Record) encode() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic("encode DLQ record: " + err.Error()) // plain data; a failure is a bug
	}
	return b
}

// WithState returns a copy in another state (retried, deleted): the DLQ
// table keeps the latest record per id, so a state change restates it whole.
func (r *Record) WithState(state string) *Record {
	c := *r
	c.State = state
	return &c
}
