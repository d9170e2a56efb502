package ratelimit

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Ownership is this replica's part of the partitions that carry deliveries:
// the event topics', every retry tier's and the failover topic's. Each of the
// replica's consumers reports how many partitions it owns after every
// assignment, revoke or loss (Set); the total is counted from the brokers'
// metadata (Count) when the app starts and again after every change, so
// partitions added to a topic are counted too. Every replica counts the same
// topics — all of them, whatever roles it runs — so the shares of all
// replicas add up to one.
type Ownership struct {
	// Count returns the number of partitions of every topic that carries
	// deliveries.
	Count func(ctx context.Context) (int, error)
	Log   *slog.Logger

	mu         sync.Mutex
	owned      map[string]int // consumer name → partitions owned
	total      int
	refreshing bool
	logged     float64 // the share last logged
}

// Set records that the named consumer owns n partitions now, and recounts
// the total in the background.
func (o *Ownership) Set(consumer string, n int) {
	o.mu.Lock()
	if o.owned == nil {
		o.owned = map[string]int{}
	}
	o.owned[consumer] = n
	o.loggedLocked()
	start := !o.refreshing && o.Count != nil
	o.refreshing = o.refreshing || start
	o.mu.Unlock()
	if start {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = o.Refresh(ctx)
			o.mu.Lock()
			o.refreshing = false
			o.mu.Unlock()
		}()
	}
}

// Refresh counts the partitions that carry deliveries again. On an error the
// last count is kept.
func (o *Ownership) Refresh(ctx context.Context) error {
	if o.Count == nil {
		return nil
	}
	n, err := o.Count(ctx)
	if err != nil {
		if o.Log != nil {
			o.Log.Warn("could not count the partitions that carry deliveries; rate limit shares keep the last count", "err", err)
		}
		return err
	}
	o.SetTotal(n)
	return nil
}

// SetTotal sets the number of partitions that carry deliveries.
func (o *Ownership) SetTotal(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.total = n
	o.loggedLocked()
}

// loggedLocked logs the share when it changed.
func (o *Ownership) loggedLocked() {
	s := o.shareLocked()
	if s == o.logged || o.Log == nil {
		return
	}
	o.logged = s
	o.Log.Debug("rate limit share changed", "share", s, "owned", o.owned, "partitions", o.total)
}

// Share is the fraction of the partitions that carry deliveries this
// replica owns (0..1): its share of every pipeline's rate limit. 0 while
// the total is unknown or it owns none.
func (o *Ownership) Share() float64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.shareLocked()
}

func (o *Ownership) shareLocked() float64 {
	if o.total <= 0 {
		return 0
	}
	sum := 0
	for _, n := range o.owned {
		sum += n
	}
	return min(float64(sum)/float64(o.total), 1)
}
