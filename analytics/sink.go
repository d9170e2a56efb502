package analytics

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/dlq"
	"github.com/afftok/webhookd/metrics"
)

// SinkOptions configure the sink.
type SinkOptions struct {
	ClientOpts      []kgo.Opt
	Group           string
	ExecutionsTopic string
	DLQTopic        string
	BatchSize       int
	FlushInterval   time.Duration
	// FeedInterval, when positive, feeds the aggregates at their own
	// cadence: each batch goes to the base tables (the execution logs) as
	// it is due, and the batches written since the last feed are fed
	// together — once FeedInterval has passed since the first of them,
	// once they hold feedBatches × BatchSize records, or as soon as a poll
	// brings nothing new (the sink caught up) — and only then committed.
	// A batch's feed is the sink's largest fixed cost (a part per
	// aggregate table); statistics lag the logs by at most FeedInterval
	// under load. Zero or less: each batch is fed with its insert.
	FeedInterval time.Duration
	// Grace bounds the final flush on shutdown.
	Grace time.Duration
	// MinBackoff and MaxBackoff bound the wait between inserts of a batch
	// ClickHouse refused: it doubles from MinBackoff (default 200 ms) up to
	// MaxBackoff (default 30 s), with up to 20 % jitter.
	MinBackoff, MaxBackoff time.Duration
	Log                    *slog.Logger
}

// SinkStore is what the sink writes through: a *Store, or a wrapper around
// one (the outage tests inject faults here).
type SinkStore interface {
	// TakesRecords reports whether InsertRecords takes the executions
	// topic's records as they are.
	TakesRecords() bool
	InsertAttempts(ctx context.Context, as []delivery.Attempt) error
	InsertRecords(ctx context.Context, table string, recs [][]byte) error
	InsertExecutions(ctx context.Context, es []delivery.Execution) error
	InsertDeadLetters(ctx context.Context, ds []DeadLetterRow) error
	// StoredKeys tells which rows of a failed insert were stored anyway.
	StoredKeys(ctx context.Context, table string, ids []string) (map[string]bool, error)
	// Feed feeds the aggregates with the rows of b not fed before (see
	// Store.Write): feeding the same rows again, after a feed insert that
	// failed or was written and reported failed, counts none twice.
	Feed(ctx context.Context, b *Batch) error
}

var _ SinkStore = (*Store)(nil)

// Sink consumes the executions and DLQ topics and writes them to ClickHouse
// in batches bounded by size and time. Offsets are committed only after
// ClickHouse acknowledged the insert, a retried insert does not double
// rows (base tables: see dedup.go) and replays are not fed to the aggregates
// twice (see Store.Write), so ClickHouse being down delays logs but loses
// none; delivery does not wait for it (the sink is a consumer group of its
// own).
type Sink struct {
	o     SinkOptions
	store SinkStore
	ready atomic.Bool

	// failingSince is when inserts started failing (zero: they succeed);
	// only the Run goroutine touches it.
	failingSince time.Time
	failures     int
	// stopBy (Unix ns; 0 while running) bounds every insert once shutdown
	// began: three quarters of the grace period after Run's context ended,
	// so the last batch's write and the pending batches' feed share one
	// deadline.
	stopBy atomic.Int64

	// crashAfterInsert, when set and true for a batch, stops the sink
	// between the insert and the commit, as a crash would (tests).
	crashAfterInsert func() bool
}

// errCrashed is Run's answer when crashAfterInsert stopped it.
var errCrashed = errors.New("analytics sink stopped after an insert, before its commit (test crash)")

// NewSink returns a sink writing to store.
func NewSink(o SinkOptions, store SinkStore) *Sink {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.Grace <= 0 {
		o.Grace = 30 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 200 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(30*time.Second, o.MinBackoff)
	}
	return &Sink{o: o, store: store}
}

// Name implements the worker interface.
func (s *Sink) Name() string { return "analytics" }

// Ready reports whether the sink is consuming.
func (s *Sink) Ready() bool { return s.ready.Load() }

// The parts of a batch, one insert each.
const (
	partAttempts = iota
	partAttemptRecs
	partExecutions
	partExecutionRecs
	partDead
	nParts
)

type batch struct {
	recs  []*kgo.Record
	parts [nParts]part
	// fed: the aggregates were fed with the rows of feedParts[i].
	fed   [len(feedParts)]bool
	first time.Time
	// baseOnly: write inserts the parts into the base tables and leaves
	// the feed to a later write of the pending batches (FeedInterval).
	baseOnly bool
}

