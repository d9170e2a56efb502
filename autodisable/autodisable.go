// Package autodisable disables pipelines whose every attempt has failed for
// their auto-disable window (WEBHOOKD_AUTO_DISABLE_AFTER, or the pipeline's
// auto_disable_after_seconds) with at least MinFailures failed attempts.
//
// The failure streak is read from the execution log in ClickHouse (the
// attempts table the analytics sink fills from every replica's attempt
// records), so it is deployment-wide and survives restarts with no state of
// its own. The disable is a compare-and-set write through the registry:
// replicas deciding at once all write on the same revision, exactly one write
// wins, and only its writer produces the operator event.
package autodisable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/afftok/webhookd/analytics"
	"github.com/afftok/webhookd/metrics"
	"github.com/afftok/webhookd/opevents"
	"github.com/afftok/webhookd/pipeline"
	"github.com/afftok/webhookd/registry"
)

// MinFailures is the fewest failed attempts a streak needs to disable.
const MinFailures = 10

// Pipes is what the checker needs of the pipeline registry.
type Pipes interface {
	List() []*pipeline.Compiled
	Get(id string) (*pipeline.Compiled, bool)
	Put(ctx context.Context, p *pipeline.Pipeline, base int64) error
	Sync(ctx context.Context) error
}

// Health is what the checker needs of the execution log.
type Health interface {
	AttemptOutcomes(ctx context.Context, since map[string]time.Time) (map[string]analytics.Outcomes, error)
	FailureStreak(ctx context.Context, pipelineID string, since time.Time) (analytics.FailureStreak, error)
}

// Emitter produces operator events.
type Emitter interface {
	Emit(ctx context.Context, ev opevents.Event) error
}

var (
	_ Pipes   = (*registry.Registry)(nil)
	_ Health  = (*analytics.Store)(nil)
	_ Emitter = (*opevents.Emitter)(nil)
)

// Decide reports whether a failure streak disables a pipeline at now: the
// streak's first failure is at least window old, no attempt succeeded since
// (fs holds only failures after the last success), it began after the
// pipeline was last set active (streakStart), and it has MinFailures or more.
func Decide(window time.Duration, streakStart time.Time, fs analytics.FailureStreak, now time.Time) bool {
	if window <= 0 || fs.Failures < MinFailures || fs.First.IsZero() {
		return false
	}
	return !fs.First.Before(streakStart) && !fs.First.After(now.Add(-window))
}

// Checker is the worker that sweeps the active pipelines.
type Checker struct {
	Pipes  Pipes
	Health Health
	Events Emitter
	// Default is WEBHOOKD_AUTO_DISABLE_AFTER (0: never, unless a pipeline
	// sets its own window).
	Default time.Duration
	Now     func() time.Time
	Log     *slog.Logger
}

// Name implements the worker interface.
func (c *Checker) Name() string { return "auto-disable" }

