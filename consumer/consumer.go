// Package consumer runs webhookd's consumer groups: the event topics (fan-out
// to pipelines), the retry tiers and the failover topic. A Handler turns each
// record into independent jobs — one per delivery — and the consumer runs
// them concurrently, each in its own delivery slot, so a delivery waiting on
// a slow receiver never holds up another.
//
// Processing is at-least-once (DESIGN.md §3): a record's offset is finished
// when every job it spawned returned nil — delivered, or handed to another
// topic with an acknowledged produce — and offsets are marked for commit only
// as the contiguous finished prefix of each partition. Backpressure pauses
// fetching of a partition, never the poll loop: a partition whose queue or
// window is full is paused at once and keeps the records already fetched
// (see flowLocked). Shutdown and revocation give in-flight jobs
// the grace period, then cancel them and commit what is finished, all within
// the grace period. With Options.Transactions, jobs hand their records on
// inside a transaction instead (txn.go): they are produced with the finished
// prefix's offsets in one.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/bus"
)

// Job is one unit of a record's work (one delivery). It returns nil only when
// its work is finished (acknowledged). When ctx ended, an error means "cut
// short": the record is not marked and is read again. Any other error is
// fatal: the consumer stops, and with it the process.
type Job func(ctx context.Context, cl *kgo.Client) error

// Work is what a record asks for.
type Work struct {
	// Due is when the record may be started; the partition is held (nothing
	// behind it starts) until then. The zero time means now.
	Due time.Time
	// Jobs run concurrently; a record without jobs is finished at once.
	Jobs []Job
}

// Handler turns records into work. Prepare decodes a record once.
type Handler interface {
	Prepare(rec *kgo.Record) Work
}

// Options configure a Consumer.
type Options struct {
	// Name is the worker name ("dispatcher", "retry-5s", …).
	Name       string
	ClientOpts []kgo.Opt
	Group      string
	Topics     []string
	// MaxInFlight bounds jobs running at once across partitions;
	// PartitionMaxInFlight per partition. Fetching pauses beyond them.
	MaxInFlight          int
	PartitionMaxInFlight int
	// Grace is how long shutdown or a revoke may take: in-flight jobs get
	// most of it, then they are cancelled and what is finished is committed.
	Grace time.Duration
	Log   *slog.Logger
	// Hooks, when set, hear of each partition this consumer starts and stops
	// processing (ordering.Orderer).
	Hooks PartitionHooks

	// OnOwned, if set, is told how many partitions the consumer owns after
	// every assignment, revoke or loss (rate limit shares follow it).
	OnOwned func(partitions int)

	// Transactions hands work on in Kafka transactions (txn.go): the
	// records a record's jobs produce are buffered and produced with the
	// record's offset commit in one transaction, so after a crash a
	// delivery is not redone by both its re-read source and the task it
	// left. TransactionalID names this member's producer (unique per
	// process; the group generation fences zombies).
	Transactions    bool
	TransactionalID string
}

// PartitionHooks hear of the partitions a consumer processes.
type PartitionHooks interface {
	// Start runs before the partition's first record is prepared; the
	// partition waits for it. ctx ends when the partition is stopped. An
	// error other than ctx's is fatal.
	Start(ctx context.Context, topic string, partition int32) error
	// Stop runs once the partition's work has stopped.
	Stop(topic string, partition int32)
}

// Consumer runs a Handler over a consumer group's partitions.
type Consumer struct {
	o      Options
	h      Handler
	global chan struct{} // in-flight slots across partitions
	jobs   runners       // the goroutines jobs run on

	mu      sync.Mutex
	workers map[tp]*partWorker
	// stopping holds workers shutdown is stopping, so that a revoke or a
	// loss of their partitions meanwhile (a rebalance during a rolling
	// deploy) can still fence them: nothing of theirs is marked once the
	// partition may belong to another member.
	stopping map[tp]*partWorker
	ready    atomic.Bool

	txnMu    sync.Mutex          // one transaction at a time (txn.go)
	txnOpen  bool                // a transaction began and did not end (txnMu)
	topicIDs map[string][16]byte // for TxnOffsetCommit v6+

	fatalOnce sync.Once
	fatal     error
	stop      context.CancelFunc // ends Run's poll loop on a fatal job error
}

type tp struct {
	topic     string
	partition int32
}

