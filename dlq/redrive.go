package dlq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/bus"
	"github.com/afftok/webhookd/delivery"
)

// Filter selects DLQ items.
type Filter struct {
	PipelineID    string
	TriggerType   string
	ErrorContains string
	FailedFrom    time.Time // zero: no bound
	FailedTo      time.Time // zero: no bound
	State         string    // default "dead"
	Limit         int
	Offset        int
}

// Redriver retries and deletes DLQ items. Each change is a record on the DLQ
// topic (every replica and the ClickHouse projection see the same state),
// produced together with the work it starts.
type Redriver struct {
	Client *kgo.Client
	Topics bus.Topics
	// ReadSource reads a record's value again from its topic (for items
	// reduced because they were too large for the broker).
	ReadSource func(ctx context.Context, src *delivery.Source) ([]byte, error)
	Now        func() time.Time
	Log        *slog.Logger

	claims claimSet
}

// ErrNotRetryable is returned for items that hold nothing to retry.
var ErrNotRetryable = errors.New("this DLQ item cannot be retried")

func (r *Redriver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Claim reserves an item for one change by this replica: a second change is
// refused at once, before the ClickHouse projection has caught up (about a
// second). Release undoes a claim whose change failed.
func (r *Redriver) Claim(id string) bool { return r.claims.claim(id) }

// Release gives a claim back.
func (r *Redriver) Release(id string) { r.claims.release(id) }

// Retry starts a new attempt cycle of the dead step (same delivery id, new
// execution id, the pipeline's current config) and marks the item retried.
// An undecodable event is produced again to the topic it came from. It
// returns the new execution id ("" for a re-produced event). The work is
// produced first: an item is marked retried only once its retry is queued,
// so a refused retry leaves it dead.
func (r *Redriver) Retry(ctx context.Context, it *Record) (string, error) {
	switch {
	case it.Task != nil:
		t := it.Task.Clone()
		if len(t.Event) == 0 {
			raw, err := r.readSource(ctx, t.Source)
			if err != nil {
				return "", err
			}
			t.Event = raw
		}
		t = t.NewCycle(it.ID, r.now())
		// The failover topic is the immediate path: its consumer runs tasks
		// as soon as they are read.
		if err := r.queue(ctx, t.Record(r.Topics.Failover)); err != nil {
			return "", err
		}
		r.mark(ctx, it, StateRetried)
		return t.ExecutionID, nil
	case it.Source != nil && it.Reason == delivery.ReasonInvalidEvent:
		value := it.Source.Value
		if len(value) == 0 {
			raw, err := r.readSource(ctx, it.Source)
			if err != nil {
				return "", err
			}
			value = raw
		}
		if err := r.queue(ctx, &kgo.Record{Topic: it.Source.Topic, Key: it.Source.Key, Value: value}); err != nil {
			return "", err
		}
		r.mark(ctx, it, StateRetried)
		return "", nil
	}
	return "", fmt.Errorf("%w: it holds no delivery to resume (reason %s)", ErrNotRetryable, it.Reason)
}

// queue produces a retry's work; a record the broker refuses as too large
// cannot be retried at all.
func (r *Redriver) queue(ctx context.Context, rec *kgo.Record) error {
	err := bus.ProduceAll(ctx, r.Client, rec)
	if bus.TooLarge(err) {
		return fmt.Errorf("%w: %d bytes are more than %s accepts", ErrNotRetryable, len(rec.Value), rec.Topic)
	}
	return err
}

// mark records the item's new state. The work it stands for is already
// queued, so a failure here is logged, not returned: the item still shows as
// dead (this replica's claim keeps it from being retried twice at once).
func (r *Redriver) mark(ctx context.Context, it *Record, state string) {
	if err := bus.ProduceAll(ctx, r.Client, it.WithState(state).Encode(r.Topics.DLQ)); err != nil {
		r.Log.Error("DLQ item handled, but its new state could not be recorded; it still shows as dead", "id", it.ID, "state", state, "err", err)
	}
}

func (r *Redriver) readSource(ctx context.Context, src *delivery.Source) ([]byte, error) {
	if src == nil || src.Topic == "" || r.ReadSource == nil {
		return nil, fmt.Errorf("%w: the item was reduced and names no source record to read the event from", ErrNotRetryable)
	}
	raw, err := r.ReadSource(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("%w: the event is no longer readable from %s partition %d offset %d: %v", ErrNotRetryable, src.Topic, src.Partition, src.Offset, err)
	}
	return raw, nil
}

// Delete marks the item deleted.
func (r *Redriver) Delete(ctx context.Context, it *Record) error {
	return bus.ProduceAll(ctx, r.Client, it.WithState(StateDeleted).Encode(r.Topics.DLQ))
}

// MinRate and MaxRate bound a bulk redrive's rate per second (the job runs
// in package jobs).
const (
	MinRate = 0.01
	MaxRate = 1000
)

// claimSet remembers items this replica changed recently.
type claimSet struct {
	mu    sync.Mutex
	m     map[string]time.Time
	swept time.Time
}

const claimTTL = 10 * time.Minute

func (h *claimSet) claim(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]time.Time{}
	}
	now := time.Now()
	if now.Sub(h.swept) > time.Minute {
		h.swept = now
		for k, t := range h.m {
			if now.Sub(t) > claimTTL {
				delete(h.m, k)
			}
		}
	}
	if _, ok := h.m[id]; ok {
		return false
	}
	h.m[id] = now
	return true
}

func (h *claimSet) release(id string) {
	h.mu.Lock()
	delete(h.m, id)
	h.mu.Unlock()
}
