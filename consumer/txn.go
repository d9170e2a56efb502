package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/afftok/webhookd/bus"
)

// Transactions (Options.Transactions).
//
// Without them a job's records are acknowledged before its source offset is
// marked, and the marks are committed every 100 ms: a crash between the two
// leaves both a task on the next topic and an uncommitted source record, and
// the delivery is done again by both. With them, jobs produce nothing: what
// they hand on is buffered on their record's window entry (entryBuffer).
// Once a record is part of its partition's finished prefix it is ready; a
// transaction loop takes the ready records of every partition every
// TxnInterval and, in one Kafka transaction, produces their buffered records
// and commits the prefix offsets (TxnOffsetCommit with the group's member id
// and generation, KIP-447: a member that lost its partitions is fenced by
// the generation). Consumers read committed records only, so after a crash
// either both the records and the offsets are there or neither is.
//
// kgo's GroupTransactSession commits the polled offsets, not a finished
// prefix, and rewinds polling on an abort; this consumer runs a partition's
// records concurrently, so it issues AddOffsetsToTxn and TxnOffsetCommit
// itself with the prefix offsets, between kgo's BeginTransaction and
// EndTransaction. A batch that produced nothing commits its offsets with a
// plain (generation-fenced) offset commit: kgo's EndTransaction ends a
// transaction only when it saw a record produced in it.
//
// A failed transaction is aborted and its batch is put back, to be tried
// again (a record Kafka refuses for good is first replaced as the engine
// says, bus.Deferred.Refused); after maxTxnFailures in a row the consumer
// stops (fatal), and nothing of the batch was committed, so it is redone
// after the restart. A revoke commits the revoked partitions' ready work in
// one last transaction; a loss drops it (the new owner reads it again).

// TxnInterval is how often ready work is committed in a transaction.
const TxnInterval = 100 * time.Millisecond

// TxnTimeout is the brokers' bound on one transaction: after a crash, a
// transaction left open by a process that does not come back under the same
// transactional id holds read-committed readers of its partitions at most
// this long.
const TxnTimeout = 10 * time.Second

// maxTxnFailures: transactions failing in a row before the consumer stops
// (with backoff, about 10 s).
const maxTxnFailures = 6

func (c *Consumer) txnOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.TransactionalID(c.o.TransactionalID),
		kgo.TransactionTimeout(TxnTimeout),
		kgo.DisableAutoCommit(),
		// A new owner's offset fetch waits for a transaction that
		// commits offsets of its partitions to end.
		kgo.RequireStableFetchOffsets(),
	}
}

// entryBuffer is the bus.Buffer of one record's jobs.
type entryBuffer struct {
	w *partWorker
	e *entry
}

func (b entryBuffer) Add(recs ...bus.Deferred) {
	b.w.mu.Lock()
	b.e.recs = append(b.e.recs, recs...)
	b.w.mu.Unlock()
}

// dropLocked forgets the ready work for good: the partition may already be
// another member's.
func (w *partWorker) dropLocked() {
	if w.c.o.Transactions {
		w.dropped = true
		clear(w.ready)
		w.ready = nil
	}
}

// takeReady takes the ready entries.
func (w *partWorker) takeReady() []*entry {
	w.mu.Lock()
	defer w.mu.Unlock()
	es := w.ready
	w.ready = nil
	w.flowLocked()
	return es
}

// putBack returns taken entries whose transaction failed, ahead of any
// that became ready meanwhile.
func (w *partWorker) putBack(es []*entry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dropped {
		return
	}
	w.ready = append(es, w.ready...)
}

func (c *Consumer) noteTopicIDs(fetches kgo.Fetches) {
	fetches.EachTopic(func(t kgo.FetchTopic) {
		if t.TopicID == ([16]byte{}) {
			return
		}
		c.mu.Lock()
		c.topicIDs[t.Topic] = t.TopicID
		c.mu.Unlock()
	})
}

// startTxnLoop runs the transaction loop until the returned func is called
// (which waits for it to end).
func (c *Consumer) startTxnLoop(cl *kgo.Client) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.txnLoop(ctx, cl)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
}

