package analytics

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// cadenceStore records the sink's calls: each base insert's rows, and for
// each feed its rows and the group's committed offsets at that moment.
type cadenceStore struct {
	SinkStore
	adm   *kadm.Client
	group string

	mu    sync.Mutex
	bases []int // rows of each base insert
	feeds []cadenceFeed
}

type cadenceFeed struct {
	rows int
	// low is the lowest offset fed per topic; committed the group's
	// committed offset per topic (-1: none) as the feed began.
	low, committed map[string]int64
}

func (c *cadenceStore) InsertRecords(ctx context.Context, table string, recs [][]byte) error {
	c.mu.Lock()
	c.bases = append(c.bases, len(recs))
	c.mu.Unlock()
	return c.SinkStore.InsertRecords(ctx, table, recs)
}

func (c *cadenceStore) InsertDeadLetters(ctx context.Context, ds []DeadLetterRow) error {
	c.mu.Lock()
	c.bases = append(c.bases, len(ds))
	c.mu.Unlock()
	return c.SinkStore.InsertDeadLetters(ctx, ds)
}

func (c *cadenceStore) Feed(ctx context.Context, b *Batch) error {
	f := cadenceFeed{low: map[string]int64{}, committed: map[string]int64{}}
	for _, os := range [][]Origin{b.AttemptOrigins, b.AttemptRecOrigins, b.ExecutionOrigins, b.ExecutionRecOrigins, b.DeadOrigins} {
		for _, o := range os {
			f.rows++
			if low, ok := f.low[o.Topic]; !ok || o.Offset < low {
				f.low[o.Topic] = o.Offset
			}
		}
	}
	offs, err := c.adm.FetchOffsets(ctx, c.group)
	if err != nil {
		return err
	}
	for topic := range f.low {
		f.committed[topic] = -1
		if o, ok := offs.Lookup(topic, 0); ok {
			f.committed[topic] = o.At
		}
	}
	c.mu.Lock()
	c.feeds = append(c.feeds, f)
	c.mu.Unlock()
	return c.SinkStore.Feed(ctx, b)
}

// cadenceRig is a broker holding the workload's records and an admin
// client on it.
func cadenceRig(t *testing.T) (opts []kgo.Opt, adm *kadm.Client, recs int) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, wlExecTopic, wlDLQTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	opts = []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	prod, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	for _, r := range workload() {
		v, _ := json.Marshal(r.value)
		if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: r.topic, Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	return opts, kadm.NewClient(prod), len(workload())
}

