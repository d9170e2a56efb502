// Package registry keeps every pipeline in memory, fed by the compacted
// webhooks.pipelines topic. Every replica reads the whole topic, so all see
// the same pipelines; writes go through the topic too, and a writer waits
// until its own record is applied, so the API reads its own writes.
//
// Writes are compare-and-set: a record names the revision it replaces (the
// webhookd-base header) and every replica, reading the same log in the same
// order, applies it only if that is still the current revision. Two replicas
// racing on one pipeline therefore agree on which write won; the loser is told
// ErrConflict. Since compaction keeps only a key's last record, a refused
// record must not stay last: whoever sees one left last re-states the current
// state (webhookd-restate) well within the topic's min.compaction.lag.ms.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/pipeline"
	"github.com/afftok/webhookd/watch"
)

// Registry is the in-memory view of the pipelines topic. It is a worker: Run
// consumes the topic until ctx ends.
type Registry struct {
	cl     *kgo.Client
	topic  string
	log    *slog.Logger
	sealer *pipeline.Sealer // signing keys are sealed on the topic when set

	writer string // this registry's writer id, to learn its records' fate

	mu        sync.RWMutex
	byID      map[string]*pipeline.Compiled
	raw       map[string][]byte // each pipeline's record value, for re-stating
	byTrigger map[string][]*pipeline.Compiled
	deleted   map[string]time.Time
	stale     map[string]time.Time // keys whose last record was refused, since
	outcomes  map[recordPos]bool   // fate of this writer's records, until read
	applied   map[int32]int64      // next offset to apply, per partition
	changed   *watch.Signal        // notified on every apply
	ready     bool
}

type recordPos struct {
	partition int32
	offset    int64
}

// Record headers of a compare-and-set write.
const (
	headerBase    = "webhookd-base"    // revision the write replaces (0: create)
	headerRestate = "webhookd-restate" // re-statement of the current state
	headerWriter  = "webhookd-writer"  // writer id, so it can learn the outcome
)

// ErrConflict means the pipeline changed (or was deleted) between the
// writer's read and its write: nothing was changed.
var ErrConflict = errors.New("pipeline was changed concurrently")

// restateAfter is how long a refused record may stay a key's last before a
// replica other than its writer re-states the key (its writer does at once).
// A variable for tests.
var restateAfter = 10 * time.Second

// New returns a registry over topic; cl must not be consuming anything else.
// With a sealer, signing keys are encrypted on the topic.
func New(cl *kgo.Client, topic string, sealer *pipeline.Sealer, log *slog.Logger) *Registry {
	return &Registry{
		cl: cl, topic: topic, log: log, sealer: sealer,
		writer: pipeline.NewID("w_"),
		byID:   map[string]*pipeline.Compiled{}, raw: map[string][]byte{}, byTrigger: map[string][]*pipeline.Compiled{},
		deleted: map[string]time.Time{}, stale: map[string]time.Time{}, outcomes: map[recordPos]bool{},
		applied: map[int32]int64{}, changed: watch.New(),
	}
}

// ConsumeOpts are the options the registry's client needs.
func ConsumeOpts(topic string) []kgo.Opt {
	return []kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
}

// Name implements the worker interface.
func (r *Registry) Name() string { return "registry" }

// Run applies the topic's records until ctx ends. The registry becomes ready
// once it has applied everything that was in the topic when it started.
func (r *Registry) Run(ctx context.Context) error {
	ends, err := kadm.NewClient(r.cl).ListEndOffsets(ctx, r.topic)
	if err != nil {
		return fmt.Errorf("registry: list end offsets: %w", err)
	}
	target := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { target[o.Partition] = o.Offset })
	if err := ends.Error(); err != nil {
		return fmt.Errorf("registry: list end offsets: %w", err)
	}
	r.markReadyIfCaughtUp(target)
	swept := make(chan struct{})
	go func() { defer close(swept); r.sweep(ctx) }()
	defer func() { <-swept }()
	for {
		fetches := r.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			r.log.Error("registry fetch error", "topic", t, "partition", p, "err", err)
		})
		fetches.EachRecord(r.apply)
		r.markReadyIfCaughtUp(target)
	}
}

// sweep re-states keys whose last record was refused and whose writer has not
// (it crashed, or it runs an older version).
func (r *Registry) sweep(ctx context.Context) {
	after := restateAfter
	t := time.NewTicker(after)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !r.Ready() {
			continue
		}
		r.mu.RLock()
		var ids []string
		for id, since := range r.stale {
			if time.Since(since) >= after {
				ids = append(ids, id)
			}
		}
		r.mu.RUnlock()
		for _, id := range ids {
			if err := r.restate(ctx, id); err != nil && ctx.Err() == nil {
				r.log.Warn("re-stating pipeline failed; will retry", "pipeline_id", id, "err", err)
			}
		}
	}
}

