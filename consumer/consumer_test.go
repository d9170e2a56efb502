package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// handlerFunc adapts a function to Handler.
type handlerFunc func(rec *kgo.Record) Work

func (f handlerFunc) Prepare(rec *kgo.Record) Work { return f(rec) }

// cluster starts a kfake broker with topic ev, and a client on it.
func cluster(t *testing.T, partitions int32) (*kfake.Cluster, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "ev"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return c, cl
}

func produceN(t *testing.T, cl *kgo.Client, n int, partitions int32) {
	t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: "ev", Partition: int32(i) % partitions, Value: []byte(fmt.Sprintf("e%d", i))}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func committed(t *testing.T, adm *kadm.Client) int64 {
	t.Helper()
	offs, err := adm.FetchOffsets(context.Background(), "g")
	if err != nil {
		t.Fatal(err)
	}
	o, ok := offs.Lookup("ev", 0)
	if !ok {
		return 0
	}
	return o.At
}

// waitCommitted polls the group's committed offset (a broker-side fact with
// no push signal) until it is want, bounded generously.
func waitCommitted(t *testing.T, adm *kadm.Client, want int64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if committed(t, adm) == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("committed offset %d, want %d", committed(t, adm), want)
}

func start(t *testing.T, c *kfake.Cluster, h Handler, o Options) (context.CancelFunc, chan error) {
	t.Helper()
	o.ClientOpts = append(o.ClientOpts, kgo.SeedBrokers(c.ListenAddrs()...))
	o.Group, o.Topics = "g", []string{"ev"}
	if o.MaxInFlight == 0 {
		o.MaxInFlight, o.PartitionMaxInFlight = 16, 16
	}
	if o.Grace == 0 {
		o.Grace = 2 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	cons := New(o, h)
	errc := make(chan error, 1)
	go func() { errc <- cons.Run(ctx) }()
	return cancel, errc
}

// gate runs one job per record; records whose value is in block wait until
// released (or their context ends).
type gate struct {
	mu    sync.Mutex
	block map[string]chan struct{}
	done  chan string
}

func (g *gate) Prepare(rec *kgo.Record) Work {
	id := string(rec.Value)
	return Work{Jobs: []Job{func(ctx context.Context, _ *kgo.Client) error {
		g.mu.Lock()
		ch := g.block[id]
		g.mu.Unlock()
		if ch != nil {
			select {
			case <-ch:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		g.done <- id
		return nil
	}}}
}

func TestCommitsOnlyTheFinishedPrefixAndRedeliversUnfinishedWork(t *testing.T) {
	c, cl := cluster(t, 1)
	adm := kadm.NewClient(cl)
	produceN(t, cl, 3, 1)
	g := &gate{block: map[string]chan struct{}{"e1": make(chan struct{})}, done: make(chan string, 10)}
	cancel, errc := start(t, c, g, Options{})
	// e0 and e2 finish; e1 is stuck at the receiver.
	finished := map[string]bool{}
	for len(finished) < 2 {
		finished[<-g.done] = true
	}
	if !finished["e0"] || !finished["e2"] {
		t.Fatalf("finished %v", finished)
	}
	// Only e0 may be committed: e2 is done but sits behind unfinished e1.
	waitCommitted(t, adm, 1)
	// Stop while e1 is in flight: the grace period ends, e1 is cancelled and
	// must not count as done.
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got := committed(t, adm); got != 1 {
		t.Fatalf("after shutdown committed %d, want 1", got)
	}
	// A new member of the group redelivers e1 (and e2 behind it).
	close(g.block["e1"])
	cancel, errc = start(t, c, g, Options{})
	defer func() { cancel(); <-errc }()
	redelivered := map[string]bool{}
	for len(redelivered) < 2 {
		redelivered[<-g.done] = true
	}
	if !redelivered["e1"] || !redelivered["e2"] || redelivered["e0"] {
		t.Fatalf("redelivered %v", redelivered)
	}
	waitCommitted(t, adm, 3)
}

// One record's slow delivery holds neither its sibling deliveries nor the
// records behind it: only the commit waits for it.
func TestASlowDeliveryHoldsUpNothingButTheCommit(t *testing.T) {
	c, cl := cluster(t, 1)
	adm := kadm.NewClient(cl)
	produceN(t, cl, 50, 1)
	release := make(chan struct{})
	fast := make(chan string, 200)
	h := handlerFunc(func(rec *kgo.Record) Work {
		id := string(rec.Value)
		jobs := []Job{func(context.Context, *kgo.Client) error { fast <- id; return nil }}
		if id == "e0" {
			jobs = append(jobs, func(ctx context.Context, _ *kgo.Client) error {
				select {
				case <-release:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
		}
		return Work{Jobs: jobs}
	})
	cancel, errc := start(t, c, h, Options{MaxInFlight: 4, PartitionMaxInFlight: 4, Grace: time.Second})
	for range 50 {
		<-fast // every record's fast delivery runs while e0's slow one waits
	}
	// Shutdown commits every mark made; e0 is unfinished, so none may be.
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got := committed(t, adm); got != 0 {
		t.Fatalf("committed %d while e0 was unfinished", got)
	}
	close(release)
	cancel, errc = start(t, c, h, Options{MaxInFlight: 4, PartitionMaxInFlight: 4})
	defer func() { cancel(); <-errc }()
	waitCommitted(t, adm, 50)
}

// Shutdown ends within the grace period even when a job ignores its
// cancellation; the stuck record is not marked.
func TestShutdownIsBoundedWhateverIsStuck(t *testing.T) {
	c, cl := cluster(t, 1)
	adm := kadm.NewClient(cl)
	produceN(t, cl, 2, 1)
	started := make(chan struct{}, 2)
	stuck := make(chan struct{})
	defer close(stuck)
	h := handlerFunc(func(rec *kgo.Record) Work {
		return Work{Jobs: []Job{func(ctx context.Context, _ *kgo.Client) error {
			started <- struct{}{}
			if string(rec.Value) == "e1" {
				<-stuck // ignores ctx
			}
			return nil
		}}}
	})
	cancel, errc := start(t, c, h, Options{Grace: 2 * time.Second})
	<-started
	<-started
	waitCommitted(t, adm, 1)
	begin := time.Now()
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 2*time.Second+2*time.Second { // the grace, and slack for a busy machine
		t.Fatalf("shutdown took %v with a 2s grace", took)
	}
	if got := committed(t, adm); got != 1 {
		t.Fatalf("committed %d; the stuck record must stay unmarked", got)
	}
}

// A job error that is not a cancellation is fatal: the consumer stops and
// reports it, and the record stays unmarked.
func TestFatalJobErrorStopsTheConsumer(t *testing.T) {
	c, cl := cluster(t, 1)
	adm := kadm.NewClient(cl)
	produceN(t, cl, 1, 1)
	boom := errors.New("the DLQ refused a record")
	h := handlerFunc(func(*kgo.Record) Work {
		return Work{Jobs: []Job{func(context.Context, *kgo.Client) error { return boom }}}
	})
	cancel, errc := start(t, c, h, Options{})
	defer cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, boom) {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the consumer did not stop on a fatal job error")
	}
	if got := committed(t, adm); got != 0 {
		t.Fatalf("committed %d", got)
	}
}

// A record is held until it is due; records behind it wait.
func TestRecordsAreHeldUntilDue(t *testing.T) {
	c, cl := cluster(t, 1)
	produceN(t, cl, 2, 1)
	var due time.Time
	ran := make(chan time.Time, 2)
	h := handlerFunc(func(rec *kgo.Record) Work {
		w := Work{Jobs: []Job{func(context.Context, *kgo.Client) error { ran <- time.Now(); return nil }}}
		if string(rec.Value) == "e0" {
			due = time.Now().Add(300 * time.Millisecond) // Prepare runs on the partition's goroutine, before e1's
			w.Due = due
		}
		return w
	})
	cancel, errc := start(t, c, h, Options{})
	defer func() { cancel(); <-errc }()
	for range 2 {
		if at := <-ran; at.Before(due) {
			t.Fatalf("a job ran %v before the held record was due", due.Sub(at))
		}
	}
}

// Backpressure pauses and resumes fetching; no record may be handled twice
// within one assignment because of it.
func TestPauseAndResumeNeverHandlesARecordTwice(t *testing.T) {
	c, cl := cluster(t, 2)
	const n = 2000
	produceN(t, cl, n, 2)
	var mu sync.Mutex
	seen := map[string]int{}
	done := make(chan struct{})
	h := handlerFunc(func(rec *kgo.Record) Work {
		return Work{Jobs: []Job{func(context.Context, *kgo.Client) error {
			time.Sleep(time.Millisecond) // keep slots busy so fetching pauses
			mu.Lock()
			defer mu.Unlock()
			seen[string(rec.Value)]++
			if len(seen) == n {
				close(done)
			}
			return nil
		}}}
	})
	cancel, errc := start(t, c, h, Options{MaxInFlight: 8, PartitionMaxInFlight: 4})
	select {
	case <-done:
	case <-time.After(120 * time.Second):
		t.Fatalf("handled %d of %d", len(seen), n)
	}
	cancel()
	<-errc
	mu.Lock()
	defer mu.Unlock()
	for id, k := range seen {
		if k > 1 {
			t.Fatalf("%s handled %d times", id, k)
		}
	}
}

// A partition paused by backpressure and then revoked must be fetched again
// when it comes back (kgo keeps pauses across assignments).
func TestPausedPartitionIsFetchedAfterReassignment(t *testing.T) {
	_, member := cluster(t, 1)
	cons := New(Options{Group: "g", Topics: []string{"ev"}, MaxInFlight: 4, PartitionMaxInFlight: 4, Grace: time.Second},
		handlerFunc(func(*kgo.Record) Work { return Work{} }))
	member.PauseFetchPartitions(map[string][]int32{"ev": {0}})
	cons.assigned(context.Background(), member, map[string][]int32{"ev": {0}})
	defer cons.stopWorkers(cons.takeAll(), false, time.Now().Add(time.Second))
	if paused := member.PauseFetchPartitions(nil); len(paused["ev"]) != 0 {
		t.Fatalf("partition still paused after assignment: %v", paused)
	}
}

// OnOwned hears how many partitions the consumer owns after its assignment
// and after it gives them up on shutdown (rate limit shares follow it).
func TestOnOwnedFollowsTheAssignment(t *testing.T) {
	c, _ := cluster(t, 3)
	owned := make(chan int, 8)
	cancel, errc := start(t, c, handlerFunc(func(*kgo.Record) Work { return Work{} }), Options{OnOwned: func(n int) { owned <- n }})
	if n := <-owned; n != 3 {
		t.Fatalf("owns %d partitions after the assignment, want 3", n)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	last := -1
	for len(owned) > 0 {
		last = <-owned
	}
	if last != 0 {
		t.Fatalf("owns %d partitions after shutdown, want 0", last)
	}
}
