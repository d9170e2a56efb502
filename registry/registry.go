// Package registry keeps every pipeline in memory, fed by the compacted
// webhooks.pipelines topic. Every replica reads the whole topic, so all see
// the same pipelines; writes go through the topic too, and a writer waits
// until its own record is applied, so the API reads its own writes.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/bus"
	"github.com/afftok/webhookd/pipeline"
)

// Registry is the in-memory view of the pipelines topic. It is a worker: Run
// consumes the topic until ctx ends.
type Registry struct {
	cl     *kgo.Client
	topic  string
	log    *slog.Logger
	sealer *pipeline.Sealer // signing keys are sealed on the topic when set

	mu        sync.RWMutex
	byID      map[string]*pipeline.Compiled
	byTrigger map[string][]*pipeline.Compiled
	deleted   map[string]time.Time
	applied   map[int32]int64 // next offset to apply, per partition
	changed   chan struct{}   // closed and replaced on every apply
	ready     bool
}

// New returns a registry over topic; cl must not be consuming anything else.
// With a sealer, signing keys are encrypted on the topic.
func New(cl *kgo.Client, topic string, sealer *pipeline.Sealer, log *slog.Logger) *Registry {
	return &Registry{
		cl: cl, topic: topic, log: log, sealer: sealer,
		byID: map[string]*pipeline.Compiled{}, byTrigger: map[string][]*pipeline.Compiled{},
		deleted: map[string]time.Time{}, applied: map[int32]int64{}, changed: make(chan struct{}),
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
			// A record the API did not write; skipping it keeps the rest serving.
			r.log.Error("skipping unreadable pipeline record", "pipeline_id", id, "offset", rec.Offset, "err", err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.byID[id]; old != nil {
		r.removeLocked(old)
	}
	switch {
	case rec.Value == nil:
		delete(r.byID, id)
		r.deleted[id] = rec.Timestamp
	case c != nil:
		r.byID[id] = c
		delete(r.deleted, id)
		r.byTrigger[c.TriggerType] = append(r.byTrigger[c.TriggerType], c)
	}
	r.applied[rec.Partition] = rec.Offset + 1
	r.notifyLocked()
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
	close(r.changed)
	r.changed = make(chan struct{})
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
	for {
		r.mu.RLock()
		ok, ch := cond(), r.changed
		r.mu.RUnlock()
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

// ErrNotReady is returned by writes before the registry has loaded.
var ErrNotReady = errors.New("pipeline registry is still loading")

// Put stores a pipeline and returns once this registry has applied it.
func (r *Registry) Put(ctx context.Context, p *pipeline.Pipeline) error {
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
	return r.write(ctx, &kgo.Record{Topic: r.topic, Key: []byte(p.ID), Value: b})
}

// Delete writes a tombstone and returns once this registry has applied it.
func (r *Registry) Delete(ctx context.Context, id string) error {
	return r.write(ctx, &kgo.Record{Topic: r.topic, Key: []byte(id)})
}

func (r *Registry) write(ctx context.Context, rec *kgo.Record) error {
	if !r.Ready() {
		return ErrNotReady
	}
	if err := bus.ProduceAll(ctx, r.cl, rec); err != nil {
		return fmt.Errorf("write pipeline: %w", err)
	}
	if err := r.waitFor(ctx, func() bool { return r.applied[rec.Partition] > rec.Offset }); err != nil {
		return fmt.Errorf("pipeline written but not yet applied: %w", err)
	}
	return nil
}