// feedBatches bounds the pending batches (FeedInterval): once they hold
// this many batches' worth of records they are fed, whatever the time, so
// the records kept for the feed stay within a few batches' memory.
const feedBatches = 4

// pendingFeed is the batches written to the base tables and not yet fed
// (FeedInterval): neither are their records committed.
type pendingFeed struct {
	batches []*batch
	recs    int
	since   time.Time // when the first of them was written
}

// merged returns one batch of the pending batches' rows, in the order
// they were read (a partition's rows stay in offset order, as the feed's
// high-water marks need), already in the base tables: writing it feeds
// them.
func (p *pendingFeed) merged() *batch {
	m := newBatch()
	for _, b := range p.batches {
		m.recs = append(m.recs, b.recs...)
		for i := range b.parts {
			q, mp := &b.parts[i], &m.parts[i]
			mp.origins = append(mp.origins, q.origins...)
			mp.recs = append(mp.recs, q.recs...)
			mp.attempts = append(mp.attempts, q.attempts...)
			mp.executions = append(mp.executions, q.executions...)
			mp.dead = append(mp.dead, q.dead...)
		}
	}
	for i := range m.parts {
		m.parts[i].done = true
	}
	return m
}

// feedParts groups the parts by the aggregates' feed they go to (attempts,
// executions, DLQ). A group is fed once all its parts are in the base
// tables, with all its rows: also those a failed insert stored anyway
// (StoredKeys left them out of the retry, not out of the feed). The feed
// leaves out the rows fed before (sink_offsets), so feeding a group again
// after its feed insert failed — or was written and reported failed —
// counts no row twice.
var feedParts = [...][]int{{partAttempts, partAttemptRecs}, {partExecutions, partExecutionRecs}, {partDead}}

// feedBatch is the rows of parts with their origins, for Store.Feed.
func (b *batch) feedBatch(parts []int) *Batch {
	fb := &Batch{}
	for _, i := range parts {
		p := &b.parts[i]
		switch i {
		case partAttempts:
			fb.Attempts, fb.AttemptOrigins = p.attempts, p.origins
		case partAttemptRecs:
			fb.AttemptRecs, fb.AttemptRecOrigins = p.recs, p.origins
		case partExecutions:
			fb.Executions, fb.ExecutionOrigins = p.executions, p.origins
		case partExecutionRecs:
			fb.ExecutionRecs, fb.ExecutionRecOrigins = p.recs, p.origins
		case partDead:
			fb.Dead, fb.DeadOrigins = p.dead, p.origins
		}
	}
	return fb
}

func newBatch() *batch {
	b := &batch{}
	for i, t := range [nParts]string{"attempts", "attempts", "executions", "executions", "dlq_items"} {
		b.parts[i].table = t
	}
	return b
}

// part is the rows of a batch for one insert. Exactly one of the row
// slices is used. origins names each row's record (topic, partition, offset):
// the insert's deduplication token is made of them, and the aggregates' feed
// uses them.
type part struct {
	table      string
	origins    []Origin
	recs       [][]byte // as produced, for a store that takes them so
	attempts   []delivery.Attempt
	executions []delivery.Execution
	dead       []DeadLetterRow
	// done: inserted; failed: an insert of it failed, so some of its rows
	// may be stored all the same.
	done, failed bool
	// rewritten: its records were rewritten after a failed insert
	// (rewriteRecords).
	rewritten bool
}

func (p *part) len() int { return len(p.origins) }

func (p *part) add(r *kgo.Record) {
	p.origins = append(p.origins, Origin{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset})
}