// New returns a consumer running h; Run connects.
func New(o Options, h Handler) *Consumer {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 1024
	}
	if o.PartitionMaxInFlight <= 0 {
		o.PartitionMaxInFlight = 128
	}
	if o.Grace <= 0 {
		o.Grace = 30 * time.Second
	}
	return &Consumer{o: o, h: h, global: make(chan struct{}, o.MaxInFlight), jobs: runners{work: make(chan func())}, workers: map[tp]*partWorker{}, stopping: map[tp]*partWorker{}, stop: func() {}, topicIDs: map[string][16]byte{}}
}

// Name implements the worker interface.
func (c *Consumer) Name() string { return c.o.Name }

// Ready reports whether the consumer has joined its group and is consuming.
func (c *Consumer) Ready() bool { return c.ready.Load() }

// Run consumes until ctx ends, then finishes in-flight work within the grace
// period, commits, and leaves the group. It returns an error only for a fatal
// job error.
func (c *Consumer) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	c.stop = cancel
	c.mu.Unlock()
	opts := append([]kgo.Opt{
		kgo.ConsumerGroup(c.o.Group),
		kgo.ConsumeTopics(c.o.Topics...),
		// A new group starts at the oldest record: never skip work.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(c.assigned),
		kgo.OnPartitionsRevoked(c.revoked),
		kgo.OnPartitionsLost(c.lost),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers come through as records without work, so
		// the committed offset passes them: a topic written in
		// transactions shows no lag once everything is done.
		kgo.KeepControlRecords(),
		// Backpressure pauses partitions; a fetch issued while they were
		// paused long-polls for its full max wait before resumed partitions
		// are fetched again. A short wait bounds that stall.
		kgo.FetchMaxWait(250 * time.Millisecond),
		// A paused partition's queue holds up to one fetch of it beyond its
		// limit (queueLimits), and the client buffers one more: 256 KiB of
		// compressed batches a partition (the client's default is 1 MiB,
		// about 35,000 event-sized records) halves the memory a backlog
		// holds, still thousands of records a fetch (BenchmarkBacklogDrain).
		kgo.FetchMaxPartitionBytes(256 << 10),
	}, c.o.ClientOpts...)
	if c.o.Transactions {
		opts = append(opts, c.txnOpts()...)
	} else {
		opts = append(opts, kgo.AutoCommitMarks(),
			// Marks are committed often: after a crash, everything
			// finished since the last commit is delivered again.
			kgo.AutoCommitInterval(100*time.Millisecond))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	stopTxn := func() {}
	if c.o.Transactions {
		stopTxn = c.startTxnLoop(cl)
	}
	for {
		// Everything buffered is taken, so that a partition paused after
		// this poll has nothing left in the client's buffer to drop (a
		// paused partition's buffered records are dropped at the next poll
		// and fetched again after the resume: flowLocked).
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			break
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				c.o.Log.Error("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		if c.o.Transactions {
			c.noteTopicIDs(fetches)
		}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 {
				c.enqueue(p.Topic, p.Partition, p.Records)
			}
		})
	}
	// The grace period: in-flight work gets all but a reserve, which the
	// final commit and leaving the group share.
	deadline := time.Now().Add(c.o.Grace)
	reserve := reserveOf(c.o.Grace)
	ws := c.takeAll()
	c.stopWorkers(ws, true, deadline.Add(-reserve/2))
	stopTxn()
	c.mu.Lock()
	clear(c.stopping)
	c.mu.Unlock()
	c.commit(cl, ws, deadline.Add(-reserve/4))
	// Close leaves the group; the revoke it triggers finds no workers left.
	closed := make(chan struct{})
	go func() { cl.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(time.Until(deadline)):
		c.o.Log.Warn("leaving the consumer group is taking longer than the grace period; giving up on it", "group", c.o.Group)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fatal
}

// reserveOf is the part of a grace period kept for cancelling work and
// committing: a quarter, at most 3 s.
func reserveOf(grace time.Duration) time.Duration { return min(grace/4, 3*time.Second) }

// commit commits marked offsets (with transactions: ws's finished work),
// bounded by the deadline (at least a moment).
func (c *Consumer) commit(cl *kgo.Client, ws []*partWorker, deadline time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), maxTime(deadline, time.Now().Add(100*time.Millisecond)))
	defer cancel()
	if c.o.Transactions {
		c.txnMu.Lock()
		defer c.txnMu.Unlock()
		if err := c.flush(ctx, cl, ws); err != nil {
			c.o.Log.Error("transaction failed; the uncommitted records will be processed again", "group", c.o.Group, "err", err)
		}
		return
	}
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		c.o.Log.Error("commit failed; the uncommitted records will be processed again", "group", c.o.Group, "err", err)
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (c *Consumer) fail(err error) {
	c.fatalOnce.Do(func() {
		c.o.Log.Error("fatal: stopping the consumer; unfinished records will be processed again after a restart", "group", c.o.Group, "err", err)
		c.mu.Lock()
		c.fatal = err
		stop := c.stop
		c.mu.Unlock()
		stop()
	})
}

