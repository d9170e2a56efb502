package analytics

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
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
