package jobs

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/bus"
	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/event"
	"github.com/afftok/webhookd/filter"
	"github.com/afftok/webhookd/metrics"
	"github.com/afftok/webhookd/pipeline"
	"github.com/afftok/webhookd/template"
)

// Pipelines is what a replay needs of the registry.
type Pipelines interface {
	Get(id string) (*pipeline.Compiled, bool)
	ForTrigger(triggerType string) []*pipeline.Compiled
}

// Replayer runs replay jobs: it reads each range of the event topics from
// its checkpoint and hands one task per (event, pipeline) to the failover
// topic — the path that runs a task as soon as it is read, as a DLQ retry
// does — with the delivery id of the original fan-out, an execution id of
// the replay's own and the replay id (X-Afftok-Replay) in the task, so the
// retries and failover of a replayed delivery carry it too.
type Replayer struct {
	// ReaderOpts: brokers, TLS, SASL (a client of its own reads the ranges).
	ReaderOpts []kgo.Opt
	// Producer hands the tasks to Kafka.
	Producer *kgo.Client
	Topics   bus.Topics
	Pipes    Pipelines
	Now      func() time.Time
	// Batch bounds the tasks produced at once (and acknowledged before the
	// checkpoint moves past them).
	Batch int
}

// Execute implements Executor.
func (rp *Replayer) Execute(ctx context.Context, j *Job, cp *Checkpointer) error {
	spec := j.Replay
	if len(j.Progress.Next) != len(spec.Ranges) {
		j.Progress.Next = make([]int64, len(spec.Ranges))
		for i, r := range spec.Ranges {
			j.Progress.Next[i] = r.Start
		}
	}
	batch := rp.Batch
	if batch <= 0 {
		batch = 256
	}
	type tp struct {
		topic     string
		partition int32
	}
	index := map[tp]int{}
	assign := map[string]map[int32]kgo.Offset{}
	for i, r := range spec.Ranges {
		if j.Progress.Next[i] >= r.End {
			continue
		}
		index[tp{r.Topic, r.Partition}] = i
		if assign[r.Topic] == nil {
			assign[r.Topic] = map[int32]kgo.Offset{}
		}
		assign[r.Topic][r.Partition] = kgo.NewOffset().At(j.Progress.Next[i])
	}
	if len(index) == 0 {
		return cp.Cancelled()
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, rp.ReaderOpts...),
		kgo.ConsumePartitions(assign),
		// As the event consumer reads: no aborted transactions. Control
		// records (transaction markers) are kept so the position passes
		// them: a range that ends in a marker would otherwise never end.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		// Records retention deleted since the job was planned are gone:
		// read on from the oldest still held.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()

	// The working position runs ahead of j.Progress by the tasks not yet
	// acknowledged; j.Progress (the checkpoint) moves only after the ack.
	next := append([]int64(nil), j.Progress.Next...)
	scanned, queued := j.Progress.EventsScanned, j.Progress.DeliveriesQueued
	var pending []*kgo.Record
	pace := newPacer(spec.RatePerSecond, rp.now)
	lastFlush := rp.now()
	flush := func() error {
		if len(pending) > 0 {
			if err := bus.ProduceAll(ctx, rp.Producer, pending...); err != nil {
				return err
			}
		}
		n := len(pending)
		pending = pending[:0]
		metrics.JobItems.WithLabelValues(KindReplay, "scanned").Add(float64(scanned - j.Progress.EventsScanned))
		metrics.JobItems.WithLabelValues(KindReplay, "queued").Add(float64(queued - j.Progress.DeliveriesQueued))
		copy(j.Progress.Next, next)
		j.Progress.EventsScanned, j.Progress.DeliveriesQueued = scanned, queued
		lastFlush = rp.now()
		return cp.Advance(ctx, max(n, 1))
	}
	left := len(index)
	for left > 0 {
		if err := cp.Cancelled(); err != nil {
			return err
		}
		fs := cl.PollRecords(ctx, batch)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return ferr
		}
		for _, rec := range fs.Records() {
			i, ok := index[tp{rec.Topic, rec.Partition}]
			if !ok || rec.Offset < next[i] || next[i] >= spec.Ranges[i].End {
				continue
			}
			switch {
			case rec.Offset >= spec.Ranges[i].End:
				next[i] = spec.Ranges[i].End
			case rec.Attrs.IsControl():
				next[i] = rec.Offset + 1
			default:
				for _, t := range rp.tasks(j, rec) {
					if spec.RatePerSecond > 0 && (len(pending) >= batch || rp.now().Sub(lastFlush) >= 100*time.Millisecond) {
						if err := flush(); err != nil {
							return err
						}
					}
					if err := pace.wait(ctx); err != nil {
						return err
					}
					pending = append(pending, t.Record(rp.Topics.Failover))
					queued++
				}
				// The record counts as scanned with the position past it:
				// a checkpoint taken among its tasks redoes it whole.
				next[i] = rec.Offset + 1
				scanned++
			}
			if next[i] >= spec.Ranges[i].End {
				left--
				cl.PauseFetchPartitions(map[string][]int32{rec.Topic: {rec.Partition}})
			}
			if len(pending) >= batch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
	}
	return nil
}

