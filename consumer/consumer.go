// Package consumer reads the tracking platform's event topics in a consumer
// group and fans each event out to every active pipeline of its trigger type.
//
// Processing is at-least-once (DESIGN.md §3): a goroutine per assigned
// partition runs up to PartitionMaxInFlight events at once, and an offset is
// marked for commit only when it and every offset before it are finished —
// delivered, skipped, or handed to another topic with an acknowledged
// produce. Backpressure pauses fetching, never the poll loop.
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
	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/dispatcher"
	"github.com/afftok/webhookd/event"
	"github.com/afftok/webhookd/metrics"
	"github.com/afftok/webhookd/pipeline"
)

// Handler processes one topic's records. Handle returns nil only when the
// record's work is finished (acknowledged), so its offset may be committed.
type Handler interface {
	// Due is when a record may be handled; the partition is held (nothing
	// behind the record starts) until then. The zero time means now.
	Due(rec *kgo.Record) time.Time
	Handle(ctx context.Context, cl *kgo.Client, rec *kgo.Record) error
}

// Pipelines is what the consumer needs of the registry.
type Pipelines interface {
	ForTrigger(triggerType string) []*pipeline.Compiled
}

// Executor runs one delivery; *dispatcher.Dispatcher implements it.
type Executor interface {
	Execute(ctx context.Context, p *pipeline.Compiled, job *dispatcher.Job) dispatcher.Outcome
}

// Options configure a Consumer.
type Options struct {
	// Name is the worker name ("dispatcher", "retry-5s", …).
	Name                 string
	ClientOpts           []kgo.Opt
	Group                string
	Topics               []string
	DLQTopic             string
	MaxInFlight          int
	PartitionMaxInFlight int
	// Grace is how long in-flight deliveries may finish on shutdown or revoke.
	Grace time.Duration
	Log   *slog.Logger
}

// Consumer runs a Handler over a consumer group's partitions.
type Consumer struct {
	o      Options
	h      Handler
	global chan struct{} // in-flight slots across partitions

	mu      sync.Mutex
	workers map[tp]*partWorker
	ready   atomic.Bool
}

type tp struct {
	topic     string
	partition int32
}

// New returns the event consumer: it fans events out to pipelines.
func New(o Options, pipes Pipelines, exec Executor) *Consumer {
	if o.Name == "" {
		o.Name = "dispatcher"
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return NewGroup(o, &EventHandler{Pipes: pipes, Exec: exec, DLQTopic: o.DLQTopic, Log: o.Log})
}

// NewGroup returns a consumer running h; Run connects.
func NewGroup(o Options, h Handler) *Consumer {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Consumer{o: o, h: h, global: make(chan struct{}, o.MaxInFlight), workers: map[tp]*partWorker{}}
}

// Name implements the worker interface.
func (c *Consumer) Name() string { return c.o.Name }

// Ready reports whether the consumer has joined its group and is consuming.
func (c *Consumer) Ready() bool { return c.ready.Load() }

// Run consumes until ctx ends, then finishes in-flight work (within Grace),
// commits, and leaves the group.
func (c *Consumer) Run(ctx context.Context) error {
	opts := append([]kgo.Opt{
		kgo.ConsumerGroup(c.o.Group),
		kgo.ConsumeTopics(c.o.Topics...),
		// A new group starts at the oldest event: never skip work.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AutoCommitMarks(),
		// Marks are committed often: after a crash, everything finished
		// since the last commit is delivered again.
		kgo.AutoCommitInterval(250 * time.Millisecond),
		kgo.OnPartitionsAssigned(c.assigned),
		kgo.OnPartitionsRevoked(c.revoked),
		kgo.OnPartitionsLost(c.lost),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Backpressure pauses partitions; a fetch issued while they were
		// paused long-polls for its full max wait before resumed partitions
		// are fetched again. A short wait bounds that stall (measured: 5 s
		// stalls at the 5 s default, ~400 deliveries/s instead of thousands).
		kgo.FetchMaxWait(250 * time.Millisecond),
	}, c.o.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	defer cl.Close() // runs OnPartitionsRevoked: workers are stopped and marks committed

	for {
		fetches := cl.PollRecords(ctx, 512)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			break
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				c.o.Log.Error("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 {
				c.enqueue(p.Topic, p.Partition, p.Records)
			}
		})
	}
	c.stopWorkers(c.takeAll(), true)
	commitCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.CommitMarkedOffsets(commitCtx); err != nil {
		c.o.Log.Error("final commit failed; the uncommitted events will be delivered again", "err", err)
	}
	return nil
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
	c.ready.Store(true)
}

// revoked finishes the revoked partitions' in-flight work and commits what is
// done before the partitions move to another member.
func (c *Consumer) revoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	c.o.Log.Info("partitions revoked", "group", c.o.Group, "partitions", revoked)
	c.stopWorkers(c.take(revoked), true)
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		c.o.Log.Error("commit on revoke failed; the uncommitted events will be delivered again", "err", err)
	}
}

// lost stops the partitions' work without committing: another member may
// already own them, and a commit now could overwrite its progress.
func (c *Consumer) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.o.Log.Warn("partitions lost", "group", c.o.Group, "partitions", lost)
	c.stopWorkers(c.take(lost), false)
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
	return out
}

func (c *Consumer) takeAll() []*partWorker {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*partWorker, 0, len(c.workers))
	for k, w := range c.workers {
		out = append(out, w)
		delete(c.workers, k)
	}
	return out
}

