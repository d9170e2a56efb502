package autodisable

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/afftok/webhookd/analytics"
	"github.com/afftok/webhookd/opevents"
	"github.com/afftok/webhookd/pipeline"
	"github.com/afftok/webhookd/registry"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// log is the shared pipelines topic: revisions with compare-and-set, as
// every replica's registry applies them.
type log struct {
	mu   sync.Mutex
	cur  map[string]pipeline.Pipeline
	puts int // accepted writes
}

// view is one replica's registry: a copy of the log as of its last Sync or
// its own write.
type view struct {
	log  *log
	mu   sync.Mutex
	seen map[string]pipeline.Pipeline
}

func newLog(ps ...pipeline.Pipeline) *log {
	l := &log{cur: map[string]pipeline.Pipeline{}}
	for _, p := range ps {
		l.cur[p.ID] = p
	}
	return l
}

func (l *log) replica() *view {
	v := &view{log: l}
	_ = v.Sync(context.Background())
	return v
}

func (l *log) get(id string) pipeline.Pipeline {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur[id]
}

// edit is an operator's write (what the admin API does).
func (l *log) edit(id string, f func(p *pipeline.Pipeline)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.cur[id]
	f(&p)
	p.Revision++
	l.cur[id] = p
}

func compiled(p pipeline.Pipeline) *pipeline.Compiled {
	// A deep copy, as the registry decodes every record anew.
	b, _ := json.Marshal(p)
	var c pipeline.Pipeline
	_ = json.Unmarshal(b, &c)
	return &pipeline.Compiled{Pipeline: &c}
}

func (v *view) Sync(context.Context) error {
	v.log.mu.Lock()
	defer v.log.mu.Unlock()
	v.mu.Lock()
	defer v.mu.Unlock()
	v.seen = map[string]pipeline.Pipeline{}
	for id, p := range v.log.cur {
		v.seen[id] = p
	}
	return nil
}

func (v *view) List() []*pipeline.Compiled {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []*pipeline.Compiled
	for _, p := range v.seen {
		out = append(out, compiled(p))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (v *view) Get(id string) (*pipeline.Compiled, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	p, ok := v.seen[id]
	if !ok {
		return nil, false
	}
	return compiled(p), true
}

func (v *view) Put(_ context.Context, p *pipeline.Pipeline, base int64) error {
	v.log.mu.Lock()
	defer v.log.mu.Unlock()
	if v.log.cur[p.ID].Revision != base {
		return registry.ErrConflict
	}
	v.log.cur[p.ID] = *compiled(*p).Pipeline
	v.log.puts++
	v.mu.Lock()
	v.seen[p.ID] = v.log.cur[p.ID]
	v.mu.Unlock()
	return nil
}

// attempts is the execution log: attempt outcomes by pipeline.
type attempts struct {
	mu  sync.Mutex
	log map[string][]attempt
}

type attempt struct {
	at time.Time
	ok bool
}

func (a *attempts) add(id string, at time.Time, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.log == nil {
		a.log = map[string][]attempt{}
	}
	a.log[id] = append(a.log[id], attempt{at, ok})
}

func (a *attempts) AttemptOutcomes(_ context.Context, since map[string]time.Time) (map[string]analytics.Outcomes, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]analytics.Outcomes{}
	for id, t := range since {
		for _, x := range a.log[id] {
			if x.at.Before(t) {
				continue
			}
			o := out[id]
			if x.ok {
				o.Successes++
			} else {
				o.Failures++
			}
			out[id] = o
		}
	}
	return out, nil
}

func (a *attempts) FailureStreak(_ context.Context, id string, since time.Time) (analytics.FailureStreak, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var fs analytics.FailureStreak
	for _, x := range a.log[id] { // in time order
		if x.at.Before(since) {
			continue
		}
		if x.ok {
			fs = analytics.FailureStreak{LastSuccess: x.at}
			continue
		}
		if fs.Failures == 0 {
			fs.First = x.at
		}
		fs.Failures++
		fs.Last = x.at
	}
	return fs, nil
}

type events struct {
	mu  sync.Mutex
	got []opevents.Event
}

func (e *events) Emit(_ context.Context, ev opevents.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, ev)
	return nil
}

func (e *events) list() []opevents.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]opevents.Event(nil), e.got...)
}

func newPipeline(id string, created time.Time, windowSeconds *int) pipeline.Pipeline {
	return pipeline.Pipeline{ID: id, Name: "P " + id, TriggerType: "conversion", Status: pipeline.StatusActive,
		Steps:     []pipeline.Step{{ID: "step_1", Order: 1, URL: "https://example.com/x", Method: "POST"}},
		CreatedAt: created, UpdatedAt: created, Revision: 1, AutoDisableAfterSeconds: windowSeconds}
}

