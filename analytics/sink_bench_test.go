package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/delivery"
)

// BenchmarkSinkWrite is the embedded ClickHouse's cost per delivery as the
// sink pays it: each delivery's attempt and final execution record (as
// webhookd produces them) inserted into the base tables and fed to the
// aggregates, in batches of 5,000 deliveries (10,000 records, the default
// batch) and, to tell a batch's fixed cost from its cost per row, of 1,000
// and 20,000. cpu-ms/1000 is the process's CPU (chDB's own threads, merges
// included) per 1000 deliveries; the other metrics split it by step (the
// aggregates' feed includes its high-water marks query; "after" is the
// background work, merges mostly, in the 500 ms after each batch).
//
// fed-every=4 is the sink with a feed interval (SinkOptions.FeedInterval):
// four batches written to the base tables one by one, then fed together
// in one feed; an op is then the four batches.
func BenchmarkSinkWrite(b *testing.B) {
	for _, perBatch := range []int{5000, 1000, 20000} {
		b.Run(fmt.Sprintf("deliveries=%d", perBatch), func(b *testing.B) { benchmarkSinkWrite(b, perBatch, 1) })
	}
	for _, perBatch := range []int{5000, 1000} {
		b.Run(fmt.Sprintf("deliveries=%d/fed-every=%d", perBatch, feedBatches), func(b *testing.B) { benchmarkSinkWrite(b, perBatch, feedBatches) })
	}
}

