package analytics

import (
	"context"
	"encoding/json"
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
	r.markLoaded(p0)
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
	if st, err := s.Stats(ctx, Range{From: wlT0, To: wlT0.Add(time.Hour)}); err != nil || st.Executions != 1 {
		t.Fatalf("stats %+v, %v; want one execution", st, err)
	}
}

// completedExecution is execution "x" of pipeline "p", completed a second
// after wlT0.
func completedExecution() delivery.Execution {
	return delivery.Execution{V: 1, Kind: delivery.KindExecution, ExecutionID: "x", PipelineID: "p", TriggerType: "click",
		Status: "completed", StartedAt: wlT0, CompletedAt: wlT0.Add(time.Second), Seq: 1}
}
