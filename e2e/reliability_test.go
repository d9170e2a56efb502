//go:build reliability

// The reliability suite (make test-reliability): crashes under load,
// rebalances between replicas, and every way a receiver can fail. Slower than
// the rest, so apart from make test; .ci/run runs both.

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// pairReceiver counts 2xx answers per (pipeline path, event seq) and can fail
// a delivery's first attempt.
type pairReceiver struct {
	*httptest.Server
	mu        sync.Mutex
	got       map[string]int // "/a:123" → 2xx answers
	total     int
	failFirst map[string]bool // paths whose first attempt gets a 500
	firsts    map[string]int  // "/b:123" → first attempts (each a 500)
	// For twoWays: the run (crashes so far, crashed) of each 2xx, and the
	// pairs that had a first attempt after a 2xx.
	run     int
	okRuns  map[string][]int
	refirst map[string]bool
	changed chan struct{}
}

func newPairReceiver(t *testing.T, failFirst ...string) *pairReceiver {
	r := &pairReceiver{got: map[string]int{}, failFirst: map[string]bool{}, firsts: map[string]int{}, okRuns: map[string][]int{}, refirst: map[string]bool{}, changed: make(chan struct{}, 1)}
	for _, p := range failFirst {
		r.failFirst[p] = true
	}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var b struct{ Seq json.Number }
		_ = json.Unmarshal(body, &b)
		if r.failFirst[req.URL.Path] && req.Header.Get("X-Afftok-Retry-Count") == "0" {
			r.mu.Lock()
			if r.got[req.URL.Path+":"+b.Seq.String()] > 0 {
				r.refirst[req.URL.Path+":"+b.Seq.String()] = true
			}
			r.firsts[req.URL.Path+":"+b.Seq.String()]++
			r.mu.Unlock()
			w.WriteHeader(500)
			return
		}
		r.mu.Lock()
		r.got[req.URL.Path+":"+b.Seq.String()]++
		r.okRuns[req.URL.Path+":"+b.Seq.String()] = append(r.okRuns[req.URL.Path+":"+b.Seq.String()], r.run)
		r.total++
		r.mu.Unlock()
		select {
		case r.changed <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(r.Close)
	return r
}

// counts are the pairs delivered at least once and the extra deliveries.
func (r *pairReceiver) counts() (pairs, dups int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got), r.total - len(r.got)
}

// crashed counts a crash of the sender: the deliveries after it are the next
// run's. Called once the killed process is gone, before the next one starts.
func (r *pairReceiver) crashed() {
	r.mu.Lock()
	r.run++
	r.mu.Unlock()
}

// twoWays counts the pairs of a failing-first path redone two ways by one
// crash — by the retry task the first reading left and by the event read
// again, what transactions (WEBHOOKD_KAFKA_TRANSACTIONS) rule out: a first
// attempt after the pair's 2xx (the event read again although its retry
// task had been delivered), or two 2xx in one run (both the retry task and
// the re-read event's delivered). A pair whose event was read again after
// one crash (its first attempt was in flight) and whose retry was then in
// flight at the next crash is redone once by each: only in-flight work, as
// transactions promise, so it is not counted (but reported: byTwoCrashes).
func (r *pairReceiver) twoWays() (n, byTwoCrashes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, f := range r.firsts {
		if f < 2 || r.got[k] < 2 {
			continue
		}
		runs := r.okRuns[k]
		sameRun := false
		for i := 1; i < len(runs); i++ {
			sameRun = sameRun || runs[i] == runs[i-1]
		}
		if r.refirst[k] || sameRun {
			n++
		} else {
			byTwoCrashes++
		}
	}
	return n, byTwoCrashes
}

// waitPairs waits until n pairs are delivered. It fails once no new pair
// has come for idle: a bound on a stall (lost work never arrives), not on
// how fast a busy machine delivers.
func (r *pairReceiver) waitPairs(t *testing.T, n int, idle time.Duration) {
	t.Helper()
	stalled := time.NewTimer(idle)
	defer stalled.Stop()
	for last := -1; ; {
		p, _ := r.counts()
		if p >= n {
			return
		}
		if p > last {
			last = p
			stalled.Reset(idle)
		}
		select {
		case <-r.changed:
		case <-stalled.C:
			t.Fatalf("%d of %d pairs delivered, none more for %v", p, n, idle)
		}
	}
}