func (c *Consumer) assigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	c.o.Log.Info("partitions assigned", "group", c.o.Group, "partitions", assigned)
	// A pause outlives an assignment in kgo: a partition paused by
	// backpressure before a rebalance would otherwise never be fetched again.
	cl.ResumeFetchPartitions(assigned)
	c.mu.Lock()
	defer c.mu.Unlock()
	for t, ps := range assigned {
		for _, p := range ps {
			w := newPartWorker(c, cl, t, p)
			c.workers[tp{t, p}] = w
			go w.run()
		}
	}
	c.ownedLocked()
	c.ready.Store(true)
}

// ownedLocked reports the partitions owned now to OnOwned.
func (c *Consumer) ownedLocked() {
	if c.o.OnOwned != nil {
		c.o.OnOwned(len(c.workers))
	}
}

// revoked finishes the revoked partitions' in-flight work and commits what is
// done before the partitions move to another member.
func (c *Consumer) revoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	c.o.Log.Info("partitions revoked", "group", c.o.Group, "partitions", revoked)
	c.fenceStopping(revoked)
	deadline := time.Now().Add(c.o.Grace)
	ws := c.take(revoked)
	c.stopWorkers(ws, true, deadline.Add(-reserveOf(c.o.Grace)/2))
	c.commit(cl, ws, deadline)
}

// fenceStopping fences workers shutdown is still stopping whose partitions
// were revoked or lost.
func (c *Consumer) fenceStopping(parts map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for t, ps := range parts {
		for _, p := range ps {
			if w := c.stopping[tp{t, p}]; w != nil {
				w.fence()
			}
		}
	}
}

// lost stops the partitions' work without committing: another member may
// already own them, and a commit now could overwrite its progress.
func (c *Consumer) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.o.Log.Warn("partitions lost", "group", c.o.Group, "partitions", lost)
	c.fenceStopping(lost)
	c.stopWorkers(c.take(lost), false, time.Now().Add(c.o.Grace))
}

func (c *Consumer) take(parts map[string][]int32) []*partWorker {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*partWorker
	for t, ps := range parts {
		for _, p := range ps {
			if w := c.workers[tp{t, p}]; w != nil {
				out = append(out, w)
				delete(c.workers, tp{t, p})
			}
		}
	}
	c.ownedLocked()
	return out
}

// takeAll takes every worker for shutdown, keeping them reachable for
// fencing until they have stopped.
func (c *Consumer) takeAll() []*partWorker {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*partWorker, 0, len(c.workers))
	for k, w := range c.workers {
		out = append(out, w)
		delete(c.workers, k)
		c.stopping[k] = w
	}
	c.ownedLocked()
	return out
}

func (c *Consumer) stopWorkers(ws []*partWorker, graceful bool, deadline time.Time) {
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.stop(graceful, deadline)
		}()
	}
	wg.Wait()
}

func (c *Consumer) enqueue(topic string, partition int32, recs []*kgo.Record) {
	c.mu.Lock()
	w := c.workers[tp{topic, partition}]
	c.mu.Unlock()
	if w == nil {
		// Revoked while these were being polled; the new owner reads them
		// again from the committed offset.
		return
	}
	w.push(recs)
}

// windowLimit bounds, per partition, the records started but not yet
// committable (finished ones behind an unfinished one). Beyond it fetching
// pauses. An entry costs a few dozen bytes; the bound keeps a partition whose
// oldest delivery waits on a slow receiver from growing without limit.
func (c *Consumer) windowLimit() int { return c.o.PartitionMaxInFlight * 512 }

// queueLimits bound, per partition, the records fetched and not yet
// started: fetching pauses at high and resumes below low. A paused
// partition's queue is at most high plus what one poll brought it (one
// fetch response's share of the partition, bounded by the client's fetch
// sizes), whatever the backlog. The gap between the two makes pauses rare
// while a backlog is worked off: each pause costs at most one fetch of the
// partition read again (one may be under way when it pauses).
func (c *Consumer) queueLimits() (high, low int) {
	return 4 * c.o.PartitionMaxInFlight, c.o.PartitionMaxInFlight
}

