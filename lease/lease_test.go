package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

const topic = "webhooks.leases"

// broker starts kfake with the one-partition lease topic; it returns the
// options that reach it and a client for the test's own records.
func broker(t *testing.T) ([]kgo.Opt, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	cl, err := kgo.NewClient(append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	return opts, cl
}

// appendRecord writes a lease record as another (dead) replica would have.
func appendRecord(t *testing.T, cl *kgo.Client, name string, rec record) int64 {
	t.Helper()
	v, _ := json.Marshal(rec)
	r := &kgo.Record{Topic: topic, Partition: 0, Key: []byte(name), Value: v}
	if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return r.Offset
}

// Replicas contending at once (each its own client, as separate processes
// would have) hold the lease one at a time, and every one gets it.
func TestContendersHoldTheLeaseOneAtATime(t *testing.T) {
	opts, _ := broker(t)
	const n = 6
	var inside, most, turns atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := New(Options{ClientOpts: opts, Topic: topic, Name: "schema/webhookd", Owner: fmt.Sprintf("replica-%d", i), TTL: 10 * time.Second})
			held, release, err := l.Acquire(ctx)
			if err != nil {
				errs <- err
				return
			}
			defer release()
			now := inside.Add(1)
			for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
			}
			// Work that takes a while, so overlaps would show.
			time.Sleep(20 * time.Millisecond)
			if held.Err() != nil {
				errs <- fmt.Errorf("replica-%d lost the lease while working: %v", i, context.Cause(held))
			}
			inside.Add(-1)
			turns.Add(1)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if most.Load() != 1 || turns.Load() != n {
		t.Errorf("at most %d holders at once (want 1), %d of %d turns", most.Load(), turns.Load(), n)
	}
}

// A holder killed without releasing blocks the others for the TTL, not for
// ever: a waiter presumes it dead and supersedes it. Its late renewal then
// changes nothing.
func TestADeadHoldersLeaseIsTakenOverAfterTheTTL(t *testing.T) {
	opts, cl := broker(t)
	const name = "schema/webhookd"
	appendRecord(t, cl, name, record{Op: opClaim, Token: "dead", Owner: "killed-replica"})
	const ttl = 300 * time.Millisecond
	l := New(Options{ClientOpts: opts, Topic: topic, Name: name, Owner: "survivor", TTL: ttl})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	held, release, err := l.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if took := time.Since(start); took < ttl {
		t.Errorf("took over after %v, before the TTL %v", took, ttl)
	}
	// The dead replica's renewal, arriving late, is not a holder's.
	appendRecord(t, cl, name, record{Op: opRenew, Token: "dead", Owner: "killed-replica"})
	st := readState(t, opts, name)
	if st.owner != "survivor" || held.Err() != nil {
		t.Errorf("holder %q after the late renewal; held: %v", st.owner, context.Cause(held))
	}
}

