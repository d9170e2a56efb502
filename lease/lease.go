// Package lease is mutual exclusion among replicas through a
// single-partition Kafka topic: whoever wants the lease appends a claim, and
// every replica, reading the same log in the same order, agrees that the
// first claim made while the lease was free is the holder. Kafka's log order
// is the consensus; no clock is compared between replicas.
//
// The holder renews (a record every TTL/3) and releases (a record) when
// done. A holder that stops renewing — killed mid-work — is presumed dead by
// a waiter that has seen nothing from it for TTL on its own clock; the
// waiter then appends a claim that supersedes it, naming the holder's token
// and the offset of the holder's last record it saw. That claim wins only if
// the holder wrote nothing since (a late renewal makes it lose), so two
// waiters, or a waiter and a holder that was only slow, cannot both win. A
// holder that learns from the log it was superseded has its context
// cancelled (ErrLost). As with any lease, work under it that cannot be
// fenced (DDL on ClickHouse) should be idempotent: a holder presumed dead
// wrongly (paused longer than TTL) may still finish a statement.
//
// webhookd uses it so that one replica at a time migrates the ClickHouse
// schema (package analytics) when several start together. The topic's
// retention must be far longer than any lease is held (days vs seconds):
// the log is read from its start.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrLost is the cause of a held context's end when another replica took
// the lease over, having presumed this one dead.
var ErrLost = errors.New("lease lost")

// errReleased is the cause of a held context's end after release.
var errReleased = errors.New("lease released")

// Options configure a lease.
type Options struct {
	ClientOpts []kgo.Opt // brokers, TLS, SASL
	// Topic has one partition (only partition 0 is used), cleanup delete,
	// retention of days.
	Topic string
	// Name keys the records: several leases can share the topic.
	Name string
	// Owner names this replica to the others (logs, errors); default: the
	// host name.
	Owner string
	// TTL is how long a holder may go without renewing before it is
	// presumed dead (default 30s); it renews every TTL/3.
	TTL time.Duration
	Log *slog.Logger
}

// Lease is one named lease on a topic. Acquire may be called more than once
// (one holding at a time per Lease value is the expected use).
type Lease struct{ o Options }

// New returns a lease; nothing connects until Acquire.
func New(o Options) *Lease {
	if o.TTL <= 0 {
		o.TTL = 30 * time.Second
	}
	if o.Owner == "" {
		o.Owner, _ = os.Hostname()
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Lease{o: o}
}

// Record ops.
const (
	opClaim   = "claim"
	opRenew   = "renew"
	opRelease = "release"
)

// record is a lease record's value (JSON); the key is the lease's name.
type record struct {
	Op    string `json:"op"`
	Token string `json:"token"` // one per Acquire
	Owner string `json:"owner"`
	// A claim that presumes the holder dead names it and the offset of its
	// last record the claimant saw.
	Supersedes string `json:"supersedes,omitempty"`
	After      int64  `json:"after,omitempty"`
}

// state is the lease as the log says, applied record by record: the same
// records give every reader the same holders.
type state struct {
	name   string
	holder string // token; "" free
	owner  string
	last   int64     // offset of the holder's latest record
	seen   time.Time // when this reader applied it (its own clock)
	next   int64     // next offset to apply
}

func (s *state) apply(r *kgo.Record, now time.Time) {
	s.next = r.Offset + 1
	if string(r.Key) != s.name {
		return
	}
	var rec record
	if json.Unmarshal(r.Value, &rec) != nil {
		return
	}
	switch rec.Op {
	case opClaim:
		if s.holder == "" || rec.Supersedes == s.holder && rec.After == s.last {
			s.holder, s.owner, s.last, s.seen = rec.Token, rec.Owner, r.Offset, now
		}
	case opRenew:
		if rec.Token == s.holder {
			s.last, s.seen = r.Offset, now
		}
	case opRelease:
		if rec.Token == s.holder {
			s.holder, s.owner = "", ""
		}
	}
}

// Acquire blocks until this replica holds the lease, or until ctx ends
// (then its error names the holder waited for). held ends when the lease
// is lost (cause ErrLost) or released; release appends the release record
// and stops renewing (it returns once done, after at most a few seconds).
func (l *Lease) Acquire(ctx context.Context) (held context.Context, release func(), err error) {
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, l.o.ClientOpts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{l.o.Topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RecordDeliveryTimeout(10*time.Second),
		kgo.FetchMaxWait(time.Second),
	)...)
	if err != nil {
		return nil, nil, fmt.Errorf("lease %s: %w", l.o.Name, err)
	}
	defer func() {
		if err != nil {
			cl.Close()
		}
	}()
	var tok [12]byte
	_, _ = rand.Read(tok[:])
	token := hex.EncodeToString(tok[:])
	st := &state{name: l.o.Name, last: -1}
	claim := record{Op: opClaim, Token: token, Owner: l.o.Owner}
	start := time.Now()
	for {
		off, err := l.produce(ctx, cl, claim)
		if err != nil {
			return nil, nil, l.waitErr(ctx, st, start, err)
		}
		for st.next <= off {
			if err := l.poll(ctx, cl, st); err != nil {
				return nil, nil, l.waitErr(ctx, st, start, err)
			}
		}
		if st.holder == token {
			break
		}
		// Someone else holds it: wait for its release, or for it to go
		// silent for TTL, then claim again (superseding it in the latter).
		claim.Supersedes, claim.After = "", 0
		if st.holder != "" {
			l.o.Log.Info("waiting for the lease", "lease", l.o.Name, "holder", st.owner)
		}
		for st.holder != "" {
			deadline := st.seen.Add(l.o.TTL)
			if !time.Now().Before(deadline) {
				l.o.Log.Warn("lease holder presumed dead: nothing from it for the lease's TTL", "lease", l.o.Name, "holder", st.owner, "ttl", l.o.TTL)
				claim.Supersedes, claim.After = st.holder, st.last
				break
			}
			pctx, cancel := context.WithDeadline(ctx, deadline)
			err := l.poll(pctx, cl, st)
			cancel()
			if err != nil && ctx.Err() != nil {
				return nil, nil, l.waitErr(ctx, st, start, err)
			}
		}
	}
	l.o.Log.Debug("lease acquired", "lease", l.o.Name, "waited", time.Since(start).Round(time.Millisecond))
	hctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	h := &holding{l: l, cl: cl, st: st, token: token, cancel: cancel, stop: make(chan struct{}), done: make(chan struct{})}
	h.pollCtx, h.stopPoll = context.WithCancel(context.Background())
	go h.run()
	return hctx, h.release, nil
}

