// Package opevents is the operator events: JSON records on the
// webhooks.operator-events topic (retention-limited, not compacted) saying
// that something an operator should know about happened to a pipeline — it
// was auto-disabled, or set active again. An Emitter produces them (and logs
// and counts each); a Log tails the topic so the admin API can list them.
package opevents

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/bus"
	"github.com/afftok/webhookd/metrics"
	"github.com/afftok/webhookd/watch"
)

// Event types.
const (
	// TypeAutoDisabled: every attempt of the pipeline failed for its
	// auto-disable window; it was set to disabled.
	TypeAutoDisabled = "pipeline_auto_disabled"
	// TypeEnabled: an operator set a disabled pipeline active again.
	TypeEnabled = "pipeline_enabled"
)

// Types lists every event type.
var Types = []string{TypeAutoDisabled, TypeEnabled}

// Event is one operator event, as produced (the topic's value, JSON).
type Event struct {
	ID           string    `json:"id"`
	Type         string    `json:"type"`
	PipelineID   string    `json:"pipeline_id"`
	PipelineName string    `json:"pipeline_name"`
	At           time.Time `json:"at"`
	Message      string    `json:"message"`
	// Revision is the pipeline revision the event's change wrote.
	Revision int64 `json:"revision"`
	// The failure streak of an auto-disable.
	WindowSeconds  int64      `json:"window_seconds,omitempty"`
	Failures       int64      `json:"failures,omitempty"`
	FirstFailureAt *time.Time `json:"first_failure_at,omitempty"`
	LastFailureAt  *time.Time `json:"last_failure_at,omitempty"`
	LastSuccessAt  *time.Time `json:"last_success_at,omitempty"`
}

// ID is an event's deterministic id: one pipeline revision is written once,
// so an event about it has one id however often it is produced.
func ID(typ, pipelineID string, revision int64) string {
	h := sha256.Sum256([]byte(typ + "\x00" + pipelineID + "\x00" + strconv.FormatInt(revision, 10)))
	return "opev_" + hex.EncodeToString(h[:10])
}

// Decode reads one event record's value.
func Decode(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("operator event: %w", err)
	}
	if e.ID == "" || e.Type == "" {
		return Event{}, errors.New("operator event: id and type are required")
	}
	return e, nil
}

// Emitter produces operator events.
type Emitter struct {
	Client *kgo.Client
	Topic  string
	Log    *slog.Logger
}

// Emit produces ev (keyed by its pipeline), waits for Kafka's ack, and logs
// and counts it. A failure is logged and returned; the change the event
// reports has happened either way.
func (e *Emitter) Emit(ctx context.Context, ev Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if err := bus.ProduceAll(ctx, e.Client, &kgo.Record{Topic: e.Topic, Key: []byte(ev.PipelineID), Value: b}); err != nil {
		metrics.OperatorEventFailures.Inc()
		e.Log.Error("operator event not produced", "event_id", ev.ID, "type", ev.Type, "pipeline_id", ev.PipelineID, "err", err)
		return err
	}
	metrics.OperatorEvents.WithLabelValues(ev.Type).Inc()
	e.Log.Warn("operator event", "event_id", ev.ID, "type", ev.Type, "pipeline_id", ev.PipelineID,
		"pipeline_name", ev.PipelineName, "message", ev.Message)
	return nil
}

// MaxKept bounds the events a Log holds: the newest are kept.
const MaxKept = 10000

// Log keeps the topic's events in memory (the newest MaxKept), for listing.
// It is a worker: Run tails the topic until ctx ends.
type Log struct {
	cl    *kgo.Client
	topic string
	log   *slog.Logger

	mu      sync.Mutex
	events  []Event // in the order read
	ids     map[string]bool
	applied map[int32]int64
	changed *watch.Signal
}

// ConsumeOpts are the options the Log's client needs.
func ConsumeOpts(topic string) []kgo.Opt {
	return []kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
}

// NewLog returns a Log over topic; cl (made with ConsumeOpts) must not
// consume anything else.
func NewLog(cl *kgo.Client, topic string, log *slog.Logger) *Log {
	return &Log{cl: cl, topic: topic, log: log, ids: map[string]bool{}, applied: map[int32]int64{}, changed: watch.New()}
}

// Name implements the worker interface.
func (l *Log) Name() string { return "operator-events" }

// Run reads the topic until ctx ends.
func (l *Log) Run(ctx context.Context) error {
	for {
		fs := l.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			l.log.Error("operator events fetch error", "topic", t, "partition", p, "err", err)
		})
		l.mu.Lock()
		fs.EachRecord(func(r *kgo.Record) {
			l.applied[r.Partition] = r.Offset + 1
			ev, err := Decode(r.Value)
			if err != nil {
				l.log.Warn("skipping unreadable operator event", "partition", r.Partition, "offset", r.Offset, "err", err)
				return
			}
			if l.ids[ev.ID] {
				return // produced twice: listed once
			}
			l.ids[ev.ID] = true
			l.events = append(l.events, ev)
			if len(l.events) > MaxKept {
				drop := len(l.events) - MaxKept
				for _, old := range l.events[:drop] {
					delete(l.ids, old.ID)
				}
				l.events = append([]Event(nil), l.events[drop:]...)
			}
		})
		l.changed.Notify()
		l.mu.Unlock()
	}
}

// Sync waits until the Log has read everything produced to the topic before
// the call (one ListOffsets call for each end).
func (l *Log) Sync(ctx context.Context) error {
	adm := kadm.NewClient(l.cl)
	ends, err := adm.ListEndOffsets(ctx, l.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("operator events: list end offsets: %w", err)
	}
	starts, err := adm.ListStartOffsets(ctx, l.topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("operator events: list start offsets: %w", err)
	}
	for {
		l.mu.Lock()
		caughtUp := true
		ends.Each(func(o kadm.ListedOffset) {
			// A partition retention emptied has nothing to read.
			s, _ := starts.Lookup(o.Topic, o.Partition)
			caughtUp = caughtUp && (l.applied[o.Partition] >= o.Offset || s.Offset >= o.Offset)
		})
		ch := l.changed.C()
		l.mu.Unlock()
		if caughtUp {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Filter selects events; zero fields match all.
type Filter struct {
	Type       string
	PipelineID string
	Offset     int
	Limit      int
}

// List returns the matching events newest first (one page) and how many
// match, after catching up with the topic.
func (l *Log) List(ctx context.Context, f Filter) ([]Event, int, error) {
	if err := l.Sync(ctx); err != nil {
		return nil, 0, err
	}
	l.mu.Lock()
	var matched []Event
	for _, e := range l.events {
		if (f.Type == "" || e.Type == f.Type) && (f.PipelineID == "" || e.PipelineID == f.PipelineID) {
			matched = append(matched, e)
		}
	}
	l.mu.Unlock()
	sort.SliceStable(matched, func(i, j int) bool { return matched[i].At.After(matched[j].At) })
	total := len(matched)
	from := min(f.Offset, total)
	to := total
	if f.Limit > 0 {
		to = min(from+f.Limit, total)
	}
	return append([]Event{}, matched[from:to]...), total, nil
}
