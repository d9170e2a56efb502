// Package worker runs webhookd's long-running roles under one supervisor.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
)

// Worker is a long-running role: it runs until ctx ends (returning nil) or
// it fails (returning an error).
type Worker interface {
	Name() string
	Run(ctx context.Context) error
}

// Supervisor runs workers together. When one fails, the others are stopped
// and Run returns the failure: a process that lost a role exits non-zero so
// its orchestrator restarts it, rather than running half-alive.
type Supervisor struct {
	log     *slog.Logger
	workers []staged
	// stopping is set once Run's context ends (a signal, or a failed worker).
	stopping atomic.Bool

	mu     sync.Mutex
	status map[string]string
}

// Stop stages: on shutdown each stage is stopped once every earlier one has
// returned, so the work that feeds a later stage is finished before it stops.
const (
	// StageWork is the delivery consumers: they drain first.
	StageWork = 0
	// StageSupport is what the delivery consumers use or feed while they
	// drain: the registry, ordering, the analytics sink (its last batch then
	// holds the drain's execution records).
	StageSupport = 1
	// StageServe is the admin API and the health endpoints: they answer,
	// /readyz with 503 "stopping", until everything else has stopped.
	StageServe = 2
)

type staged struct {
	w     Worker
	stage int
}

// NewSupervisor returns an empty supervisor.
func NewSupervisor(log *slog.Logger) *Supervisor {
	return &Supervisor{log: log, status: map[string]string{}}
}

// Add registers a worker of StageWork; call before Run.
func (s *Supervisor) Add(w Worker) { s.AddStage(StageWork, w) }

// AddServer registers a worker of StageServe: the health and admin
// endpoints, which must answer (readiness failing) while the others drain.
func (s *Supervisor) AddServer(w Worker) { s.AddStage(StageServe, w) }

// AddStage registers a worker stopped in the given stage; call before Run.
func (s *Supervisor) AddStage(stage int, w Worker) {
	s.workers = append(s.workers, staged{w, stage})
	s.set(w.Name(), "pending")
}

// Stopping reports whether Run's context has ended or a worker has failed:
// the process is draining and should be taken out of service.
func (s *Supervisor) Stopping() bool { return s.stopping.Load() }

func (s *Supervisor) set(name, st string) {
	s.mu.Lock()
	s.status[name] = st
	s.mu.Unlock()
}

// Status reports each worker's state: pending, running, stopped or failed: <err>.
func (s *Supervisor) Status() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.status))
	for k, v := range s.status {
		out[k] = v
	}
	return out
}

// Running reports whether every worker is running.
func (s *Supervisor) Running() bool {
	for _, st := range s.Status() {
		if st != "running" {
			return false
		}
	}
	return true
}

// Run starts every worker and waits for all to return. When ctx ends (or
// a worker fails), the stages are stopped in order.
func (s *Supervisor) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The workers see their context end only after Stopping reports true:
	// a drain that has begun is always reported (readiness fails first).
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	stopWatch := context.AfterFunc(ctx, func() {
		s.stopping.Store(true)
		stopWork()
	})
	defer stopWatch()
	last := 0
	for _, sw := range s.workers {
		last = max(last, sw.stage)
	}
	// One context per stage, and a count of each stage's running workers.
	ctxs := make([]context.Context, last+1)
	stops := make([]context.CancelFunc, last+1)
	running := make([]sync.WaitGroup, last+1)
	for i := range ctxs {
		if i == 0 {
			ctxs[i], stops[i] = work, stopWork
			continue
		}
		ctxs[i], stops[i] = context.WithCancel(context.WithoutCancel(ctx))
		defer stops[i]()
	}
	for _, sw := range s.workers {
		running[sw.stage].Add(1)
	}
	go func() {
		<-work.Done()
		for i := 1; i <= last; i++ {
			running[i-1].Wait()
			stops[i]()
		}
	}()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, sw := range s.workers {
		w, wctx := sw.w, ctxs[sw.stage]
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer running[sw.stage].Done()
			s.set(w.Name(), "running")
			s.log.Info("worker started", "worker", w.Name())
			err := func() (err error) {
				defer func() {
					if r := recover(); r != nil {
						err = fmt.Errorf("panic: %v", r)
					}
				}()
				return w.Run(wctx)
			}()
			if err != nil && wctx.Err() == nil {
				s.set(w.Name(), "failed: "+err.Error())
				s.log.Error("worker failed; stopping the others", "worker", w.Name(), "err", err)
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", w.Name(), err))
				mu.Unlock()
				cancel()
				return
			}
			s.set(w.Name(), "stopped")
			s.log.Info("worker stopped", "worker", w.Name())
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
