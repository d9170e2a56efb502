package consumer

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// fetchCount counts the records the client decoded from fetch responses.
type fetchCount struct{ n atomic.Int64 }

func (f *fetchCount) OnFetchBatchRead(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.FetchBatchMetrics) {
	f.n.Add(int64(m.NumRecords))
}

// BenchmarkBacklogDrain drains a backlog of event-sized records (snappy,
// three partitions, as webhookd's topics) through a consumer with the
// default in-flight limits whose jobs are slower than fetching, so
// backpressure pauses partitions. The backlog is several fetches deep per
// partition. fetched/rec is how many times each record was fetched and
// decoded (1 is no waste: a paused partition's buffered records are dropped
// by the client and fetched again); B/rec is the bytes allocated per record,
// the consumer's and the client's (webhookd's fetch size, bus.ClientOpts);
// peak-queued/part is the most records fetched and not yet started that a
// partition held (sampled), the consumer's share of memory under a backlog.
func BenchmarkBacklogDrain(b *testing.B) {
	const parts, n = 3, 120000
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(parts, "ev"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	pcl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer pcl.Close()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: "ev", Partition: int32(i % parts), Value: fmt.Appendf(nil,
			`{"id":"ev-%012d","type":"click","occurred_at":"2026-11-27T21:00:00Z","data":{"click_id":"c-%012d","offer_id":"o-123","country":"US","device":"mobile","sent":%d}}`, i, i, time.Now().UnixNano())}
	}
	if err := pcl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	recs = nil // not counted in the peak heap
	runtime.GC()
	var fetched, allocated, handled, peakQueued int64
	var peakHeap uint64
	heap := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var elapsed time.Duration
	for i := range b.N {
		fc := &fetchCount{}
		var done atomic.Int64
		finished := make(chan struct{})
		h := handlerFunc(func(*kgo.Record) Work {
			return Work{Jobs: []Job{func(context.Context, *kgo.Client) error {
				// Slower than fetching: a delivery's work.
				for t := time.Now(); time.Since(t) < 20*time.Microsecond; {
				}
				if done.Add(1) == n {
					close(finished)
				}
				return nil
			}}}
		})
		cons := New(Options{Group: fmt.Sprintf("g%d", i), Topics: []string{"ev"}, Grace: 2 * time.Second, Log: testLog(b),
			ClientOpts: []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...), kgo.WithHooks(fc), kgo.FetchMaxBytes(8 << 20)}}, h)
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		t0 := time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- cons.Run(ctx) }()
		tick := time.NewTicker(time.Millisecond)
		// A drain that stops (a partition never resumed) fails once
		// nothing was handled for a minute.
		stall := time.NewTimer(time.Minute)
		handled := done.Load()
	drain:
		for {
			select {
			case <-finished:
				break drain
			case <-tick.C:
				peakQueued = max(peakQueued, cons.maxQueued())
				metrics.Read(heap)
				peakHeap = max(peakHeap, heap[0].Value.Uint64())
				if h := done.Load(); h != handled {
					handled = h
					stall.Reset(time.Minute)
				}
			case <-stall.C:
				b.Fatalf("handled %d of %d, none for a minute", done.Load(), n)
			}
		}
		tick.Stop()
		stall.Stop()
		elapsed += time.Since(t0)
		runtime.ReadMemStats(&m1)
		cancel()
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		fetched += fc.n.Load()
		allocated += int64(m1.TotalAlloc - m0.TotalAlloc)
		handled += n
	}
	b.ReportMetric(float64(fetched)/float64(handled), "fetched/rec")
	b.ReportMetric(float64(allocated)/float64(handled), "B/rec")
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(handled), "ns/rec")
	b.ReportMetric(float64(peakQueued), "peak-queued/part")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MB")
}

// maxQueued is the longest queue of a partition now.
func (c *Consumer) maxQueued() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var m int
	for _, w := range c.workers {
		w.mu.Lock()
		m = max(m, len(w.queue))
		w.mu.Unlock()
	}
	return int64(m)
}
