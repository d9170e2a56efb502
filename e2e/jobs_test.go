package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// tally is a receiver that records every request by path: the delivery id,
// the X-Afftok-Replay header and the body. It never blocks.
type tally struct {
	*httptest.Server
	mu      sync.Mutex
	got     []captured
	counts  map[[2]string]int // (path, X-Afftok-Replay) → requests
	changed chan struct{}
	// failing: answer 502 (recorded all the same).
	failing atomic.Bool
}

func newTally(t testing.TB) *tally {
	r := &tally{changed: make(chan struct{}), counts: map[[2]string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := req.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		c := captured{Path: req.URL.RequestURI(), Header: req.Header.Clone(), Body: []byte(b.String()), At: time.Now()}
		if r.failing.Load() {
			w.WriteHeader(502)
			c.Path += "#failed"
		} else {
			w.WriteHeader(200)
		}
		r.mu.Lock()
		r.got = append(r.got, c)
		r.counts[[2]string{c.Path, c.Header.Get("X-Afftok-Replay")}]++
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	return r
}

// matching returns the requests on path whose X-Afftok-Replay is replay
// ("" for the original deliveries).
func (r *tally) matching(path, replay string) []captured {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []captured
	for _, c := range r.got {
		if c.Path == path && c.Header.Get("X-Afftok-Replay") == replay {
			out = append(out, c)
		}
	}
	return out
}

// count is how many requests on path had X-Afftok-Replay replay.
func (r *tally) count(path, replay string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[[2]string{path, replay}]
}

// waitFor waits until cond holds over the requests so far.
func (r *tally) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(arriveWithin)
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("receiver: %s did not happen within %v", what, arriveWithin)
		}
	}
}

// waitForCount waits until count() reaches want. Its deadline follows
// progress: it fails only when count() has not grown for arriveWithin, so
// a volume that a loaded machine delivers slowly but steadily is waited
// for, and a stall is not. The loop ends: count() can grow only so many
// times before it reaches want.
func (r *tally) waitForCount(t testing.TB, what string, count func() int, want int) {
	t.Helper()
	last, stalled := count(), time.Now().Add(arriveWithin)
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		n := count()
		if n >= want {
			return
		}
		if n > last {
			last, stalled = n, time.Now().Add(arriveWithin)
		}
		select {
		case <-ch:
		case <-time.After(time.Until(stalled)):
			if count() <= last {
				t.Fatalf("receiver: %s: %d of %d, none more for %v", what, last, want, arriveWithin)
			}
		}
	}
}

// conversion is an event of the flat-or-nested envelope, with a producer
// timestamp of our choosing (what offsets-by-time reads).
func produceAt(t testing.TB, topic, id string, at time.Time) {
	t.Helper()
	v := fmt.Sprintf(`{"id":%q,"trigger_type":"conversion","trigger_id":"conv_%s","data":{"conversion":{"id":"conv_%s","amount":1}}}`, id, id, id)
	if err := producer.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Key: []byte(id), Value: []byte(v), Timestamp: at}).FirstErr(); err != nil {
		t.Fatalf("produce %s: %v", id, err)
	}
}

// triggerIDs are the conversion ids in a set of requests' bodies.
func triggerIDs(cs []captured) map[string]int {
	out := map[string]int{}
	for _, c := range cs {
		s := string(c.Body)
		i := strings.Index(s, `"conv_`)
		if i < 0 {
			continue
		}
		j := strings.Index(s[i+1:], `"`)
		out[s[i+1:i+1+j]]++
	}
	return out
}

func deliveryIDs(cs []captured) map[string]string {
	out := map[string]string{}
	for id, c := range byTrigger(cs) {
		out[id] = c.Header.Get("X-Afftok-Delivery-ID")
	}
	return out
}

func byTrigger(cs []captured) map[string]captured {
	out := map[string]captured{}
	for _, c := range cs {
		for id := range triggerIDs([]captured{c}) {
			out[id] = c
		}
	}
	return out
}

// waitJob polls a job until its state is final (or want), returning it.
func waitJob(t testing.TB, in *instance, path string, want string) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(arriveWithin); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) { // progress has no push signal
		code, out := in.API(t, "GET", path, nil)
		if code != 200 {
			continue
		}
		d := out["data"].(map[string]any)
		if d["state"] == want {
			return d
		}
		if s := d["state"]; want != "" && (s == "done" || s == "failed" || s == "cancelled") {
			t.Fatalf("%s ended %v, want %s: %v", path, s, want, d)
		}
	}
	t.Fatalf("%s did not reach %s within %v", path, want, arriveWithin)
	return nil
}

