// Package analyticstest has test tools for the analytics sink: a store
// wrapper that injects ClickHouse faults at the sink/store boundary.
package analyticstest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/afftok/webhookd/analytics"
	"github.com/afftok/webhookd/delivery"
)

// ErrDown is what a FaultStore answers while down.
var ErrDown = errors.New("analyticstest: ClickHouse is down (injected)")

// ErrAfterWrite is what a FaultStore answers for an insert it did write.
var ErrAfterWrite = errors.New("analyticstest: insert timed out after the server took it (injected)")

// FaultStore wraps a sink store and fails it on demand: down (every call
// refused), slow (every call delayed), or one insert written and then
// reported failed (the ambiguous failure a retry must not double).
type FaultStore struct {
	analytics.SinkStore

	mu        sync.Mutex
	down      bool
	slow      time.Duration
	failAfter bool

	// Refused counts calls refused while down; Inserts counts inserts
	// that reached the wrapped store.
	Refused, Inserts atomic.Int64
}

var _ analytics.SinkStore = (*FaultStore)(nil)

// Down sets whether the store refuses every call.
func (f *FaultStore) Down(down bool) { f.mu.Lock(); f.down = down; f.mu.Unlock() }

// Slow delays every call by d (0: no delay).
func (f *FaultStore) Slow(d time.Duration) { f.mu.Lock(); f.slow = d; f.mu.Unlock() }

// FailNextAfterWrite makes the next insert write its rows and then fail.
func (f *FaultStore) FailNextAfterWrite() { f.mu.Lock(); f.failAfter = true; f.mu.Unlock() }

func (f *FaultStore) before(ctx context.Context) error {
	f.mu.Lock()
	down, slow := f.down, f.slow
	f.mu.Unlock()
	if down {
		f.Refused.Add(1)
		return ErrDown
	}
	if slow > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(slow):
		}
	}
	return nil
}

func (f *FaultStore) insert(ctx context.Context, do func() error) error {
	if err := f.before(ctx); err != nil {
		return err
	}
	f.Inserts.Add(1)
	if err := do(); err != nil {
		return err
	}
	f.mu.Lock()
	fail := f.failAfter
	f.failAfter = false
	f.mu.Unlock()
	if fail {
		return ErrAfterWrite
	}
	return nil
}

// InsertAttempts implements analytics.SinkStore.
func (f *FaultStore) InsertAttempts(ctx context.Context, as []delivery.Attempt) error {
	return f.insert(ctx, func() error { return f.SinkStore.InsertAttempts(ctx, as) })
}

// InsertRecords implements analytics.SinkStore.
func (f *FaultStore) InsertRecords(ctx context.Context, table string, recs [][]byte) error {
	return f.insert(ctx, func() error { return f.SinkStore.InsertRecords(ctx, table, recs) })
}

// InsertExecutions implements analytics.SinkStore.
func (f *FaultStore) InsertExecutions(ctx context.Context, es []delivery.Execution) error {
	return f.insert(ctx, func() error { return f.SinkStore.InsertExecutions(ctx, es) })
}

// InsertDeadLetters implements analytics.SinkStore.
func (f *FaultStore) InsertDeadLetters(ctx context.Context, ds []analytics.DeadLetterRow) error {
	return f.insert(ctx, func() error { return f.SinkStore.InsertDeadLetters(ctx, ds) })
}

// Feed implements analytics.SinkStore: an insert like the others (refused
// while down, delayed while slow, written and reported failed on demand).
func (f *FaultStore) Feed(ctx context.Context, b *analytics.Batch) error {
	return f.insert(ctx, func() error { return f.SinkStore.Feed(ctx, b) })
}

// StoredKeys implements analytics.SinkStore.
func (f *FaultStore) StoredKeys(ctx context.Context, table string, ids []string) (map[string]bool, error) {
	if err := f.before(ctx); err != nil {
		return nil, err
	}
	return f.SinkStore.StoredKeys(ctx, table, ids)
}