// partWorker runs one partition's records with bounded concurrency and
// marks the contiguous finished prefix.
type partWorker struct {
	c         *Consumer
	cl        *kgo.Client
	topic     string
	partition int32
	slots     chan struct{}

	mu     sync.Mutex
	queue  []*kgo.Record
	wake   chan struct{}
	paused bool
	window []*entry // started records in offset order, not yet marked
	fenced bool     // stopped or lost: never mark again
	closed bool
	// With transactions: the finished prefix not yet committed, in
	// offset order (txn.go), and whether it is dropped for good (the
	// partition may belong to another member).
	ready   []*entry
	dropped bool

	ctx      context.Context // jobs; cancelled when the grace period ends
	cancel   context.CancelFunc
	quit     chan struct{} // closed when the worker stops taking records
	inflight sync.WaitGroup
	done     chan struct{}
}

type entry struct {
	offset  int64
	epoch   int32
	pending int            // jobs not finished
	recs    []bus.Deferred // with transactions: what its jobs produce
}

func newPartWorker(c *Consumer, cl *kgo.Client, topic string, partition int32) *partWorker {
	ctx, cancel := context.WithCancel(context.Background())
	return &partWorker{
		c: c, cl: cl, topic: topic, partition: partition, slots: make(chan struct{}, c.o.PartitionMaxInFlight),
		wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel, done: make(chan struct{}), quit: make(chan struct{}),
	}
}

func (w *partWorker) push(recs []*kgo.Record) {
	w.mu.Lock()
	w.queue = append(w.queue, recs...)
	w.flowLocked()
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// flowLocked pauses fetching of the partition while its queue or window is
// full and resumes it once both are low. It runs on the poll loop (push),
// which it never holds up: the records a poll brought are kept, however
// many, and the pause keeps the next fetches from bringing more. kgo drops a
// paused partition's records still in its buffer at the next poll and
// fetches them again after the resume; the poll loop takes everything
// buffered, so what is dropped is at most a fetch of the partition that was
// under way when it paused. (Waiting in the poll loop for room instead would
// hold up every other partition's records.)
func (w *partWorker) flowLocked() {
	window := len(w.window) + len(w.ready)
	high, low := w.c.queueLimits()
	full := len(w.queue) >= high || window >= w.c.windowLimit()
	room := len(w.queue) < low && window < w.c.windowLimit()/2
	switch {
	case full && !w.paused && !w.closed:
		w.paused = true
		w.cl.PauseFetchPartitions(map[string][]int32{w.topic: {w.partition}})
	case room && w.paused && !w.closed:
		w.paused = false
		w.cl.ResumeFetchPartitions(map[string][]int32{w.topic: {w.partition}})
	}
}

func (w *partWorker) next() *kgo.Record {
	for {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return nil
		}
		if len(w.queue) > 0 {
			rec := w.queue[0]
			w.queue[0] = nil
			w.queue = w.queue[1:]
			w.flowLocked()
			w.mu.Unlock()
			return rec
		}
		w.mu.Unlock()
		<-w.wake
	}
}

func (w *partWorker) run() {
	defer close(w.done)
	if h := w.c.o.Hooks; h != nil {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-w.quit:
				cancel()
			case <-ctx.Done():
			}
		}()
		err := h.Start(ctx, w.topic, w.partition)
		quit := ctx.Err() != nil
		cancel()
		if quit {
			return
		}
		if err != nil {
			w.c.fail(fmt.Errorf("%s partition %d: %w", w.topic, w.partition, err))
			return
		}
	}
	for {
		rec := w.next()
		if rec == nil {
			return
		}
		var work Work
		if !rec.Attrs.IsControl() {
			work = w.c.h.Prepare(rec)
		}
		// Hold the partition until the record is due: nothing behind it
		// starts. Not a sleep in a handler: the wait is the partition's, and
		// a stop ends it at once (the record is read again later).
		if !WaitUntil(work.Due, w.quit) {
			return
		}
		e := &entry{offset: rec.Offset, epoch: rec.LeaderEpoch, pending: len(work.Jobs)}
		w.mu.Lock()
		w.window = append(w.window, e)
		w.mu.Unlock()
		if len(work.Jobs) == 0 {
			w.finish(e)
			continue
		}
		for _, job := range work.Jobs {
			// A partition slot, then a global slot. Waiting here is the
			// backpressure: the queue grows and push pauses the partition.
			// A stop ends the wait; the record stays unfinished.
			select {
			case w.slots <- struct{}{}:
			case <-w.quit:
				return
			}
			select {
			case w.c.global <- struct{}{}:
			case <-w.quit:
				<-w.slots
				return
			}
			w.inflight.Add(1)
			ctx := w.ctx
			if w.c.o.Transactions {
				ctx = bus.WithBuffer(ctx, entryBuffer{w, e})
			}
			w.c.jobs.run(func() {
				defer w.inflight.Done()
				err := job(ctx, w.cl)
				<-w.c.global
				<-w.slots
				switch {
				case err == nil:
					w.finish(e)
				case w.ctx.Err() != nil:
					// Cut short by the stop: leave the offset unmarked so the
					// record is processed again (same delivery ids).
					w.c.o.Log.Debug("job cut short; its record will be processed again", "topic", w.topic, "partition", w.partition, "offset", e.offset, "err", err)
				default:
					w.c.fail(fmt.Errorf("%s partition %d offset %d: %w", w.topic, w.partition, e.offset, err))
				}
			})
		}
	}
}