const conversionPipeline = `{"name":%q,"trigger_type":"conversion","steps":[{"order":1,"url":%q,"body_template":{"id":"{{conversion.id}}"},"signing_key":"k"}]}`

// TestReplayByTimeWindow: (a) a replay of a window delivers exactly that
// window's events again, to the chosen pipeline only, with the original
// delivery ids and X-Afftok-Replay, and reaches done; (d) a window older than
// the topic retains is answered with a warning and the oldest time held; (b)
// a cancelled replay stops.
func TestReplayByTimeWindow(t *testing.T) {
	const prefix = "replay-"
	in := startInstance(t, "dev", merge(ownTopics(prefix), map[string]string{
		"WEBHOOKD_TOPIC_PARTITIONS": "2", "WEBHOOKD_SHUTDOWN_GRACE": "2s", "WEBHOOKD_ANALYTICS_FLUSH_INTERVAL": "100ms",
		"WEBHOOKD_RETRY_TIERS": testTiers, "WEBHOOKD_RETRY_DELAY_SCALE": "0.02",
		"WEBHOOKD_BREAKER_FAILURES": "0", // the receiver fails on purpose; an open circuit would hold the retries 30 s
	}))
	topic := prefix + "events"
	rcv := newTally(t)
	chosen := in.CreatePipeline(t, fmt.Sprintf(conversionPipeline, "chosen", rcv.URL+"/chosen"))["id"].(string)
	in.CreatePipeline(t, fmt.Sprintf(conversionPipeline, "other", rcv.URL+"/other"))

	base := time.Now().UTC().Truncate(time.Second)
	window := map[string]time.Time{}
	for _, g := range []struct {
		name string
		at   time.Duration
	}{{"a", -30 * time.Minute}, {"b", -20 * time.Minute}, {"c", -10 * time.Minute}} {
		for i := range 5 {
			id := fmt.Sprintf("%s%d", g.name, i)
			at := base.Add(g.at + time.Duration(i)*time.Second)
			produceAt(t, topic, id, at)
			window[id] = at
		}
	}
	rcv.waitFor(t, "15 original deliveries to each pipeline", func() bool {
		return len(rcv.matching("/chosen", "")) == 15 && len(rcv.matching("/other", "")) == 15
	})
	originals := deliveryIDs(rcv.matching("/chosen", ""))

	// Validation, with field paths.
	code, out := in.API(t, "POST", "/api/admin/webhooks/replay", fmt.Sprintf(`{"from":%q,"to":%q,"pipeline_ids":["nope"],"trigger_type":"click","rate_per_second":-1}`,
		base.Format(time.RFC3339), base.Add(-time.Hour).Format(time.RFC3339)))
	if code != 400 || !strings.Contains(fmt.Sprint(out), "pipeline_ids[0]") || !strings.Contains(fmt.Sprint(out), "rate_per_second") || !strings.Contains(fmt.Sprint(out), "field:to") {
		t.Fatalf("invalid replay: %d %v", code, out)
	}

	ok := t.Run("window", func(t *testing.T) {
		from, to := base.Add(-21*time.Minute), base.Add(-11*time.Minute)
		code, out := in.API(t, "POST", "/api/admin/webhooks/replay", fmt.Sprintf(`{"from":%q,"to":%q,"trigger_type":"conversion","pipeline_ids":[%q]}`,
			from.Format(time.RFC3339), to.Format(time.RFC3339), chosen))
		if code != 202 {
			t.Fatalf("replay: %d %v", code, out)
		}
		d := out["data"].(map[string]any)
		id := d["id"].(string)
		if len(d["warnings"].([]any)) != 0 || d["effective_from"] != nil || d["state"] != "queued" {
			t.Fatalf("answer %v", d)
		}
		done := waitJob(t, in, "/api/admin/webhooks/replay/"+id, "done")
		if done["events_scanned"] != 5.0 || done["deliveries_queued"] != 5.0 || done["trigger_type"] != "conversion" {
			t.Fatalf("done %v", done)
		}
		rcv.waitFor(t, "5 replayed deliveries", func() bool { return len(rcv.matching("/chosen", id)) >= 5 })
		in.WaitCaughtUp(t)
		got := rcv.matching("/chosen", id)
		ids := triggerIDs(got)
		if len(got) != 5 || len(ids) != 5 {
			t.Fatalf("replayed %d requests for %v, want the 5 of window b", len(got), ids)
		}
		for tid, c := range byTrigger(got) {
			ev := strings.TrimPrefix(tid, "conv_")
			if !strings.HasPrefix(ev, "b") || c.Header.Get("X-Afftok-Delivery-ID") != originals[tid] || originals[tid] == "" {
				t.Fatalf("replayed %s with delivery id %s (original %s)", tid, c.Header.Get("X-Afftok-Delivery-ID"), originals[tid])
			}
		}
		if n := len(rcv.matching("/other", id)); n != 0 {
			t.Fatalf("the pipeline not chosen got %d replayed deliveries", n)
		}
		// The finished deliveries, as the execution logs count them.
		for deadline := time.Now().Add(arriveWithin); ; time.Sleep(100 * time.Millisecond) { // the logs have no push signal
			_, out := in.API(t, "GET", "/api/admin/webhooks/replay/"+id, nil)
			if out["data"].(map[string]any)["deliveries_done"] == 5.0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("deliveries_done never reached 5: %v", out)
			}
		}
		// Unknown ids and the other kind's route.
		if code, _ := in.API(t, "GET", "/api/admin/webhooks/replay/rpl_nope", nil); code != 404 {
			t.Fatalf("unknown replay: %d", code)
		}
		if code, _ := in.API(t, "GET", "/api/admin/webhooks/dlq/redrive/"+id, nil); code != 404 {
			t.Fatalf("a replay read as a redrive: %d", code)
		}
		if code, _ := in.API(t, "DELETE", "/api/admin/webhooks/replay/"+id, nil); code != 409 {
			t.Fatalf("cancel a finished replay: %d", code)
		}
	})

	if !ok {
		return
	}
	ok = t.Run("retention", func(t *testing.T) {
		// Retention deletes windows a and b: the log starts at the first c.
		adm := kadm.NewClient(producer)
		after, err := adm.ListOffsetsAfterMilli(context.Background(), base.Add(-11*time.Minute).UnixMilli(), topic)
		if err != nil {
			t.Fatal(err)
		}
		del := kadm.Offsets{}
		after.Each(func(o kadm.ListedOffset) { del.AddOffset(o.Topic, o.Partition, o.Offset, -1) })
		if resp, err := adm.DeleteRecords(context.Background(), del); err != nil || resp.Error() != nil {
			t.Fatalf("delete records: %v %v", err, resp.Error())
		}
		from, to := base.Add(-40*time.Minute), base.Add(-5*time.Minute)
		// The receiver fails the replay's first attempts: the retries carry
		// the replay header too.
		rcv.failing.Store(true)
		code, out := in.API(t, "POST", "/api/admin/webhooks/replay", fmt.Sprintf(`{"from":%q,"to":%q,"pipeline_ids":[%q],"rate_per_second":1000}`,
			from.Format(time.RFC3339), to.Format(time.RFC3339), chosen))
		if code != 202 {
			t.Fatalf("replay: %d %v", code, out)
		}
		d := out["data"].(map[string]any)
		warnings := d["warnings"].([]any)
		eff, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(d["effective_from"]))
		if len(warnings) == 0 || !strings.Contains(fmt.Sprint(warnings), "from is older than what") || eff.Before(window["c0"]) || eff.After(window["c4"]) {
			t.Fatalf("answer for a window older than retention: %v", d)
		}
		id := d["id"].(string)
		done := waitJob(t, in, "/api/admin/webhooks/replay/"+id, "done")
		if done["events_scanned"] != 5.0 || done["deliveries_queued"] != 5.0 || len(done["warnings"].([]any)) == 0 {
			t.Fatalf("done %v", done)
		}
		rcv.waitFor(t, "window c's first attempts", func() bool { return rcv.count("/chosen#failed", id) >= 5 })
		rcv.failing.Store(false)
		rcv.waitFor(t, "window c replayed", func() bool { return len(rcv.matching("/chosen", id)) >= 5 })
		for tid, c := range byTrigger(rcv.matching("/chosen", id)) {
			if !strings.HasPrefix(tid, "conv_c") {
				t.Fatalf("replayed %s, which retention deleted or is outside the window", tid)
			}
			if c.Header.Get("X-Afftok-Retry-Count") == "0" || c.Header.Get("X-Afftok-Delivery-ID") != originals[tid] {
				t.Fatalf("%s: the retry of a replayed delivery came with retry count %s, delivery id %s", tid, c.Header.Get("X-Afftok-Retry-Count"), c.Header.Get("X-Afftok-Delivery-ID"))
			}
		}
	})

	if !ok {
		return
	}
	t.Run("cancel", func(t *testing.T) {
		const n = 100
		start := base.Add(-4 * time.Minute)
		for i := range n {
			produceAt(t, topic, fmt.Sprintf("d%03d", i), start.Add(time.Duration(i)*time.Millisecond))
		}
		rcv.waitFor(t, "the originals", func() bool { return len(rcv.matching("/chosen", "")) == 15+n })
		code, out := in.API(t, "POST", "/api/admin/webhooks/replay", fmt.Sprintf(`{"from":%q,"to":%q,"rate_per_second":10}`,
			start.Format(time.RFC3339Nano), start.Add(time.Minute).Format(time.RFC3339Nano)))
		if code != 202 {
			t.Fatalf("replay: %d %v", code, out)
		}
		id := out["data"].(map[string]any)["id"].(string)
		rcv.waitFor(t, "the first replayed delivery", func() bool { return len(rcv.matching("/chosen", id)) > 0 })
		code, out = in.API(t, "DELETE", "/api/admin/webhooks/replay/"+id, nil)
		if code != 200 || out["data"].(map[string]any)["state"] != "cancelled" {
			t.Fatalf("cancel: %d %v", code, out)
		}
		in.WaitLog(t, "job finished", id, `"state":"cancelled"`)
		in.WaitCaughtUp(t)
		d := waitJob(t, in, "/api/admin/webhooks/replay/"+id, "cancelled")
		queued := int(d["deliveries_queued"].(float64))
		chosenGot, otherGot := len(rcv.matching("/chosen", id)), len(rcv.matching("/other", id))
		if queued >= 2*n || chosenGot+otherGot != queued || d["events_scanned"].(float64) >= n {
			t.Fatalf("cancelled replay: queued %d, delivered %d+%d of %d: %v", queued, chosenGot, otherGot, 2*n, d)
		}
		if code, _ := in.API(t, "DELETE", "/api/admin/webhooks/replay/"+id, nil); code != 200 {
			t.Fatalf("cancel again: %d", code)
		}
		t.Logf("cancelled after %d of %d deliveries", queued, 2*n)
	})
}

