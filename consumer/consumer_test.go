package consumer

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/dispatcher"
	"github.com/afftok/webhookd/pipeline"
)

type onePipeline struct{ p *pipeline.Compiled }

func (o onePipeline) ForTrigger(string) []*pipeline.Compiled { return []*pipeline.Compiled{o.p} }

// gateExec is a fault-injecting executor: events whose id is in block wait
// until released (or their context ends).
type gateExec struct {
	mu      sync.Mutex
	block   map[string]chan struct{}
	started chan string
	done    chan string
}

func (g *gateExec) Execute(ctx context.Context, _ *pipeline.Compiled, job *dispatcher.Job) dispatcher.Outcome {
	g.started <- job.Event.ID
	g.mu.Lock()
	ch := g.block[job.Event.ID]
	g.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return dispatcher.Outcome{Status: "failed"}
		}
	}
	g.done <- job.Event.ID
	return dispatcher.Outcome{Status: "completed"}
}

// cluster starts a kfake broker with topics ev and dlq, and a client on it.
func cluster(t *testing.T, partitions int32) (*kfake.Cluster, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "ev", "dlq"))
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

func waitCommitted(t *testing.T, adm *kadm.Client, want int64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if committed(t, adm) == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("committed offset %d, want %d", committed(t, adm), want)
}

func TestCommitsOnlyTheFinishedPrefixAndRedeliversUnfinishedWork(t *testing.T) {
	c, cl := cluster(t, 1)
	adm := kadm.NewClient(cl)
	for _, id := range []string{"e0", "e1", "e2"} {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "ev", Value: []byte(`{"id":"` + id + `","type":"click.tracked","data":{"id":"c"}}`)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	p := &pipeline.Compiled{Pipeline: &pipeline.Pipeline{ID: "pipe_1", Status: pipeline.StatusActive, TriggerType: "click"}}
	gate := &gateExec{block: map[string]chan struct{}{"e1": make(chan struct{})}, started: make(chan string, 10), done: make(chan string, 10)}
	start := func() (context.CancelFunc, chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		cons := New(Options{ClientOpts: []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, Group: "g", Topics: []string{"ev"}, DLQTopic: "dlq",
			MaxInFlight: 10, PartitionMaxInFlight: 10, Grace: 200 * time.Millisecond}, onePipeline{p}, gate)
		errc := make(chan error, 1)
		go func() { errc <- cons.Run(ctx) }()
		return cancel, errc
	}
	cancel, errc := start()
	// e0 and e2 finish; e1 is stuck at the receiver.
	finished := map[string]bool{}
	for len(finished) < 2 {
		finished[<-gate.done] = true
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
	close(gate.block["e1"])
	for len(gate.started) > 0 {
		<-gate.started
	}
	cancel, errc = start()
	defer func() { cancel(); <-errc }()
	redelivered := map[string]bool{}
	for len(redelivered) < 2 {
		redelivered[<-gate.done] = true
	}
	if !redelivered["e1"] || !redelivered["e2"] || redelivered["e0"] {
		t.Fatalf("redelivered %v", redelivered)
	}
	waitCommitted(t, adm, 3)
}

type countExec struct {
	mu   sync.Mutex
	seen map[string]int
	done chan struct{}
	want int
}

func (c *countExec) Execute(ctx context.Context, _ *pipeline.Compiled, job *dispatcher.Job) dispatcher.Outcome {
	time.Sleep(time.Millisecond) // keep the window full so fetching pauses
	c.mu.Lock()
	c.seen[job.Event.ID]++
	if len(c.seen) == c.want {
		close(c.done)
	}
	c.mu.Unlock()
	return dispatcher.Outcome{Status: "completed"}
}

// Backpressure pauses and resumes fetching; no record may be handled twice
// within one assignment because of it.
func TestPauseAndResumeNeverHandlesARecordTwice(t *testing.T) {
	c, cl := cluster(t, 2)
	const n = 2000
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: "ev", Partition: int32(i % 2), Value: []byte(fmt.Sprintf(`{"id":"e%d","type":"click.tracked","data":{"id":"c"}}`, i))}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	exec := &countExec{seen: map[string]int{}, done: make(chan struct{}), want: n}
	p := &pipeline.Compiled{Pipeline: &pipeline.Pipeline{ID: "pipe_1", Status: pipeline.StatusActive, TriggerType: "click"}}
	ctx, cancel := context.WithCancel(context.Background())
	cons := New(Options{ClientOpts: []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, Group: "g", Topics: []string{"ev"}, DLQTopic: "dlq",
		MaxInFlight: 8, PartitionMaxInFlight: 4, Grace: time.Second}, onePipeline{p}, exec)
	errc := make(chan error, 1)
	go func() { errc <- cons.Run(ctx) }()
	select {
	case <-exec.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("handled %d of %d", len(exec.seen), n)
	}
	cancel()
	<-errc
	exec.mu.Lock()
	defer exec.mu.Unlock()
	twice := 0
	for _, k := range exec.seen {
		if k > 1 {
			twice++
		}
	}
	if twice > 0 {
		t.Fatalf("%d of %d records were handled more than once", twice, n)
	}
}

// A partition paused by backpressure and then revoked must be fetched again
// when it comes back (kgo keeps pauses across assignments).
func TestPausedPartitionIsFetchedAfterReassignment(t *testing.T) {
	c, member := cluster(t, 1)
	p := &pipeline.Compiled{Pipeline: &pipeline.Pipeline{ID: "pipe_1", Status: pipeline.StatusActive, TriggerType: "click"}}
	exec := &countExec{seen: map[string]int{}, done: make(chan struct{}), want: 1}
	cons := New(Options{ClientOpts: []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, Group: "g", Topics: []string{"ev"}, DLQTopic: "dlq",
		MaxInFlight: 4, PartitionMaxInFlight: 4, Grace: time.Second}, onePipeline{p}, exec)
	// Simulate what backpressure leaves behind: the partition paused in the
	// client, then a (re)assignment.
	member.PauseFetchPartitions(map[string][]int32{"ev": {0}})
	cons.assigned(context.Background(), member, map[string][]int32{"ev": {0}})
	defer cons.stopWorkers(cons.takeAll(), false)
	if paused := member.PauseFetchPartitions(nil); len(paused["ev"]) != 0 {
		t.Fatalf("partition still paused after assignment: %v", paused)
	}
}