// produceSeq produces events seq from..to-1 on topic, spread over partitions
// by key, all acknowledged.
func produceSeq(t *testing.T, topic string, from, to int) {
	t.Helper()
	recs := make([]*kgo.Record, 0, to-from)
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i)),
			Value: []byte(fmt.Sprintf(`{"id":"evt_%d","type":"click.tracked","data":{"id":"c%d","seq":%d}}`, i, i, i))})
	}
	if err := producer.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// crashAt SIGKILLs and restarts in when rcv has each of the given numbers
// of pairs, then waits for all 2×events pairs (each wait failing after
// arriveWithin without a new pair). It returns the duplicates
// each crash caused: counted once the work it left undone is redone (the
// next quarter of the pairs is delivered; under load part of that redo can
// still be in flight at the next crash, see twoWays).
func crashAt(t *testing.T, in *instance, rcv *pairReceiver, events int, ats ...int) []int {
	t.Helper()
	var perCrash []int
	for _, at := range ats {
		rcv.waitPairs(t, at, arriveWithin)
		_, before := rcv.counts()
		in.Kill()
		rcv.crashed()
		in.Start(t)
		rcv.waitPairs(t, min(at+events/2, 2*events), arriveWithin)
		_, after := rcv.counts()
		perCrash = append(perCrash, after-before)
	}
	rcv.waitPairs(t, 2*events, arriveWithin)
	return perCrash
}

const relPipelines = `{"name":"rel-%s","trigger_type":"click","steps":[{"order":1,"url":"%s/%s","body_template":{"seq":"{{click.seq}}"},
  "retry_policy":{"max_attempts":5,"backoff_type":"fixed","initial_delay_seconds":5}}]}`

// Three SIGKILLs of webhookd during 50,000 events × 2 pipelines (one of them
// failing every delivery's first attempt, so retries are in flight at every
// kill): every (event, pipeline) pair ends delivered, none lost; the
// duplicates each crash causes are counted and bounded by what a crash can
// leave undone.
func TestReliabilityThreeCrashesLoseNothing(t *testing.T) {
	const prefix, events, maxInFlight = "rel.", 50000, 256
	in := startInstance(t, "dev", merge(ownTopics(prefix), map[string]string{
		"WEBHOOKD_TOPIC_PARTITIONS": "3", "WEBHOOKD_RETRY_TIERS": "100ms,500ms,1s", "WEBHOOKD_RETRY_DELAY_SCALE": "0.1",
		"WEBHOOKD_KAFKA_SESSION_TIMEOUT": "6s", "WEBHOOKD_MAX_IN_FLIGHT": strconv.Itoa(maxInFlight),
		"WEBHOOKD_PARTITION_MAX_IN_FLIGHT": "64", "WEBHOOKD_BREAKER_FAILURES": "0", "WEBHOOKD_LOG_LEVEL": "info",
		// Work is handed between topics in transactions (issue 7): after a
		// crash only what was in flight or not yet in a transaction is redone,
		// never both by a retry task and by the re-read event. The receiver
		// is one host for both pipelines: its cap is the global limit, so
		// deliveries wait for it rather than being deferred to the retry path.
		"WEBHOOKD_KAFKA_TRANSACTIONS": "true", "WEBHOOKD_MAX_IN_FLIGHT_PER_HOST": strconv.Itoa(maxInFlight),
	}))
	rcv := newPairReceiver(t, "/b")
	pa := in.CreatePipeline(t, fmt.Sprintf(relPipelines, "a", rcv.URL, "a"))
	pb := in.CreatePipeline(t, fmt.Sprintf(relPipelines, "b", rcv.URL, "b"))
	produceSeq(t, prefix+"events", 0, events)

	perCrash := crashAt(t, in, rcv, events, events/2, events, events*3/2) // 25 %, 50 %, 75 % of the pairs
	in.WaitCaughtUp(t)
	pairs, dups := rcv.counts()
	if code, out := in.API(t, "GET", "/api/admin/webhooks/logs/dlq?limit=1", nil); code != 200 || out["data"].(map[string]any)["pagination"].(map[string]any)["total"] != 0.0 {
		t.Errorf("DLQ: %d %v", code, out)
	}
	// The statistics count each execution once, though the crashes made
	// some deliver twice (issue 10): b's executions all went into retry
	// first, and none is left "in retry".
	in.WaitAnalyticsCaughtUp(t)
	for _, p := range []map[string]any{pa, pb} {
		_, out := in.API(t, "GET", "/api/admin/webhooks/pipelines/"+p["id"].(string), nil)
		st, _ := out["data"].(map[string]any)["stats"].(map[string]any)
		if st["total_executions"] != float64(events) || st["successful"] != float64(events) || st["in_retry"] != 0.0 {
			t.Errorf("pipeline %s stats after the crashes: %v; want %d executions, all successful, none in retry", p["name"], st, events)
		}
	}
	two, byTwo := rcv.twoWays()
	t.Logf("%d events × 2 pipelines, 3 SIGKILLs: %d pairs delivered, none lost; %d duplicates in all, per crash %v; %d pairs redone both by a retry task and by their re-read event (%d more redone once by each of two crashes)",
		events, pairs, dups, perCrash, two, byTwo)
	// A crash can leave undone what was in flight and what finished since
	// the last commit: per consumer group at most its in-flight limit
	// (event dispatcher, retry tiers, failover: five groups here).
	for i, d := range perCrash {
		if d > 5*maxInFlight {
			t.Errorf("crash %d caused %d duplicates, more than the in-flight limits allow (%d)", i+1, d, 5*maxInFlight)
		}
	}
}