// token is the part's deterministic insert_deduplication_token.
func (p *part) token() string {
	h := sha256.New()
	h.Write([]byte(p.table))
	var line []byte
	for _, o := range p.origins {
		// "\ntopic/partition/offset" per row
		line = append(append(line[:0], '\n'), o.Topic...)
		line = strconv.AppendInt(append(line, '/'), int64(o.Partition), 10)
		line = strconv.AppendInt(append(line, '/'), o.Offset, 10)
		h.Write(line)
	}
	return "webhookd-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// keys returns each row's id and row key (see Store.StoredKeys).
func (p *part) keys() (ids, keys []string) {
	add := func(id, key string) { ids, keys = append(ids, id), append(keys, key) }
	for _, a := range p.attempts {
		add(a.AttemptID, a.AttemptID)
	}
	for _, e := range p.executions {
		add(e.ExecutionID, e.ExecutionID+":"+strconv.FormatInt(e.Seq, 10))
	}
	for _, d := range p.dead {
		add(d.ID, d.ID+":"+strconv.FormatInt(d.Version, 10))
	}
	for _, r := range p.recs {
		var k struct {
			AttemptID   string `json:"attempt_id"`
			ExecutionID string `json:"execution_id"`
			Seq         int64  `json:"seq"`
		}
		_ = json.Unmarshal(r, &k) // not JSON: taken out after the insert that failed (rewriteRecords)
		if p.table == "attempts" {
			add(k.AttemptID, k.AttemptID)
		} else {
			add(k.ExecutionID, k.ExecutionID+":"+strconv.FormatInt(k.Seq, 10))
		}
	}
	return ids, keys
}

// without returns the part less the rows whose key is in stored, or
// superseded by a stored row: an execution state (DLQ item) whose id is
// stored with a seq (version) at least its own. Those are not "missing": one
// insert block keeps only the last state of an id (ReplacingMergeTree on
// insert), so the "failed" insert stored the newest only, and inserting an
// older state again would leave that newest row there twice.
func (p *part) without(stored map[string]bool) part {
	ids, keys := p.keys()
	newest := map[string]int64{}
	if p.table != "attempts" {
		for k := range stored {
			if i := strings.LastIndexByte(k, ':'); i >= 0 {
				if v, err := strconv.ParseInt(k[i+1:], 10, 64); err == nil {
					if cur, ok := newest[k[:i]]; !ok || v > cur {
						newest[k[:i]] = v
					}
				}
			}
		}
	}
	q := part{table: p.table}
	for i, k := range keys {
		if stored[k] {
			continue
		}
		if v, ok := newest[ids[i]]; ok {
			if own, err := strconv.ParseInt(k[len(ids[i])+1:], 10, 64); err == nil && own <= v {
				continue
			}
		}
		q.origins = append(q.origins, p.origins[i])
		switch {
		case len(p.attempts) > 0:
			q.attempts = append(q.attempts, p.attempts[i])
		case len(p.executions) > 0:
			q.executions = append(q.executions, p.executions[i])
		case len(p.dead) > 0:
			q.dead = append(q.dead, p.dead[i])
		default:
			q.recs = append(q.recs, p.recs[i])
		}
	}
	return q
}

// rewriteRecords rewrites, once, the records of a part whose insert
// failed as webhookd's writers encode them: each is decoded as the table's
// row and encoded again. A record that does not decode (not JSON, a time
// that is not one, text for a number) is taken out and logged; one that
// decodes but whose form ClickHouse refuses (a key given twice, a lone
// UTF-16 surrogate escape) is then stored as its row type reads it. It
// reports whether the part changed (so the insert is worth trying again
// at once). Fields this version's row type lacks are not kept in a rewritten
// record. Done only after a failed insert, so the hot path stays free of it.
//
// keepUnreadable (a failed feed: the base table took these records) keeps
// a record that does not decode as it is: the feed may have failed for
// another reason, and it would no longer be counted.
func (s *Sink) rewriteRecords(p *part, keepUnreadable bool) (changed bool) {
	if p.rewritten || len(p.recs) == 0 {
		return false
	}
	p.rewritten = true
	n := 0
	for i, r := range p.recs {
		canon, err := canonicalRecord(p.table, r)
		if err != nil && keepUnreadable {
			canon = r
		} else if err != nil {
			s.o.Log.Error("skipping unreadable executions record", "partition", p.origins[i].Partition, "offset", p.origins[i].Offset, "err", err)
			changed = true
			continue
		}
		if !bytes.Equal(canon, r) {
			changed = true
		}
		p.recs[n], p.origins[n] = canon, p.origins[i]
		n++
	}
	p.recs, p.origins = p.recs[:n], p.origins[:n]
	return changed
}

// canonicalRecord is r decoded as a row of table ("attempts" or
// "executions"), as the typed path (add) decodes it, and encoded again.
func canonicalRecord(table string, r []byte) ([]byte, error) {
	if table == "attempts" {
		var a delivery.Attempt
		if err := json.Unmarshal(r, &a); err != nil {
			return nil, err
		}
		return json.Marshal(a)
	}
	var e delivery.Execution
	if err := json.Unmarshal(r, &e); err != nil {
		return nil, err
	}
	return json.Marshal(e)
}

// recordKind is an executions-topic record's "kind", read from the first
// bytes (webhookd writes {"v":1,"kind":"…",…}); "" if not found there.
func recordKind(v []byte) string {
	head := v[:min(len(v), 48)]
	i := bytes.Index(head, []byte(`"kind":"`))
	if i < 0 {
		return ""
	}
	rest := head[i+8:]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// Run consumes until ctx ends; the batch in hand is flushed first.
func (s *Sink) Run(ctx context.Context) error {
	opts := append([]kgo.Opt{
		kgo.ConsumerGroup(s.o.Group),
		kgo.ConsumeTopics(s.o.ExecutionsTopic, s.o.DLQTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		// Execution records and DLQ items are written inside the
		// consumers' transactions: an aborted one was never decided.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Their markers come through too, so the commit passes them (no
		// lag left once everything is stored).
		kgo.KeepControlRecords(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
			s.forget(assigned)
			s.ready.Store(true)
		}),
		// Another replica feeds a partition this one lost: the keys it
		// remembers of it are read again if it comes back (fedKeysSchema).
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) { s.forget(lost) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) { s.forget(lost) }),
	}, s.o.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("analytics sink: %w", err)
	}
	defer cl.Close()
	s.stopBy.Store(0)
	defer context.AfterFunc(ctx, func() { s.stopBy.Store(time.Now().Add(s.o.Grace * 3 / 4).UnixNano()) })()
	b := newBatch()
	var pending pendingFeed
	// lastFetched is when a poll last brought records: once a poll brings
	// none and a flush interval passed without any, the sink has caught up
	// and feeds what is pending at once (statistics lag only under load;
	// the time the sink spends writing does not count as idle).
	var lastFetched time.Time
	// At shutdown the sink stops after the delivery consumers (a later
	// stage), and first reads what their drain wrote, until a poll finds
	// nothing new or drainEnd: the last batch holds it, nothing waits for
	// the next start.
	var drainEnd time.Time
	for {
		wait := s.o.FlushInterval
		if len(b.recs) > 0 {
			wait = max(time.Until(b.first.Add(s.o.FlushInterval)), time.Millisecond)
		}
		if len(pending.batches) > 0 {
			wait = max(min(wait, time.Until(pending.since.Add(s.o.FeedInterval)), time.Until(lastFetched.Add(s.o.FlushInterval))), time.Millisecond)
		}
		base := ctx
		if ctx.Err() != nil {
			if drainEnd.IsZero() {
				drainEnd = time.Now().Add(min(s.o.Grace/4, 5*time.Second))
			}
			base = context.WithoutCancel(ctx)
			wait = max(min(wait, 300*time.Millisecond, time.Until(drainEnd)), time.Millisecond)
		}
		pctx, cancel := context.WithTimeout(base, wait)
		fetches := cl.PollRecords(pctx, s.o.BatchSize-len(b.recs))
		cancel()
		if fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				s.o.Log.Error("analytics fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		fetched := fetches.NumRecords()
		if fetched > 0 {
			lastFetched = time.Now()
		}
		fetches.EachRecord(func(r *kgo.Record) { s.add(b, r) })
		caughtUp := ctx.Err() != nil && (fetched == 0 || !time.Now().Before(drainEnd))
		due := len(b.recs) > 0 && (len(b.recs) >= s.o.BatchSize || time.Since(b.first) >= s.o.FlushInterval || caughtUp)
		if due {
			b.baseOnly = s.o.FeedInterval > 0
			if err := s.write(ctx, b); err != nil {
				return nil // only when ctx ended; the batch is not committed and will be read again
			}
			if s.crashAfterInsert != nil && s.crashAfterInsert() {
				return errCrashed
			}
			if b.baseOnly {
				// Fed, then committed, with the pending batches.
				if len(pending.batches) == 0 {
					pending.since = time.Now()
				}
				pending.batches, pending.recs = append(pending.batches, b), pending.recs+len(b.recs)
			} else {
				s.commit(cl, b.recs)
			}
			b = newBatch()
		}
		if now := time.Now(); len(pending.batches) > 0 && (ctx.Err() != nil || pending.recs >= feedBatches*s.o.BatchSize ||
			!now.Before(pending.since.Add(s.o.FeedInterval)) || fetched == 0 && !now.Before(lastFetched.Add(s.o.FlushInterval))) {
			m := pending.merged()
			if err := s.write(ctx, m); err != nil {
				return nil // only when ctx ended; nothing pending was committed and will be read again
			}
			if s.crashAfterInsert != nil && s.crashAfterInsert() {
				return errCrashed
			}
			s.commit(cl, m.recs)
			pending = pendingFeed{}
		}
		if caughtUp {
			return nil
		}
	}
}

// forget tells the store, when it remembers the keys fed per partition,
// that the sink lost or gained these partitions: what it holds of them may
// miss keys another replica fed.
func (s *Sink) forget(parts map[string][]int32) {
	if f, ok := s.store.(interface{ ForgetPartitions(map[string][]int32) }); ok {
		f.ForgetPartitions(parts)
	}
}

// commit commits records written and fed.
func (s *Sink) commit(cl *kgo.Client, recs []*kgo.Record) {
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.CommitRecords(cctx, recs...); err != nil {
		// Harmless beyond a replay: readers see one row per key.
		s.o.Log.Warn("analytics commit failed; rows may be inserted again", "err", err)
	}
}

func (s *Sink) add(b *batch, r *kgo.Record) {
	if len(b.recs) == 0 {
		b.first = time.Now()
	}
	b.recs = append(b.recs, r)
	if r.Attrs.IsControl() {
		return // a transaction marker: committed past, nothing to store
	}
	switch r.Topic {
	case s.o.DLQTopic:
		var d dlq.Record
		if err := json.Unmarshal(r.Value, &d); err != nil || d.ID == "" {
			s.o.Log.Error("skipping unreadable DLQ record", "partition", r.Partition, "offset", r.Offset, "err", err)
			return
		}
		p := &b.parts[partDead]
		p.add(r)
		p.dead = append(p.dead, DeadLetterRow{Record: d, Version: r.Timestamp.UnixMicro()})
	default:
		// The hot path: a store that reads records as they are gets them
		// without a decode in Go. They are not checked here (webhookd's
		// writers encode them; checking took most of the sink's Go work):
		// an insert the store refuses is checked then (rewriteRecords), so
		// one bad record cannot hold a batch back.
		if s.store.TakesRecords() {
			var p *part
			switch recordKind(r.Value) {
			case delivery.KindAttempt:
				p = &b.parts[partAttemptRecs]
			case delivery.KindExecution:
				p = &b.parts[partExecutionRecs]
			}
			if p != nil {
				p.add(r)
				p.recs = append(p.recs, r.Value)
				return
			}
		}
		var kind struct {
			Kind string `json:"kind"`
		}
		_ = json.Unmarshal(r.Value, &kind)
		var err error
		switch kind.Kind {
		case delivery.KindAttempt:
			var a delivery.Attempt
			if err = json.Unmarshal(r.Value, &a); err == nil {
				p := &b.parts[partAttempts]
				p.add(r)
				p.attempts = append(p.attempts, a)
			}
		case delivery.KindExecution:
			var e delivery.Execution
			if err = json.Unmarshal(r.Value, &e); err == nil {
				p := &b.parts[partExecutions]
				p.add(r)
				p.executions = append(p.executions, e)
			}
		default:
			err = fmt.Errorf("unknown kind %q", kind.Kind)
		}
		if err != nil {
			s.o.Log.Error("skipping unreadable executions record", "partition", r.Partition, "offset", r.Offset, "err", err)
		}
	}
}

// write inserts the batch, retrying what failed with bounded exponential
// backoff until it succeeds or ctx ends. The state (inserts failing or
// not) is logged when it changes, not per try: an outage of an hour is two
// log lines, and the backoff metrics show it meanwhile.
func (s *Sink) write(ctx context.Context, b *batch) error {
	rows, written := 0, true
	for i := range b.parts {
		rows += b.parts[i].len()
		written = written && b.parts[i].done
	}
	if !written { // not the pending batches' feed: their batches were counted
		metrics.AnalyticsBatchRows.Observe(float64(rows))
	}
	delay := s.o.MinBackoff
	for {
		err := s.insert(ctx, b)
		if err == nil {
			s.succeeded()
			return nil
		}
		metrics.AnalyticsErrors.Inc()
		s.failed(err, rows)
		wait := delay + rand.N(delay/5+1) // jitter: replicas recovering together don't insert in step
		metrics.AnalyticsBackoff.Set(wait.Seconds())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		delay = min(delay*2, s.o.MaxBackoff)
	}
}

func (s *Sink) failed(err error, rows int) {
	s.failures++
	if !s.failingSince.IsZero() {
		return
	}
	s.failingSince = time.Now()
	metrics.AnalyticsFailing.Set(1)
	s.o.Log.Warn("ClickHouse inserts failing; the sink backs off and retries (execution logs are delayed, not lost; deliveries go on)",
		"rows", rows, "err", err)
}

func (s *Sink) succeeded() {
	if s.failingSince.IsZero() {
		return
	}
	s.o.Log.Info("ClickHouse inserts recovered", "failed_for", time.Since(s.failingSince).Round(time.Millisecond).String(), "failed_tries", s.failures)
	s.failingSince, s.failures = time.Time{}, 0
	metrics.AnalyticsFailing.Set(0)
	metrics.AnalyticsBackoff.Set(0)
}

// insert writes the parts of b not written yet, one insert each, and
// feeds the aggregates with each group of parts once it is written (see
// feedParts), unless b.baseOnly.
func (s *Sink) insert(ctx context.Context, b *batch) error {
	// An insert in progress at shutdown may finish within the grace period;
	// the batch is not committed otherwise and will be read again.
	deadline := time.Now().Add(min(30*time.Second, s.o.Grace*3/4))
	if v := s.stopBy.Load(); v != 0 && time.Unix(0, v).Before(deadline) {
		deadline = time.Unix(0, v)
	}
	ictx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	for g, parts := range feedParts {
		rows := 0
		for _, i := range parts {
			p := &b.parts[i]
			rows += p.len()
			if p.done || p.len() == 0 {
				continue
			}
			if err := s.insertPart(ictx, p); err != nil {
				return err
			}
		}
		if b.fed[g] || rows == 0 || b.baseOnly {
			continue
		}
		// No deduplication token: the feed is guarded by its high-water
		// marks instead. (They assume a group's rows of one partition are
		// fed in offset order: a batch that mixed decoded rows and raw
		// records of one feed, which webhookd's writers do not produce,
		// would be fed in two inserts.)
		err := s.store.Feed(ictx, b.feedBatch(parts))
		if err != nil {
			// A record's form the feed refuses though its table took it:
			// the group's records as webhookd writes them, once.
			rewritten := false
			for _, i := range parts {
				rewritten = s.rewriteRecords(&b.parts[i], true) || rewritten
			}
			if rewritten {
				err = s.store.Feed(ictx, b.feedBatch(parts))
			}
		}
		if err != nil {
			return fmt.Errorf("%s feed: %w", b.parts[parts[0]].table, err)
		}
		b.fed[g] = true
	}
	return nil
}

func (s *Sink) insertPart(ctx context.Context, p *part) error {
	q := *p
	if p.failed {
		// The last insert of these rows failed, but may have been written
		// (a timeout after the server took it): insert only what is missing.
		ids, _ := p.keys()
		stored, err := s.store.StoredKeys(ctx, p.table, ids)
		if err != nil {
			return fmt.Errorf("%s: %w", p.table, err)
		}
		if len(stored) > 0 {
			q = p.without(stored)
			// Written by the insert that "failed": count them now.
			metrics.AnalyticsRows.WithLabelValues(p.table).Add(float64(p.len() - q.len()))
		}
		if q.len() == 0 {
			p.done = true
			return nil
		}
	}
	ctx = WithDedupToken(ctx, q.token())
	start := time.Now()
	var err error
	switch {
	case len(q.attempts) > 0:
		err = s.store.InsertAttempts(ctx, q.attempts)
	case len(q.executions) > 0:
		err = s.store.InsertExecutions(ctx, q.executions)
	case len(q.dead) > 0:
		err = s.store.InsertDeadLetters(ctx, q.dead)
	default:
		err = s.store.InsertRecords(ctx, q.table, q.recs)
	}
	metrics.AnalyticsInsertLatency.WithLabelValues(q.table).Observe(time.Since(start).Seconds())
	if err != nil {
		p.failed = true
		if s.rewriteRecords(p, false) {
			// The refusal was (most likely) a record's: the part as
			// webhookd writes it, at once.
			return s.insertPart(ctx, p)
		}
		return fmt.Errorf("%s: %w", p.table, err)
	}
	p.done = true
	metrics.AnalyticsRows.WithLabelValues(p.table).Add(float64(q.len()))
	return nil
}
