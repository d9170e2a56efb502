package analytics

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/delivery"
)

// feedFaultStore fails chosen calls once each: "refuse" (nothing written) or
// "after" (written, then reported failed). Calls are named "base:<table>"
// for the base tables' inserts and "feed:<table>" for Feed.
type feedFaultStore struct {
	SinkStore
	mu     sync.Mutex
	faults map[string]string
	calls  []string
}

func (f *feedFaultStore) do(name string, write func() error) error {
	f.mu.Lock()
	f.calls = append(f.calls, name)
	fault := f.faults[name]
	delete(f.faults, name)
	f.mu.Unlock()
	if fault == "refuse" {
		return errors.New("connection refused")
	}
	if err := write(); err != nil {
		return err
	}
	if fault == "after" {
		return errors.New("i/o timeout")
	}
	return nil
}

func (f *feedFaultStore) InsertAttempts(ctx context.Context, as []delivery.Attempt) error {
	return f.do("base:attempts", func() error { return f.SinkStore.InsertAttempts(ctx, as) })
}
func (f *feedFaultStore) InsertRecords(ctx context.Context, t string, rs [][]byte) error {
	return f.do("base:"+t, func() error { return f.SinkStore.InsertRecords(ctx, t, rs) })
}
func (f *feedFaultStore) InsertExecutions(ctx context.Context, es []delivery.Execution) error {
	return f.do("base:executions", func() error { return f.SinkStore.InsertExecutions(ctx, es) })
}
func (f *feedFaultStore) InsertDeadLetters(ctx context.Context, ds []DeadLetterRow) error {
	return f.do("base:dlq_items", func() error { return f.SinkStore.InsertDeadLetters(ctx, ds) })
}
func (f *feedFaultStore) Feed(ctx context.Context, b *Batch) error {
	name := "feed:dlq_items"
	switch {
	case len(b.Attempts)+len(b.AttemptRecs) > 0:
		name = "feed:attempts"
	case len(b.Executions)+len(b.ExecutionRecs) > 0:
		name = "feed:executions"
	}
	return f.do(name, func() error { return f.SinkStore.Feed(ctx, b) })
}

// workloadRecords is the hand-computed workload as Kafka records (one
// partition per topic).
func workloadRecords(t *testing.T) []*kgo.Record {
	t.Helper()
	var out []*kgo.Record
	offsets := map[string]int64{}
	for _, r := range workload() {
		v, err := json.Marshal(r.value)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &kgo.Record{Topic: r.topic, Offset: offsets[r.topic], Value: v, Timestamp: wlT0})
		offsets[r.topic]++
	}
	return out
}

// TestSinkFeedRetryKeepsStatsExact: whatever insert of a batch fails — a
// base insert written and reported failed (the StoredKeys re-check then
// skips its rows: they must be fed all the same), a feed insert refused, or
// a feed insert written and reported failed (fed again: the marks drop
// it) — the sink's retries leave the aggregates as if every record had been
// written once, the base tables with one raw row per record, and a replay
// of the whole batch afterwards (a crash before the commit) changes neither
// the aggregates nor the DLQ/attempt figures.
func TestSinkFeedRetryKeepsStatsExact(t *testing.T) {
	all := func(kind string, what ...string) map[string]string {
		m := map[string]string{}
		for _, w := range what {
			m[w] = kind
		}
		return m
	}
	bases := []string{"base:attempts", "base:executions", "base:dlq_items"}
	feeds := []string{"feed:attempts", "feed:executions", "feed:dlq_items"}
	cases := map[string]map[string]string{
		"base written, reported failed": all("after", bases...),
		"feed refused":                  all("refuse", feeds...),
		"feed written, reported failed": all("after", feeds...),
	}
	recs := workloadRecords(t)
	// One raw row per attempt, and per execution: a batch's states of an
	// execution are one insert, which keeps the last (ReplacingMergeTree on
	// insert).
	attempts, execs := 0, map[string]bool{}
	for _, r := range workload() {
		switch v := r.value.(type) {
		case delivery.Attempt:
			attempts++
		case delivery.Execution:
			execs[v.ExecutionID] = true
		}
	}
	executions := len(execs)
	for name, faults := range cases {
		for _, typed := range []bool{false, true} {
			t.Run(name+map[bool]string{false: "/records", true: "/typed"}[typed], func(t *testing.T) {
				st := openTestStore(t, "sinkfeed")
				ctx := context.Background()
				var inner SinkStore = st
				if typed {
					inner = typedOnly{st}
				}
				f := &feedFaultStore{SinkStore: inner, faults: maps.Clone(faults)}
				s := NewSink(SinkOptions{ExecutionsTopic: wlExecTopic, DLQTopic: wlDLQTopic, MinBackoff: time.Millisecond, Log: slog.New(slog.DiscardHandler)}, f)
				write := func() {
					b := newBatch()
					for _, r := range recs {
						s.add(b, r)
					}
					if err := s.write(ctx, b); err != nil {
						t.Fatal(err)
					}
				}
				write()
				if len(f.faults) != 0 {
					t.Fatalf("faults not met: %v (calls %v)", f.faults, f.calls)
				}
				for table, want := range map[string]int{"attempts": attempts, "executions": executions, "dlq_items": 1} {
					rows, err := st.Rows(ctx, table)
					if err != nil {
						t.Fatal(err)
					}
					if len(rows) != want {
						t.Errorf("%s: %d raw rows, want %d (calls %v)", table, len(rows), want, f.calls)
					}
				}
				checkWorkload(t, st)
				if t.Failed() {
					t.Fatalf("calls %v", f.calls)
				}
				write() // replayed: inserted again, not committed before
				checkWorkload(t, st)
			})
		}
	}
}
