package jobs

import (
	"context"
	"errors"
	"time"
)

// Service is what the admin API does with jobs: create them (the runner
// picks them up from the topic), read them, cancel them.
type Service struct {
	Store   *Store
	Offsets Offsets
	// EventTopics are the topics a replay reads.
	EventTopics []string
	Now         func() time.Time
}

// Errors of Get and Cancel.
var (
	ErrNotFound = errors.New("no such job")
	ErrFinished = errors.New("the job has already finished")
)

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// CreateReplay plans a replay (the offsets of its window in every event
// topic, retention warnings) and records it as a queued job.
func (s *Service) CreateReplay(ctx context.Context, spec Replay) (*Job, error) {
	ranges, eff, warnings, err := PlanReplay(ctx, s.Offsets, s.EventTopics, spec.From, spec.To)
	if err != nil {
		return nil, err
	}
	spec.Ranges, spec.EffectiveFrom, spec.Warnings = ranges, eff, warnings
	if spec.Ranges == nil {
		spec.Ranges = []Range{}
	}
	return s.create(ctx, &Job{Kind: KindReplay, Replay: &spec})
}

// CreateRedrive records a bulk redrive of the given items as a queued job.
func (s *Service) CreateRedrive(ctx context.Context, spec Redrive) (*Job, error) {
	if spec.Items == nil {
		spec.Items = []string{}
	}
	return s.create(ctx, &Job{Kind: KindRedrive, Redrive: &spec})
}

func (s *Service) create(ctx context.Context, j *Job) (*Job, error) {
	now := s.now().UTC()
	j.ID, j.State, j.CreatedAt, j.UpdatedAt = NewID(j.Kind), StateQueued, now, now
	if err := s.Store.Put(ctx, j); err != nil {
		return nil, err
	}
	return j, nil
}

// Get returns a job as any replica last recorded it; a job asked to stop
// but not yet stopped by its runner shows as cancelled.
func (s *Service) Get(ctx context.Context, id string) (*Job, error) {
	if err := s.Store.Sync(ctx); err != nil {
		return nil, err
	}
	j, cancelled, ok := s.Store.Get(id)
	if !ok {
		return nil, ErrNotFound
	}
	if cancelled && !Final(j.State) {
		j.State = StateCancelled
	}
	return j, nil
}

// Cancel asks a job to stop; its runner stops it at the next item (what
// was queued before stays queued). A finished job cannot be cancelled.
func (s *Service) Cancel(ctx context.Context, id string) (*Job, error) {
	j, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if Final(j.State) {
		if j.State == StateCancelled {
			return j, nil
		}
		return j, ErrFinished
	}
	if err := s.Store.Cancel(ctx, CancelRecord(s.Store.topic, id, s.now().UTC())); err != nil {
		return nil, err
	}
	j.State = StateCancelled
	return j, nil
}