func (c *Consumer) txnLoop(ctx context.Context, cl *kgo.Client) {
	failures := 0
	wait := TxnInterval
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		c.mu.Lock()
		ws := make([]*partWorker, 0, len(c.workers))
		for _, w := range c.workers {
			ws = append(ws, w)
		}
		c.mu.Unlock()
		c.txnMu.Lock()
		// The transaction's requests are not cut short by the loop's
		// stop (kgo: cancelling an EndTxn leaves its outcome unknown);
		// the client's own timeouts bound them.
		tctx, cancel := context.WithTimeout(context.Background(), TxnTimeout)
		err := c.flush(tctx, cl, ws)
		cancel()
		c.txnMu.Unlock()
		if err == nil {
			failures, wait = 0, TxnInterval
			continue
		}
		if !rebalancing(err) {
			// A rebalance fails transactions until it is over (the
			// generation changed); that does not count.
			failures++
		}
		if failures >= maxTxnFailures || fenced(err) || errors.As(err, new(*fatalRefusal)) {
			c.fail(fmt.Errorf("transactions keep failing (%d in a row): %w", failures, err))
			return
		}
		c.o.Log.Warn("transaction failed; its work will be committed in the next one", "group", c.o.Group, "err", err)
		wait = min(TxnInterval<<max(failures, 1), 5*time.Second)
	}
}

// fenced: another producer took this transactional id over; this one can
// never commit again.
func fenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed) || errors.Is(err, kerr.InvalidProducerIDMapping)
}

