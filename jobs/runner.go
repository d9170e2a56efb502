package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/metrics"
)

// Executor does one kind of job's work from its checkpoint. It calls
// cp.Advance after each piece of work Kafka has acknowledged, and returns
// when the work is done, ctx ends, or cp says the job was cancelled.
type Executor interface {
	Execute(ctx context.Context, j *Job, cp *Checkpointer) error
}

// JobRetention is how long a finished job stays visible (GET) before the
// runner removes it from the jobs topic.
const JobRetention = 7 * 24 * time.Hour

// ErrCancelled: the job was asked to stop.
var ErrCancelled = errors.New("job cancelled")

// Runner runs the jobs of the jobs topic on one replica at a time: the
// member of the jobs consumer group that owns the topic's only partition
// (Kafka's group protocol elects it, and moves the partition when that
// member leaves or stops heartbeating). It consumes nothing of the topic
// through the group (the Store reads it) and commits nothing; the group is
// only the election. When it loses the partition it stops its jobs, each
// keeping its last checkpoint; the new owner resumes them from there.
type Runner struct {
	Store *Store
	// GroupOpts: brokers, TLS, session timeout (how soon a dead runner's
	// jobs move to another replica).
	GroupOpts []kgo.Opt
	Group     string
	Topic     string
	Executors map[string]Executor // by kind
	// CheckpointEvery and CheckpointInterval: a checkpoint is written
	// after so many items or so long, whichever comes first.
	CheckpointEvery    int
	CheckpointInterval time.Duration
	// Grace bounds how long stopping jobs may take.
	Grace time.Duration
	Now   func() time.Time
	Log   *slog.Logger

	mu      sync.Mutex
	leading bool
	leadCtx context.Context
	stopJob context.CancelCauseFunc
	running map[string]chan struct{} // job id → closed when its goroutine ended
	wake    chan struct{}
}

// Name implements the worker interface.
func (r *Runner) Name() string { return "jobs" }

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Leading reports whether this replica runs the jobs now.
func (r *Runner) Leading() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leading
}

// Run takes part in the election until ctx ends, running the jobs while
// this replica owns the partition.
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	r.running = map[string]chan struct{}{}
	r.wake = make(chan struct{}, 1)
	r.mu.Unlock()
	if r.CheckpointEvery <= 0 {
		r.CheckpointEvery = 500
	}
	if r.CheckpointInterval <= 0 {
		r.CheckpointInterval = time.Second
	}
	if r.Grace <= 0 {
		r.Grace = 10 * time.Second
	}
	opts := append(append([]kgo.Opt{}, r.GroupOpts...),
		kgo.ConsumerGroup(r.Group), kgo.ConsumeTopics(r.Topic), kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(func(_ context.Context, cl *kgo.Client, m map[string][]int32) {
			// Nothing is read through the group: the store reads the topic.
			cl.PauseFetchTopics(r.Topic)
			if slices.Contains(m[r.Topic], 0) {
				r.lead(ctx)
			}
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			if slices.Contains(m[r.Topic], 0) {
				r.resign("revoked", nil)
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			if slices.Contains(m[r.Topic], 0) {
				r.resign("lost", errLost)
			}
		}),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil || fs.IsClientClosed() {
				return
			}
			// Joining the group fails here (the election cannot happen).
			fs.EachError(func(_ string, _ int32, err error) {
				r.Log.Error("jobs group error", "group", r.Group, "err", err)
			})
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			r.resign("shutdown", nil)
			cl.Close() // leaves the group: another replica takes the jobs over at once
			<-polled
			return nil
		case <-r.wake:
		case <-r.Store.Changed():
		case <-tick.C:
		}
		r.schedule()
	}
}

func (r *Runner) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Runner) lead(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.leading {
		return
	}
	r.leading = true
	metrics.JobsRunner.Set(1)
	r.leadCtx, r.stopJob = context.WithCancelCause(ctx)
	r.Log.Info("this replica runs the jobs now")
	r.signal()
}

// errLost: the partition was lost (this member was presumed dead), so
// another replica may run the jobs already.
var errLost = errors.New("jobs partition lost")

// resign stops every job this replica runs and waits (bounded) until they
// have stopped: each keeps its last checkpoint for the next owner. With
// cause errLost a stopping job writes nothing more: the new owner's
// checkpoints must not be overwritten by older ones.
func (r *Runner) resign(why string, cause error) {
	r.mu.Lock()
	if !r.leading {
		r.mu.Unlock()
		return
	}
	r.leading = false
	metrics.JobsRunner.Set(0)
	r.stopJob(cause)
	waits := make([]chan struct{}, 0, len(r.running))
	for _, done := range r.running {
		waits = append(waits, done)
	}
	r.mu.Unlock()
	r.Log.Info("this replica no longer runs the jobs", "why", why, "stopping", len(waits))
	deadline := time.After(r.Grace)
	for _, done := range waits {
		select {
		case <-done:
		case <-deadline:
			r.Log.Warn("a job did not stop within the grace period")
			return
		}
	}
}

