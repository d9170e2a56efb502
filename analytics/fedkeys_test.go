package analytics

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/afftok/webhookd/delivery"
)

// recentKeys holds a key for the window after it was fed, in the partition
// it was fed in, whether it is in the current minute or an older one, and
// forgets a partition on request.
func TestRecentKeysHoldTheWindow(t *testing.T) {
	now := time.Date(2026, 11, 28, 7, 0, 30, 0, time.UTC)
	r := newRecentKeys(10 * time.Minute)
	r.now = func() time.Time { return now }
	p0, p1 := partKey{"x", 0}, partKey{"x", 1}
	if r.loaded(p0) || !r.loaded(partKey{}) {
		t.Fatal("a Kafka partition is loaded before anything was added, or rows without an origin need loading")
	}
	r.add(p0, 0, 10) // not loaded: not held
	r.markLoaded(p0, r.generation(p0))
	r.add(p0, 0, 11, 12)
	now = now.Add(3 * time.Minute)
	r.add(p0, 0, 13) // seals 07:00
	r.add(p0, now.Unix()/60-5, 14)
	for h, want := range map[int64]bool{10: false, 11: true, 12: true, 13: true, 14: true, 15: false} {
		if r.has(p0, h) != want || r.has(p1, h) {
			t.Errorf("key %d: in p0 %v, in p1 %v; want %v, false", h, r.has(p0, h), r.has(p1, h), want)
		}
	}
	now = now.Add(8 * time.Minute) // 07:11:30: 07:00 is past the window, 07:03 is not
	if r.has(p0, 11) || r.has(p0, 14) || !r.has(p0, 13) {
		t.Errorf("after 11 minutes: 11 %v, 14 %v, 13 %v; want false, false, true", r.has(p0, 11), r.has(p0, 14), r.has(p0, 13))
	}
	now = now.Add(11 * time.Minute)
	if r.has(p0, 13) {
		t.Error("a key of the current minute held past the window when nothing was fed since")
	}
	r.add(p0, 0, 16)
	if n := len(r.parts[p0].sealed); n > 1 {
		t.Errorf("%d minutes kept past the window", n)
	}
	r.forget(map[string][]int32{"x": {0}})
	r.add(p0, 0, 17) // fed while the partition was being lost
	if r.loaded(p0) || r.has(p0, 16) || r.has(p0, 17) {
		t.Error("a forgotten partition is still held, or came back without being read")
	}
	r.add(partKey{}, 0, 18)
	if !r.has(partKey{}, 18) {
		t.Error("rows without an origin are not remembered")
	}
	// A read-back overtaken by a forget does not start the partition.
	gen := r.generation(p1)
	r.forget(map[string][]int32{"x": {1}})
	if r.markLoaded(p1, gen) || r.loaded(p1) {
		t.Error("a partition lost while its keys were read back is marked loaded with them")
	}
	if !r.markLoaded(p1, r.generation(p1)) || !r.loaded(p1) {
		t.Error("a partition read back again is not loaded")
	}
}

// writtenThenFailed writes the next insert into a table named like table
// and reports it failed (a timeout after the server took the rows).
type writtenThenFailed struct {
	backend
	table string
	armed bool
}

func (b *writtenThenFailed) fail(table string) error {
	if b.armed && strings.Contains(table, b.table) {
		b.armed = false
		return errors.New("i/o timeout")
	}
	return nil
}

func (b *writtenThenFailed) insert(ctx context.Context, table string, cols []string, rows [][]any) error {
	if err := b.backend.insert(ctx, table, cols, rows); err != nil {
		return err
	}
	return b.fail(table)
}

func (b *writtenThenFailed) insertJSON(ctx context.Context, table string, recs [][]byte) error {
	if err := b.backend.(jsonInserter).insertJSON(ctx, table, recs); err != nil {
		return err
	}
	return b.fail(table)
}

