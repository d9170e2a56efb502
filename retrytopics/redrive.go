package retrytopics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/analytics"
	"github.com/afftok/webhookd/bus"
	"github.com/afftok/webhookd/delivery"
)

// Redriver retries and deletes DLQ items. Each change is a record on the DLQ
// topic (every replica and the ClickHouse projection see the same state),
// produced together with the work it starts.
type Redriver struct {
	Client   *kgo.Client
	Router   *Router
	DLQTopic string
	Now      func() time.Time
}

// ErrNotRetryable is returned for items that hold nothing to retry.
var ErrNotRetryable = errors.New("this DLQ item cannot be retried")

func (r *Redriver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// stateRecord re-states a whole item with a new state: the DLQ table keeps
// the latest row per id, so the record carries every field.
func (r *Redriver) stateRecord(it *analytics.DLQItem, state string) (*kgo.Record, error) {
	dl := delivery.DeadLetter{
		V: delivery.Version, ID: it.ID, State: state, Reason: it.Reason, Error: it.Error,
		DeliveryID: it.DeliveryID, ExecutionID: it.ExecutionID, PipelineID: it.PipelineID,
		TriggerType: it.TriggerType, TriggerID: it.TriggerID, StepOrder: int(it.StepOrder),
		Attempts: int(it.Attempts), FailedAt: it.FailedAt,
	}
	if it.Payload != "" {
		dl.Payload = json.RawMessage(it.Payload)
	}
	if it.Source != "" {
		dl.Source = &delivery.SourceRecord{}
		if err := json.Unmarshal([]byte(it.Source), dl.Source); err != nil {
			return nil, fmt.Errorf("dlq item %s source: %w", it.ID, err)
		}
	}
	if it.Task != "" {
		dl.Task = &delivery.Task{}
		if err := json.Unmarshal([]byte(it.Task), dl.Task); err != nil {
			return nil, fmt.Errorf("dlq item %s task: %w", it.ID, err)
		}
	}
	b, err := json.Marshal(dl)
	if err != nil {
		return nil, err
	}
	key := it.DeliveryID
	if key == "" {
		key = it.ID
	}
	return &kgo.Record{Topic: r.DLQTopic, Key: []byte(key), Value: b}, nil
}

// Retry starts a new attempt cycle of the dead step (same delivery id, new
// execution id, the pipeline's current config) and marks the item retried.
// An undecodable event is produced again to the topic it came from. It
// returns the new execution id ("" for a re-produced event).
func (r *Redriver) Retry(ctx context.Context, it *analytics.DLQItem) (string, error) {
	state, err := r.stateRecord(it, delivery.StateRetried)
	if err != nil {
		return "", err
	}
	switch {
	case it.Task != "":
		var t delivery.Task
		if err := json.Unmarshal([]byte(it.Task), &t); err != nil {
			return "", fmt.Errorf("%w: %v", ErrNotRetryable, err)
		}
		now := r.now()
		t.Cycle++
		t.ExecutionID = delivery.ExecutionID(t.DeliveryID, t.Cycle)
		t.Attempt, t.Failover, t.Tiers, t.Dead = 0, false, nil, 0
		t.NotBefore, t.ExecStartedAt, t.StepStartedAt = now, now, time.Time{}
		t.LastError, t.LastHTTPStatus = "", 0
		return t.ExecutionID, bus.Send(ctx, r.Client, r.Router.Failover(&t), state)
	case it.Source != "":
		var src delivery.SourceRecord
		if err := json.Unmarshal([]byte(it.Source), &src); err != nil || src.Topic == "" {
			return "", fmt.Errorf("%w: no source record", ErrNotRetryable)
		}
		return "", bus.Send(ctx, r.Client, &kgo.Record{Topic: src.Topic, Key: src.Key, Value: src.Value}, state)
	}
	return "", ErrNotRetryable
}

// Delete marks the item deleted.
func (r *Redriver) Delete(ctx context.Context, it *analytics.DLQItem) error {
	state, err := r.stateRecord(it, delivery.StateDeleted)
	if err != nil {
		return err
	}
	return bus.Send(ctx, r.Client, state)
}