// produceMany writes n conversion events to topic, event i at at(i), and
// waits for every ack.
func produceMany(t testing.TB, topic, prefix string, n int, at func(i int) time.Time) {
	t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		id := fmt.Sprintf("%s%05d", prefix, i)
		v := fmt.Sprintf(`{"id":%q,"trigger_type":"conversion","trigger_id":"conv_%s","data":{"conversion":{"id":"conv_%s","amount":1}}}`, id, id, id)
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(id), Value: []byte(v), Timestamp: at(i)}
	}
	if err := producer.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// leaderOf returns the instance whose log says it runs the jobs now (and
// has not said it stopped since).
func leaderOf(ins ...*instance) *instance {
	var leader *instance
	for _, in := range ins {
		for _, l := range in.Logs() {
			switch {
			case strings.Contains(l, "this replica runs the jobs now"):
				leader = in
			case strings.Contains(l, "this replica no longer runs the jobs") && leader == in:
				leader = nil
			}
		}
	}
	return leader
}

// TestReplaySurvivesSIGKILLOfTheReplicaRunningIt: (c) two replicas; the one
// running a replay is killed mid-run; the other takes the job over from its
// last checkpoint and finishes it: every event of the window is delivered
// again (with the replay header and its original delivery id), none
// skipped; the redone ones are counted.
func TestReplaySurvivesSIGKILLOfTheReplicaRunningIt(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a webhookd process")
	}
	const prefix, n, rate = "replaykill-", 600, 150
	env := merge(ownTopics(prefix), map[string]string{
		"WEBHOOKD_TOPIC_PARTITIONS": "2", "WEBHOOKD_SHUTDOWN_GRACE": "2s", "WEBHOOKD_ANALYTICS_FLUSH_INTERVAL": "100ms",
		"WEBHOOKD_KAFKA_SESSION_TIMEOUT": "6s", // the broker's least
	})
	first := startInstance(t, "dev", env)
	second := startInstance(t, "dev", env)
	topic := prefix + "events"
	rcv := newTally(t)
	pid := first.CreatePipeline(t, fmt.Sprintf(conversionPipeline, "killed", rcv.URL+"/k"))["id"].(string)
	start := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Second)
	produceMany(t, topic, "k", n, func(i int) time.Time { return start.Add(time.Duration(i) * time.Millisecond) })
	rcv.waitFor(t, "the original deliveries", func() bool { return rcv.count("/k", "") == n })
	originals := deliveryIDs(rcv.matching("/k", ""))

	leader := leaderOf(first, second)
	if leader == nil {
		t.Fatal("no replica says it runs the jobs")
	}
	survivor := first
	if leader == first {
		survivor = second
	}
	code, out := survivor.API(t, "POST", "/api/admin/webhooks/replay", fmt.Sprintf(`{"from":%q,"to":%q,"pipeline_ids":[%q],"rate_per_second":%d}`,
		start.Format(time.RFC3339), start.Add(time.Minute).Format(time.RFC3339), pid, rate))
	if code != 202 {
		t.Fatalf("replay: %d %v", code, out)
	}
	id := out["data"].(map[string]any)["id"].(string)
	rcv.waitFor(t, "a third of the replay", func() bool { return rcv.count("/k", id) >= n/3 })
	// The job has written a checkpoint (one a second) before the kill.
	leader.WaitLog(t, "job started", id)
	leader.Kill()
	killedAt := time.Now()
	before := len(rcv.matching("/k", id))

	done := waitJob(t, survivor, "/api/admin/webhooks/replay/"+id, "done")
	survivor.WaitLog(t, "job started", id)
	tookOver := time.Since(killedAt)
	rcv.waitFor(t, "every event of the window replayed", func() bool { return len(triggerIDs(rcv.matching("/k", id))) == n })
	survivor.WaitCaughtUp(t)
	got := rcv.matching("/k", id)
	for tid, c := range byTrigger(got) {
		if c.Header.Get("X-Afftok-Delivery-ID") != originals[tid] {
			t.Fatalf("%s replayed with delivery id %s, original %s", tid, c.Header.Get("X-Afftok-Delivery-ID"), originals[tid])
		}
	}
	if dup := len(got) - n; dup >= before {
		t.Fatalf("%d deliveries made twice, %d were made before the kill: the replay started over instead of resuming", dup, before)
	}
	if done["events_scanned"] != float64(n) {
		t.Fatalf("events_scanned %v, want %d", done["events_scanned"], n)
	}
	t.Logf("killed the runner after %d of %d replayed deliveries; the other replica finished the replay %v later; %d deliveries were made twice (resumed from the last checkpoint, or in flight at the kill)",
		before, n, tookOver.Round(time.Millisecond), len(got)-n)
}

