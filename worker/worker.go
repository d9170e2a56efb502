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
	workers []Worker
	// servers answer probes and API calls: they stop after every other
	// worker has, so /readyz says "stopping" (503) for the whole drain.
	servers  []Worker
	stopping atomic.Bool

	mu     sync.Mutex
	status map[string]string
}

// NewSupervisor returns an empty supervisor.
func NewSupervisor(log *slog.Logger) *Supervisor {
	return &Supervisor{log: log, status: map[string]string{}}
}

// Add registers a worker; call before Run.
func (s *Supervisor) Add(w Worker) {
	s.workers = append(s.workers, w)
	s.set(w.Name(), "pending")
}

func (s *Supervisor) set(name, st string) {
	s.mu.Lock()
	s.status[name] = st
	s.mu.Unlock()
}

// AddServer registers a worker that is stopped only once every worker
// added with Add has returned: the health and admin endpoints, which must
// answer (readiness failing) while the consumers drain. Call before Run.
func (s *Supervisor) AddServer(w Worker) {
	s.servers = append(s.servers, w)
	s.set(w.Name(), "pending")
}

// Stopping reports whether Run's context has ended or a worker has failed:
// the process is draining and should be taken out of service.
func (s *Supervisor) Stopping() bool { return s.stopping.Load() }

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

// Run starts every worker and waits for all to return.
func (s *Supervisor) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopWatch := context.AfterFunc(ctx, func() { s.stopping.Store(true) })
	defer stopWatch()
	// Servers run on their own context, ended once the other workers have
	// returned (after the drain) — or at once when there are none.
	sctx, stopServers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServers()
	var (
		wg, others sync.WaitGroup
		mu         sync.Mutex
		errs       []error
	)
	others.Add(len(s.workers))
	go func() {
		<-ctx.Done()
		others.Wait()
		stopServers()
	}()
	for i, w := range append(append([]Worker{}, s.workers...), s.servers...) {
		server := i >= len(s.workers)
		wctx := ctx
		if server {
			wctx = sctx
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !server {
				defer others.Done()
			}
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