// With transactions (WEBHOOKD_KAFKA_TRANSACTIONS) a SIGKILL while a pipeline
// fails every first attempt (retry tasks in flight) leaves no delivery to be
// redone two ways — by the retry task already handed on and by the event
// read again — and loses nothing. Without them, the same crashes are counted
// for comparison.
func TestReliabilityTransactionsRedoNoDeliveryTwoWays(t *testing.T) {
	for _, txn := range []string{"false", "true"} {
		t.Run("transactions="+txn, func(t *testing.T) {
			prefix, events := "tw"+txn+".", 10000
			in := startInstance(t, "dev", merge(ownTopics(prefix), map[string]string{
				"WEBHOOKD_TOPIC_PARTITIONS": "3", "WEBHOOKD_RETRY_TIERS": "100ms,500ms,1s", "WEBHOOKD_RETRY_DELAY_SCALE": "0.1",
				"WEBHOOKD_KAFKA_SESSION_TIMEOUT": "6s", "WEBHOOKD_MAX_IN_FLIGHT": "256", "WEBHOOKD_PARTITION_MAX_IN_FLIGHT": "64",
				"WEBHOOKD_BREAKER_FAILURES": "0", "WEBHOOKD_LOG_LEVEL": "info", "WEBHOOKD_KAFKA_TRANSACTIONS": txn,
			}))
			rcv := newPairReceiver(t, "/b")
			in.CreatePipeline(t, fmt.Sprintf(relPipelines, "a", rcv.URL, "a"))
			in.CreatePipeline(t, fmt.Sprintf(relPipelines, "b", rcv.URL, "b"))
			produceSeq(t, prefix+"events", 0, events)
			perCrash := crashAt(t, in, rcv, events, events/2, events)
			in.WaitCaughtUp(t)
			pairs, dups := rcv.counts()
			two, byTwo := rcv.twoWays()
			t.Logf("transactions=%s: %d events × 2 pipelines, 2 SIGKILLs: %d pairs delivered, none lost; %d duplicates, per crash %v; %d pairs redone two ways by one crash (%d more redone once by each crash)",
				txn, events, pairs, dups, perCrash, two, byTwo)
			if txn == "true" && two > 0 {
				t.Errorf("%d pairs were delivered both by their retry task and after their event was read again", two)
			}
		})
	}
}