// TestReplayThroughput measures how fast an unpaced replay reads a window
// and queues its deliveries, and how soon they are all delivered (one
// pipeline, a receiver answering at once; every process on this machine).
func TestReplayThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("a measurement")
	}
	const prefix, n = "replayrate-", 20000
	in := startInstance(t, "dev", merge(ownTopics(prefix), map[string]string{
		"WEBHOOKD_TOPIC_PARTITIONS": "3", "WEBHOOKD_SHUTDOWN_GRACE": "2s", "WEBHOOKD_ANALYTICS_FLUSH_INTERVAL": "100ms",
	}))
	topic := prefix + "events"
	rcv := newTally(t)
	// The pipeline is created once the events were dispatched (to no
	// pipeline): the receiver then gets the replay's deliveries only.
	start := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Second)
	produceMany(t, topic, "r", n, func(i int) time.Time { return start.Add(time.Duration(i) * time.Millisecond) })
	in.WaitCaughtUp(t)
	pid := in.CreatePipeline(t, fmt.Sprintf(conversionPipeline, "rate", rcv.URL+"/r"))["id"].(string)
	begin := time.Now()
	code, out := in.API(t, "POST", "/api/admin/webhooks/replay", fmt.Sprintf(`{"from":%q,"to":%q,"pipeline_ids":[%q]}`,
		start.Format(time.RFC3339), start.Add(time.Minute).Format(time.RFC3339), pid))
	if code != 202 {
		t.Fatalf("replay: %d %v", code, out)
	}
	id := out["data"].(map[string]any)["id"].(string)
	waitJob(t, in, "/api/admin/webhooks/replay/"+id, "done")
	queued := time.Since(begin)
	// 20,000 deliveries: a loaded machine takes longer than arriveWithin
	// for them all, so the wait lasts while they keep arriving.
	rcv.waitForCount(t, "every replayed delivery", func() int { return rcv.count("/r", id) }, n)
	delivered := time.Since(begin)
	t.Logf("replay of %d events: read and queued in %v (%.0f events/s); all delivered in %v (%.0f deliveries/s)",
		n, queued.Round(time.Millisecond), n/queued.Seconds(), delivered.Round(time.Millisecond), n/delivered.Seconds())
}

