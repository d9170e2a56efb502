package ordering

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/bus/bustest"
	"github.com/afftok/webhookd/consumer"
	"github.com/afftok/webhookd/delivery"
)

// fakeEngine stands in for the engine: it records the deliveries it runs, in
// order, and makes the ones named in leave leave for a retry tier (once).
type fakeEngine struct {
	mu    sync.Mutex
	leave map[string]bool
	ran   chan string
}

func newFakeEngine(leave ...string) *fakeEngine {
	f := &fakeEngine{leave: map[string]bool{}, ran: make(chan string, 100)}
	for _, id := range leave {
		f.leave[id] = true
	}
	return f
}

func (f *fakeEngine) RunLeft(_ context.Context, _ *kgo.Client, t *delivery.Task) (bool, error) {
	f.mu.Lock()
	left := f.leave[t.DeliveryID]
	delete(f.leave, t.DeliveryID)
	f.mu.Unlock()
	f.ran <- t.DeliveryID
	return left, nil
}

func (f *fakeEngine) Refused(context.Context, *kgo.Client, *delivery.Task, string, error) error {
	panic("a park was refused")
}

func (f *fakeEngine) Unreadable(context.Context, *kgo.Client, *kgo.Record, string, error) error {
	panic("a parked task could not be read")
}

// expect waits for the deliveries run next, in order.
func (f *fakeEngine) expect(t *testing.T, ids ...string) {
	t.Helper()
	for _, want := range ids {
		select {
		case got := <-f.ran:
			if got != want {
				t.Fatalf("ran %s, want %s", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s was not run", want)
		}
	}
}

// none checks nothing more was run.
func (f *fakeEngine) none(t *testing.T) {
	t.Helper()
	select {
	case got := <-f.ran:
		t.Fatalf("ran %s, which should wait", got)
	default:
	}
}

type harness struct {
	env *bustest.Env
	o   *Orderer
	eng *fakeEngine
	cl  *kgo.Client // the event consumer's client in the tests
}

const src = "afftok.conversions"

func start(t *testing.T, env *bustest.Env, eng *fakeEngine) *harness {
	t.Helper()
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, env.Opts...), ConsumeOpts(env.Topics.Order)...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	o := New(cl, Options{ClientOpts: env.Opts, OrderTopic: env.Topics.Order, ParkTopic: env.Topics.Parked, Engine: eng,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	t.Cleanup(func() {
		o.Stop(src, 0)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("orderer: %v", err)
		}
	})
	if err := o.Start(context.Background(), src, 0); err != nil {
		t.Fatal(err)
	}
	return &harness{env: env, o: o, eng: eng, cl: env.Client}
}

var (
	offsetsMu sync.Mutex
	offsets   = map[string]int64{}
)

// offsetOf is the source offset of event id: events get increasing offsets
// in the order they are first named, and keep theirs when read again.
func offsetOf(id string) int64 {
	offsetsMu.Lock()
	defer offsetsMu.Unlock()
	o, ok := offsets[id]
	if !ok {
		o = int64(len(offsets))
		offsets[id] = o
	}
	return o
}

// task is the delivery of event id of key k to pipeline p.
func task(id, p, k string) *delivery.Task {
	ev, _ := json.Marshal(map[string]any{"id": id, "type": "conversion.created", "data": map[string]any{"id": id}})
	return &delivery.Task{V: 1, DeliveryID: id, ExecutionID: "exec_" + id, PipelineID: p, Event: ev, EventKey: "id:" + id,
		Source: &delivery.Source{Topic: src, Partition: 0, Offset: offsetOf(id)}, Order: delivery.OrderKey(p, []byte(k))}
}

// jobs prepares the jobs of the tasks in this order, as the event consumer
// does for a partition.
func (h *harness) jobs(ts ...*delivery.Task) []consumer.Job {
	var out []consumer.Job
	for _, t := range ts {
		out = append(out, h.o.Job(&kgo.Record{Topic: src, Partition: 0, Key: []byte(t.Order)}, t))
	}
	return out
}

// runAll runs jobs concurrently, as a partition's slots do, and waits.
func (h *harness) runAll(t *testing.T, jobs []consumer.Job) {
	t.Helper()
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := j(context.Background(), h.cl); err != nil {
				t.Errorf("job: %v", err)
			}
		}()
	}
	wg.Wait()
}