// A holder superseded (another replica presumed it dead, and it wrote nothing
// since) learns it from the log: its context ends with ErrLost.
func TestAHolderSupersededLosesItsContext(t *testing.T) {
	opts, cl := broker(t)
	const name = "schema/webhookd"
	l := New(Options{ClientOpts: opts, Topic: topic, Name: name, Owner: "slow", TTL: time.Minute})
	held, release, err := l.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	st := readState(t, opts, name)
	appendRecord(t, cl, name, record{Op: opClaim, Token: "other", Owner: "impatient", Supersedes: st.holder, After: st.last})
	select {
	case <-held.Done():
		if !errors.Is(context.Cause(held), ErrLost) || !strings.Contains(context.Cause(held).Error(), "impatient") {
			t.Errorf("cause %v", context.Cause(held))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the superseded holder's context did not end")
	}
}

// A claim superseding a holder that has renewed since loses.
func TestALateSupersedingClaimLoses(t *testing.T) {
	st := &state{name: "n", last: -1}
	rec := func(off int64, r record) *kgo.Record {
		v, _ := json.Marshal(r)
		return &kgo.Record{Key: []byte("n"), Value: v, Offset: off}
	}
	now := time.Now()
	st.apply(rec(0, record{Op: opClaim, Token: "a", Owner: "A"}), now)
	st.apply(rec(1, record{Op: opClaim, Token: "b", Owner: "B"}), now) // a is alive: ignored
	st.apply(rec(2, record{Op: opRenew, Token: "a"}), now)
	st.apply(rec(3, record{Op: opClaim, Token: "c", Owner: "C", Supersedes: "a", After: 0}), now) // saw only offset 0
	if st.owner != "A" {
		t.Fatalf("holder %s after a stale superseding claim", st.owner)
	}
	st.apply(rec(4, record{Op: opClaim, Token: "c", Owner: "C", Supersedes: "a", After: 2}), now)
	st.apply(rec(5, record{Op: opClaim, Token: "d", Owner: "D", Supersedes: "a", After: 2}), now) // second: a is no longer the holder
	if st.owner != "C" {
		t.Fatalf("holder %s, want C", st.owner)
	}
	st.apply(rec(6, record{Op: opRelease, Token: "a"}), now) // not the holder's: ignored
	st.apply(&kgo.Record{Key: []byte("other"), Value: []byte(`{"op":"release","token":"c"}`), Offset: 7}, now)
	if st.owner != "C" {
		t.Fatalf("holder %s after others' releases", st.owner)
	}
	st.apply(rec(8, record{Op: opRelease, Token: "c"}), now)
	if st.holder != "" {
		t.Fatalf("holder %s after its release", st.owner)
	}
}

// The wait is bounded by the caller's context, and the error names the
// holder waited for.
func TestAcquireGivesUpNamingTheHolder(t *testing.T) {
	opts, cl := broker(t)
	const name = "schema/webhookd"
	appendRecord(t, cl, name, record{Op: opClaim, Token: "busy", Owner: "migrating-replica"})
	// The deadline passes once the waiter is waiting for the holder (its
	// log says so), not after a guessed time: on a loaded machine its
	// claim and read could take longer than any guess.
	waiting := make(chan struct{})
	var once sync.Once
	log := slog.New(onMessage{"waiting for the lease", func() { once.Do(func() { close(waiting) }) }})
	l := New(Options{ClientOpts: opts, Topic: topic, Name: name, Owner: "waiter", TTL: time.Minute, Log: log})
	ctx := &expiring{Context: context.Background(), done: make(chan struct{})}
	go func() {
		select {
		case <-waiting:
		case <-time.After(time.Minute): // bounded: the assertion below then fails
		}
		close(ctx.done)
	}()
	_, _, err := l.Acquire(ctx)
	if err == nil || !strings.Contains(err.Error(), "migrating-replica") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

// expiring is a context whose deadline passes when done is closed.
type expiring struct {
	context.Context
	done chan struct{}
}

func (e *expiring) Done() <-chan struct{} { return e.done }

func (e *expiring) Err() error {
	select {
	case <-e.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// onMessage is a slog handler that calls f for each record with message msg.
type onMessage struct {
	msg string
	f   func()
}

func (h onMessage) Enabled(context.Context, slog.Level) bool { return true }

func (h onMessage) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.f()
	}
	return nil
}

func (h onMessage) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h onMessage) WithGroup(string) slog.Handler      { return h }

// readState reads the whole lease topic as a replica would.
func readState(t *testing.T, opts []kgo.Opt, name string) *state {
	t.Helper()
	cl, err := kgo.NewClient(append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	st := &state{name: name, last: -1}
	for st.next < end.Offset {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("reading the lease topic timed out")
		}
		fs.EachRecord(func(r *kgo.Record) { st.apply(r, time.Now()) })
	}
	return st
}

// Records on the topic are read from other processes: any value is applied
// or ignored, never a panic, and the holder is always a token some claim
// carried.
func FuzzApply(f *testing.F) {
	f.Add([]byte(`{"op":"claim","token":"a","owner":"A"}`), []byte(`{"op":"claim","token":"b","supersedes":"a","after":0}`), []byte(`{"op":"release","token":"b"}`))
	f.Add([]byte(`{"op":"renew","token":"x"}`), []byte(`not json`), []byte(`{"op":"claim","token":""}`))
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		st := &state{name: "n", last: -1}
		claimed := map[string]bool{"": true}
		for i, v := range [][]byte{a, b, c, a, c} {
			var r record
			if json.Unmarshal(v, &r) == nil && r.Op == opClaim {
				claimed[r.Token] = true
			}
			st.apply(&kgo.Record{Key: []byte("n"), Value: v, Offset: int64(i)}, time.Now())
			if !claimed[st.holder] || st.next != int64(i+1) {
				t.Fatalf("after %q: holder %q, next %d", v, st.holder, st.next)
			}
		}
	})
}