// TestBulkRedriveSurvivesSIGKILLAndRestart: (c) a bulk redrive is a job: the
// replica running it is killed mid-run and started again; it resumes the job
// from its checkpoint and finishes it, every dead item retried, none
// skipped.
func TestBulkRedriveSurvivesSIGKILLAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a webhookd process")
	}
	const prefix, n = "redrivekill-", 40
	in := startInstance(t, "dev", merge(ownTopics(prefix), map[string]string{
		"WEBHOOKD_TOPIC_PARTITIONS": "2", "WEBHOOKD_SHUTDOWN_GRACE": "2s", "WEBHOOKD_ANALYTICS_FLUSH_INTERVAL": "100ms",
		"WEBHOOKD_KAFKA_SESSION_TIMEOUT": "6s", "WEBHOOKD_BREAKER_FAILURES": "0",
	}))
	rcv := newTally(t)
	rcv.failing.Store(true)
	pid := in.CreatePipeline(t, `{"name":"redrive","trigger_type":"conversion","steps":[{"order":1,"url":"`+rcv.URL+`/d","body_template":{"id":"{{conversion.id}}"},"retry_policy":{"max_attempts":1}}]}`)["id"].(string)
	produceMany(t, prefix+"events", "r", n, func(int) time.Time { return time.Now() })
	for deadline := time.Now().Add(arriveWithin); ; time.Sleep(100 * time.Millisecond) { // the DLQ list has no push signal
		_, out := in.API(t, "GET", "/api/admin/webhooks/dlq?limit=200&pipeline_id="+pid, nil)
		if len(out["data"].(map[string]any)["items"].([]any)) == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the DLQ never held the %d dead deliveries", n)
		}
	}
	rcv.failing.Store(false)
	code, out := in.API(t, "POST", "/api/admin/webhooks/dlq/retry", `{"pipeline_id":"`+pid+`","rate_per_second":10}`)
	d := out["data"].(map[string]any)
	if code != 202 || d["queued"] != float64(n) || d["matched"] != float64(n) {
		t.Fatalf("bulk redrive: %d %v", code, out)
	}
	id := d["job_id"].(string)
	rcv.waitFor(t, "a quarter of the redrive", func() bool { return rcv.count("/d", "") >= n/4 })
	in.Kill()
	before := rcv.count("/d", "")
	in.Start(t)
	done := waitJob(t, in, "/api/admin/webhooks/dlq/redrive/"+id, "done")
	in.WaitLog(t, "job started", id)
	rcv.waitFor(t, "every item redriven", func() bool { return len(triggerIDs(rcv.matching("/d", ""))) == n })
	in.WaitCaughtUp(t)
	got := rcv.count("/d", "")
	if done["processed"] != float64(n) || done["retried"].(float64)+done["skipped"].(float64) != n || done["failed"] != 0.0 {
		t.Fatalf("done %v", done)
	}
	if dup := got - n; dup >= before {
		t.Fatalf("%d redriven twice, %d before the kill: the job started over instead of resuming", dup, before)
	}
	if code, _ := in.API(t, "DELETE", "/api/admin/webhooks/logs/dlq/redrive/"+id, nil); code != 409 {
		t.Fatalf("cancel a finished redrive: %d", code)
	}
	t.Logf("killed after %d of %d items were redriven; after the restart the job finished (retried %v, skipped %v as already retried); %d items were delivered twice",
		before, n, done["retried"], done["skipped"], got-n)
}