// A feed reported failed though it was written leaves its keys known: a
// redelivery fed after the retry counts once.
func TestFeedWrittenButReportedFailedCountsOnce(t *testing.T) {
	s := openTestStore(t, "fedfailed")
	ctx := context.Background()
	b := &writtenThenFailed{backend: s.b, table: "executions_feed", armed: true}
	s.b = b
	if err := writeCopies(ctx, s, 0); err == nil {
		t.Fatal("the failed feed reported no error")
	}
	if err := writeCopies(ctx, s, 0, 1); err != nil { // the sink's retry, with a redelivery
		t.Fatal(err)
	}
	wantExecutions(ctx, t, s, 1)
}

// writeCopies writes copies of completedExecution's record at these offsets
// of partition 2, in one batch.
func writeCopies(ctx context.Context, s *Store, offsets ...int64) error {
	rec, _ := json.Marshal(completedExecution())
	bt := &Batch{}
	for _, o := range offsets {
		bt.ExecutionRecs = append(bt.ExecutionRecs, rec)
		bt.ExecutionRecOrigins = append(bt.ExecutionRecOrigins, Origin{Topic: wlExecTopic, Partition: 2, Offset: o})
	}
	return s.Write(ctx, bt)
}

// A redelivery reaching a store that did not feed the first delivery (a
// restart, or the partition moved here in a rebalance) still counts once:
// the partition's keys are read back from fed_keys the first time it is fed.
func TestRedeliveryAfterARestartCountsOnce(t *testing.T) {
	s := openTestStore(t, "fedrestart")
	ctx := context.Background()
	x := completedExecution()
	rec, _ := json.Marshal(x)
	write := func(offset int64) {
		t.Helper()
		if err := s.Write(ctx, &Batch{ExecutionRecs: [][]byte{rec}, ExecutionRecOrigins: []Origin{{Topic: wlExecTopic, Partition: 2, Offset: offset}}}); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	s.recent = newRecentKeys(DefaultDedupWindow) // a new process
	write(1)
	s.ForgetPartitions(map[string][]int32{wlExecTopic: {2}}) // lost and back
	write(2)
	wantExecutions(ctx, t, s, 1)
}

// completedExecution is execution "x" of pipeline "p", completed a second
// after wlT0.
func completedExecution() delivery.Execution {
	return delivery.Execution{V: 1, Kind: delivery.KindExecution, ExecutionID: "x", PipelineID: "p", TriggerType: "click",
		Status: "completed", StartedAt: wlT0, CompletedAt: wlT0.Add(time.Second), Seq: 1}
}

// A sink assigned a partition reads its keys back even when the store held
// some for it (read back for a partition this process had lost meanwhile,
// so missing what another replica fed since): the redelivered copy that
// replica's keys cover counts once.
func TestAssignedPartitionsAreReadBack(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, "fedassigned")
	opts, prod, recs := workloadOnABroker(ctx, t, 2)
	// Another replica fed the first copy (offsets 0…) while this process
	// held the partitions as loaded with none of its keys.
	if err := s.Write(ctx, batchOf(recs, 0, len(recs))); err != nil {
		t.Fatal(err)
	}
	s.recent = newRecentKeys(DefaultDedupWindow)
	for _, topic := range []string{wlExecTopic, wlDLQTopic} {
		pk := partKey{topic, 0}
		s.recent.markLoaded(pk, s.recent.generation(pk))
	}
	so := SinkOptions{ClientOpts: opts, Group: "analytics", ExecutionsTopic: wlExecTopic, DLQTopic: wlDLQTopic, BatchSize: 1000, FlushInterval: 50 * time.Millisecond}
	sinkToTheEnd(ctx, t, NewSink(so, s), prod, int64(2*(len(recs)-1)), 2)
	checkWorkload(t, s)
}

// onReadBack calls hook before each read-back of fed_keys (n counts them,
// from 1, p is the query's parameters); when hook says so, the read-back
// answers nothing (as it would have before another replica fed).
type onReadBack struct {
	backend
	n    int
	hook func(n int, p Params) (empty bool)
}

