package consumer

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// pipeNet connects Kafka clients to a kfake broker in memory (net.Pipe), so
// that the broker, the clients and the consumer all run inside a synctest
// bubble: the bubble's clock moves only when every goroutine waits, so a
// timer anywhere on the path shows as time passed.
type pipeNet struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeNet() *pipeNet { return &pipeNet{conns: make(chan net.Conn), done: make(chan struct{})} }

func (p *pipeNet) listen(string, string) (net.Listener, error) { return p, nil }

func (p *pipeNet) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.done:
		return nil, net.ErrClosed
	}
}

func (p *pipeNet) Close() error { p.once.Do(func() { close(p.done) }); return nil }

func (p *pipeNet) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9092} }

func (p *pipeNet) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, broker := net.Pipe()
	select {
	case p.conns <- broker:
		return client, nil
	case <-p.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// memCluster starts a kfake broker with topic ev on an in-memory network and
// a producing client with it; both are closed at the end of the test.
func memCluster(t *testing.T, partitions int32) (*pipeNet, *kgo.Client) {
	t.Helper()
	pn := newPipeNet()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "ev"), kfake.ListenFn(pn.listen))
	if err != nil {
		t.Fatal(err)
	}
	pcl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:9092"), kgo.Dialer(pn.dial), kgo.ProducerLinger(0),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pcl.Close()
		c.Close()
		pn.Close()
	})
	return pn, pcl
}

// produceTo produces one batch of values to a partition.
func produceTo(t *testing.T, cl *kgo.Client, partition int32, values ...string) {
	t.Helper()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Topic: "ev", Partition: partition, Value: []byte(v)}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// startMem runs a consumer of ev on the in-memory network; stop ends it and
// returns Run's error (the test's end stops it too, and waits for its idle
// job goroutines to end: a bubble must end with no goroutine left).
func startMem(t *testing.T, pn *pipeNet, h Handler, o Options) (cons *Consumer, stop func() error) {
	o.ClientOpts = append(o.ClientOpts, kgo.SeedBrokers("127.0.0.1:9092"), kgo.Dialer(pn.dial))
	o.Group, o.Topics = "g", []string{"ev"}
	if o.Grace == 0 {
		o.Grace = time.Second
	}
	cons = New(o, h)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- cons.Run(ctx) }()
	stop = sync.OnceValue(func() error { cancel(); return <-errc })
	t.Cleanup(func() {
		_ = stop()
		time.Sleep(2 * runnerIdle)
	})
	return cons, stop
}

// hangP0 is a handler whose deliveries from partition 0 hang (a receiver
// that never answers) until release is closed or they are cancelled; the
// other partitions' deliveries are told on delivered.
type hangP0 struct {
	release   chan struct{}
	delivered chan string
	started0  atomic.Int64
}