func (c *Consumer) stopWorkers(ws []*partWorker, graceful bool) {
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.stop(graceful, c.o.Grace)
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

// EventHandler delivers events to every active pipeline of their trigger type.
type EventHandler struct {
	Pipes    Pipelines
	Exec     Executor
	DLQTopic string
	Log      *slog.Logger
}

// Due implements Handler: events are handled as soon as they are read.
func (h *EventHandler) Due(*kgo.Record) time.Time { return time.Time{} }

// Handle delivers one event to every active pipeline of its trigger type and
// produces the resulting records. It returns nil only when all of that is
// acknowledged, so the offset may be marked.
func (h *EventHandler) Handle(ctx context.Context, cl *kgo.Client, rec *kgo.Record) error {
	metrics.EventsConsumed.WithLabelValues(rec.Topic).Inc()
	ev, err := event.Decode(rec.Value)
	if err != nil {
		metrics.EventsInvalid.WithLabelValues(rec.Topic).Inc()
		h.Log.Warn("undecodable event sent to the DLQ", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err)
		return bus.Send(ctx, cl, dispatcher.InvalidEvent(h.DLQTopic, rec, err, time.Now()))
	}
	key := delivery.EventKey(ev.ID, rec.Topic, rec.Partition, rec.Offset)
	var (
		mu   sync.Mutex
		recs []*kgo.Record
		wg   sync.WaitGroup
	)
	for _, p := range h.Pipes.ForTrigger(ev.TriggerType) {
		if p.Status != pipeline.StatusActive {
			metrics.DeliveriesSkipped.WithLabelValues(p.Status).Inc()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := h.Exec.Execute(ctx, p, dispatcher.NewJob(ev, rec.Value, key, p.ID, time.Now()))
			metrics.Deliveries.WithLabelValues(out.Status).Inc()
			mu.Lock()
			recs = append(recs, out.Records...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		// Stopped mid-delivery (grace period over, or partitions lost): the
		// outcome is an artefact of the cancellation, not the receiver's
		// answer. Record nothing and leave the offset unmarked; the event is
		// delivered again, with the same delivery id.
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	return bus.Send(ctx, cl, recs...)
}

// partWorker runs one partition's events with a bounded window and marks the
// contiguous finished prefix.
type partWorker struct {
	c         *Consumer
	cl        *kgo.Client
	topic     string
	partition int32
	slots     chan struct{}

	mu      sync.Mutex
	queue   []*kgo.Record
	wake    chan struct{}
	paused  bool
	window  []*slot // in offset order, not yet marked
	fenced  bool    // lost: never mark again
	closing bool

	ctx      context.Context // deliveries; cancelled when the grace period ends
	cancel   context.CancelFunc
	quit     chan struct{} // closed when the worker stops taking records
	inflight sync.WaitGroup
	done     chan struct{}
}

type slot struct {
	rec      *kgo.Record
	finished bool
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
	if !w.paused && len(w.queue) >= cap(w.slots) {
		w.paused = true
		w.cl.PauseFetchPartitions(map[string][]int32{w.topic: {w.partition}})
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *partWorker) next() *kgo.Record {
	for {
		w.mu.Lock()
		if w.closing {
			w.mu.Unlock()
			return nil
		}
		if len(w.queue) > 0 {
			rec := w.queue[0]
			w.queue[0] = nil
			w.queue = w.queue[1:]
			if w.paused && len(w.queue) < cap(w.slots)/2 {
				w.paused = false
				w.cl.ResumeFetchPartitions(map[string][]int32{w.topic: {w.partition}})
			}
			w.mu.Unlock()
			return rec
		}
		w.mu.Unlock()
		<-w.wake
	}
}

func (w *partWorker) run() {
	defer close(w.done)
	for {
		rec := w.next()
		if rec == nil {
			return
		}
		// Hold the partition until the record is due: nothing behind it
		// starts. Not a sleep in a handler: the wait is the partition's, and
		// a stop ends it at once (the record is read again later).
		if !WaitUntil(w.c.h.Due(rec), w.quit) {
			return
		}
		// Acquire a partition slot, then a global slot. Waiting here is the
		// backpressure: the queue grows and push pauses the partition.
		w.slots <- struct{}{}
		select {
		case w.c.global <- struct{}{}:
		case <-w.ctx.Done():
			<-w.slots
			return
		}
		s := &slot{rec: rec}
		w.mu.Lock()
		w.window = append(w.window, s)
		w.mu.Unlock()
		w.inflight.Add(1)
		go func() {
			defer w.inflight.Done()
			err := w.c.h.Handle(w.ctx, w.cl, rec)
			<-w.c.global
			<-w.slots
			if err != nil {
				// Only an unacknowledged produce gets here, and only when the
				// worker is being stopped: leave the offset unmarked so the
				// event is delivered again (same delivery id).
				w.c.o.Log.Warn("event not finished; it will be redelivered", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err)
				return
			}
			w.finish(s)
		}()
	}
}

// finish marks s done and marks the longest finished prefix for commit.
func (w *partWorker) finish(s *slot) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s.finished = true
	var last *kgo.Record
	for len(w.window) > 0 && w.window[0].finished {
		last = w.window[0].rec
		w.window[0] = nil
		w.window = w.window[1:]
	}
	if last != nil && !w.fenced {
		w.cl.MarkCommitRecords(last)
	}
}

// stop ends the worker. Graceful: in-flight events get the grace period to
// finish (and be marked); then their context is cancelled. Not graceful
// (partitions lost): marking stops at once and in-flight work is cancelled.
func (w *partWorker) stop(graceful bool, grace time.Duration) {
	w.mu.Lock()
	w.closing = true
	if !graceful {
		w.fenced = true
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
	select {
	case <-finished:
	case <-time.After(grace):
		w.c.o.Log.Warn("grace period over; cancelling in-flight deliveries", "topic", w.topic, "partition", w.partition)
		w.cancel()
		<-finished
	}
	w.mu.Lock()
	w.fenced = true // nothing marks after the partition is handed back
	w.mu.Unlock()
	w.cancel()
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