func seconds(n int) *int { return &n }

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	now := t0.Add(72 * time.Hour)
	streak := func(n int64, first time.Time) analytics.FailureStreak {
		return analytics.FailureStreak{Failures: n, First: first, Last: now}
	}
	cases := []struct {
		name   string
		window time.Duration
		start  time.Time
		fs     analytics.FailureStreak
		want   bool
	}{
		{"ten failures spanning the window", 72 * time.Hour, t0, streak(10, t0), true},
		{"nine failures are not enough", 72 * time.Hour, t0, streak(9, t0), false},
		{"first failure a second too recent", 72 * time.Hour, t0, streak(50, t0.Add(time.Second)), false},
		{"window 0 means never", 0, t0, streak(1000, t0), false},
		{"no failure at all", 72 * time.Hour, t0, analytics.FailureStreak{LastSuccess: t0}, false},
		{"failures before a re-enable do not count", 72 * time.Hour, t0.Add(time.Hour), streak(50, t0), false},
		{"a short override", 10 * time.Second, t0, streak(12, now.Add(-10*time.Second)), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Decide(c.window, c.start, c.fs, now); got != c.want {
				t.Fatalf("Decide = %v, want %v", got, c.want)
			}
		})
	}
}

// A pipeline failing every 5 minutes with a one-hour window is disabled
// once its first failure is an hour old (within one sweep period: 6 min),
// with one operator event; the clock is synctest's.
func TestFailingPipelineIsDisabledOnceTheWindowHasElapsed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		l := newLog(newPipeline("pipe_a", t0, seconds(3600)), newPipeline("pipe_healthy", t0, seconds(3600)))
		var att attempts
		var ev events
		c := &Checker{Pipes: l.replica(), Health: &att, Events: &ev, Default: 72 * time.Hour, Log: quiet}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- c.Run(ctx) }()

		first := t0.Add(time.Minute)
		time.Sleep(time.Minute)
		var disabledSeen time.Time
		for range 30 { // 2.5 h of attempts
			att.add("pipe_a", time.Now(), false)
			att.add("pipe_healthy", time.Now(), true)
			time.Sleep(5 * time.Minute)
			synctest.Wait()
			if l.get("pipe_a").Status == pipeline.StatusDisabled && disabledSeen.IsZero() {
				disabledSeen = time.Now()
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		p := l.get("pipe_a")
		if p.Status != pipeline.StatusDisabled || p.DisabledAt == nil || p.DisabledReason == "" {
			t.Fatalf("pipeline %+v is not disabled with a reason and a time", p)
		}
		if elapsed := p.DisabledAt.Sub(first); elapsed < time.Hour || elapsed > time.Hour+6*time.Minute {
			t.Errorf("disabled %v after the first failure; want the window (1h) plus at most one sweep period (6m)", elapsed)
		}
		if h := l.get("pipe_healthy"); h.Status != pipeline.StatusActive {
			t.Errorf("healthy pipeline is %s", h.Status)
		}
		got := ev.list()
		if len(got) != 1 || got[0].Type != opevents.TypeAutoDisabled || got[0].PipelineID != "pipe_a" || got[0].Failures < MinFailures ||
			got[0].Revision != p.Revision || got[0].ID != opevents.ID(opevents.TypeAutoDisabled, "pipe_a", p.Revision) {
			t.Fatalf("events %+v", got)
		}
		if l.puts != 1 {
			t.Errorf("%d writes, want 1", l.puts)
		}
	})
}

func TestASuccessRestartsTheStreak(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	l := newLog(newPipeline("pipe_a", t0, nil))
	var att attempts
	for i := range 100 { // one failure an hour, but a success at hour 50
		att.add("pipe_a", t0.Add(time.Duration(i)*time.Hour), i == 50)
	}
	now := t0.Add(100 * time.Hour)
	c := &Checker{Pipes: l.replica(), Health: &att, Events: &events{}, Default: 72 * time.Hour, Log: quiet, Now: func() time.Time { return now }}
	if got, err := c.Sweep(t.Context()); err != nil || len(got) != 0 {
		t.Fatalf("disabled %v (err %v) with a success 50 h ago and a 72 h window", got, err)
	}
	now = t0.Add((51 + 72) * time.Hour)
	att.add("pipe_a", now.Add(-time.Minute), false)
	if got, err := c.Sweep(t.Context()); err != nil || len(got) != 1 {
		t.Fatalf("not disabled 72 h after the first failure following the success: %v, %v", got, err)
	}
}

