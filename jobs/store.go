package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/bus"
	"github.com/afftok/webhookd/watch"
)

// Store is every replica's view of the jobs topic: each job's last record
// and whether it was asked to stop. Writes go to the topic and wait until
// this store has applied them, so a replica reads its own writes; reads that
// must see other replicas' writes call Sync first.
type Store struct {
	cl    *kgo.Client
	topic string
	log   *slog.Logger

	mu        sync.RWMutex
	jobs      map[string]*Job
	cancelled map[string]bool
	applied   map[int32]int64 // next offset to apply, per partition
	ready     bool
	changed   *watch.Signal // notified after every applied batch
}

// NewStore returns a store over topic; cl must consume it from the start
// (ConsumeOpts) and nothing else.
func NewStore(cl *kgo.Client, topic string, log *slog.Logger) *Store {
	return &Store{cl: cl, topic: topic, log: log, jobs: map[string]*Job{}, cancelled: map[string]bool{},
		applied: map[int32]int64{}, changed: watch.New()}
}

// ConsumeOpts are the options the store's client needs.
func ConsumeOpts(topic string) []kgo.Opt {
	return []kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
}

// Name implements the worker interface.
func (s *Store) Name() string { return "jobs-store" }

// Run applies the topic's records until ctx ends; the store is ready once
// it has applied what the topic held when it started.
func (s *Store) Run(ctx context.Context) error {
	target, err := s.ends(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	for {
		s.mu.Lock()
		if !s.ready && s.caughtUpLocked(target) {
			s.ready = true
			s.log.Info("jobs loaded", "jobs", len(s.jobs))
			s.notifyLocked()
		}
		s.mu.Unlock()
		fetches := s.cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			s.log.Error("jobs topic fetch error", "topic", t, "partition", p, "err", err)
		})
		s.mu.Lock()
		fetches.EachRecord(s.applyLocked)
		s.notifyLocked()
		s.mu.Unlock()
	}
}

func (s *Store) ends(ctx context.Context) (map[int32]int64, error) {
	ends, err := kadm.NewClient(s.cl).ListEndOffsets(ctx, s.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: list end offsets: %w", err)
	}
	target := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { target[o.Partition] = o.Offset })
	return target, nil
}

func (s *Store) caughtUpLocked(target map[int32]int64) bool {
	for p, end := range target {
		if s.applied[p] < end {
			return false
		}
	}
	return true
}

func (s *Store) applyLocked(rec *kgo.Record) {
	s.applied[rec.Partition] = rec.Offset + 1
	key := string(rec.Key)
	if id, ok := strings.CutSuffix(key, cancelSuffix); ok {
		if rec.Value == nil {
			delete(s.cancelled, id)
		} else {
			s.cancelled[id] = true
		}
		return
	}
	if rec.Value == nil { // tombstone
		delete(s.jobs, key)
		return
	}
	j, err := Decode(rec.Value)
	if err != nil || j.ID != key {
		s.log.Error("unreadable job record ignored", "offset", rec.Offset, "key", key, "err", err)
		return
	}
	s.jobs[key] = j
}

func (s *Store) notifyLocked() {
	s.changed.Notify()
}

// Ready reports whether the store has loaded the topic.
func (s *Store) Ready() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ready
}

// Sync waits until the store has applied every record written to the topic
// before the call (one ListOffsets call), so what any replica wrote before
// is seen.
func (s *Store) Sync(ctx context.Context) error {
	target, err := s.ends(ctx)
	if err != nil {
		return err
	}
	return s.waitFor(ctx, func() bool { return s.caughtUpLocked(target) })
}

func (s *Store) waitFor(ctx context.Context, cond func() bool) error {
	return watch.Until(ctx, s.mu.RLocker(), s.changed, cond)
}

// Changed returns a channel closed at the next change.
func (s *Store) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed.C()
}

// Get returns a copy of a job's last record, and whether it was asked to
// stop.
func (s *Store) Get(id string) (*Job, bool, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j, ok := s.jobs[id]
	if !ok {
		return nil, false, false
	}
	return j.Clone(), s.cancelled[id], true
}

// CancelRequested reports whether job id was asked to stop.
func (s *Store) CancelRequested(id string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cancelled[id]
}

// Unfinished lists the jobs not in a final state, oldest first.
func (s *Store) Unfinished() []*Job {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*Job
	for _, j := range s.jobs {
		if !Final(j.State) {
			out = append(out, j.Clone())
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].CreatedAt.Before(out[b].CreatedAt) })
	return out
}

// Put writes a job's record and waits until this store has applied it.
func (s *Store) Put(ctx context.Context, j *Job) error {
	return s.write(ctx, j.Record(s.topic))
}

// Cancel asks job id to stop.
func (s *Store) Cancel(ctx context.Context, rec *kgo.Record) error { return s.write(ctx, rec) }

func (s *Store) write(ctx context.Context, rec *kgo.Record) error {
	if err := bus.ProduceAll(ctx, s.cl, rec); err != nil {
		return err
	}
	return s.waitFor(ctx, func() bool { return s.applied[rec.Partition] > rec.Offset })
}

// FinishedBefore lists the ids of jobs that reached a final state before t.
func (s *Store) FinishedBefore(t time.Time) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for id, j := range s.jobs {
		if Final(j.State) && j.UpdatedAt.Before(t) {
			out = append(out, id)
		}
	}
	return out
}

// Remove tombstones a job and its cancel request: compaction then drops
// them from the topic, and every store forgets them.
func (s *Store) Remove(ctx context.Context, id string) error {
	if err := s.write(ctx, &kgo.Record{Topic: s.topic, Key: []byte(id + cancelSuffix)}); err != nil {
		return err
	}
	return s.write(ctx, &kgo.Record{Topic: s.topic, Key: []byte(id)})
}
