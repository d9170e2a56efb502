package jobs

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/bus/bustest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// counting is an executor of redrive-shaped jobs: it "handles" items from
// the checkpoint's position on, recording each, and can be held after a
// given item until released.
type counting struct {
	mu      sync.Mutex
	handled []string
	starts  []int // positions it started from
	holdAt  int   // stop and wait after this many items (0: never)
	held    chan struct{}
	release chan struct{}
}

func (c *counting) Execute(ctx context.Context, j *Job, cp *Checkpointer) error {
	c.mu.Lock()
	c.starts = append(c.starts, j.Progress.Position)
	c.mu.Unlock()
	for j.Progress.Position < len(j.Redrive.Items) {
		if err := cp.Cancelled(); err != nil {
			return err
		}
		c.mu.Lock()
		c.handled = append(c.handled, j.Redrive.Items[j.Progress.Position])
		c.mu.Unlock()
		j.Progress.Position++
		j.Progress.Retried++
		if err := cp.Advance(ctx, 1); err != nil {
			return err
		}
		if c.holdAt > 0 && j.Progress.Position == c.holdAt {
			close(c.held)
			select {
			case <-c.release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

type stack struct {
	env   *bustest.Env
	store *Store
	svc   *Service
}

func newStack(t *testing.T) *stack {
	t.Helper()
	env := bustest.Start(t, "", nil)
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, env.Opts...), ConsumeOpts(env.Topics.Jobs)...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	store := NewStore(cl, env.Topics.Jobs, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = store.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &stack{env: env, store: store, svc: &Service{Store: store}}
}

// runner starts a runner on the stack's topic; stop ends it (a shutdown).
func (s *stack) runner(t *testing.T, ex Executor) (stop func()) {
	t.Helper()
	r := &Runner{Store: s.store, GroupOpts: s.env.Opts, Group: "jobs-test", Topic: s.env.Topics.Jobs,
		Executors: map[string]Executor{KindRedrive: ex}, CheckpointEvery: 1, Log: quiet}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// waitState waits (on the store's change signal) until job id is in state.
func (s *stack) waitState(t *testing.T, id, state string) *Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var last *Job
	err := s.store.waitFor(ctx, func() bool {
		j, ok := s.store.jobs[id]
		last = j
		return ok && j.State == state
	})
	if err != nil {
		t.Fatalf("job %s never reached %s; last %+v", id, state, last)
	}
	return last.Clone()
}

// history reads the jobs topic from its start up to job id's record in
// state final.
func (s *stack) history(t *testing.T, id, final string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, s.env.Opts...), ConsumeOpts(s.env.Topics.Jobs)...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []*kgo.Record
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("no %s record for %s on the topic", final, id)
		}
		for _, rec := range fs.Records() {
			out = append(out, rec)
			if j, err := Decode(rec.Value); err == nil && j.ID == id && j.State == final {
				return out
			}
		}
	}
}

func items(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = string(rune('a' + i))
	}
	return out
}

func TestRunnerRunsAJobToDoneCheckpointingOnTheTopic(t *testing.T) {
	s := newStack(t)
	ex := &counting{}
	s.runner(t, ex)
	j, err := s.svc.CreateRedrive(context.Background(), Redrive{Items: items(5), RatePerSecond: 10})
	if err != nil {
		t.Fatal(err)
	}
	done := s.waitState(t, j.ID, StateDone)
	if done.Progress.Position != 5 || done.Progress.Retried != 5 || len(ex.handled) != 5 {
		t.Fatalf("done %+v, handled %v", done.Progress, ex.handled)
	}
	// The topic holds the job's history: queued, running, a checkpoint per
	// item (CheckpointEvery 1), done; positions never go back.
	var states []string
	last := -1
	for _, rec := range s.history(t, j.ID, StateDone) {
		r, err := Decode(rec.Value)
		if err != nil {
			t.Fatal(err)
		}
		if r.Progress.Position < last {
			t.Fatalf("checkpoint went back from %d to %d", last, r.Progress.Position)
		}
		last = r.Progress.Position
		if len(states) == 0 || states[len(states)-1] != r.State {
			states = append(states, r.State)
		}
	}
	if want := []string{StateQueued, StateRunning, StateDone}; !equal(states, want) {
		t.Fatalf("states on the topic %v, want %v", states, want)
	}
}

func TestAStoppedRunnersJobIsResumedFromItsCheckpointByTheNext(t *testing.T) {
	s := newStack(t)
	first := &counting{holdAt: 3, held: make(chan struct{}), release: make(chan struct{})}
	stopFirst := s.runner(t, first)
	j, err := s.svc.CreateRedrive(context.Background(), Redrive{Items: items(8)})
	if err != nil {
		t.Fatal(err)
	}
	<-first.held
	stopFirst() // the replica goes away mid-job
	if got := s.waitState(t, j.ID, StateRunning); got.Progress.Position != 3 {
		t.Fatalf("checkpoint after the stop: %+v", got.Progress)
	}
	second := &counting{}
	s.runner(t, second)
	done := s.waitState(t, j.ID, StateDone)
	if !equal(second.starts, []int{3}) || !equal(append(first.handled, second.handled...), items(8)) || done.Progress.Retried != 8 {
		t.Fatalf("first handled %v, second started at %v and handled %v; done %+v", first.handled, second.starts, second.handled, done.Progress)
	}
}

func TestACancelledJobStopsAndShowsCancelled(t *testing.T) {
	s := newStack(t)
	ex := &counting{holdAt: 2, held: make(chan struct{}), release: make(chan struct{})}
	s.runner(t, ex)
	j, err := s.svc.CreateRedrive(context.Background(), Redrive{Items: items(6)})
	if err != nil {
		t.Fatal(err)
	}
	<-ex.held
	got, err := s.svc.Cancel(context.Background(), j.ID)
	if err != nil || got.State != StateCancelled {
		t.Fatalf("cancel: %v %+v", err, got)
	}
	close(ex.release)
	done := s.waitState(t, j.ID, StateCancelled)
	if done.Progress.Position != 2 || len(ex.handled) != 2 {
		t.Fatalf("went on after the cancel: %+v, handled %v", done.Progress, ex.handled)
	}
	if _, err := s.svc.Cancel(context.Background(), j.ID); err != nil {
		t.Fatalf("cancelling a cancelled job: %v", err)
	}
	if _, err := s.svc.Get(context.Background(), "rdr_nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown job: %v", err)
	}
	// A finished job cannot be cancelled.
	k, err := s.svc.CreateRedrive(context.Background(), Redrive{Items: items(1)})
	if err != nil {
		t.Fatal(err)
	}
	s.waitState(t, k.ID, StateDone)
	if _, err := s.svc.Cancel(context.Background(), k.ID); !errors.Is(err, ErrFinished) {
		t.Fatalf("cancelling a done job: %v", err)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