// waitCommitted waits for the group's commits to reach the end of both
// topics (everything written, fed and committed), or for run to end.
func waitCommitted(t *testing.T, ctx context.Context, adm *kadm.Client, group string, recs int, done <-chan error) {
	t.Helper()
	for {
		offs, err := adm.FetchOffsets(ctx, group)
		if err == nil {
			execs, _ := offs.Lookup(wlExecTopic, 0)
			dead, _ := offs.Lookup(wlDLQTopic, 0)
			if execs.At == int64(recs-1) && dead.At == 1 {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the sink did not commit everything: %v, %v", offs, err)
		case err := <-done:
			t.Fatalf("the sink stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// With FeedInterval, batches go to the base tables one by one and are fed
// together: here, with an hour's interval, every feedBatches batches (the
// memory bound) and then, once the sink has caught up, the rest at once.
// No record is committed before the feed that counted it, and the
// statistics are those of the workload, once.
func TestSinkFeedsTheAggregatesAtTheirOwnCadence(t *testing.T) {
	st := openTestStore(t, "cadence")
	opts, adm, recs := cadenceRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := &cadenceStore{SinkStore: st, adm: adm, group: "analytics"}
	const batch = 2
	s := NewSink(SinkOptions{ClientOpts: opts, Group: "analytics", ExecutionsTopic: wlExecTopic, DLQTopic: wlDLQTopic,
		BatchSize: batch, FlushInterval: 50 * time.Millisecond, FeedInterval: time.Hour}, cs)
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(sctx) }()
	waitCommitted(t, ctx, adm, "analytics", recs, done)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkWorkload(t, st)

	cs.mu.Lock()
	defer cs.mu.Unlock()
	based, fed := 0, 0
	for _, n := range cs.bases {
		based += n
	}
	for i, f := range cs.feeds {
		fed += f.rows
		for topic, low := range f.low {
			// committed is the next offset to read: below or at the
			// lowest offset this feed counts.
			if c := f.committed[topic]; c > low {
				t.Errorf("feed %d counts %s from offset %d, but the group had committed up to %d before it", i, topic, low, c)
			}
		}
	}
	if based != recs || fed != recs {
		t.Errorf("%d rows in base inserts, %d fed; want %d each", based, fed, recs)
	}
	// Base inserts a batch each (an attempts and an executions insert for
	// most): the feeds are fewer, each of up to feedBatches batches.
	batches := (recs + batch - 1) / batch
	feedCalls := len(cs.feeds)
	if feedCalls >= len(cs.bases) || feedCalls > 3*((batches+feedBatches-1)/feedBatches+1) {
		t.Errorf("%d feed calls for %d base inserts of %d batches: not fed at its own cadence", feedCalls, len(cs.bases), batches)
	}
	for i, f := range cs.feeds {
		if f.rows > feedBatches*batch {
			t.Errorf("feed %d has %d rows, more than %d batches of %d", i, f.rows, feedBatches, batch)
		}
	}
	t.Logf("%d records: %d base inserts, %d feed calls", recs, len(cs.bases), feedCalls)
}

// A sink that stops (crashes) with batches in the base tables but not fed
// has committed none of them: the next one reads them again, writes them
// to the base tables again (readers see one row per key) and feeds them
// once.
func TestSinkCrashWithUnfedBatchesKeepsStatsExact(t *testing.T) {
	st := openTestStore(t, "cadencecrash")
	opts, adm, recs := cadenceRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	so := SinkOptions{ClientOpts: opts, Group: "analytics", ExecutionsTopic: wlExecTopic, DLQTopic: wlDLQTopic,
		BatchSize: 2, FlushInterval: time.Hour, FeedInterval: time.Hour}

	// First life: stops after its third batch is in the base tables (the
	// feed waits for a fourth).
	first := NewSink(so, st)
	writes := 0
	first.crashAfterInsert = func() bool { writes++; return writes == 3 }
	if err := first.Run(ctx); !errors.Is(err, errCrashed) {
		t.Fatalf("first sink: %v", err)
	}
	if rows, err := st.Rows(ctx, "attempts"); err != nil || len(rows) == 0 {
		t.Fatalf("the first sink wrote no attempts to the logs: %d, %v", len(rows), err)
	}
	if sum, err := st.Stats(ctx, Range{From: wlT0, To: wlT0.Add(time.Hour)}); err != nil || sum.Executions != 0 || sum.Finished != 0 {
		t.Fatalf("stats before any feed = %+v, %v; want nothing counted", sum, err)
	}
	offs, err := adm.FetchOffsets(ctx, "analytics")
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{wlExecTopic, wlDLQTopic} {
		if o, ok := offs.Lookup(topic, 0); ok && o.At >= 0 {
			t.Fatalf("%s committed at %d before anything was fed", topic, o.At)
		}
	}

	// Second life: from the start again; caught up, it feeds and commits.
	so.FlushInterval = 50 * time.Millisecond
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- NewSink(so, st).Run(sctx) }()
	waitCommitted(t, ctx, adm, "analytics", recs, done)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	logs, total, err := st.RecentExecutions(context.Background(), ExecutionFilter{})
	if err != nil || total != 5 || len(logs) != 5 {
		t.Fatalf("logs: %d of %d, %v", len(logs), total, err)
	}
	checkWorkload(t, st)
}

// slowAtStopStore, once slow is set, takes each base insert until just
// before its deadline (then writes it) and holds each feed until its
// deadline: a ClickHouse that slowed down as webhookd stops.
type slowAtStopStore struct {
	SinkStore
	slow atomic.Bool
}

func (s *slowAtStopStore) InsertRecords(ctx context.Context, table string, recs [][]byte) error {
	if d, ok := ctx.Deadline(); ok && s.slow.Load() {
		time.Sleep(time.Until(d) - 20*time.Millisecond)
	}
	return s.SinkStore.InsertRecords(ctx, table, recs)
}

func (s *slowAtStopStore) Feed(ctx context.Context, b *Batch) error {
	if s.slow.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return s.SinkStore.Feed(ctx, b)
}

// At shutdown the last batch's write and the pending batches' feed share
// one deadline: however slow ClickHouse is, the sink stops within its
// grace period (each used to get three quarters of it).
func TestSinkStopsWithinItsGraceWithBatchesPending(t *testing.T) {
	st := openTestStore(t, "cadencestop")
	opts, _, _ := cadenceRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ss := &slowAtStopStore{SinkStore: st}
	const grace = 2 * time.Second
	s := NewSink(SinkOptions{ClientOpts: opts, Group: "analytics", ExecutionsTopic: wlExecTopic, DLQTopic: wlDLQTopic,
		BatchSize: 2, FlushInterval: time.Hour, FeedInterval: time.Hour, Grace: grace}, ss)
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(sctx) }()
	// Batches reach the base tables; their feed waits (an hour, or four).
	for {
		rows, err := st.Rows(ctx, "executions")
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the sink stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	ss.slow.Store(true)
	start := time.Now()
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > grace {
		t.Fatalf("the sink took %v to stop, more than its %v grace", took, grace)
	}
}
