package ratelimit

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/afftok/webhookd/metrics"
)

// Ownership is this replica's part of the partitions that carry deliveries:
// the event topics', every retry tier's and the failover topic's. Each of the
// replica's consumers reports how many partitions it owns after every
// assignment, revoke or loss (Set); the total is counted from the brokers'
// metadata (Count) when the app starts, after every change and every
// Recount interval (Run), so partitions added to a topic are counted too and
// a count that failed is taken again. Every replica counts the same topics —
// all of them, whatever roles it runs — so the shares of all replicas add up
// to one.
type Ownership struct {
	// Count returns the number of partitions of every topic that carries
	// deliveries.
	Count func(ctx context.Context) (int, error)
	// Recount is how often Run counts again without a change (default 30 s).
	Recount time.Duration
	Log     *slog.Logger

	mu     sync.Mutex
	owned  map[string]int // consumer name → partitions owned
	total  int
	logged float64 // the share last logged
	kick   chan struct{}
}

// Name implements the worker interface.
func (o *Ownership) Name() string { return "ratelimit" }

func (o *Ownership) kicks() chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.kick == nil {
		o.kick = make(chan struct{}, 1)
	}
	return o.kick
}

// Run counts the partitions again after every Set and every Recount
// interval, until ctx ends.
func (o *Ownership) Run(ctx context.Context) error {
	every := o.Recount
	if every <= 0 {
		every = 30 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	kick := o.kicks()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		case <-tick.C:
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_ = o.Refresh(cctx) // logged; tried again at the next tick
		cancel()
	}
}

// Set records that the named consumer owns n partitions now, and asks Run
// to count the total again.
func (o *Ownership) Set(consumer string, n int) {
	kick := o.kicks()
	o.mu.Lock()
	if o.owned == nil {
		o.owned = map[string]int{}
	}
	o.owned[consumer] = n
	o.loggedLocked()
	o.mu.Unlock()
	select {
	case kick <- struct{}{}:
	default:
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

// loggedLocked logs and exports the share when it changed.
func (o *Ownership) loggedLocked() {
	s := o.shareLocked()
	if s == o.logged {
		return
	}
	o.logged = s
	metrics.RateLimitShare.Set(s)
	if o.Log != nil {
		o.Log.Debug("rate limit share changed", "share", s, "owned", o.owned, "partitions", o.total)
	}
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
