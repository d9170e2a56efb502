package analytics

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// queriesOutliveCalls marks a backend whose queries can go on after their
// call returned: a ClickHouse server, where an INSERT whose client timed out
// may still write its rows. chDB runs a query within its call.
type queriesOutliveCalls interface{ queriesOutliveCalls() }

func (*serverBackend) queriesOutliveCalls() {}

// DefaultFeedSettleWait is how long a feed waits for the feed inserts that
// failed on this side to end on the server before it stops them.
const DefaultFeedSettleWait = 30 * time.Second

// feedSettle tracks the feed inserts whose call failed (settleFeeds).
type feedSettle struct {
	prefix string       // this store's query ids' prefix
	seq    atomic.Int64 // the last query id's number
	wait   time.Duration
	poll   time.Duration
	now    func() time.Time

	mu        sync.Mutex
	unsettled []string
	since     time.Time // when the oldest of them failed
}

func newFeedSettle() *feedSettle {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &feedSettle{prefix: "webhookd-feed-" + hex.EncodeToString(b) + "-", wait: DefaultFeedSettleWait, poll: 100 * time.Millisecond, now: time.Now}
}

type queryIDKey struct{}

// withQueryID gives the query run with ctx the id id (server backends).
func withQueryID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, queryIDKey{}, id)
}

// queryID is the id withQueryID set on ctx ("" for none).
func queryID(ctx context.Context) string {
	id, _ := ctx.Value(queryIDKey{}).(string)
	return id
}

// feedContext is ctx for one feed insert: on a server, with a query id of
// its own, so that a failed one can be waited for (settleFeeds).
func (s *Store) feedContext(ctx context.Context) context.Context {
	if _, ok := s.b.(queriesOutliveCalls); !ok {
		return ctx
	}
	return withQueryID(ctx, s.settle.prefix+strconv.FormatInt(s.settle.seq.Add(1), 10))
}

// feedFailed records that the feed insert run with ctx failed: it may
// still be running on the server.
func (s *Store) feedFailed(ctx context.Context) {
	if id := queryID(ctx); id != "" {
		s.settle.mu.Lock()
		if len(s.settle.unsettled) == 0 {
			s.settle.since = s.settle.now()
		}
		s.settle.unsettled = append(s.settle.unsettled, id)
		s.settle.mu.Unlock()
	}
}

// settleFeeds waits until no feed insert that failed on this side is still
// running on the server. Such an insert may yet write its rows, their
// high-water marks and their keys: a feed that read the marks and keys
// before it ended would feed the same rows again, and they would count
// twice. Once the settle wait has passed since the oldest failed — counted
// from the failure, not from this call: a call may end first (its context:
// the sink's insert deadline) and the sink call again — it stops them
// (KILL QUERY … SYNC: stopped or finished, either way done); still running
// after that, the feed fails, and the sink tries it again after its backoff.
func (s *Store) settleFeeds(ctx context.Context) error {
	s.settle.mu.Lock()
	ids := append([]string(nil), s.settle.unsettled...)
	deadline := s.settle.since.Add(s.settle.wait)
	s.settle.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	processes, on := "system.processes", ""
	if s.cluster != "" {
		processes, on = "clusterAllReplicas('"+s.cluster+"', system.processes)", " ON CLUSTER '"+s.cluster+"'"
	}
	p := Params{"ids": ids}
	killed := false
	for {
		rows, err := s.b.query(ctx, "SELECT count() FROM "+processes+" WHERE query_id IN {ids:Array(String)}", p)
		if err != nil {
			return fmt.Errorf("feed inserts that failed: are they still running: %w", err)
		}
		n := int64(0)
		if len(rows) == 1 && len(rows[0]) == 1 {
			n = asInt(rows[0][0])
		}
		switch {
		case n == 0:
			s.settle.mu.Lock()
			s.settle.unsettled = s.settle.unsettled[len(ids):]
			s.settle.mu.Unlock()
			return nil
		case killed:
			return fmt.Errorf("%d feed inserts that failed here still run on ClickHouse after %s and KILL QUERY", n, s.settle.wait)
		case !s.settle.now().Before(deadline):
			// The ids inline (this store's own: letters, digits and
			// dashes), not as a parameter: KILL is not a SELECT.
			if err := s.b.exec(ctx, "KILL QUERY"+on+" WHERE query_id IN ('"+strings.Join(ids, "', '")+"') SYNC", nil); err != nil {
				return fmt.Errorf("stop the feed inserts that failed: %w", err)
			}
			killed = true
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.settle.poll):
		}
	}
}
