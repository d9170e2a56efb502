package registry

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

	"github.com/afftok/webhookd/pipeline"
)

func cluster(t *testing.T, topics ...string) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func next(cur *pipeline.Compiled, name string) *pipeline.Pipeline {
	p := *cur.Pipeline
	p.Name = name
	p.Revision = cur.Revision + 1
	return &p
}

// readAll returns the topic's records in order.
func readAll(t *testing.T, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends := endOffset(t, cl, topic)
	var out []*kgo.Record
	ctx := ctxT(t)
	for int64(len(out)) < ends && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

func endOffset(t *testing.T, cl *kgo.Client, topic string) int64 {
	t.Helper()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctxT(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	o, _ := ends.Lookup(topic, 0)
	return o.Offset
}

// compacted copies what Kafka's compaction would keep of src (each key's last
// record, tombstones included) into dst, in order.
func compacted(t *testing.T, brokers []string, src, dst string) {
	t.Helper()
	recs := readAll(t, brokers, src)
	last := map[string]int{}
	for i, r := range recs {
		last[string(r.Key)] = i
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i, r := range recs {
		if last[string(r.Key)] != i {
			continue
		}
		cp := &kgo.Record{Topic: dst, Key: r.Key, Value: r.Value, Headers: r.Headers}
		if err := cl.ProduceSync(ctxT(t), cp).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// Two replicas writing the same revision at once: exactly one wins, both
// replicas agree on it, the loser is told, and what compaction would keep
// still loads as the winner.
func TestConcurrentWritesOneWinsEverywhere(t *testing.T) {
	c := cluster(t, topic, "compacted")
	r1, stop1 := start(t, c.ListenAddrs(), nil)
	defer stop1()
	r2, stop2 := start(t, c.ListenAddrs(), nil)
	defer stop2()
	ctx := ctxT(t)
	if err := r1.Put(ctx, pipe("pipe_a", ""), 0); err != nil {
		t.Fatal(err)
	}
	if err := r2.waitFor(ctx, func() bool { return r2.byID["pipe_a"] != nil }); err != nil {
		t.Fatal(err)
	}
	const rounds = 30
	for i := range rounds {
		cur, _ := r1.Get("pipe_a")
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j, r := range []*Registry{r1, r2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[j] = r.Put(ctx, next(cur, fmt.Sprintf("round %d writer %d", i, j)), cur.Revision)
			}()
		}
		wg.Wait()
		won := -1
		for j, err := range errs {
			switch {
			case err == nil:
				if won >= 0 {
					t.Fatalf("round %d: both writes of revision %d applied", i, cur.Revision+1)
				}
				won = j
			case !errors.Is(err, ErrConflict):
				t.Fatalf("round %d: %v", i, err)
			}
		}
		if won < 0 {
			t.Fatalf("round %d: neither write applied", i)
		}
		want := fmt.Sprintf("round %d writer %d", i, won)
		for _, r := range []*Registry{r1, r2} {
			if err := r.waitFor(ctx, func() bool { return r.byID["pipe_a"].Revision == cur.Revision+1 }); err != nil {
				t.Fatal(err)
			}
			if got, _ := r.Get("pipe_a"); got.Name != want {
				t.Fatalf("round %d: a replica shows %q, the winner wrote %q", i, got.Name, want)
			}
		}
	}
	// A delete racing an update: one wins; a delete is final.
	cur, _ := r1.Get("pipe_a")
	var wg sync.WaitGroup
	var delErr, putErr error
	wg.Add(2)
	go func() { defer wg.Done(); delErr = r1.Delete(ctx, "pipe_a", cur.Revision) }()
	go func() { defer wg.Done(); putErr = r2.Put(ctx, next(cur, "after delete?"), cur.Revision) }()
	wg.Wait()
	if (delErr == nil) == (putErr == nil) {
		t.Fatalf("delete %v, put %v: want exactly one to win", delErr, putErr)
	}
	if delErr == nil {
		if err := r2.Put(ctx, next(cur, "resurrect"), cur.Revision); !errors.Is(err, ErrConflict) {
			t.Fatalf("a write over a delete: %v, want ErrConflict", err)
		}
	} else {
		cur, _ = r1.Get("pipe_a")
		if err := r1.Delete(ctx, "pipe_a", cur.Revision); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []*Registry{r1, r2} {
		if err := r.waitFor(ctx, func() bool { return r.byID["pipe_a"] == nil }); err != nil {
			t.Fatal("a replica still has the deleted pipeline")
		}
	}
	// Every refused record was followed by a re-statement, so each key's
	// last record is its true state: compaction keeps the right answer.
	if err := r1.Put(ctx, pipe("pipe_b", ""), 0); err != nil {
		t.Fatal(err)
	}
	b, _ := r1.Get("pipe_b")
	if err := r1.Put(ctx, next(b, "b2"), b.Revision); err != nil {
		t.Fatal(err)
	}
	if err := r2.Put(ctx, next(b, "b2 stale"), b.Revision); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale write: %v", err)
	}
	compacted(t, c.ListenAddrs(), topic, "compacted")
	r3, stop3 := startOn(t, c.ListenAddrs(), "compacted")
	defer stop3()
	if _, ok := r3.Get("pipe_a"); ok {
		t.Fatal("the deleted pipeline came back after compaction")
	}
	if got, ok := r3.Get("pipe_b"); !ok || got.Name != "b2" || got.Revision != 2 {
		t.Fatalf("after compaction pipe_b is %+v, want b2 at revision 2", got)
	}
}

// A refused record whose writer died before re-stating is re-stated by the
// sweep of any replica.
func TestSweepRestatesAnOrphanedRefusal(t *testing.T) {
	old := restateAfter
	restateAfter = 50 * time.Millisecond
	defer func() { restateAfter = old }()
	c := cluster(t, topic)
	r, stop := start(t, c.ListenAddrs(), nil)
	defer stop()
	ctx := ctxT(t)
	if err := r.Put(ctx, pipe("pipe_o", ""), 0); err != nil {
		t.Fatal(err)
	}
	// A stale write from a writer that then vanished.
	cl, _ := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	defer cl.Close()
	stale := []byte(`{"id":"pipe_o","name":"stale","trigger_type":"click","status":"active","revision":7,"steps":[{"id":"s","order":1,"url":"https://x.io","method":"POST","timeout_seconds":30,"signature_mode":"none"}]}`)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("pipe_o"), Value: stale,
		Headers: []kgo.RecordHeader{{Key: headerBase, Value: []byte("6")}}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := r.waitFor(ctx, func() bool { _, ok := r.stale["pipe_o"]; return ok }); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Get("pipe_o"); got.Name != "pipe_o" {
		t.Fatalf("the refused write was applied: %q", got.Name)
	}
	if err := r.waitFor(ctx, func() bool { _, ok := r.stale["pipe_o"]; return !ok }); err != nil {
		t.Fatal("never re-stated")
	}
	recs := readAll(t, c.ListenAddrs(), topic)
	last := recs[len(recs)-1]
	if header(last, headerRestate) == "" || string(last.Key) != "pipe_o" {
		t.Fatalf("last record is not a re-statement: %+v", last)
	}
}
