package ordering

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/bus"
	"github.com/afftok/webhookd/consumer"
	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/metrics"
	"github.com/afftok/webhookd/watch"
)

// Runner runs deliveries (*engine.Engine).
type Runner interface {
	// RunLeft runs t until a decision needs Kafka and hands it over; left
	// reports that t went to a retry tier or the failover topic.
	RunLeft(ctx context.Context, cl *kgo.Client, t *delivery.Task) (left bool, err error)
	Unreadable(ctx context.Context, cl *kgo.Client, rec *kgo.Record, reason string, cause error) error
	// Refused dead-letters t, which Kafka refused for good on topic (too
	// large for the park topic, say); a transient refusal is an error.
	Refused(ctx context.Context, cl *kgo.Client, t *delivery.Task, topic string, err error) error
}

// Options configure an Orderer.
type Options struct {
	// ClientOpts: brokers, TLS, SASL (the park-topic readers use them).
	ClientOpts []kgo.Opt
	OrderTopic string
	ParkTopic  string
	Engine     Runner
	Log        *slog.Logger
}

// Orderer keeps the key locks of the source partitions this replica owns
// and runs their parked events when a lock is released. It is a worker: Run
// reads the order topic.
type Orderer struct {
	o  Options
	cl *kgo.Client // reads the order topic; writes locks, parks and releases

	mu sync.Mutex
	// The order topic folded: every lock (all partitions: a new owner takes
	// its partition's locks from here) and the releases not cleared yet.
	locks    map[string]*Lock
	released map[string]map[string]bool // key → released delivery ids
	applied  map[int32]int64            // next offset to apply, per partition
	changed  *watch.Signal              // notified on every fetch applied
	// What this replica owns: its source partitions, and the live state of
	// their keys that are locked or in use.
	owned  map[tp]*part
	keys   map[string]*keyState
	chains map[tp]map[string]*link // last delivery of each key in line, per partition

	fatal chan error
	// drainSlots bounds the drains running at once (MaxDrains).
	drainSlots chan struct{}
	stop       context.CancelFunc // ends Run
	markers    *kgo.Client        // writes sync markers (catchUp); closed when Run ends
}

// MaxDrains bounds the released keys drained at once on a replica.
const MaxDrains = 32

type tp struct {
	topic     string
	partition int32
}

// part is an owned source partition.
type part struct {
	ctx    context.Context // ends when the partition is given up
	cancel context.CancelFunc
	drains sync.WaitGroup
}

// keyState is the live state of one key of an owned partition.
type keyState struct {
	order string
	src   tp
	// mu serialises the key's Kafka writes and the decisions they follow
	// from: a park and the drain's "nothing more parked" cannot cross.
	mu sync.Mutex
	// Guarded by Orderer.mu:
	lock     *Lock // nil: not locked
	draining bool
	refs     int // jobs and drains using the state
}

// ConsumeOpts are the options the orderer's client needs: it reads the
// whole order topic.
func ConsumeOpts(orderTopic string) []kgo.Opt {
	// Releases are written inside the retry consumers' transactions.
	return []kgo.Opt{kgo.ConsumeTopics(orderTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted())}
}

// New returns an orderer over cl, a client made with ConsumeOpts and
// consuming nothing else; Run starts reading the order topic.
func New(cl *kgo.Client, o Options) *Orderer {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Orderer{o: o, cl: cl, stop: func() {}, locks: map[string]*Lock{}, released: map[string]map[string]bool{}, applied: map[int32]int64{},
		changed: watch.New(), owned: map[tp]*part{}, keys: map[string]*keyState{}, chains: map[tp]map[string]*link{},
		fatal: make(chan error, 1), drainSlots: make(chan struct{}, MaxDrains)}
}

// Name implements the worker interface.
func (o *Orderer) Name() string { return "ordering" }

// Run folds the order topic until ctx ends. It fails when a drain cannot
// hand a delivery to Kafka: the process stops, and the key's new owner
// drains again from the lock.
func (o *Orderer) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o.mu.Lock()
	o.stop = cancel
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.markers != nil {
			o.markers.Close()
		}
	}()
	for {
		fetches := o.cl.PollFetches(ctx)
		select {
		case err := <-o.fatal:
			return err
		default:
		}
		if ctx.Err() != nil {
			return nil
		}
		if fetches.IsClientClosed() {
			return errors.New("ordering: the order topic's client was closed")
		}
		fetches.EachError(func(t string, p int32, err error) {
			o.o.Log.Error("order topic fetch error", "topic", t, "partition", p, "err", err)
		})
		fetches.EachRecord(o.apply)
		o.mu.Lock()
		o.changed.Notify()
		o.mu.Unlock()
	}
}