// schedule starts every unfinished job not running yet, after catching up
// with the topic (a previous owner's last checkpoints).
func (r *Runner) schedule() {
	r.mu.Lock()
	ctx, leading := r.leadCtx, r.leading
	r.mu.Unlock()
	if !leading {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := r.Store.Sync(sctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			r.Log.Warn("jobs: cannot catch up with the jobs topic; trying again", "err", err)
		}
		return
	}
	// Finished jobs are kept for JobRetention, then removed: the topic is
	// compacted (never deleted) and every admin replica holds every job.
	for _, id := range r.Store.FinishedBefore(r.now().Add(-JobRetention)) {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := r.Store.Remove(rctx, id); err != nil && ctx.Err() == nil {
			r.Log.Warn("jobs: could not remove an expired job; trying again later", "job", id, "err", err)
		}
		cancel()
	}
	for _, j := range r.Store.Unfinished() {
		r.mu.Lock()
		if _, busy := r.running[j.ID]; busy || !r.leading || r.leadCtx != ctx {
			r.mu.Unlock()
			continue
		}
		done := make(chan struct{})
		r.running[j.ID] = done
		r.mu.Unlock()
		go func() {
			defer func() {
				r.mu.Lock()
				delete(r.running, j.ID)
				r.mu.Unlock()
				close(done)
			}()
			r.runJob(ctx, j)
		}()
	}
}

// runJob runs one job from its checkpoint to a final state, or until this
// replica stops leading (then the checkpoint stays for the next owner).
func (r *Runner) runJob(ctx context.Context, j *Job) {
	log := r.Log.With("job", j.ID, "kind", j.Kind)
	cp := &Checkpointer{r: r, job: j, last: r.now()}
	if r.Store.CancelRequested(j.ID) {
		r.finish(ctx, cp, StateCancelled, "", log)
		return
	}
	ex := r.Executors[j.Kind]
	if ex == nil {
		r.finish(ctx, cp, StateFailed, "this replica cannot run jobs of kind "+j.Kind, log)
		return
	}
	if j.State == StateQueued {
		j.State = StateRunning
		if err := cp.write(ctx); err != nil {
			log.Warn("job: could not record its start; trying again later", "err", err)
			return
		}
	}
	log.Info("job started", "from_checkpoint", j.Progress)
	err := ex.Execute(ctx, j, cp)
	switch {
	case errors.Is(err, ErrCancelled):
		r.finish(ctx, cp, StateCancelled, "", log)
	case errors.Is(context.Cause(ctx), errLost):
		log.Warn("job stopped: this replica lost the jobs partition; the new owner resumes it from its last checkpoint")
	case ctx.Err() != nil:
		// Handed over or shutting down: record what is acknowledged, so
		// the next owner redoes as little as possible.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := cp.write(wctx); err != nil {
			log.Warn("job stopped; its last checkpoint could not be written, the next owner resumes from the one before", "err", err)
		} else {
			log.Info("job stopped; the next owner resumes it from its checkpoint", "progress", j.Progress)
		}
		cancel()
	case err != nil:
		r.finish(ctx, cp, StateFailed, err.Error(), log)
	default:
		r.finish(ctx, cp, StateDone, "", log)
	}
}

func (r *Runner) finish(ctx context.Context, cp *Checkpointer, state, msg string, log *slog.Logger) {
	cp.job.State, cp.job.Error = state, msg
	if err := cp.write(ctx); err != nil {
		log.Warn("job finished but its state could not be recorded; it will run again from its checkpoint", "state", state, "err", err)
		return
	}
	metrics.JobsFinished.WithLabelValues(cp.job.Kind, state).Inc()
	log.Info("job finished", "state", state, "progress", cp.job.Progress, "error", msg)
}

// Checkpointer records a job's progress on the jobs topic every so many
// items or so long.
type Checkpointer struct {
	r     *Runner
	job   *Job
	items int
	last  time.Time
}

// Advance is called after n more items are acknowledged (the job's
// Progress already says so); it writes a checkpoint when one is due, and
// reports ErrCancelled once the job was asked to stop.
func (c *Checkpointer) Advance(ctx context.Context, n int) error {
	c.items += n
	if c.items >= c.r.CheckpointEvery || c.r.now().Sub(c.last) >= c.r.CheckpointInterval {
		if err := c.write(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// The work is done and acknowledged; only its record is late.
			c.r.Log.Warn("job: checkpoint not written; a resume would redo more", "job", c.job.ID, "err", err)
		}
	}
	return c.Cancelled()
}

// Cancelled reports ErrCancelled once the job was asked to stop.
func (c *Checkpointer) Cancelled() error {
	if c.r.Store.CancelRequested(c.job.ID) {
		return ErrCancelled
	}
	return nil
}

func (c *Checkpointer) write(ctx context.Context) error {
	c.job.UpdatedAt = c.r.now().UTC()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.r.Store.Put(wctx, c.job); err != nil {
		return err
	}
	c.items, c.last = 0, c.r.now()
	return nil
}
