// Package lagwatch keeps webhookd's queue gauges: consumer lag per group
// and topic, retry-tier and failover depth, and the DLQ's size. They are
// computed every Interval (default 10 s) by one worker, not per scrape, so
// any number of scrapers costs Kafka and ClickHouse one set of admin
// requests per interval (kadm: describe groups, fetch offsets, list
// offsets; one count query for the DLQ).
package lagwatch

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/afftok/webhookd/metrics"
)

// Watcher refreshes the queue gauges.
type Watcher struct {
	Admin *kadm.Client
	// Groups are the consumer groups reported in webhookd_consumer_lag.
	Groups []string
	// Tiers maps a retry tier's consumer group to its tier name
	// (webhookd_retry_tier_depth); FailoverGroup is the failover topic's.
	Tiers         map[string]string
	FailoverGroup string
	// DeadLetters counts the DLQ items in state dead; nil: not reported.
	DeadLetters func(ctx context.Context) (int64, error)
	Interval    time.Duration
	Log         *slog.Logger

	seen map[[2]string]bool // the lag series set last time
	// failing remembers which sources failed last time, so a failure is
	// logged when it starts and when it ends, not every interval.
	failing map[string]bool
}

// Name implements the worker interface.
func (w *Watcher) Name() string { return "queue-metrics" }

// Run refreshes now and every Interval until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	iv := w.Interval
	if iv <= 0 {
		iv = 10 * time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, iv)
		w.Refresh(rctx)
		cancel()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Refresh computes the gauges once.
func (w *Watcher) Refresh(ctx context.Context) {
	if w.Log == nil {
		w.Log = slog.Default()
	}
	if w.failing == nil {
		w.failing = map[string]bool{}
	}
	if w.Admin != nil && len(w.Groups) > 0 {
		lags, err := w.Admin.Lag(ctx, w.Groups...)
		if err == nil {
			err = w.setLags(lags)
		}
		w.outcome("kafka", err)
	}
	if w.DeadLetters != nil {
		n, err := w.DeadLetters(ctx)
		if err == nil {
			metrics.DLQItems.Set(float64(n))
		}
		w.outcome("clickhouse", err)
	}
}

func (w *Watcher) outcome(source string, err error) {
	if err != nil {
		metrics.LagRefreshErrors.WithLabelValues(source).Inc()
		if !w.failing[source] && ctxAlive(err) {
			w.Log.Warn("queue metrics: refresh failed; the gauges keep their last values", "source", source, "err", err)
		}
		w.failing[source] = true
		return
	}
	if w.failing[source] {
		w.Log.Info("queue metrics: refresh works again", "source", source)
	}
	w.failing[source] = false
}

func ctxAlive(err error) bool { return !errors.Is(err, context.Canceled) }

// setLags sets the lag gauges from one kadm answer. A group that cannot be
// described keeps its last values (and is the error returned).
func (w *Watcher) setLags(lags kadm.DescribedGroupLags) error {
	now := map[[2]string]bool{}
	var firstErr error
	for _, g := range w.Groups {
		l, ok := lags[g]
		if !ok {
			continue
		}
		if err := l.Error(); err != nil {
			if errors.Is(err, kerr.GroupIDNotFound) {
				continue // nobody has joined it yet: no lag to report
			}
			if firstErr == nil {
				firstErr = err
			}
			for k := range w.seen { // keep its series
				if k[0] == g {
					now[k] = true
				}
			}
			continue
		}
		var total int64
		for _, tl := range l.Lag.TotalByTopic() {
			lag := max(tl.Lag, 0) // -1: a partition's offsets could not be read
			metrics.ConsumerLag.WithLabelValues(g, tl.Topic).Set(float64(lag))
			now[[2]string{g, tl.Topic}] = true
			total += lag
		}
		if tier, ok := w.Tiers[g]; ok {
			metrics.RetryTierDepth.WithLabelValues(tier).Set(float64(total))
		}
		if g == w.FailoverGroup {
			metrics.FailoverDepth.Set(float64(total))
		}
	}
	for k := range w.seen {
		if !now[k] {
			metrics.ConsumerLag.DeleteLabelValues(k[0], k[1])
		}
	}
	w.seen = now
	return firstErr
}