func (h *hangP0) Prepare(rec *kgo.Record) Work {
	return Work{Jobs: []Job{func(ctx context.Context, _ *kgo.Client) error {
		if rec.Partition == 0 {
			h.started0.Add(1)
			select {
			case <-h.release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		select {
		case h.delivered <- string(rec.Value):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}}
}

// A partition whose receiver hangs fills up; the other partition's records
// are still dispatched the moment they arrive, poll after poll: nothing
// waits on a timer for the full partition to make room (the bubble's clock
// does not move between a record's produce and its delivery).
func TestAFullPartitionDoesNotHoldUpTheOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pn, pcl := memCluster(t, 2)
		h := &hangP0{release: make(chan struct{}), delivered: make(chan string, 1)}
		_, stop := startMem(t, pn, h, Options{MaxInFlight: 16, PartitionMaxInFlight: 4})
		defer func() {
			if err := stop(); err != nil {
				t.Error(err)
			}
		}()
		for round := range 20 {
			// More records for the hung partition, one produce at a time
			// (each its own fetch): its queue is full at every poll.
			for i := range 5 {
				produceTo(t, pcl, 0, fmt.Sprintf("p0-%d-%d", round, i))
			}
			synctest.Wait()
			at := time.Now()
			produceTo(t, pcl, 1, fmt.Sprintf("p1-%d", round))
			if got := <-h.delivered; got != fmt.Sprintf("p1-%d", round) {
				t.Fatalf("delivered %s", got)
			}
			if waited := time.Since(at); waited != 0 {
				t.Fatalf("round %d: partition 1's record waited %v for the full partition 0", round, waited)
			}
		}
		if n := h.started0.Load(); n != 4 {
			t.Fatalf("%d deliveries of the hung partition started, want its 4 slots", n)
		}
		close(h.release)
	})
}

// A partition whose receiver hangs is paused at once: the consumer holds at
// most its queue's limit plus what one poll brought, however deep the
// backlog behind it, and reads the rest only once there is room; offsets are
// committed only for delivered records, and every record is delivered once.
func TestAHungPartitionHoldsABoundedPartOfItsBacklog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pn, pcl := memCluster(t, 1)
		const batches, per = 200, 10 // a backlog of 2,000 records in batches of 10
		for b := range batches {
			vals := make([]string, per)
			for i := range vals {
				vals[i] = fmt.Sprintf("e%d", b*per+i)
			}
			produceTo(t, pcl, 0, vals...)
		}
		fc := &fetchCount{}
		var mu sync.Mutex
		seen := map[string]int{}
		release, all := make(chan struct{}), make(chan struct{})
		var started atomic.Int64
		h := handlerFunc(func(rec *kgo.Record) Work {
			return Work{Jobs: []Job{func(ctx context.Context, _ *kgo.Client) error {
				started.Add(1)
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
				mu.Lock()
				seen[string(rec.Value)]++
				if len(seen) == batches*per {
					close(all)
				}
				mu.Unlock()
				return nil
			}}}
		})
		// One batch per fetch: the partition's fetches are small, so that
		// what the consumer holds is its own limit, not the fetch size.
		cons, stop := startMem(t, pn, h, Options{MaxInFlight: 4, PartitionMaxInFlight: 4,
			ClientOpts: []kgo.Opt{kgo.WithHooks(fc), kgo.FetchMaxPartitionBytes(1)}})
		// A second of the bubble's clock: commits run, polls go on.
		time.Sleep(time.Second)
		synctest.Wait()
		// The queue fills to the limit, plus at most the rest of the batch
		// that reached it; the worker may already hold the record after
		// the 4 started (taken off the queue, waiting for a slot), which
		// the fetches' pause counted or not, as the two ran.
		high, _ := cons.queueLimits()
		queued := cons.maxQueued()
		if queued < int64(high)-1 || queued >= int64(high+per) {
			t.Fatalf("%d records queued behind the hung deliveries, want the limit %d (one less when the next waits for a slot) plus at most one batch", queued, high)
		}
		// Fetched: the 4 started, the one waiting for a slot, the queue,
		// and at most one batch read while the pause took effect (dropped
		// by the client).
		if n := started.Load(); n != 4 {
			t.Fatalf("%d deliveries started, want the 4 slots", n)
		}
		f := fc.n.Load()
		if f > 4+1+queued+per {
			t.Fatalf("%d records fetched while 4 are in flight and %d queued: the backlog is being read into memory", f, queued)
		}
		t.Logf("backlog %d: %d in flight, %d queued (limit %d), %d fetched", batches*per, 4, queued, high, f)
		adm := kadm.NewClient(pcl)
		if got := committed(t, adm); got != 0 {
			t.Fatalf("committed %d while no delivery finished", got)
		}
		close(release)
		<-all
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		for id, k := range seen {
			if k != 1 {
				t.Fatalf("%s delivered %d times", id, k)
			}
		}
		if got := committed(t, adm); got != batches*per {
			t.Fatalf("committed %d after every record was delivered, want %d", got, batches*per)
		}
	})
}