// twoWays tells a pair redone two ways by one crash from one whose
// duplicates each crash left in flight: the event read again after one crash,
// its retry in flight at the next.
func TestReliabilityTwoWaysCountsOneCrashsRedoOnly(t *testing.T) {
	rcv := newPairReceiver(t, "/b")
	send := func(seq, retry int) {
		t.Helper()
		req, _ := http.NewRequest("POST", rcv.URL+"/b", strings.NewReader(fmt.Sprintf(`{"seq":%d}`, seq)))
		req.Header.Set("X-Afftok-Retry-Count", strconv.Itoa(retry))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// 1: read again after the first crash, its retry in flight at the second.
	send(1, 0)
	rcv.crashed()
	send(1, 0)
	send(1, 1)
	// 2: read again although its retry had been delivered.
	send(2, 0)
	send(2, 1)
	// 3: its retry task and the re-read event's both delivered.
	send(3, 0)
	rcv.crashed()
	send(3, 0)
	send(3, 1)
	send(3, 1)
	send(2, 0)
	send(2, 1)
	rcv.crashed()
	send(1, 1)
	if n, byTwo := rcv.twoWays(); n != 2 || byTwo != 1 {
		t.Errorf("%d pairs counted two ways, %d by two crashes; want 2 (/b:2 and /b:3) and 1 (/b:1)", n, byTwo)
	}
}

// Two replicas share the consumer groups: a second one joining mid-run and
// the first one then killed lose nothing, and the survivor takes the dead
// one's partitions over once the session timeout has passed: the broker
// drops the dead member after the session timeout (not the default 10 s, nor
// later), and the rebalance that follows does not wait for it.
func TestReliabilityRebalanceAndTakeover(t *testing.T) {
	const prefix, events, session = "reb.", 12000, 6 * time.Second
	// kgo's default heartbeat interval; webhookd does not change it. The
	// survivor learns of the rebalance on its next heartbeat.
	const heartbeat = 3 * time.Second
	env := merge(ownTopics(prefix), map[string]string{
		"WEBHOOKD_TOPIC_PARTITIONS": "4", "WEBHOOKD_KAFKA_SESSION_TIMEOUT": session.String(), "WEBHOOKD_BREAKER_FAILURES": "0",
		"WEBHOOKD_RETRY_TIERS": "100ms,500ms,1s", "WEBHOOKD_RETRY_DELAY_SCALE": "0.1", "WEBHOOKD_LOG_LEVEL": "info",
	})
	a := startInstance(t, "dev", env)
	rcv := newPairReceiver(t)
	a.CreatePipeline(t, fmt.Sprintf(relPipelines, "a", rcv.URL, "a"))
	// A steady stream, 600 events a second.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < events; i += 60 {
			produceSeq(t, prefix+"events", i, min(i+60, events))
			time.Sleep(100 * time.Millisecond) // the load generator's pace
		}
	}()
	rcv.waitPairs(t, events/4, arriveWithin)
	b := startInstance(t, "serve", merge(env, map[string]string{"WEBHOOKD_ROLES": "dispatcher,retry", "WEBHOOKD_ALLOW_PRIVATE_TARGETS": "true"}))
	rcv.waitPairs(t, events/2, arriveWithin)
	// The event group has settled with both replicas, each with a share of
	// the partitions: the rebalance b's joining started is over.
	grp := watchGroup(prefix + "group")
	both := grp.wait(t, "both replicas assigned event partitions", func(g kadm.DescribedGroup) bool {
		if g.State != "Stable" || len(g.Members) != 2 {
			return false
		}
		for _, m := range g.Members {
			if c, ok := m.Assigned.AsConsumer(); !ok || len(c.Topics) == 0 {
				return false
			}
		}
		return true
	})
	from := b.logs.count()
	killed := time.Now()
	a.Kill()
	// The broker drops the dead member once its session times out. How
	// late the broker answers is measured from here on.
	grp.there, grp.slowest = killed, 0
	grp.wait(t, "the killed replica dropped from the group", func(g kadm.DescribedGroup) bool {
		return slices.ContainsFunc(both.Members, func(m kadm.DescribedGroupMember) bool {
			return !slices.ContainsFunc(g.Members, func(n kadm.DescribedGroupMember) bool { return n.MemberID == m.MemberID })
		})
	})
	// The survivor picks the dead one's partitions up in the rebalance
	// that follows; when is the time on its log line.
	line, err := b.logs.waitLine(from, func(l string) (string, bool) {
		return l, strings.Contains(l, `"msg":"partitions assigned"`) && strings.Contains(l, prefix+"events")
	}, b.proc.done, arriveWithin)
	if err != nil {
		t.Fatalf("the survivor never took the event partitions over: %v", err)
	}
	m, _ := jsonLine(line)
	ts, _ := m["time"].(string)
	assigned, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		t.Fatalf("no time on %s: %v", line, err)
	}
	// The rebalance took at least from when the broker was seen without
	// the dead member to the assignment, at most from when it was last
	// seen with it.
	took, detected := assigned.Sub(killed), grp.gone.Sub(killed)
	rebalance := max(assigned.Sub(grp.gone), 0)
	<-done
	rcv.waitPairs(t, events, arriveWithin)
	b.WaitCaughtUp(t)
	pairs, dups := rcv.counts()
	t.Logf("%d events, replica added then one killed: all %d delivered, %d duplicates; the survivor took over after %v (session timeout %v): the dead member was last seen in the group after %v and seen dropped after %v, the rebalance then took %v–%v (broker answers within %v)",
		events, pairs, dups, took.Round(100*time.Millisecond), session, grp.there.Sub(killed).Round(100*time.Millisecond), detected.Round(100*time.Millisecond),
		rebalance.Round(100*time.Millisecond), assigned.Sub(grp.there).Round(100*time.Millisecond), grp.slowest.Round(time.Millisecond))
	// The member was seen in the group at grp.there: the session timeout
	// after the kill at most, give or take how late the broker answers
	// (its session timers run on the same loop as its answers).
	if there := grp.there.Sub(killed); there > session+grp.slowest {
		t.Errorf("the killed replica was still in the group %v after the kill: session timeout %v, the broker answering within %v", there, session, grp.slowest)
	}
	// The survivor hears of the rebalance at its next heartbeat, then
	// joins, syncs and is assigned the free partitions (a few broker
	// answers), with 10 s for its own scheduling on a busy machine: far
	// less than a revoke waiting out the shutdown grace (30 s) or a
	// rebalance waiting for a member that never rejoins (60 s).
	if bound := heartbeat + 4*grp.slowest + 10*time.Second; rebalance > bound {
		t.Errorf("the rebalance after the dead member was dropped took %v, more than a heartbeat and a join allow (%v)", rebalance, bound)
	}
}