func (o *Orderer) fail(err error) {
	select {
	case o.fatal <- err:
	default:
	}
	o.mu.Lock()
	stop := o.stop
	o.mu.Unlock()
	stop() // ends Run's poll
}

// apply folds one order-topic record, and starts a drain when it releases
// the blocker of an owned key.
func (o *Orderer) apply(rec *kgo.Record) {
	e, err := decodeEntry(rec.Key, rec.Value)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.applied[rec.Partition] = rec.Offset + 1
	if err != nil {
		o.o.Log.Error("unreadable order-topic record ignored", "partition", rec.Partition, "offset", rec.Offset, "err", err)
		return
	}
	switch {
	case e.order == "": // a sync marker
	case e.isLock && e.lock == nil:
		delete(o.locks, e.order)
	case e.isLock:
		o.locks[e.order] = e.lock
	case e.release == nil:
		delete(o.released, e.order)
	default:
		rs := o.released[e.order]
		if rs == nil {
			rs = map[string]bool{}
			o.released[e.order] = rs
		}
		rs[e.release.DeliveryID] = true
		if ks := o.keys[e.order]; ks != nil {
			o.maybeDrainLocked(ks)
		}
	}
}

// Start implements consumer.PartitionHooks: before the event consumer
// processes a partition, the order topic is read to its end, so the locks
// its previous owner left are known, and drains already due start.
func (o *Orderer) Start(ctx context.Context, topic string, partition int32) error {
	key := tp{topic, partition}
	pctx, cancel := context.WithCancel(context.Background())
	o.mu.Lock()
	o.owned[key] = &part{ctx: pctx, cancel: cancel}
	o.chains[key] = map[string]*link{}
	o.mu.Unlock()
	if err := o.catchUp(ctx); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for order, l := range o.locks {
		if l.Topic != topic || l.Partition != partition {
			continue
		}
		ks := o.keys[order]
		if ks == nil {
			ks = &keyState{order: order, src: key}
			o.keys[order] = ks
		}
		lc := *l
		ks.lock = &lc
		n++
		o.maybeDrainLocked(ks)
	}
	if n > 0 {
		o.o.Log.Info("took over locked keys", "topic", topic, "partition", partition, "locked_keys", n)
	}
	return nil
}