func (l *Lease) waitErr(ctx context.Context, st *state, start time.Time, err error) error {
	if ctx.Err() != nil && st.holder != "" {
		return fmt.Errorf("lease %s: held by %s; gave up after %v: %w", l.o.Name, st.owner, time.Since(start).Round(time.Millisecond), err)
	}
	return fmt.Errorf("lease %s: %w", l.o.Name, err)
}

func (l *Lease) produce(ctx context.Context, cl *kgo.Client, rec record) (int64, error) {
	v, _ := json.Marshal(rec)
	r := &kgo.Record{Topic: l.o.Topic, Partition: 0, Key: []byte(l.o.Name), Value: v}
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return 0, fmt.Errorf("append %s record: %w", rec.Op, err)
	}
	return r.Offset, nil
}

// poll applies the records of one fetch; it returns ctx's error when ctx
// ended. Fetch errors are retried by the client and only logged here.
func (l *Lease) poll(ctx context.Context, cl *kgo.Client, st *state) error {
	fs := cl.PollFetches(ctx)
	fs.EachError(func(t string, p int32, err error) {
		if ctx.Err() == nil {
			l.o.Log.Warn("lease topic fetch", "topic", t, "partition", p, "err", err)
		}
	})
	now := time.Now()
	fs.EachRecord(func(r *kgo.Record) { st.apply(r, now) })
	return ctx.Err()
}

// holding renews a held lease and watches the log for a takeover.
type holding struct {
	l        *Lease
	cl       *kgo.Client
	st       *state
	token    string
	cancel   context.CancelCauseFunc
	pollCtx  context.Context
	stopPoll context.CancelFunc
	stop     chan struct{}
	once     sync.Once
	done     chan struct{}
}

func (h *holding) run() {
	defer close(h.done)
	defer h.cl.Close()
	every := h.l.o.TTL / 3
	next := time.Now().Add(every)
	for {
		select {
		case <-h.stop:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := h.l.produce(ctx, h.cl, record{Op: opRelease, Token: h.token, Owner: h.l.o.Owner}); err != nil {
				// The others take it over after TTL.
				h.l.o.Log.Warn("lease release", "lease", h.l.o.Name, "err", err)
			}
			cancel()
			h.cancel(errReleased)
			return
		default:
		}
		if !time.Now().Before(next) {
			ctx, cancel := context.WithTimeout(h.pollCtx, every)
			if _, err := h.l.produce(ctx, h.cl, record{Op: opRenew, Token: h.token, Owner: h.l.o.Owner}); err != nil && h.pollCtx.Err() == nil {
				h.l.o.Log.Warn("lease renewal", "lease", h.l.o.Name, "err", err)
			}
			cancel()
			next = time.Now().Add(every)
		}
		pctx, cancel := context.WithDeadline(h.pollCtx, next)
		_ = h.l.poll(pctx, h.cl, h.st)
		cancel()
		if h.st.holder != h.token {
			h.l.o.Log.Error("lease lost: another replica presumed this one dead", "lease", h.l.o.Name, "holder", h.st.owner)
			h.cancel(fmt.Errorf("%w: %s took it over", ErrLost, h.st.owner))
			<-h.stop
			return
		}
	}
}

func (h *holding) release() {
	h.once.Do(func() {
		close(h.stop)
		h.stopPoll()
	})
	<-h.done
}
