// Package watch is the "something changed" broadcast behind every in-memory
// view of a Kafka topic (the pipeline registry, jobs, operator events, key
// locks): the view notifies after applying records, and callers wait, with
// a context, until a condition on the view holds.
package watch

import (
	"context"
	"sync"
)

// Signal is closed-and-replaced on every change. Its methods are called
// with the owner's lock held: Notify under the write lock, C under either.
type Signal struct{ ch chan struct{} }

// New returns a signal ready to use.
func New() *Signal { return &Signal{ch: make(chan struct{})} }

// Notify wakes everyone waiting for the next change.
func (s *Signal) Notify() {
	close(s.ch)
	s.ch = make(chan struct{})
}

// C is closed at the next Notify.
func (s *Signal) C() <-chan struct{} { return s.ch }

// Until waits until cond holds or ctx ends. cond runs with l held (a view's
// read lock, for instance), and is evaluated again after every change.
func Until(ctx context.Context, l sync.Locker, s *Signal, cond func() bool) error {
	for {
		l.Lock()
		ok, ch := cond(), s.ch
		l.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
