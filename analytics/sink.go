package analytics

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
	// Grace bounds the final flush on shutdown.
	Grace time.Duration
	Log   *slog.Logger
}

// Sink consumes the executions and DLQ topics and writes them to ClickHouse
// in batches bounded by size and time. Offsets are committed only after
// ClickHouse acknowledged the insert, and replays are idempotent (base
// tables: see Schema; aggregates: see Store.Write), so ClickHouse being down delays logs but loses none; delivery does
// not wait for it.
type Sink struct {
	o     SinkOptions
	store *Store
	ready atomic.Bool
	// crashAfterInsert, when set and true for a batch, stops the sink
	// between the insert and the commit, as a crash would (tests).
	crashAfterInsert func() bool
}

// errCrashed is Run's answer when crashAfterInsert stopped it.
var errCrashed = errors.New("analytics sink stopped after an insert, before its commit (test crash)")

// NewSink returns a sink writing to store.
func NewSink(o SinkOptions, store *Store) *Sink {
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
	return &Sink{o: o, store: store}
}

// Name implements the worker interface.
func (s *Sink) Name() string { return "analytics" }

// Ready reports whether the sink is consuming.
func (s *Sink) Ready() bool { return s.ready.Load() }

type batch struct {
	recs  []*kgo.Record
	rows  Batch
	first time.Time
}

func originOf(r *kgo.Record) Origin {
	return Origin{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
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
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { s.ready.Store(true) }),
	}, s.o.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("analytics sink: %w", err)
	}
	defer cl.Close()
	b := &batch{}
	for {
		wait := s.o.FlushInterval
		if len(b.recs) > 0 {
			wait = max(time.Until(b.first.Add(s.o.FlushInterval)), time.Millisecond)
		}
		pctx, cancel := context.WithTimeout(ctx, wait)
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
		fetches.EachRecord(func(r *kgo.Record) { s.add(b, r) })
		due := len(b.recs) > 0 && (len(b.recs) >= s.o.BatchSize || time.Since(b.first) >= s.o.FlushInterval || ctx.Err() != nil)
		if due {
			if err := s.flush(ctx, cl, b); err != nil {
				if errors.Is(err, errCrashed) {
					return err
				}
				return nil // only when ctx ended; the batch will be read again
			}
			b = &batch{}
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

func (s *Sink) add(b *batch, r *kgo.Record) {
	if len(b.recs) == 0 {
		b.first = time.Now()
	}
	b.recs = append(b.recs, r)
	switch r.Topic {
	case s.o.DLQTopic:
		var d dlq.Record
		if err := json.Unmarshal(r.Value, &d); err != nil || d.ID == "" {
			s.o.Log.Error("skipping unreadable DLQ record", "partition", r.Partition, "offset", r.Offset, "err", err)
			return
		}
		b.rows.Dead = append(b.rows.Dead, DeadLetterRow{Record: d, Version: r.Timestamp.UnixMicro()})
		b.rows.DeadOrigins = append(b.rows.DeadOrigins, originOf(r))
	default:
		// The hot path: a store that reads records as they are gets them
		// without a decode in Go (they are checked to be JSON, so one bad
		// record cannot fail a batch).
		if s.store.TakesRecords() && json.Valid(r.Value) {
			switch recordKind(r.Value) {
			case delivery.KindAttempt:
				b.rows.AttemptRecs = append(b.rows.AttemptRecs, r.Value)
				b.rows.AttemptRecOrigins = append(b.rows.AttemptRecOrigins, originOf(r))
				return
			case delivery.KindExecution:
				b.rows.ExecutionRecs = append(b.rows.ExecutionRecs, r.Value)
				b.rows.ExecutionRecOrigins = append(b.rows.ExecutionRecOrigins, originOf(r))
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
				b.rows.Attempts = append(b.rows.Attempts, a)
				b.rows.AttemptOrigins = append(b.rows.AttemptOrigins, originOf(r))
			}
		case delivery.KindExecution:
			var e delivery.Execution
			if err = json.Unmarshal(r.Value, &e); err == nil {
				b.rows.Executions = append(b.rows.Executions, e)
				b.rows.ExecutionOrigins = append(b.rows.ExecutionOrigins, originOf(r))
			}
		default:
			err = fmt.Errorf("unknown kind %q", kind.Kind)
		}
		if err != nil {
			s.o.Log.Error("skipping unreadable executions record", "partition", r.Partition, "offset", r.Offset, "err", err)
		}
	}
}

// flush inserts the batch, retrying with backoff until it succeeds or ctx
// ends, then commits its offsets.
func (s *Sink) flush(ctx context.Context, cl *kgo.Client, b *batch) error {
	backoff := 200 * time.Millisecond
	for {
		err := s.insert(ctx, b)
		if err == nil {
			break
		}
		metrics.AnalyticsErrors.Inc()
		s.o.Log.Warn("ClickHouse insert failed; will retry (logs are delayed, not lost)", "rows", len(b.recs), "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
	if s.crashAfterInsert != nil && s.crashAfterInsert() {
		return errCrashed
	}
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.CommitRecords(cctx, b.recs...); err != nil {
		// Harmless beyond a replay: inserts are idempotent.
		s.o.Log.Warn("analytics commit failed; rows may be inserted again", "err", err)
	}
	return nil
}

func (s *Sink) insert(ctx context.Context, b *batch) error {
	// An insert in progress at shutdown may finish within the grace period;
	// the batch is not committed otherwise and will be read again.
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(30*time.Second, s.o.Grace*3/4))
	defer cancel()
	if err := s.store.Write(ictx, &b.rows); err != nil {
		return err
	}
	metrics.AnalyticsRows.WithLabelValues("attempts").Add(float64(len(b.rows.Attempts) + len(b.rows.AttemptRecs)))
	metrics.AnalyticsRows.WithLabelValues("executions").Add(float64(len(b.rows.Executions) + len(b.rows.ExecutionRecs)))
	metrics.AnalyticsRows.WithLabelValues("dlq_items").Add(float64(len(b.rows.Dead)))
	return nil
}