// groupWatch polls a consumer group on the broker (group membership has no
// push signal outside the group).
type groupWatch struct {
	adm   *kadm.Client
	group string
	// there is when the last answer in which the awaited change had not yet
	// happened was asked for; gone when the first one in which it had was
	// received. The change happened in between.
	there, gone time.Time
	slowest     time.Duration // the slowest answer so far
}

func watchGroup(group string) *groupWatch {
	return &groupWatch{adm: kadm.NewClient(producer), group: group}
}

// wait polls until ok holds for the group and returns that description.
func (w *groupWatch) wait(t *testing.T, what string, ok func(kadm.DescribedGroup) bool) kadm.DescribedGroup {
	t.Helper()
	var last kadm.DescribedGroup
	var lastErr error
	for deadline := time.Now().Add(arriveWithin); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		asked := time.Now()
		gs, err := w.adm.DescribeGroups(context.Background(), w.group)
		w.slowest = max(w.slowest, time.Since(asked))
		if err == nil {
			err = gs.Error()
		}
		if lastErr = err; err != nil {
			continue
		}
		if last = gs[w.group]; ok(last) {
			w.gone = time.Now()
			return last
		}
		w.there = asked
	}
	t.Fatalf("group %s: not %s within %v: state %s, %d members (%v)", w.group, what, arriveWithin, last.State, len(last.Members), lastErr)
	return last
}