// rebalancing: the transaction failed because the group is rebalancing.
func rebalancing(err error) bool {
	for _, e := range []error{kerr.IllegalGeneration, kerr.RebalanceInProgress, kerr.UnknownMemberID, kerr.StaleMemberEpoch,
		kerr.CoordinatorNotAvailable, kerr.CoordinatorLoadInProgress, kerr.NotCoordinator, kerr.ConcurrentTransactions, kerr.GroupIDNotFound} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

type batch struct {
	w  *partWorker
	es []*entry
}

// flush commits ws's ready work in one transaction. On failure the work is
// put back (nothing of it was committed). Called with txnMu held.
func (c *Consumer) flush(ctx context.Context, cl *kgo.Client, ws []*partWorker) error {
	var bs []batch
	for _, w := range ws {
		if es := w.takeReady(); len(es) > 0 {
			bs = append(bs, batch{w, es})
		}
	}
	if len(bs) == 0 {
		return nil
	}
	err := c.transact(ctx, cl, bs)
	if err != nil {
		for _, b := range bs {
			b.w.putBack(b.es)
		}
		return err
	}
	for _, b := range bs {
		for _, e := range b.es {
			for _, d := range e.recs {
				if d.Committed != nil {
					d.Committed()
				}
			}
			e.recs = nil
		}
	}
	return nil
}

// transact produces the batches' records and commits their offsets in one
// transaction. A record Kafka refuses for good is replaced (Refused) and the
// transaction is tried again at once; any other failure aborts it.
func (c *Consumer) transact(ctx context.Context, cl *kgo.Client, bs []batch) error {
	offsets := map[string]map[int32]kgo.EpochOffset{}
	n := 0
	for _, b := range bs {
		last := b.es[len(b.es)-1]
		if offsets[b.w.topic] == nil {
			offsets[b.w.topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[b.w.topic][b.w.partition] = kgo.EpochOffset{Epoch: last.epoch, Offset: last.offset + 1}
		for _, e := range b.es {
			n += len(e.recs)
		}
	}
	if n == 0 {
		return commitPlain(ctx, cl, offsets)
	}
	for {
		replaced, err := c.transactOnce(ctx, cl, bs, offsets)
		if !replaced {
			return err
		}
		// Refused records were replaced: the transaction runs again
		// with their replacements (each refusal moves a record down the
		// engine's task → DLQ item → reduced item chain, so this ends).
	}
}

func (c *Consumer) transactOnce(ctx context.Context, cl *kgo.Client, bs []batch, offsets map[string]map[int32]kgo.EpochOffset) (replaced bool, err error) {
	abort := func(cause error) error {
		// An abort whose outcome is unknown is tried again: kgo then
		// reloads the producer id, which aborts whatever is still open.
		var err error
		for range 3 {
			if err = cl.EndTransaction(ctx, kgo.TryAbort); err == nil {
				c.txnOpen = false
				return cause
			}
		}
		return errors.Join(cause, fmt.Errorf("abort transaction: %w", err))
	}
	if c.txnOpen {
		// A previous abort did not go through: end it first.
		if err := abort(nil); err != nil {
			return false, err
		}
	}
	if err := cl.BeginTransaction(); err != nil {
		return false, fmt.Errorf("begin transaction: %w", err)
	}
	c.txnOpen = true
	type sent struct {
		e   *entry
		i   int
		err error
	}
	var ss []*sent
	var wg sync.WaitGroup
	for _, b := range bs {
		for _, e := range b.es {
			for i, d := range e.recs {
				s := &sent{e: e, i: i}
				ss = append(ss, s)
				wg.Add(1)
				cl.Produce(ctx, &kgo.Record{Topic: d.Rec.Topic, Key: d.Rec.Key, Value: d.Rec.Value, Headers: d.Rec.Headers}, func(_ *kgo.Record, err error) {
					s.err = err
					wg.Done()
				})
			}
		}
	}
	wg.Wait()
	var first error
	for _, s := range ss {
		if s.err == nil {
			continue
		}
		if first == nil {
			first = fmt.Errorf("produce to %s: %w", s.e.recs[s.i].Rec.Topic, s.err)
		}
		if transient(s.err) || ctx.Err() != nil {
			continue
		}
		d := s.e.recs[s.i]
		if d.Refused == nil {
			return false, abort(&fatalRefusal{first})
		}
		more, err := d.Refused(s.err)
		if err != nil {
			return false, abort(&fatalRefusal{err})
		}
		s.e.recs[s.i] = bus.Deferred{} // replaced below
		s.e.recs = append(s.e.recs, more...)
		replaced = true
	}
	if first != nil {
		if replaced {
			for _, b := range bs {
				for _, e := range b.es {
					kept := e.recs[:0]
					for _, d := range e.recs {
						if d.Rec != nil {
							kept = append(kept, d)
						}
					}
					e.recs = kept
				}
			}
		}
		if err := abort(first); err != first {
			return false, err
		}
		return replaced, first
	}
	if err := c.commitInTxn(ctx, cl, offsets); err != nil {
		return false, abort(err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		// The outcome may be unknown: abort (kgo turns that into the
		// producer id's reload, which aborts whatever is still open),
		// and the batch is done again.
		return false, abort(fmt.Errorf("commit transaction: %w", err))
	}
	c.txnOpen = false
	return false, nil
}

// fatalRefusal: Kafka refused a record for good and nothing can take its
// place; the consumer stops.
type fatalRefusal struct{ err error }

func (e *fatalRefusal) Error() string { return e.err.Error() }
func (e *fatalRefusal) Unwrap() error { return e.err }

// transient: the same record may be taken if the transaction runs again.
func transient(err error) bool {
	if errors.Is(err, kerr.UnknownTopicOrPartition) || bus.TooLarge(err) {
		return false
	}
	return errors.Is(err, kgo.ErrRecordTimeout) || errors.Is(err, kgo.ErrRecordRetries) || kerr.IsRetriable(err) ||
		errors.Is(err, kerr.TransactionAbortable) || errors.Is(err, context.DeadlineExceeded)
}

// commitInTxn adds the group's offsets to the open transaction (what kgo's
// GroupTransactSession.End sends, with our offsets): AddOffsetsToTxn, then
// TxnOffsetCommit with the member id and generation.
func (c *Consumer) commitInTxn(ctx context.Context, cl *kgo.Client, offsets map[string]map[int32]kgo.EpochOffset) error {
	id, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		return fmt.Errorf("producer id: %w", err)
	}
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = c.o.TransactionalID, id, epoch, c.o.Group
	addResp, err := add.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(addResp.ErrorCode)
	}
	if err != nil {
		return fmt.Errorf("add offsets to transaction: %w", err)
	}
	member, generation := cl.GroupMetadata()
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = c.o.TransactionalID, c.o.Group, id, epoch
	req.MemberID, req.Generation = member, generation
	c.mu.Lock()
	for topic, ps := range offsets {
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic, rt.TopicID = topic, c.topicIDs[topic]
		for p, eo := range ps {
			rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch = p, eo.Offset, eo.Epoch
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	c.mu.Unlock()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("commit offsets in transaction: %w", err)
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fmt.Errorf("commit offsets in transaction: %s partition %d: %w", t.Topic, p.Partition, err)
			}
		}
	}
	return nil
}

// commitPlain commits offsets outside a transaction (a batch that produced
// nothing); the group's generation fences it as it fences a transaction's.
func commitPlain(ctx context.Context, cl *kgo.Client, offsets map[string]map[int32]kgo.EpochOffset) error {
	var cerr error
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil && cerr == nil {
					cerr = fmt.Errorf("%s partition %d: %w", t.Topic, p.Partition, err)
				}
			}
		}
	})
	if cerr != nil {
		return fmt.Errorf("commit offsets: %w", cerr)
	}
	return nil
}