// runners run jobs on goroutines that stay for the next job a while: a
// delivery's call chain (render, HTTP, records) grows a fresh goroutine's
// stack several times over, and a goroutine per job paid that copying on
// every delivery (about 4 % of the CPU at the benchmark's peak).
type runners struct {
	work chan func() // unbuffered: a send succeeds only to an idle runner
}

// runnerIdle is how long a runner waits for another job before it ends.
const runnerIdle = 2 * time.Second

func (r *runners) run(job func()) {
	select {
	case r.work <- job:
	default:
		go r.loop(job)
	}
}

func (r *runners) loop(job func()) {
	t := time.NewTimer(runnerIdle)
	defer t.Stop()
	for {
		job()
		job = nil // nothing of the last job stays reachable while idle
		t.Reset(runnerIdle)
		select {
		case job = <-r.work:
		case <-t.C:
			return
		}
	}
}

// finish counts one of e's jobs done and marks the longest finished prefix.
func (w *partWorker) finish(e *entry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e.pending--
	var last *entry
	for len(w.window) > 0 && w.window[0].pending <= 0 {
		last = w.window[0]
		if w.c.o.Transactions && !w.dropped && !w.fenced {
			w.ready = append(w.ready, last)
		}
		w.window[0] = nil
		w.window = w.window[1:]
	}
	if last != nil && !w.fenced && !w.c.o.Transactions {
		w.cl.MarkCommitOffsets(map[string]map[int32]kgo.EpochOffset{w.topic: {w.partition: {Epoch: last.epoch, Offset: last.offset + 1}}})
	}
	w.flowLocked()
}

// fence stops all marking for the worker's partition.
func (w *partWorker) fence() {
	w.mu.Lock()
	w.fenced = true
	w.dropLocked()
	w.mu.Unlock()
}

// stop ends the worker by deadline. Graceful: in-flight jobs get until a
// little before the deadline to finish (and be marked); then they are
// cancelled, and whatever still runs at the deadline is abandoned unmarked.
// Not graceful (partitions lost): marking stops at once and jobs are
// cancelled.
func (w *partWorker) stop(graceful bool, deadline time.Time) {
	w.mu.Lock()
	w.closed = true
	if !graceful {
		w.fenced = true
		w.dropLocked()
	}
	w.mu.Unlock()
	close(w.quit)
	select {
	case w.wake <- struct{}{}:
	default:
	}
	if !graceful {
		w.cancel()
	}
	finished := make(chan struct{})
	go func() {
		<-w.done
		w.inflight.Wait()
		close(finished)
	}()
	// In-flight work may run until a little before the deadline; then it
	// is cancelled, and whatever ignores that is abandoned at the deadline.
	cancelAt := time.Until(deadline) - reserveOf(w.c.o.Grace)/2
	select {
	case <-finished:
	case <-time.After(cancelAt):
		w.c.o.Log.Warn("grace period over; cancelling in-flight deliveries (they will run again)", "topic", w.topic, "partition", w.partition)
		w.cancel()
		select {
		case <-finished:
		case <-time.After(time.Until(deadline)):
			w.c.o.Log.Error("in-flight deliveries did not stop when cancelled; abandoning them unmarked", "topic", w.topic, "partition", w.partition)
		}
	}
	w.mu.Lock()
	w.fenced = true // nothing marks after the partition is handed back
	w.mu.Unlock()
	w.cancel()
	if h := w.c.o.Hooks; h != nil {
		h.Stop(w.topic, w.partition)
	}
}

// WaitUntil blocks until due (or returns at once for a due time in the
// past); false if stop closed first.
func WaitUntil(due time.Time, stop <-chan struct{}) bool {
	d := time.Until(due)
	if due.IsZero() || d <= 0 {
		select {
		case <-stop:
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}