// restate writes the key's current state again so that it, not a refused
// record, is what compaction keeps. A re-statement can itself be refused when
// another write lands first; then it re-states that newer state (a few times,
// then the sweep carries on).
func (r *Registry) restate(ctx context.Context, id string) error {
	for range 5 {
		r.mu.RLock()
		value := r.raw[id] // nil when deleted or never created: a tombstone
		r.mu.RUnlock()
		rec := &kgo.Record{Topic: r.topic, Key: []byte(id), Value: value,
			Headers: []kgo.RecordHeader{{Key: headerRestate, Value: []byte("1")}}}
		accepted, err := r.produceAndApply(ctx, rec)
		if err != nil || accepted {
			return err
		}
	}
	return ErrConflict
}

func (r *Registry) markReadyIfCaughtUp(target map[int32]int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ready {
		return
	}
	for p, end := range target {
		if r.applied[p] < end {
			return
		}
	}
	r.ready = true
	r.log.Info("pipeline registry loaded", "pipelines", len(r.byID))
	r.notifyLocked()
}

func (r *Registry) apply(rec *kgo.Record) {
	id := string(rec.Key)
	var c *pipeline.Compiled
	if rec.Value != nil {
		var p pipeline.Pipeline
		err := json.Unmarshal(rec.Value, &p)
		if err == nil {
			err = r.sealer.OpenKeys(&p)
		}
		if err == nil {
			c, err = pipeline.Compile(&p)
		}
		if err != nil {
			// A record this replica cannot read (not written by the API, or
			// sealed with another key): it changes nothing here, and this
			// replica does not re-state a key it may see wrongly.
			r.log.Error("skipping unreadable pipeline record", "pipeline_id", id, "offset", rec.Offset, "err", err)
			r.mu.Lock()
			r.appliedLocked(rec, false)
			r.mu.Unlock()
			return
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	accepted := r.acceptsLocked(id, rec, c)
	switch {
	case !accepted:
		r.stale[id] = time.Now()
	case rec.Value == nil:
		if old := r.byID[id]; old != nil {
			r.removeLocked(old)
		}
		delete(r.byID, id)
		delete(r.raw, id)
		delete(r.stale, id)
		r.deleted[id] = rec.Timestamp
	default:
		if old := r.byID[id]; old != nil {
			r.removeLocked(old)
		}
		r.byID[id] = c
		r.raw[id] = rec.Value
		delete(r.deleted, id)
		delete(r.stale, id)
		r.byTrigger[c.TriggerType] = append(r.byTrigger[c.TriggerType], c)
	}
	r.appliedLocked(rec, accepted)
}

// acceptsLocked is the compare-and-set every replica evaluates identically.
func (r *Registry) acceptsLocked(id string, rec *kgo.Record, c *pipeline.Compiled) bool {
	cur := r.byID[id]
	_, wasDeleted := r.deleted[id]
	if header(rec, headerRestate) != "" {
		if rec.Value == nil {
			return cur == nil
		}
		if cur == nil {
			// After compaction a re-statement may be a key's first record.
			return !wasDeleted
		}
		return cur.Revision == c.Revision
	}
	b := header(rec, headerBase)
	if b == "" {
		return true // written without a base (older versions, tools): last wins
	}
	base, err := strconv.ParseInt(b, 10, 64)
	if err != nil {
		return false
	}
	if cur == nil {
		// A create, or — after compaction — the first surviving record of a
		// key; never a write over a delete.
		return rec.Value != nil && !wasDeleted
	}
	return cur.Revision == base && (rec.Value == nil || c.Revision > base)
}

func (r *Registry) appliedLocked(rec *kgo.Record, accepted bool) {
	if header(rec, headerWriter) == r.writer {
		r.outcomes[recordPos{rec.Partition, rec.Offset}] = accepted
		if len(r.outcomes) > maxOutcomes {
			// Outcomes nobody waits for any more (their writer gave up).
			for pos := range r.outcomes {
				if pos.partition == rec.Partition && pos.offset < rec.Offset-maxOutcomes {
					delete(r.outcomes, pos)
				}
			}
		}
	}
	r.applied[rec.Partition] = rec.Offset + 1
	r.notifyLocked()
}

func header(rec *kgo.Record, key string) string {
	for _, h := range rec.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func (r *Registry) removeLocked(c *pipeline.Compiled) {
	list := r.byTrigger[c.TriggerType]
	for i, x := range list {
		if x.ID == c.ID {
			r.byTrigger[c.TriggerType] = append(list[:i:i], list[i+1:]...)
			return
		}
	}
}

func (r *Registry) notifyLocked() {
	r.changed.Notify()
}

// Ready reports whether the registry has loaded the topic.
func (r *Registry) Ready() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.ready
}

// WaitReady blocks until the registry is ready or ctx ends.
func (r *Registry) WaitReady(ctx context.Context) error {
	return r.waitFor(ctx, func() bool { return r.ready })
}

// waitFor blocks until cond (evaluated under the read lock) holds after some
// apply, or ctx ends.
func (r *Registry) waitFor(ctx context.Context, cond func() bool) error {
	return watch.Until(ctx, r.mu.RLocker(), r.changed, cond)
}

// Sync waits until this registry has applied every record written to the
// topic before the call, so that what any replica wrote before is visible
// here (read-your-writes across replicas). It costs one ListOffsets call.
func (r *Registry) Sync(ctx context.Context) error {
	ends, err := kadm.NewClient(r.cl).ListEndOffsets(ctx, r.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("registry: list end offsets: %w", err)
	}
	return r.waitFor(ctx, func() bool {
		caughtUp := true
		ends.Each(func(o kadm.ListedOffset) { caughtUp = caughtUp && r.applied[o.Partition] >= o.Offset })
		return caughtUp
	})
}

// Get returns a pipeline by id.
func (r *Registry) Get(id string) (*pipeline.Compiled, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.byID[id]
	return c, ok
}

// Deleted reports whether a pipeline was deleted (and not re-created).
func (r *Registry) Deleted(id string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.deleted[id]
	return ok
}

// List returns every pipeline, newest first.
func (r *Registry) List() []*pipeline.Compiled {
	r.mu.RLock()
	out := make([]*pipeline.Compiled, 0, len(r.byID))
	for _, c := range r.byID {
		out = append(out, c)
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// ForTrigger returns the pipelines of a trigger type (any status), in a
// stable order; the caller decides what each status means.
func (r *Registry) ForTrigger(triggerType string) []*pipeline.Compiled {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := append([]*pipeline.Compiled(nil), r.byTrigger[triggerType]...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// maxOutcomes bounds the outcomes kept of writes whose writer gave up.
const maxOutcomes = 1024

// writeTimeout bounds one write: producing it and seeing it applied. A write
// Kafka has not taken by then fails with ErrUnavailable (it may still land:
// the compare-and-set keeps that harmless).
const writeTimeout = 15 * time.Second

// ErrUnavailable wraps a write that Kafka did not take or this registry did
// not see applied in time: it may or may not have happened; retry it.
var ErrUnavailable = errors.New("the pipelines topic did not answer")

// ErrNotReady is returned by writes before the registry has loaded.
var ErrNotReady = errors.New("pipeline registry is still loading")

// Put stores p as the successor of revision base (0 creates it) and returns
// once this registry has applied it: ErrConflict if the pipeline's revision
// was no longer base by then (or it had been deleted); nothing changed.
func (r *Registry) Put(ctx context.Context, p *pipeline.Pipeline, base int64) error {
	if p.Revision <= base {
		return fmt.Errorf("revision %d does not follow %d", p.Revision, base)
	}
	if _, err := pipeline.Compile(p); err != nil {
		return err
	}
	sealed, err := r.sealer.SealKeys(p)
	if err != nil {
		return err
	}
	b, err := json.Marshal(sealed)
	if err != nil {
		return err
	}
	return r.write(ctx, &kgo.Record{Topic: r.topic, Key: []byte(p.ID), Value: b}, base)
}

// Delete writes a tombstone for revision base of the pipeline and returns once
// this registry has applied it (ErrConflict as for Put).
func (r *Registry) Delete(ctx context.Context, id string, base int64) error {
	return r.write(ctx, &kgo.Record{Topic: r.topic, Key: []byte(id)}, base)
}

func (r *Registry) write(ctx context.Context, rec *kgo.Record, base int64) error {
	if !r.Ready() {
		return ErrNotReady
	}
	rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: headerBase, Value: strconv.AppendInt(nil, base, 10)})
	accepted, err := r.produceAndApply(ctx, rec)
	if err != nil || accepted {
		return err
	}
	// Refused: the winner's state must stay the key's last record. Re-state it
	// now (context-free, so an impatient client cannot leave it half done); the
	// sweep retries if this fails.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := r.restate(rctx, string(rec.Key)); err != nil {
		r.log.Warn("re-stating pipeline after a refused write failed; the sweep will retry", "pipeline_id", string(rec.Key), "err", err)
	}
	return ErrConflict
}

// produceAndApply writes rec and waits until this registry has applied it,
// reporting whether it was accepted.
func (r *Registry) produceAndApply(ctx context.Context, rec *kgo.Record) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: headerWriter, Value: []byte(r.writer)})
	// kgo cannot always fail a record whose context ends (not once it may
	// have been sent), so the wait is bounded here: a write Kafka has not
	// acknowledged in time is reported unavailable and may still land later
	// (the compare-and-set keeps that harmless).
	produced := make(chan error, 1)
	r.cl.Produce(ctx, rec, func(_ *kgo.Record, err error) { produced <- err })
	select {
	case err := <-produced:
		if err != nil {
			return false, fmt.Errorf("%w: write pipeline: %w", ErrUnavailable, err)
		}
	case <-ctx.Done():
		return false, fmt.Errorf("%w: write pipeline: Kafka did not acknowledge it: %w", ErrUnavailable, ctx.Err())
	}
	pos := recordPos{rec.Partition, rec.Offset}
	var accepted bool
	err := r.waitFor(ctx, func() bool {
		var seen bool
		accepted, seen = r.outcomes[pos]
		return seen || r.applied[rec.Partition] > rec.Offset
	})
	r.mu.Lock()
	delete(r.outcomes, pos)
	r.mu.Unlock()
	if err != nil {
		return false, fmt.Errorf("%w: pipeline written but not yet applied: %w", ErrUnavailable, err)
	}
	return accepted, nil
}