func benchmarkSinkWrite(b *testing.B, perBatch, feedEvery int) {
	s, err := OpenChDB(FindChDB(), filepath.Join(b.TempDir(), "ch"), Options{Database: "sinkbench"})
	if err != nil {
		b.Skip(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	var offset int64
	batch := func() (atts, execs [][]byte, ao, eo []Origin) {
		now := time.Now().UTC()
		for i := range perBatch {
			offset++
			id := fmt.Sprintf("%016x", offset)
			a, _ := json.Marshal(delivery.Attempt{V: delivery.Version, Kind: delivery.KindAttempt, AttemptID: "at-" + id, ExecutionID: "ex-" + id,
				DeliveryID: "dl-" + id, PipelineID: "p-0123456789", PipelineName: "bench-0", TriggerType: "click", TriggerID: "c" + id, EventID: "b-" + id,
				StepID: "s-0123456789", StepName: "step 1", StepOrder: 1, Tier: "primary", Status: "success", HTTPStatus: 200, LatencyMS: int64(i % 7),
				RequestURL: "http://127.0.0.1:40000/r/0", RequestBody: `{"seq":123456,"sent":1732708800000000000,"event":"click","country":"US","device":"mobile"}`,
				ResponseBody: `{"received":true}`, StartedAt: now})
			e, _ := json.Marshal(delivery.Execution{V: delivery.Version, Kind: delivery.KindExecution, ExecutionID: "ex-" + id, DeliveryID: "dl-" + id,
				PipelineID: "p-0123456789", PipelineName: "bench-0", TriggerType: "click", TriggerID: "c" + id, EventID: "b-" + id, Status: "completed",
				StartedAt: now, CompletedAt: now.Add(3 * time.Millisecond), Seq: now.UnixNano()})
			atts, execs = append(atts, a), append(execs, e)
			ao = append(ao, Origin{Topic: "webhookd.executions", Partition: int32(i % 4), Offset: offset})
			eo = append(eo, Origin{Topic: "webhookd.executions", Partition: int32(i % 4), Offset: offset})
		}
		return
	}
	steps := []string{"base-attempts", "feed-attempts", "base-executions", "feed-executions", "after"}
	used := make([]time.Duration, len(steps))
	b.ResetTimer()
	var c time.Duration
	step := func(i int, err error) {
		if err != nil {
			b.Fatal(err)
		}
		now := processCPU()
		used[i] += now - c
		c = now
	}
	for range b.N {
		var fa, fe Batch
		for range feedEvery {
			b.StopTimer()
			atts, execs, ao, eo := batch()
			b.StartTimer()
			c = processCPU()
			step(0, s.InsertRecords(WithDedupToken(ctx, fmt.Sprintf("a%d", offset)), "attempts", atts))
			step(2, s.InsertRecords(WithDedupToken(ctx, fmt.Sprintf("e%d", offset)), "executions", execs))
			fa.AttemptRecs, fa.AttemptRecOrigins = append(fa.AttemptRecs, atts...), append(fa.AttemptRecOrigins, ao...)
			fe.ExecutionRecs, fe.ExecutionRecOrigins = append(fe.ExecutionRecs, execs...), append(fe.ExecutionRecOrigins, eo...)
		}
		c = processCPU()
		step(1, s.Feed(ctx, &fa))
		step(3, s.Feed(ctx, &fe))
		time.Sleep(500 * time.Millisecond) // background merges of what was written
		step(4, nil)
	}
	b.StopTimer()
	per1000 := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(b.N*feedEvery*perBatch) * 1000 }
	var all time.Duration
	for i, d := range used {
		all += d
		b.ReportMetric(per1000(d), steps[i]+"-cpu-ms/1000")
	}
	b.ReportMetric(per1000(all), "cpu-ms/1000")
}

// recordsStore takes records as they are and stores nothing: the sink's
// own Go work per record, without ClickHouse.
type recordsStore struct{ SinkStore }

func (recordsStore) TakesRecords() bool { return true }

// BenchmarkSinkAdd is the sink's Go work to put a delivery's two records
// (attempt and execution, as webhookd produces them) into a batch.
func BenchmarkSinkAdd(b *testing.B) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	at, _ := json.Marshal(delivery.Attempt{V: delivery.Version, Kind: delivery.KindAttempt, AttemptID: "wh_att_0123456789abcdef01234567", ExecutionID: "wh_exec_0123456789abcdef01234567",
		DeliveryID: "wh_dlv_0123456789abcdef01234567", PipelineID: "p-0123456789", PipelineName: "bench-0", TriggerType: "click", TriggerID: "c-0123456789", EventID: "b-0123456789",
		StepID: "s-0123456789", StepName: "step 1", StepOrder: 1, Tier: "primary", Status: "success", HTTPStatus: 200, LatencyMS: 3,
		RequestURL: "http://127.0.0.1:40000/r/0", RequestBody: `{"seq":123456,"sent":1732708800000000000,"event":"click","country":"US","device":"mobile"}`,
		ResponseBody: `{"received":true}`, StartedAt: now})
	ex, _ := json.Marshal(delivery.Execution{V: delivery.Version, Kind: delivery.KindExecution, ExecutionID: "wh_exec_0123456789abcdef01234567", DeliveryID: "wh_dlv_0123456789abcdef01234567",
		PipelineID: "p-0123456789", PipelineName: "bench-0", TriggerType: "click", TriggerID: "c-0123456789", EventID: "b-0123456789", Status: "completed",
		StartedAt: now, CompletedAt: now.Add(3 * time.Millisecond), Seq: now.UnixNano()})
	s := NewSink(SinkOptions{ExecutionsTopic: "webhookd.executions", DLQTopic: "webhookd.dlq"}, recordsStore{})
	const perBatch = 5000
	recs := make([]*kgo.Record, 0, 2*perBatch)
	for i := range perBatch {
		recs = append(recs, &kgo.Record{Topic: "webhookd.executions", Partition: int32(i % 4), Offset: int64(2 * i), Value: at},
			&kgo.Record{Topic: "webhookd.executions", Partition: int32(i % 4), Offset: int64(2*i + 1), Value: ex})
	}
	b.ReportAllocs()
	b.ResetTimer()
	c0 := processCPU()
	for i := 0; i < b.N; i += perBatch {
		bt := newBatch()
		for _, r := range recs[:2*min(perBatch, b.N-i)] {
			s.add(bt, r)
		}
	}
	// CPU, not wall time: on a shared machine the two differ a lot.
	b.ReportMetric(float64(processCPU()-c0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the process's user and system CPU so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
