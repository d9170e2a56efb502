package analytics

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// stillRunning is a ClickHouse server whose feed insert into table outlives
// its call: the call fails (the client's timeout) while the insert goes on
// on the server, and writes its rows once released — or never, when a
// KILL QUERY stops it first.
type stillRunning struct {
	backend
	table    string
	armed    bool
	killable bool // a first look finds it running; only KILL QUERY ends it

	id            string // the insert's query id
	release, done chan struct{}
	releaseOnce   sync.Once
	killed        bool
	checks, kills int
}

func newStillRunning(b backend, table string, killable bool) *stillRunning {
	return &stillRunning{backend: b, table: table, armed: true, killable: killable, release: make(chan struct{}), done: make(chan struct{})}
}

func (b *stillRunning) queriesOutliveCalls() {}

func (b *stillRunning) let() { b.releaseOnce.Do(func() { close(b.release) }) }

func (b *stillRunning) insertJSON(ctx context.Context, table string, recs [][]byte) error {
	ji := b.backend.(jsonInserter)
	if !b.armed || !strings.Contains(table, b.table) {
		return ji.insertJSON(ctx, table, recs)
	}
	b.armed, b.id = false, queryID(ctx)
	go func() {
		defer close(b.done)
		<-b.release
		if !b.killed {
			_ = ji.insertJSON(context.Background(), table, recs)
		}
	}()
	return errors.New("i/o timeout")
}

func (b *stillRunning) query(ctx context.Context, q string, p Params) ([][]any, error) {
	if !strings.Contains(q, "system.processes") {
		return b.backend.query(ctx, q, p)
	}
	b.checks++
	ids, _ := p["ids"].([]string)
	switch {
	case b.id == "" || !slices.Contains(ids, b.id):
		return [][]any{{json.Number("0")}}, nil
	case b.checks == 1:
		if !b.killable {
			b.let() // it ends while the feed waits
		}
		return [][]any{{json.Number("1")}}, nil
	}
	<-b.done
	return [][]any{{json.Number("0")}}, nil
}

func (b *stillRunning) exec(ctx context.Context, q string, p Params) error {
	if !strings.HasPrefix(q, "KILL QUERY") {
		return b.backend.exec(ctx, q, p)
	}
	if strings.Contains(q, "'"+b.id+"'") {
		b.kills++
		b.killed = true
		b.let()
		<-b.done // SYNC
	}
	return nil
}

// feedStillRunning writes an execution whose feed insert fails on this side
// while it goes on on the server (b), then the sink's retry of it with a
// redelivered copy; then lets the insert end if nothing did before.
func feedStillRunning(t *testing.T, s *Store, b *stillRunning) {
	t.Helper()
	ctx := context.Background()
	s.b = b
	if err := writeCopies(ctx, s, 0); err == nil {
		t.Fatal("the failed feed reported no error")
	}
	if !strings.HasPrefix(b.id, s.settle.prefix) {
		t.Fatalf("the feed insert ran with query id %q, want one starting %q", b.id, s.settle.prefix)
	}
	if err := writeCopies(ctx, s, 0, 1); err != nil {
		t.Fatal(err)
	}
	b.let() // without the wait, the first insert lands only now
	<-b.done
}

// A feed insert that failed on this side but still runs on the server
// (its client timed out) is waited for before the feed is tried again:
// the retry sees its rows' marks and keys, and the execution counts once.
func TestFeedStillRunningOnTheServerCountsOnce(t *testing.T) {
	s := openTestStore(t, "fedrunning")
	b := newStillRunning(s.b, "executions_feed", false)
	feedStillRunning(t, s, b)
	wantExecutions(context.Background(), t, s, 1)
	if b.checks < 2 || b.kills != 0 {
		t.Fatalf("%d looks at the running queries and %d kills; want the retry to wait for the insert to end", b.checks, b.kills)
	}
}

// One still running after the settle wait is stopped (KILL QUERY … SYNC),
// and the retry feeds the rows it did not write.
func TestFeedStillRunningAfterTheWaitIsStopped(t *testing.T) {
	s := openTestStore(t, "fedkilled")
	s.settle.wait = 0
	b := newStillRunning(s.b, "executions_feed", true)
	feedStillRunning(t, s, b)
	wantExecutions(context.Background(), t, s, 1)
	if b.kills != 1 {
		t.Fatalf("%d kills; want the insert stopped once", b.kills)
	}
}

// runningServer is a ClickHouse server on which the queries named in
// running go on until a KILL QUERY names them.
type runningServer struct {
	backend
	running map[string]bool
	kills   int
}

func (*runningServer) queriesOutliveCalls() {}

func (r *runningServer) query(_ context.Context, q string, p Params) ([][]any, error) {
	n := 0
	for _, id := range p["ids"].([]string) {
		if r.running[id] {
			n++
		}
	}
	return [][]any{{json.Number(strconv.Itoa(n))}}, nil
}

func (r *runningServer) exec(_ context.Context, q string, _ Params) error {
	if strings.HasPrefix(q, "KILL QUERY") {
		r.kills++
		for id := range r.running {
			if strings.Contains(q, "'"+id+"'") {
				delete(r.running, id)
			}
		}
	}
	return nil
}

// The settle wait counts from the failure, not from each feed: the sink's
// feeds end at its insert deadline (shorter than the wait) and it calls
// again, and the insert is stopped once the wait has passed since it
// failed — without it, every call would wait anew and none would stop it.
func TestFeedSettleWaitCountsFromTheFailure(t *testing.T) {
	srv := &runningServer{running: map[string]bool{}}
	s := newStore(srv, "clickhouse", Options{Database: "settle"})
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	s.settle.now = func() time.Time { return now }
	fctx := s.feedContext(context.Background())
	srv.running[queryID(fctx)] = true
	s.feedFailed(fctx)
	ended, cancel := context.WithCancel(context.Background())
	cancel() // each feed's deadline passes while it waits
	for i := range 3 {
		if err := s.settleFeeds(ended); !errors.Is(err, context.Canceled) || srv.kills != 0 {
			t.Fatalf("feed %d, %s after the failure: %v, %d kills; want it to wait", i, time.Duration(i)*10*time.Second, err, srv.kills)
		}
		now = now.Add(10 * time.Second)
	}
	if err := s.settleFeeds(ended); err != nil || srv.kills != 1 {
		t.Fatalf("30 s after the failure: %v, %d kills; want the insert stopped and the feed to go on", err, srv.kills)
	}
	if err := s.settleFeeds(ended); err != nil || srv.kills != 1 {
		t.Fatalf("after the stop: %v, %d kills; want nothing left to wait for", err, srv.kills)
	}
}