// catchUp waits until everything in the order topic now is folded in. It
// writes a marker (key "sync", no value) to every partition and waits until
// it has read each back: unlike an end offset, a record just written is
// always there to be read (compaction may have removed every record before
// a partition's end, tombstones included, and an end nothing reaches would
// hold the partition for ever).
func (o *Orderer) catchUp(ctx context.Context) error {
	ends, err := kadm.NewClient(o.cl).ListEndOffsets(ctx, o.o.OrderTopic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("ordering: end of the order topic: %w", err)
	}
	mc, err := o.markerClient()
	if err != nil {
		return err
	}
	var markers []*kgo.Record
	ends.Each(func(l kadm.ListedOffset) {
		markers = append(markers, &kgo.Record{Topic: o.o.OrderTopic, Partition: l.Partition, Key: []byte(syncKey)})
	})
	if err := bus.ProduceAll(ctx, mc, markers...); err != nil {
		return fmt.Errorf("ordering: sync marker: %w", err)
	}
	for {
		o.mu.Lock()
		behind := false
		for _, m := range markers {
			if o.applied[m.Partition] <= m.Offset {
				behind = true
			}
		}
		changed := o.changed.C()
		o.mu.Unlock()
		if !behind {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// markerClient is the client that writes sync markers to chosen partitions.
func (o *Orderer) markerClient() (*kgo.Client, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.markers != nil {
		return o.markers, nil
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, o.o.ClientOpts...), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		return nil, fmt.Errorf("ordering: marker client: %w", err)
	}
	o.markers = cl
	return cl, nil
}

// Stop implements consumer.PartitionHooks: the partition's drains stop (the
// next owner drains again from the lock) and its keys are forgotten.
func (o *Orderer) Stop(topic string, partition int32) {
	key := tp{topic, partition}
	o.mu.Lock()
	p := o.owned[key]
	delete(o.owned, key)
	delete(o.chains, key)
	o.mu.Unlock()
	if p == nil {
		return
	}
	p.cancel()
	p.drains.Wait()
	o.mu.Lock()
	defer o.mu.Unlock()
	for order, ks := range o.keys {
		if ks.src == key {
			delete(o.keys, order)
		}
	}
}

// Job is the job of delivery t of an ordered pipeline for event rec. Jobs of
// one key run one at a time, in the order Job was called for them (the
// partition's offset order: the consumer prepares a partition's records in
// order).
func (o *Orderer) Job(rec *kgo.Record, t *delivery.Task) consumer.Job {
	key := tp{rec.Topic, rec.Partition}
	o.mu.Lock()
	chain := o.chains[key]
	if chain == nil {
		chain = map[string]*link{}
		o.chains[key] = chain
	}
	prev := chain[t.Order]
	mine := &link{done: make(chan struct{})}
	chain[t.Order] = mine
	o.mu.Unlock()
	return func(ctx context.Context, cl *kgo.Client) (err error) {
		if bus.BufferOf(ctx) != nil {
			// Inside a consumer transaction: a key's lock and park
			// offsets must follow what is acknowledged, so ordered
			// deliveries produce at once with the orderer's own client
			// (after a crash, the lock makes an event read again a no-op).
			ctx, cl = bus.WithBuffer(ctx, nil), o.cl
		}
		defer func() {
			mine.err = err // read only after done is closed
			close(mine.done)
			o.mu.Lock()
			if chain[t.Order] == mine {
				delete(chain, t.Order)
			}
			o.mu.Unlock()
		}()
		if prev != nil {
			select {
			case <-prev.done:
				// An earlier event of the key that failed is unmarked and
				// will be read again: a later one must not run (and lock or
				// park past it) before it, or it is skipped as done.
				if prev.err != nil {
					return fmt.Errorf("an earlier event of key %s did not finish: %w", t.Order, prev.err)
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return o.run(ctx, cl, key, t)
	}
}

// link is one job in a key's line: done closes when it returns, err is
// what it returned.
type link struct {
	done chan struct{}
	err  error
}

// run delivers t, or parks it when its key is locked.
func (o *Orderer) run(ctx context.Context, cl *kgo.Client, src tp, t *delivery.Task) error {
	ks := o.use(t.Order, src)
	defer o.done(ks)
	ks.mu.Lock()
	o.mu.Lock()
	l := ks.lock
	released := l != nil && o.released[ks.order][l.Blocker]
	o.mu.Unlock()
	if l != nil {
		// An event read again after a crash (its offset was not committed)
		// may be finished already: the lock says how far the key got.
		off := sourceOffset(t)
		switch {
		case off >= 0 && off < l.BlockerOffset:
			// Delivered (or parked and drained) before the blocker.
			ks.mu.Unlock()
			return nil
		case off >= 0 && off == l.BlockerOffset || l.Blocker == t.DeliveryID:
			// The blocker itself: finished when released, else it runs
			// again in its place.
			if released {
				ks.mu.Unlock()
				return nil
			}
		case off >= 0 && off <= l.ParkedUpTo:
			ks.mu.Unlock() // parked already
			return nil
		default:
			err := o.park(ctx, cl, ks, t)
			ks.mu.Unlock()
			return err
		}
	}
	ks.mu.Unlock()
	left, err := o.o.Engine.RunLeft(ctx, cl, t)
	if err != nil || !left {
		return err
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	o.mu.Lock()
	locked := ks.lock != nil
	o.mu.Unlock()
	if locked {
		// t ran again in its place as the blocker of a lock that exists
		// already (or that a drain has moved on from since): nothing to add.
		// Its task's release, if the key moved on, matches nothing.
		return nil
	}
	nl := &Lock{Order: t.Order, Blocker: t.DeliveryID, BlockerOffset: sourceOffset(t), Topic: src.topic, Partition: src.partition, ParkFrom: -1, ParkedUpTo: -1}
	return o.writeLock(ctx, cl, ks, nl)
}

// park puts t on the park topic behind its key's blocker. ks.mu is held.
func (o *Orderer) park(ctx context.Context, cl *kgo.Client, ks *keyState, t *delivery.Task) error {
	rec := t.Record(o.o.ParkTopic)
	rec.Key = []byte(t.Order) // one key's parked events: one partition, in order
	if err := bus.Produce(ctx, cl, rec)[0]; err != nil {
		// Not parked: a delivery Kafka refuses there (too large) goes to
		// the DLQ rather than stopping the partition; it cannot run out of
		// its turn.
		return o.o.Engine.Refused(ctx, cl, t, o.o.ParkTopic, err)
	}
	metrics.Parked.Inc()
	o.mu.Lock()
	l := *ks.lock
	o.mu.Unlock()
	if l.ParkFrom < 0 {
		l.ParkPartition, l.ParkFrom = rec.Partition, rec.Offset
	}
	// How far parking got, so that an event read again is not parked twice.
	l.ParkedUpTo = max(l.ParkedUpTo, sourceOffset(t))
	return o.writeLock(ctx, cl, ks, &l)
}

// sourceOffset is the offset of t's event in its source partition (-1 when
// unknown).
func sourceOffset(t *delivery.Task) int64 {
	if t.Source == nil {
		return -1
	}
	return t.Source.Offset
}

// writeLock writes l and makes it the key's state; a release of its blocker
// already read starts the drain. ks.mu is held.
func (o *Orderer) writeLock(ctx context.Context, cl *kgo.Client, ks *keyState, l *Lock) error {
	if err := bus.ProduceAll(ctx, cl, l.record(o.o.OrderTopic)); err != nil {
		return fmt.Errorf("lock key of delivery %s: %w", l.Blocker, err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if prev := ks.lock; prev != nil && prev.Blocker != l.Blocker {
		delete(o.released[ks.order], prev.Blocker)
	}
	ks.lock = l
	o.maybeDrainLocked(ks)
	return nil
}

// use returns the live state of an owned key, counting a user.
func (o *Orderer) use(order string, src tp) *keyState {
	o.mu.Lock()
	defer o.mu.Unlock()
	ks := o.keys[order]
	if ks == nil {
		ks = &keyState{order: order, src: src}
		o.keys[order] = ks
	}
	ks.refs++
	return ks
}

// done ends a use; an unlocked key unused is forgotten (memory is bounded by
// the keys locked or in flight).
func (o *Orderer) done(ks *keyState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ks.refs--
	o.forgetLocked(ks)
}

func (o *Orderer) forgetLocked(ks *keyState) {
	if ks.refs == 0 && ks.lock == nil && !ks.draining && o.keys[ks.order] == ks {
		delete(o.keys, ks.order)
	}
}

// maybeDrainLocked starts draining ks when its blocker was released and its
// partition is owned here. o.mu is held.
func (o *Orderer) maybeDrainLocked(ks *keyState) {
	if ks.lock == nil || ks.draining || !o.released[ks.order][ks.lock.Blocker] {
		return
	}
	p := o.owned[ks.src]
	if p == nil || p.ctx.Err() != nil {
		return
	}
	ks.draining = true
	ks.refs++
	p.drains.Add(1)
	go func() {
		defer p.drains.Done()
		var err error
		// Each drain opens a park-topic reader (a Kafka client of its
		// own): bounded, so a mass release cannot open thousands at once.
		select {
		case o.drainSlots <- struct{}{}:
			err = o.drain(p.ctx, ks)
			<-o.drainSlots
		case <-p.ctx.Done():
			err = p.ctx.Err()
		}
		o.mu.Lock()
		ks.draining = false
		ks.refs--
		if err == nil {
			o.maybeDrainLocked(ks) // the new blocker may be released already
		}
		o.forgetLocked(ks)
		o.mu.Unlock()
		if err != nil && p.ctx.Err() == nil {
			o.o.Log.Error("drain of a released key failed; stopping so that it is drained again", "order", ks.order, "err", err)
			o.fail(err)
		}
	}()
}

// drain delivers the key's parked events in order, each as a first attempt,
// until one leaves again (it becomes the blocker; the rest stay parked) or
// none is left (the key is cleared). A crash or a stop mid-way drains again
// from the lock's first parked event: deliveries may repeat, never reorder.
func (o *Orderer) drain(ctx context.Context, ks *keyState) error {
	o.mu.Lock()
	l := *ks.lock
	o.mu.Unlock()
	var rd *reader
	defer func() {
		if rd != nil {
			rd.close()
		}
	}()
	pos, end := l.ParkFrom, int64(-1)
	// A parked event at or before the last one delivered is a duplicate (an
	// event parked again after a crash).
	doneUpTo := l.BlockerOffset
	for {
		if pos < 0 || pos >= end {
			// Nothing read yet, or all read up to the end seen: look again
			// under the key's mutex, so no park can slip in between the
			// look and the clearing.
			ks.mu.Lock()
			o.mu.Lock()
			cur := *ks.lock
			o.mu.Unlock()
			if pos < 0 && cur.ParkFrom >= 0 {
				pos, l = cur.ParkFrom, cur
			}
			if pos >= 0 {
				var err error
				if end, err = o.parkEnd(ctx, l.ParkPartition); err != nil {
					ks.mu.Unlock()
					return err
				}
			}
			if pos < 0 || pos >= end {
				err := o.clear(ctx, ks)
				ks.mu.Unlock()
				return err
			}
			ks.mu.Unlock()
		}
		if rd == nil {
			var err error
			if rd, err = o.newReader(l.ParkPartition, pos); err != nil {
				return err
			}
		}
		rec, err := rd.next(ctx)
		if err != nil {
			return err
		}
		if rec.Offset < pos {
			continue
		}
		if rec.Offset > pos {
			// The park topic keeps every offset (delete policy, no
			// transactions): a gap is retention having removed them.
			o.o.Log.Error("parked events were removed by the park topic's retention before their key was released; they are lost",
				"order", ks.order, "partition", l.ParkPartition, "from", pos, "to", rec.Offset)
		}
		pos = rec.Offset + 1
		if string(rec.Key) != ks.order {
			continue // another key's parked event
		}
		t, err := delivery.DecodeTask(rec.Value)
		if err != nil {
			if err := o.o.Engine.Unreadable(ctx, o.cl, rec, delivery.ReasonInvalidTask, err); err != nil {
				return err
			}
			continue
		}
		off := sourceOffset(t)
		if off >= 0 && off <= doneUpTo {
			continue
		}
		metrics.Unparked.Inc()
		left, err := o.o.Engine.RunLeft(ctx, o.cl, t)
		if err != nil {
			return err
		}
		doneUpTo = max(doneUpTo, off)
		if left {
			// The rest stay parked behind the new blocker.
			ks.mu.Lock()
			o.mu.Lock()
			cur := *ks.lock // parks since the drain began moved ParkedUpTo
			o.mu.Unlock()
			nl := &Lock{Order: l.Order, Blocker: t.DeliveryID, BlockerOffset: off, Topic: l.Topic, Partition: l.Partition,
				ParkPartition: cur.ParkPartition, ParkFrom: pos, ParkedUpTo: cur.ParkedUpTo}
			err := o.writeLockNoDrain(ctx, ks, nl)
			ks.mu.Unlock()
			return err
		}
	}
}

// writeLockNoDrain is writeLock for the drain itself (which checks for a
// release when it ends). ks.mu is held.
func (o *Orderer) writeLockNoDrain(ctx context.Context, ks *keyState, l *Lock) error {
	if err := bus.ProduceAll(ctx, o.cl, l.record(o.o.OrderTopic)); err != nil {
		return fmt.Errorf("lock key of delivery %s: %w", l.Blocker, err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if prev := ks.lock; prev != nil && prev.Blocker != l.Blocker {
		delete(o.released[ks.order], prev.Blocker)
	}
	ks.lock = l
	return nil
}

// clear ends the key's lock: nothing is parked behind it any more. ks.mu is
// held.
func (o *Orderer) clear(ctx context.Context, ks *keyState) error {
	if err := bus.ProduceAll(ctx, o.cl, tombstones(o.o.OrderTopic, ks.order)...); err != nil {
		return fmt.Errorf("clear key lock: %w", err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	ks.lock = nil
	delete(o.released, ks.order)
	return nil
}

// parkEnd is the end offset of a park-topic partition.
func (o *Orderer) parkEnd(ctx context.Context, partition int32) (int64, error) {
	ends, err := kadm.NewClient(o.cl).ListEndOffsets(ctx, o.o.ParkTopic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("end of the park topic: %w", err)
	}
	l, ok := ends.Lookup(o.o.ParkTopic, partition)
	if !ok {
		return 0, fmt.Errorf("park topic has no partition %d", partition)
	}
	return l.Offset, nil
}

// reader reads one park-topic partition forward.
type reader struct {
	cl  *kgo.Client
	buf []*kgo.Record
}

func (o *Orderer) newReader(partition int32, from int64) (*reader, error) {
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, o.o.ClientOpts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.o.ParkTopic: {partition: kgo.NewOffset().At(from)}}),
		// Parked events past the topic's retention are gone: go on from
		// the oldest one left (drain logs the loss) rather than fail for
		// ever.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return nil, fmt.Errorf("park topic reader: %w", err)
	}
	return &reader{cl: cl}, nil
}

func (r *reader) next(ctx context.Context) (*kgo.Record, error) {
	for len(r.buf) == 0 {
		fs := r.cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.Canceled) {
				ferr = err
			}
		})
		if ferr != nil {
			// Parked events older than the topic's retention are gone.
			return nil, fmt.Errorf("read the park topic: %w", ferr)
		}
		r.buf = fs.Records()
	}
	rec := r.buf[0]
	r.buf = r.buf[1:]
	return rec, nil
}

func (r *reader) close() { r.cl.Close() }