func TestReenablingRestartsTheStreak(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	l := newLog(newPipeline("pipe_a", t0, seconds(600)))
	var att attempts
	for i := range 20 {
		att.add("pipe_a", t0.Add(time.Duration(i)*time.Minute), false)
	}
	now := t0.Add(20 * time.Minute)
	ev := &events{}
	c := &Checker{Pipes: l.replica(), Health: &att, Events: ev, Default: 72 * time.Hour, Log: quiet, Now: func() time.Time { return now }}
	if got, _ := c.Sweep(t.Context()); len(got) != 1 {
		t.Fatalf("not disabled: %v", got)
	}
	// The operator sets it active again (what a PUT of status active does).
	l.edit("pipe_a", func(p *pipeline.Pipeline) { p.SetStatus(pipeline.StatusActive, now) })
	if p := l.get("pipe_a"); p.DisabledAt != nil || p.DisabledReason != "" || p.ReenabledAt == nil {
		t.Fatalf("re-enabled pipeline %+v", p)
	}
	_ = c.Pipes.Sync(t.Context())
	for i := range 9 { // failures continue, but the window restarts now
		att.add("pipe_a", now.Add(time.Duration(i+1)*time.Minute), false)
	}
	now = now.Add(9*time.Minute + 30*time.Second)
	if got, _ := c.Sweep(t.Context()); len(got) != 0 {
		t.Fatalf("disabled again %v after the re-enable, before its window", got)
	}
	for i := 9; i < 12; i++ {
		att.add("pipe_a", t0.Add(20*time.Minute+time.Duration(i+1)*time.Minute), false)
	}
	now = t0.Add(20*time.Minute + 12*time.Minute)
	if got, _ := c.Sweep(t.Context()); len(got) != 1 {
		t.Fatalf("not disabled a window after the re-enable: %v", got)
	}
	if n := len(ev.list()); n != 2 {
		t.Fatalf("%d events, want 2 (one per disable)", n)
	}
}

// Two replicas that both judge the pipeline on the same revision: exactly
// one disable is written and one event produced.
func TestReplicasDecidingAtOnceDisableOnceWithOneEvent(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	l := newLog(newPipeline("pipe_a", t0, seconds(600)))
	var att attempts
	for i := range 20 {
		att.add("pipe_a", t0.Add(time.Duration(i)*time.Minute), false)
	}
	now := func() time.Time { return t0.Add(20 * time.Minute) }
	ev := &events{}
	a := &Checker{Pipes: l.replica(), Health: &att, Events: ev, Default: 72 * time.Hour, Log: quiet, Now: now}
	b := &Checker{Pipes: l.replica(), Health: &att, Events: ev, Default: 72 * time.Hour, Log: quiet, Now: now}
	var wg sync.WaitGroup
	var na, nb []string
	wg.Go(func() { na, _ = a.Sweep(t.Context()) })
	wg.Go(func() { nb, _ = b.Sweep(t.Context()) })
	wg.Wait()
	if len(na)+len(nb) != 1 || l.puts != 1 || len(ev.list()) != 1 {
		t.Fatalf("disables %v + %v, writes %d, events %d; want one of each", na, nb, l.puts, len(ev.list()))
	}
	// And the replica that has not seen the disable yet (stale view) loses
	// its compare-and-set, re-reads, and stops.
	stale := l.replica()
	stale.seen["pipe_a"] = newPipeline("pipe_a", t0, seconds(600))
	c := &Checker{Pipes: stale, Health: &att, Events: ev, Default: 72 * time.Hour, Log: quiet, Now: now}
	if got, err := c.Sweep(t.Context()); err != nil || len(got) != 0 {
		t.Fatalf("stale replica: disabled %v, err %v", got, err)
	}
	if l.puts != 1 || len(ev.list()) != 1 {
		t.Fatalf("after the stale replica: writes %d, events %d", l.puts, len(ev.list()))
	}
}

// An operator's edit that lands between the decision and the write is kept:
// the disable is applied over it.
func TestAConcurrentOperatorEditIsKept(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	l := newLog(newPipeline("pipe_a", t0, seconds(600)))
	var att attempts
	for i := range 20 {
		att.add("pipe_a", t0.Add(time.Duration(i)*time.Minute), false)
	}
	v := l.replica()
	l.edit("pipe_a", func(p *pipeline.Pipeline) { p.Name = "renamed by an operator" }) // v has not seen it
	c := &Checker{Pipes: v, Health: &att, Events: &events{}, Default: 72 * time.Hour, Log: quiet, Now: func() time.Time { return t0.Add(20 * time.Minute) }}
	if got, err := c.Sweep(t.Context()); err != nil || len(got) != 1 {
		t.Fatalf("disabled %v, err %v", got, err)
	}
	if p := l.get("pipe_a"); p.Name != "renamed by an operator" || p.Status != pipeline.StatusDisabled || p.Revision != 3 {
		t.Fatalf("pipeline %+v", p)
	}
	// But an operator's re-enable or pause in between wins over the disable.
	l.edit("pipe_a", func(p *pipeline.Pipeline) { p.SetStatus(pipeline.StatusActive, t0.Add(20*time.Minute)) })
	_ = v.Sync(t.Context())
	l3 := l.get("pipe_a")
	l3.ReenabledAt = nil // v still sees the streak as it was
	v.seen["pipe_a"] = l3
	l.edit("pipe_a", func(p *pipeline.Pipeline) { p.SetStatus(pipeline.StatusPaused, t0.Add(20*time.Minute)) })
	if got, err := c.Sweep(t.Context()); err != nil || len(got) != 0 {
		t.Fatalf("disabled %v over a pause, err %v", got, err)
	}
	if p := l.get("pipe_a"); p.Status != pipeline.StatusPaused {
		t.Fatalf("status %s, want the operator's paused", p.Status)
	}
}