// Every way a receiver can fail ends as the retry policy says.
func TestReliabilityReceiverFaultMatrix(t *testing.T) {
	var calls sync.Map // path → *atomic.Int32
	count := func(p string) int32 {
		v, _ := calls.LoadOrStore(p, new(atomic.Int32))
		return v.(*atomic.Int32).Add(1)
	}
	// stop ends the handlers still running when the test ends (closed
	// before srv.Close, which waits for them); hungUp gets the path of each
	// request with a hanging or oversized answer that webhookd hung up on.
	stop, hungUp := make(chan struct{}), make(chan string, 16)
	hangUp := func(path string) {
		select {
		case hungUp <- path:
		case <-stop:
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := count(r.URL.Path)
		// With the body read, net/http watches the connection: the
		// request's context ends when webhookd closes it.
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/500":
			w.WriteHeader(500)
		case "/503":
			if n == 1 {
				w.Header().Set("Retry-After", "20") // 2 s at this instance's scale
				w.WriteHeader(503)
			}
		case "/429":
			if n == 1 {
				w.WriteHeader(429)
			}
		case "/timeout":
			select {
			case <-r.Context().Done():
				hangUp(r.URL.Path)
			case <-stop:
			}
		case "/reset":
			conn, _, _ := w.(http.Hijacker).Hijack()
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // RST, not FIN
			}
			conn.Close()
		case "/cut":
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(200)
			_, _ = w.Write([]byte(`{"partial":`))
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/elsewhere":
			t.Error("a redirect was followed")
		case "/huge":
			// A write blocked on a connection nobody reads ends with the test.
			_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(arriveWithin))
			w.WriteHeader(200)
			chunk := []byte(strings.Repeat("x", 1<<20))
			for range 50 {
				if _, err := w.Write(chunk); err != nil {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						hangUp(r.URL.Path)
					}
					return
				}
			}
		}
	}))
	t.Cleanup(func() { close(stop); srv.Close() }) // after the instance has stopped calling it
	in := startInstance(t, "dev", merge(ownTopics("faults."), map[string]string{
		"WEBHOOKD_RETRY_TIERS": "100ms,500ms,1s", "WEBHOOKD_RETRY_DELAY_SCALE": "0.1", "WEBHOOKD_BREAKER_FAILURES": "0"}))
	// An https URL on a plain-HTTP port: the TLS handshake fails.
	tlsFail := "https://" + strings.TrimPrefix(srv.URL, "http://")
	policy := `"timeout_seconds":1,"retry_policy":{"max_attempts":3,"backoff_type":"fixed","initial_delay_seconds":5,"max_delay_seconds":30}`
	cases := []struct {
		name, url      string
		status         string // final execution status
		attempts       float64
		reason, errPfx string // DLQ reason and last error, when dead
	}{
		{"500", srv.URL + "/500", "failed", 3, "retries_exhausted", "HTTP 500"},
		{"503 with Retry-After", srv.URL + "/503", "completed", 2, "", ""},
		{"429", srv.URL + "/429", "completed", 2, "", ""},
		{"timeout", srv.URL + "/timeout", "failed", 3, "retries_exhausted", "Connection timeout"},
		{"connection reset", srv.URL + "/reset", "failed", 3, "retries_exhausted", "Connection reset"},
		{"200 with a body cut short", srv.URL + "/cut", "completed", 1, "", ""},
		{"redirect", srv.URL + "/redirect", "failed", 3, "retries_exhausted", "HTTP 302"},
		{"TLS handshake failure", tlsFail + "/tls", "failed", 3, "retries_exhausted", "TLS error"},
		{"50 MB response", srv.URL + "/huge", "completed", 1, "", ""},
	}
	ids := map[string]string{}
	for _, c := range cases {
		p := in.CreatePipeline(t, `{"name":"`+c.name+`","trigger_type":"click","steps":[{"order":1,"url":"`+c.url+`",`+policy+`}]}`)
		ids[c.name] = p["id"].(string)
	}
	started := time.Now()
	produce(t, "faults.events", "k", `{"id":"evt_fault","type":"click.tracked","data":{"id":"clk_fault"}}`)
	for _, c := range cases {
		l := in.WaitExecution(t, ids[c.name], "clk_fault")
		step := l["steps"].([]any)[0].(map[string]any)
		if l["status"] != c.status || step["attempts"] != c.attempts {
			t.Errorf("%s: status %v after %v attempts (%v), want %s after %v", c.name, l["status"], step["attempts"], step["error"], c.status, c.attempts)
			continue
		}
		if c.reason != "" {
			it := in.DLQItems(t, "/api/admin/webhooks/logs/dlq", ids[c.name], 1)[0]
			if it["reason"] != c.reason || !strings.HasPrefix(it["last_error"].(string), c.errPfx) {
				t.Errorf("%s: DLQ item %v", c.name, it)
			}
		}
		if c.name == "50 MB response" && len(step["response_body"].(string)) > 8<<10 {
			t.Errorf("a 50 MB response was logged at %d bytes", len(step["response_body"].(string)))
		}
	}
	// webhookd closed the connection of every attempt that timed out and
	// of the 50 MB answer once it had read what it keeps: none is left
	// open to a receiver that still holds it.
	for want, deadline := map[string]int{"/timeout": 3, "/huge": 1}, time.After(arriveWithin); !t.Failed() && want["/timeout"]+want["/huge"] > 0; {
		select {
		case p := <-hungUp:
			want[p]--
		case <-deadline:
			t.Errorf("connections still open %v after their deliveries ended: %v", arriveWithin, want)
		}
	}
	if rss := in.RSS(); rss > 512<<20 {
		t.Errorf("RSS %d MB after a 50 MB response", rss>>20)
	}
	t.Logf("fault matrix settled in %v", time.Since(started).Round(time.Millisecond))
}