// Run sweeps until ctx ends. A sweep that fails (ClickHouse down) is logged
// and tried again next period: nothing is disabled on missing data. The
// period is looked at every second, so a pipeline saved with a short window
// is judged at its pace from then on.
func (c *Checker) Run(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last time.Time
	for {
		// Half a tick of slack: ticks a hair under a second apart must not
		// stretch a 1 s period to 2 s.
		if now := c.now(); last.IsZero() || now.Sub(last) >= c.period()-tickSlack {
			last = now
			if _, err := c.Sweep(ctx); err != nil && ctx.Err() == nil {
				c.Log.Warn("auto-disable sweep failed; trying again next period", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

const tickSlack = 500 * time.Millisecond

// period is how often to sweep: a tenth of the shortest window in use, from
// 1 s to 1 min (72 h windows are judged every minute; a few seconds' windows,
// as in tests, every second).
func (c *Checker) period() time.Duration {
	p := time.Minute
	for _, cp := range c.Pipes.List() {
		if w := cp.AutoDisableAfter(c.Default); cp.Status == pipeline.StatusActive && w > 0 {
			p = min(p, w/10)
		}
	}
	return max(p, time.Second)
}

func (c *Checker) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Sweep judges every active pipeline once and disables those whose streak
// says so; it returns their ids.
func (c *Checker) Sweep(ctx context.Context) ([]string, error) {
	now := c.now()
	// Only pipelines active for a whole window can have a streak that long;
	// the store is asked about the window only (cheap), and about the whole
	// streak only for pipelines with failures and no success in it.
	since := map[string]time.Time{}
	for _, p := range c.Pipes.List() {
		w := p.AutoDisableAfter(c.Default)
		if p.Status != pipeline.StatusActive || w <= 0 {
			continue
		}
		if cutoff := now.Add(-w); !p.StreakStart().After(cutoff) {
			since[p.ID] = cutoff
		}
	}
	c.Log.Debug("auto-disable sweep", "candidates", len(since))
	if len(since) == 0 {
		return nil, nil
	}
	outcomes, err := c.Health.AttemptOutcomes(ctx, since)
	if err != nil {
		return nil, err
	}
	var disabled []string
	var errs []error
	for id, o := range outcomes {
		if o.Successes > 0 || o.Failures == 0 {
			continue
		}
		p, ok := c.Pipes.Get(id)
		if !ok || p.Status != pipeline.StatusActive {
			continue
		}
		fs, err := c.Health.FailureStreak(ctx, id, p.StreakStart())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		w := p.AutoDisableAfter(c.Default)
		if !Decide(w, p.StreakStart(), fs, now) {
			continue
		}
		won, err := c.disable(ctx, p, w, fs, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("disable %s: %w", id, err))
		}
		if won {
			disabled = append(disabled, id)
		}
	}
	return disabled, errors.Join(errs...)
}

// maxWriteAttempts bounds re-applying the disable over concurrent edits.
const maxWriteAttempts = 8

// disable writes status disabled over cur's revision. It reports whether
// this write is the one that disabled the pipeline: only then is the
// operator event produced, so replicas deciding at once make one event.
func (c *Checker) disable(ctx context.Context, cur *pipeline.Compiled, w time.Duration, fs analytics.FailureStreak, now time.Time) (bool, error) {
	streakStart := cur.StreakStart()
	reason := fmt.Sprintf("auto-disabled: every attempt failed for %s (%d failed attempts since %s, none succeeded)",
		w, fs.Failures, fs.First.UTC().Format(time.RFC3339))
	at := now.UTC().Truncate(time.Millisecond)
	for range maxWriteAttempts {
		p := *cur.Pipeline
		p.Status, p.DisabledReason, p.DisabledAt = pipeline.StatusDisabled, reason, &at
		p.UpdatedAt = at.Truncate(time.Second)
		p.Revision = cur.Revision + 1
		err := c.Pipes.Put(ctx, &p, cur.Revision)
		if errors.Is(err, registry.ErrUnavailable) {
			// The write may have landed: it is ours if the pipeline now is
			// exactly what we wrote (another replica's has its own time).
			if serr := c.Pipes.Sync(ctx); serr != nil {
				return false, err
			}
			if got, ok := c.Pipes.Get(p.ID); ok && got.Revision == p.Revision && got.DisabledAt != nil && got.DisabledAt.Equal(at) && got.DisabledReason == reason {
				err = nil
			} else {
				return false, err
			}
		}
		if err == nil {
			c.won(ctx, &p, w, fs, at)
			return true, nil
		}
		if !errors.Is(err, registry.ErrConflict) {
			return false, err
		}
		// Someone else wrote first: an operator's edit (apply the disable
		// over it, unless it changed what the decision rests on) or another
		// replica's disable (then nothing is left to do).
		if err := c.Pipes.Sync(ctx); err != nil {
			return false, err
		}
		next, ok := c.Pipes.Get(p.ID)
		if !ok || next.Status != pipeline.StatusActive || !next.StreakStart().Equal(streakStart) || next.AutoDisableAfter(c.Default) != w {
			return false, nil
		}
		cur = next
	}
	return false, fmt.Errorf("pipeline %s kept changing; will try again next sweep", cur.ID)
}

func (c *Checker) won(ctx context.Context, p *pipeline.Pipeline, w time.Duration, fs analytics.FailureStreak, at time.Time) {
	metrics.PipelinesAutoDisabled.Inc()
	c.Log.Warn("pipeline auto-disabled", "pipeline_id", p.ID, "pipeline_name", p.Name, "revision", p.Revision,
		"failures", fs.Failures, "first_failure_at", fs.First, "window", w)
	ev := opevents.Event{ID: opevents.ID(opevents.TypeAutoDisabled, p.ID, p.Revision), Type: opevents.TypeAutoDisabled,
		PipelineID: p.ID, PipelineName: p.Name, At: at, Message: p.DisabledReason, Revision: p.Revision,
		WindowSeconds: int64(w / time.Second), Failures: fs.Failures, FirstFailureAt: timePtr(fs.First), LastFailureAt: timePtr(fs.Last),
		LastSuccessAt: timePtr(fs.LastSuccess)}
	// The disable stands even if the event cannot be produced (Emit logs
	// and counts that); it is not retried past the producer's own bound.
	_ = c.Events.Emit(ctx, ev)
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