func (rp *Replayer) now() time.Time {
	if rp.Now != nil {
		return rp.Now()
	}
	return time.Now()
}

// tasks are the deliveries a replay makes of one record: none for a record
// outside the window, not an event (the original dead-lettered it) or of
// another trigger type; else one per chosen pipeline of its trigger type
// (every active one when none were named).
func (rp *Replayer) tasks(j *Job, rec *kgo.Record) []*delivery.Task {
	spec := j.Replay
	if ts := rec.Timestamp; ts.Before(spec.From) || !ts.Before(spec.To) {
		return nil
	}
	ev, err := event.Decode(rec.Value)
	if err != nil || (spec.TriggerType != "" && ev.TriggerType != spec.TriggerType) {
		return nil
	}
	var pipes []*pipeline.Compiled
	if len(spec.PipelineIDs) > 0 {
		for _, id := range spec.PipelineIDs {
			// A named pipeline gets the events of its trigger type whatever
			// its status: the delivery path pauses or dead-letters them as
			// it does any delivery. A deleted one gets none.
			if p, ok := rp.Pipes.Get(id); ok && p.TriggerType == ev.TriggerType && len(p.Steps) > 0 {
				pipes = append(pipes, p)
			}
		}
	} else {
		for _, p := range rp.Pipes.ForTrigger(ev.TriggerType) {
			if p.Status == pipeline.StatusActive && len(p.Steps) > 0 {
				pipes = append(pipes, p)
			}
		}
	}
	if len(pipes) == 0 {
		return nil
	}
	key := delivery.EventKey(ev.ID, rec.Topic, rec.Partition, rec.Offset)
	src := &delivery.Source{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}
	now := rp.now()
	out := make([]*delivery.Task, 0, len(pipes))
	var vars template.Vars // what filters read, made once for the event
	for _, p := range pipes {
		// As fan-out does: an event the pipeline's filter rejects spawns
		// no delivery, in a replay too.
		if p.Filter != nil {
			if vars == nil {
				vars = filter.Vars(ev)
			}
			if !p.Filter.Match(vars) {
				continue
			}
		}
		t := delivery.NewTask(ev, rec.Value, src, key, p.ID, p.Steps[0].Order, now)
		t.Replay = j.ID
		t.ExecutionID = delivery.ReplayExecutionID(t.DeliveryID, j.ID)
		out = append(out, t)
	}
	return out
}

// pacer spaces out work to a rate per second (0: no pacing).
type pacer struct {
	gap  time.Duration
	next time.Time
	now  func() time.Time
}

func newPacer(rate float64, now func() time.Time) *pacer {
	p := &pacer{now: now}
	if rate > 0 {
		p.gap = time.Duration(float64(time.Second) / rate)
	}
	return p
}

// wait blocks until the next item may go.
func (p *pacer) wait(ctx context.Context) error {
	if p.gap == 0 {
		return ctx.Err()
	}
	now := p.now()
	if p.next.Before(now) {
		p.next = now
	}
	at := p.next
	p.next = p.next.Add(p.gap)
	if d := at.Sub(now); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