// release is what the consumer that ends a blocker writes.
func (h *harness) release(t *testing.T, blocker *delivery.Task) {
	t.Helper()
	b := blocker.Clone()
	b.Blocks = true
	if err := h.cl.ProduceSync(context.Background(), ReleaseRecord(h.env.Topics.Order, b)).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// locked reports the key's lock as this orderer sees it (nil: unlocked),
// once no drain runs.
func (h *harness) waitUnlocked(t *testing.T, order string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		h.o.mu.Lock()
		ks := h.o.keys[order]
		free := ks == nil || (ks.lock == nil && !ks.draining)
		h.o.mu.Unlock()
		if free {
			return
		}
		h.o.catchUpOrFail(t)
	}
	t.Fatalf("key %s still locked", order)
}

// waitBlocker waits until b blocks its key and no drain runs.
func (h *harness) waitBlocker(t *testing.T, b *delivery.Task) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		h.o.mu.Lock()
		ks := h.o.keys[b.Order]
		ok := ks != nil && ks.lock != nil && ks.lock.Blocker == b.DeliveryID && !ks.draining
		h.o.mu.Unlock()
		if ok {
			return
		}
		h.o.catchUpOrFail(t)
	}
	t.Fatalf("%s does not block its key", b.DeliveryID)
}

func (o *Orderer) catchUpOrFail(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.catchUp(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond) // the drain goroutine runs; bounded by the deadline above
}

func TestBlockedKeyParksLaterEventsWhileOtherKeysFlowAndDrainsInOrderOnRelease(t *testing.T) {
	env := bustest.Start(t, "", nil)
	a1, a2, a3, b1, b2 := task("a1", "p", "A"), task("a2", "p", "A"), task("a3", "p", "A"), task("b1", "p", "B"), task("b2", "p", "B")
	h := start(t, env, newFakeEngine("a1"))
	h.runAll(t, h.jobs(a1, b1, a2, b2, a3))
	// a1 left for a retry: a2 and a3 are parked, B's events were delivered.
	got := map[string]bool{}
	for range 3 {
		got[<-h.eng.ran] = true
	}
	if !got["a1"] || !got["b1"] || !got["b2"] {
		t.Fatalf("ran %v, want a1, b1, b2", got)
	}
	h.eng.none(t)
	parked := env.Read(t, env.Topics.Parked)
	if len(parked) != 2 || string(parked[0].Key) != a2.Order {
		t.Fatalf("parked %d records", len(parked))
	}
	var l Lock
	locks := env.Read(t, env.Topics.Order)
	if err := json.Unmarshal(locks[len(locks)-1].Value, &l); err != nil || l.Blocker != "a1" || l.ParkFrom != parked[0].Offset {
		t.Fatalf("lock %+v (%v), want blocker a1 parked from %d", l, err, parked[0].Offset)
	}
	// a4 comes while a1 still waits: parked too.
	a4 := task("a4", "p", "A")
	h.runAll(t, h.jobs(a4))
	h.eng.none(t)

	h.release(t, a1)
	h.eng.expect(t, "a2", "a3", "a4")
	h.waitUnlocked(t, a1.Order)
	// Unlocked: the next event runs at once.
	h.runAll(t, h.jobs(task("a5", "p", "A")))
	h.eng.expect(t, "a5")
	recs := env.Read(t, env.Topics.Order)
	last := map[string][]byte{}
	for _, r := range recs {
		last[string(r.Key)] = r.Value
	}
	if v, ok := last[lockPrefix+a1.Order]; !ok || v != nil {
		t.Fatalf("the key's lock is not cleared on the topic: %s", v)
	}
}

func TestParkedEventThatNeedsARetryBecomesTheBlockerAndTheRestStayParked(t *testing.T) {
	env := bustest.Start(t, "", nil)
	a1, a2, a3, a4 := task("a1", "p", "A"), task("a2", "p", "A"), task("a3", "p", "A"), task("a4", "p", "A")
	h := start(t, env, newFakeEngine("a1", "a2"))
	h.runAll(t, h.jobs(a1, a2, a3))
	h.eng.expect(t, "a1")
	h.release(t, a1)
	h.eng.expect(t, "a2") // leaves again: a3 stays parked
	h.runAll(t, h.jobs(a4))
	h.eng.none(t)
	h.release(t, a2)
	h.eng.expect(t, "a3", "a4")
	h.waitUnlocked(t, a1.Order)
}

func TestReleaseOfAnotherDeliveryDoesNotUnlock(t *testing.T) {
	env := bustest.Start(t, "", nil)
	a1, a2 := task("a1", "p", "A"), task("a2", "p", "A")
	h := start(t, env, newFakeEngine("a1"))
	h.runAll(t, h.jobs(a1, a2))
	h.eng.expect(t, "a1")
	h.release(t, task("a0", "p", "A")) // an old blocker's release
	h.o.catchUpOrFail(t)
	h.eng.none(t)
	h.release(t, a1)
	h.eng.expect(t, "a2")
}

