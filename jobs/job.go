// Package jobs runs long admin operations — replays of the event topics by
// time window and bulk DLQ redrives — as durable jobs. A job is a record on
// the compacted jobs topic (key: its id), re-written with its progress as it
// runs, so every replica can show it and whichever replica runs it next
// resumes where the last checkpoint says. One replica at a time runs jobs:
// the member of the jobs consumer group that owns the topic's only
// partition (see Runner).
//
// At-least-once: a checkpoint is written only after the work before it is
// acknowledged by Kafka, so a job resumed after a crash may redo the items
// since its last checkpoint (their delivery ids are the same, so receivers
// can de-duplicate) and never skips one.
package jobs

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Kinds of job.
const (
	KindReplay  = "replay"
	KindRedrive = "redrive"
)

// States of a job.
const (
	StateQueued    = "queued"
	StateRunning   = "running"
	StateDone      = "done"
	StateCancelled = "cancelled"
	StateFailed    = "failed"
)

// Final reports whether a state is the end of a job.
func Final(state string) bool {
	return state == StateDone || state == StateCancelled || state == StateFailed
}

// Job is a job's record on the jobs topic: what it is asked to do, and how
// far it got (its checkpoint).
type Job struct {
	V         int       `json:"v"`
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	State     string    `json:"state"`
	Error     string    `json:"error,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`

	Replay  *Replay  `json:"replay,omitempty"`
	Redrive *Redrive `json:"redrive,omitempty"`
	// Progress is the checkpoint: counters and the position reached.
	Progress Progress `json:"progress"`
}

// Replay is a replay job's request, and the offsets it covers (fixed when
// it was created, so a resumed replay reads exactly the same records).
type Replay struct {
	From          time.Time `json:"from"`
	To            time.Time `json:"to"`
	TriggerType   string    `json:"trigger_type,omitempty"`
	PipelineIDs   []string  `json:"pipeline_ids,omitempty"`
	RatePerSecond float64   `json:"rate_per_second,omitempty"` // 0: not paced
	// EffectiveFrom is the oldest time the topics still hold when that is
	// later than From (retention deleted the rest); zero otherwise.
	EffectiveFrom time.Time `json:"effective_from,omitzero"`
	Warnings      []string  `json:"warnings,omitempty"`
	Ranges        []Range   `json:"ranges"`
}

// Range is the offsets [Start, End) of one event-topic partition a replay
// reads.
type Range struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Start     int64  `json:"start"`
	End       int64  `json:"end"`
}

// Redrive is a bulk redrive's request and the DLQ items it selected (in
// order; the checkpoint is an index into them).
type Redrive struct {
	PipelineID    string    `json:"pipeline_id,omitempty"`
	TriggerType   string    `json:"trigger_type,omitempty"`
	Error         string    `json:"error,omitempty"`
	FailedFrom    time.Time `json:"failed_from,omitzero"`
	FailedTo      time.Time `json:"failed_to,omitzero"`
	RatePerSecond float64   `json:"rate_per_second"`
	Limit         int       `json:"limit"`
	Matched       int       `json:"matched"`
	Items         []string  `json:"items"`
}

// Progress is how far a job got.
type Progress struct {
	// Replay: records read in the ranges, deliveries handed to Kafka, and
	// the next offset to read of each range (parallel to Replay.Ranges).
	EventsScanned    int64   `json:"events_scanned,omitempty"`
	DeliveriesQueued int64   `json:"deliveries_queued,omitempty"`
	Next             []int64 `json:"next,omitempty"`
	// Redrive: the index of the next item, and what became of those before.
	Position int   `json:"position,omitempty"`
	Retried  int64 `json:"retried,omitempty"`
	Skipped  int64 `json:"skipped,omitempty"` // no longer dead (retried or deleted meanwhile)
	Failed   int64 `json:"failed,omitempty"`  // not retryable
}

// Version is the schema version of job records.
const Version = 1

// NewID returns a fresh job id with the kind's prefix (rpl_, rdr_).
func NewID(kind string) string {
	prefix := "job_"
	switch kind {
	case KindReplay:
		prefix = "rpl_"
	case KindRedrive:
		prefix = "rdr_"
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// Record is the job as a record on topic.
func (j *Job) Record(topic string) *kgo.Record {
	j.V = Version
	b, err := json.Marshal(j)
	if err != nil {
		panic("encode job: " + err.Error()) // plain data; a failure is a bug
	}
	return &kgo.Record{Topic: topic, Key: []byte(j.ID), Value: b}
}

// cancelSuffix makes the key of a job's cancel request: a record of its own,
// so a checkpoint written at the same moment cannot overwrite it.
const cancelSuffix = "/cancel"

// CancelRecord is the request to cancel job id.
func CancelRecord(topic, id string, at time.Time) *kgo.Record {
	b, _ := json.Marshal(map[string]any{"v": Version, "id": id, "cancelled_at": at})
	return &kgo.Record{Topic: topic, Key: []byte(id + cancelSuffix), Value: b}
}

// Decode reads a job record's value.
func Decode(b []byte) (*Job, error) {
	var j Job
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("undecodable job: %w", err)
	}
	if err := j.check(); err != nil {
		return nil, err
	}
	return &j, nil
}

func (j *Job) check() error {
	switch {
	case j.ID == "":
		return errors.New("job without an id")
	case j.Kind == KindReplay && j.Replay == nil, j.Kind == KindRedrive && j.Redrive == nil:
		return fmt.Errorf("job %s of kind %s without its request", j.ID, j.Kind)
	case j.Kind != KindReplay && j.Kind != KindRedrive:
		return fmt.Errorf("job %s of unknown kind %q", j.ID, j.Kind)
	case j.State != StateQueued && j.State != StateRunning && !Final(j.State):
		return fmt.Errorf("job %s in unknown state %q", j.ID, j.State)
	case j.Progress.Position < 0 || j.Progress.EventsScanned < 0 || j.Progress.DeliveriesQueued < 0:
		return fmt.Errorf("job %s with negative progress", j.ID)
	}
	if j.Replay != nil {
		if len(j.Progress.Next) != 0 && len(j.Progress.Next) != len(j.Replay.Ranges) {
			return fmt.Errorf("job %s: checkpoint has %d offsets for %d ranges", j.ID, len(j.Progress.Next), len(j.Replay.Ranges))
		}
		for _, r := range j.Replay.Ranges {
			if r.Start < 0 || r.End < r.Start {
				return fmt.Errorf("job %s: bad range %s/%d [%d, %d)", j.ID, r.Topic, r.Partition, r.Start, r.End)
			}
		}
	}
	if j.Redrive != nil && j.Progress.Position > len(j.Redrive.Items) {
		return fmt.Errorf("job %s: position %d past its %d items", j.ID, j.Progress.Position, len(j.Redrive.Items))
	}
	return nil
}

// Clone returns a deep enough copy to change progress and state without
// touching j.
func (j *Job) Clone() *Job {
	c := *j
	c.Progress.Next = append([]int64(nil), j.Progress.Next...)
	return &c
}