// A measurement, not part of `make test-reliability` (its name does not
// match -run Reliability): with transactions, a SIGKILL every 3,000 pairs
// during 20,000 events × 2 pipelines (one failing every first attempt).
// Crashes this close together catch pairs whose event was read again after
// one crash while the re-read's retry is in flight at the next: each crash
// redid only its in-flight work, so none may be counted as redone two ways
// by one crash; the log says how many were redone once by each of two. Run:
//
//	go test -race -count=1 -timeout 30m -tags reliability -run TestCrashEvery3000PairsTransactions -v ./e2e
func TestCrashEvery3000PairsTransactions(t *testing.T) {
	const prefix, events = "tw3k.", 20000
	in := startInstance(t, "dev", merge(ownTopics(prefix), map[string]string{
		"WEBHOOKD_TOPIC_PARTITIONS": "3", "WEBHOOKD_RETRY_TIERS": "100ms,500ms,1s", "WEBHOOKD_RETRY_DELAY_SCALE": "0.1",
		"WEBHOOKD_KAFKA_SESSION_TIMEOUT": "6s", "WEBHOOKD_MAX_IN_FLIGHT": "256", "WEBHOOKD_PARTITION_MAX_IN_FLIGHT": "64",
		"WEBHOOKD_BREAKER_FAILURES": "0", "WEBHOOKD_LOG_LEVEL": "info", "WEBHOOKD_KAFKA_TRANSACTIONS": "true",
	}))
	rcv := newPairReceiver(t, "/b")
	in.CreatePipeline(t, fmt.Sprintf(relPipelines, "a", rcv.URL, "a"))
	in.CreatePipeline(t, fmt.Sprintf(relPipelines, "b", rcv.URL, "b"))
	produceSeq(t, prefix+"events", 0, events)
	crashes := 0
	for at := 3000; at < 2*events; at += 3000 {
		rcv.waitPairs(t, at, 5*time.Minute)
		in.Kill()
		rcv.crashed()
		in.Start(t)
		crashes++
	}
	rcv.waitPairs(t, 2*events, 5*time.Minute)
	in.WaitCaughtUp(t)
	pairs, dups := rcv.counts()
	two, byTwo := rcv.twoWays()
	t.Logf("%d events × 2 pipelines, %d SIGKILLs: %d pairs delivered, none lost; %d duplicates; %d pairs redone two ways by one crash, %d redone once by each of two crashes",
		events, crashes, pairs, dups, two, byTwo)
	if two > 0 {
		t.Errorf("%d pairs were delivered both by their retry task and after their event was read again", two)
	}
}