func TestNewOwnerOfAPartitionKnowsItsLocksAndDrainsOnRelease(t *testing.T) {
	env := bustest.Start(t, "", nil)
	a1, a2, a3 := task("a1", "p", "A"), task("a2", "p", "A"), task("a3", "p", "A")
	first := start(t, env, newFakeEngine("a1"))
	first.runAll(t, first.jobs(a1, a2))
	first.eng.expect(t, "a1")
	first.o.Stop(src, 0) // the partition moves (or the replica died)

	second := start(t, env, newFakeEngine())
	second.runAll(t, second.jobs(a3))
	second.eng.none(t) // parked behind a1, as the first owner's lock says
	second.release(t, a1)
	second.eng.expect(t, "a2", "a3")
	first.eng.none(t)
}

func TestReleaseWrittenBeforeTheOwnerStartsDrainsAtStart(t *testing.T) {
	env := bustest.Start(t, "", nil)
	a1, a2 := task("a1", "p", "A"), task("a2", "p", "A")
	first := start(t, env, newFakeEngine("a1"))
	first.runAll(t, first.jobs(a1, a2))
	first.eng.expect(t, "a1")
	first.o.Stop(src, 0)
	first.release(t, a1)

	second := start(t, env, newFakeEngine())
	second.eng.expect(t, "a2")
	second.waitUnlocked(t, a1.Order)
}

func TestARedoOfTheBlockerItselfRunsInsteadOfParking(t *testing.T) {
	env := bustest.Start(t, "", nil)
	a1 := task("a1", "p", "A")
	h := start(t, env, newFakeEngine("a1"))
	h.runAll(t, h.jobs(a1))
	h.eng.expect(t, "a1")
	// The event is read again (its offset was not committed before a
	// crash): it is the blocker, not behind it.
	h.runAll(t, h.jobs(task("a1", "p", "A")))
	h.eng.expect(t, "a1")
}

func TestEventsReadAgainAfterACrashAreNotDeliveredOrParkedTwice(t *testing.T) {
	env := bustest.Start(t, "", nil)
	a0, a1, a2, a3 := task("x0", "p", "X"), task("x1", "p", "X"), task("x2", "p", "X"), task("x3", "p", "X")
	h := start(t, env, newFakeEngine("x1"))
	h.runAll(t, h.jobs(a0, a1, a2))
	h.eng.expect(t, "x0", "x1")
	// The source partition is read again from before x0 (offsets not
	// committed): x0 was delivered before the blocker, x1 is the blocker
	// (not released: it runs again in its place), x2 is parked already.
	h.runAll(t, h.jobs(task("x0", "p", "X"), task("x1", "p", "X"), task("x2", "p", "X"), a3))
	h.eng.expect(t, "x1")
	h.eng.none(t)
	if parked := env.Read(t, env.Topics.Parked); len(parked) != 2 {
		t.Fatalf("%d parked records, want x2 and x3 once each", len(parked))
	}
	h.release(t, a1)
	h.eng.expect(t, "x2", "x3")
	h.waitUnlocked(t, a1.Order)
	// Read again once more, now that the key is clear: nothing is known
	// to be done, so they run again (at-least-once), in order.
	h.runAll(t, h.jobs(task("x2", "p", "X"), task("x3", "p", "X")))
	h.eng.expect(t, "x2", "x3")
}

func TestReleasedBlockerReadAgainIsNotDeliveredAgain(t *testing.T) {
	env := bustest.Start(t, "", nil)
	y1, y2 := task("y1", "p", "Y"), task("y2", "p", "Y")
	eng := newFakeEngine("y1", "y2")
	h := start(t, env, eng)
	h.runAll(t, h.jobs(y1, y2))
	h.eng.expect(t, "y1")
	h.release(t, y1)
	h.eng.expect(t, "y2") // leaves: y2 is the blocker now, y1 released
	h.waitBlocker(t, y2)
	h.runAll(t, h.jobs(task("y1", "p", "Y"), task("y2", "p", "Y")))
	h.eng.expect(t, "y2") // y1 is before the blocker; y2 runs again in its place
	h.eng.none(t)
}

func TestOrderKeyIsUniqueForBinaryAndTildeKeys(t *testing.T) {
	seen := map[string]string{}
	for _, k := range []string{"A", "~41", "\x00", "a|b", "é", "\xff", ""} {
		o := delivery.OrderKey("p", []byte(k))
		if prev, dup := seen[o]; dup {
			t.Fatalf("keys %q and %q share order key %q", prev, k, o)
		}
		seen[o] = k
	}
}