func (b *onReadBack) query(ctx context.Context, q string, p Params) ([][]any, error) {
	if strings.Contains(q, "fed_keys") {
		b.n++
		if b.hook(b.n, p) {
			return nil, nil
		}
	}
	return b.backend.query(ctx, q, p)
}

func (b *onReadBack) insertJSON(ctx context.Context, table string, recs [][]byte) error {
	return b.backend.(jsonInserter).insertJSON(ctx, table, recs)
}

func forgetPartitionOf(s *Store, p Params) {
	s.ForgetPartitions(map[string][]int32{wlExecTopic: {int32(p["partition"].(int64))}})
}

// A partition forgotten while a feed is under way (a revoke or an
// assignment landing after its keys were read back, while another
// partition's are read) keeps, for that feed, the keys it was read back
// with: a redelivery in it counts once.
func TestPartitionForgottenMidFeedCountsOnce(t *testing.T) {
	s := openTestStore(t, "fedrevoke")
	ctx := context.Background()
	x := completedExecution()
	y := completedExecution()
	y.ExecutionID = "y"
	rx, _ := json.Marshal(x)
	ry, _ := json.Marshal(y)
	write := func(off int64) {
		t.Helper()
		if err := s.Write(ctx, &Batch{ExecutionRecs: [][]byte{rx, ry}, ExecutionRecOrigins: []Origin{{Topic: wlExecTopic, Partition: 2, Offset: off}, {Topic: wlExecTopic, Partition: 3, Offset: off}}}); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	s.recent = newRecentKeys(DefaultDedupWindow) // a new process (or both partitions just assigned)
	// The first partition read back is forgotten while the second is.
	var first Params
	s.b = &onReadBack{backend: s.b, hook: func(n int, p Params) bool {
		switch n {
		case 1:
			first = p
		case 2:
			forgetPartitionOf(s, first)
		}
		return false
	}}
	write(1) // redeliveries of x and y
	wantExecutions(ctx, t, s, 2)
}

// A read-back that a forget overtook is read again, not kept: what it read
// may miss keys another replica fed meanwhile.
func TestReadBackOvertakenByAForgetIsReadAgain(t *testing.T) {
	s := openTestStore(t, "fedstale")
	ctx := context.Background()
	rec, _ := json.Marshal(completedExecution())
	write := func(off int64) {
		t.Helper()
		if err := s.Write(ctx, &Batch{ExecutionRecs: [][]byte{rec}, ExecutionRecOrigins: []Origin{{Topic: wlExecTopic, Partition: 2, Offset: off}}}); err != nil {
			t.Fatal(err)
		}
	}
	write(0) // fed by another replica
	s.recent = newRecentKeys(DefaultDedupWindow)
	// The first read-back answers as before the other replica fed, and
	// the partition is forgotten meanwhile (the rebalance that moved it).
	s.b = &onReadBack{backend: s.b, hook: func(n int, p Params) bool {
		if n == 1 {
			forgetPartitionOf(s, p)
		}
		return n == 1
	}}
	write(1) // its redelivery, here
	wantExecutions(ctx, t, s, 1)
}

// loaded reports whether pk's keys are known (read back, or a partition
// never read from Kafka: rows without an origin).
func (r *recentKeys) loaded(pk partKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.parts[pk]
	return ok || pk.topic == ""
}

// markLoaded starts pk's keys (none yet), when its keys were read back
// from generation gen on (markLoadedWith, nothing read back).
func (r *recentKeys) markLoaded(pk partKey, gen uint64) bool {
	return r.markLoadedWith(pk, gen, nil) != nil
}

// wantExecutions asserts the stats of wlT0's hour count n executions.
func wantExecutions(ctx context.Context, t *testing.T, s *Store, n int64) {
	t.Helper()
	if st, err := s.Stats(ctx, Range{From: wlT0, To: wlT0.Add(time.Hour)}); err != nil || st.Executions != n {
		t.Fatalf("stats %+v, %v; want %d executions", st, err, n)
	}
}
