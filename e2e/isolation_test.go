package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
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

// hangingReceiver answers nothing until released (or its client gives up),
// and records the most requests it held at once.
type hangingReceiver struct {
	*httptest.Server
	release               chan struct{}
	arrived               chan struct{} // one per request, as it arrives
	inflight, most, total atomic.Int32
}

// waitArrivals waits until n more requests have arrived.
func (h *hangingReceiver) waitArrivals(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(arriveWithin)
	for range n {
		select {
		case <-h.arrived:
		case <-deadline:
			t.Fatalf("fewer than %d requests arrived within %v", n, arriveWithin)
		}
	}
}

func newHangingReceiver(t *testing.T) *hangingReceiver {
	h := &hangingReceiver{release: make(chan struct{}), arrived: make(chan struct{}, 100000)}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// With the body read, net/http watches the connection: the
		// request's context ends when the client gives up.
		_, _ = io.Copy(io.Discard, r.Body)
		h.total.Add(1)
		select {
		case h.arrived <- struct{}{}:
		default:
		}
		n := h.inflight.Add(1)
		defer h.inflight.Add(-1)
		for m := h.most.Load(); n > m && !h.most.CompareAndSwap(m, n); m = h.most.Load() {
		}
		select {
		case <-h.release:
		case <-r.Context().Done():
		}
	}))
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(h.release) }); h.Close() })
	return h
}

// latencyReceiver records, per event, how long after its send time (in the
// event, unix nanoseconds) it arrived.
type latencyReceiver struct {
	*httptest.Server
	mu   sync.Mutex
	lat  map[string]time.Duration
	last time.Time
	got  chan struct{}
}

func newLatencyReceiver(t *testing.T) *latencyReceiver {
	l := &latencyReceiver{lat: map[string]time.Duration{}, got: make(chan struct{}, 100000)}
	l.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			ID   string `json:"id"`
			Sent int64  `json:"sent"`
		}
		raw, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(raw, &b)
		now := time.Now()
		l.mu.Lock()
		if _, dup := l.lat[b.ID]; !dup {
			l.lat[b.ID] = now.Sub(time.Unix(0, b.Sent))
			l.last = now
		}
		l.mu.Unlock()
		w.WriteHeader(200)
		l.got <- struct{}{}
	}))
	t.Cleanup(l.Close)
	return l
}

// phase produces n events open-loop at rate per second (the send time inside
// each) and waits until the receiver has all of them; it returns the
// deliveries per second (first send → last arrival) and the p50/p99 latency.
func (l *latencyReceiver) phase(t *testing.T, topic, prefix string, n int, rate float64) (float64, time.Duration, time.Duration) {
	t.Helper()
	l.mu.Lock()
	l.lat = map[string]time.Duration{}
	l.mu.Unlock()
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
			time.Sleep(d) // open-loop pacing of the load generator, not synchronisation
		}
		id := fmt.Sprintf("%s-%d", prefix, i)
		v := fmt.Sprintf(`{"id":%q,"type":"conversion.approved","data":{"id":%q,"sent":%d}}`, id, id, time.Now().UnixNano())
		producer.Produce(context.Background(), &kgo.Record{Topic: topic, Key: []byte(id), Value: []byte(v)}, nil)
	}
	if err := producer.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(arriveWithin)
	for {
		l.mu.Lock()
		got := len(l.lat)
		l.mu.Unlock()
		if got >= n {
			break
		}
		select {
		case <-l.got:
		case <-deadline:
			t.Fatalf("%s: %d of %d events delivered", prefix, got, n)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lats := make([]time.Duration, 0, n)
	for _, d := range l.lat {
		lats = append(lats, d)
	}
	slices.Sort(lats)
	return float64(n) / l.last.Sub(start).Seconds(), lats[len(lats)/2], lats[len(lats)*99/100]
}

// One endpoint hanging does not stall a healthy pipeline on the same trigger:
// the healthy one keeps its throughput and its p99 latency stays under a
// second, and the hanging host never gets more than its in-flight limit.
func TestNoisyNeighbourDoesNotStallAHealthyPipeline(t *testing.T) {
	in := startInstance(t, "dev", merge(ownTopics("noisy."), map[string]string{"WEBHOOKD_SHUTDOWN_GRACE": "5s"}))
	healthy := newLatencyReceiver(t)
	hanging := newHangingReceiver(t)
	in.CreatePipeline(t, `{"name":"healthy","trigger_type":"conversion_approved","steps":[{"order":1,"url":"`+healthy.URL+`/ok",
	  "body_template":{"id":"{{conversion.id}}","sent":"{{conversion.sent}}"}}]}`)
	const n, burst, maxRate = 600, 3000, 200.0
	healthy.phase(t, "noisy.events", "warm-up", 300, 1e9)                           // connections, first inserts: not capacity
	aloneBurst, _, _ := healthy.phase(t, "noisy.events", "alone-burst", burst, 1e9) // as fast as the producer goes: capacity
	// The offered rate must be one this machine can carry beside the
	// neighbour, or the backlog, not the neighbour, makes the latency: each
	// event is then two deliveries (about half the capacity left for the
	// healthy one), kept at half of that. 200/s on a machine of normal
	// speed; less on a loaded one (a CI machine shared with other jobs).
	rate := min(maxRate, aloneBurst/4)
	aloneRate, aloneP50, aloneP99 := healthy.phase(t, "noisy.events", "alone", n, rate)

	// The longest timeout: no hanging request ends while the test runs. One
	// that timed out would leave the receiver's count only once its server
	// noticed the closed connection, later than webhookd freed the place
	// (on a loaded machine, after the next request arrived), and the count
	// of requests held at once would no longer be exact.
	in.CreatePipeline(t, `{"name":"hanging","trigger_type":"conversion_approved","steps":[{"order":1,"url":"`+hanging.URL+`/hang",
	  "timeout_seconds":300,"retry_policy":{"max_attempts":1}}]}`)
	withRate, withP50, withP99 := healthy.phase(t, "noisy.events", "neighbour", n, rate)
	withBurst, _, _ := healthy.phase(t, "noisy.events", "neighbour-burst", burst, 1e9)
	t.Logf("capacity (%d events at once): alone %.0f/s, beside the hanging endpoint %.0f/s (ratio %.2f)", burst, aloneBurst, withBurst, withBurst/aloneBurst)

	t.Logf("healthy pipeline, %d events at %.0f/s: alone %.0f/s p50 %v p99 %v; beside a hanging endpoint %.0f/s (ratio %.2f) p50 %v p99 %v; the hanging host held %d requests at most (%d made)",
		n, rate, aloneRate, aloneP50.Round(time.Millisecond), aloneP99.Round(time.Millisecond), withRate, withRate/aloneRate,
		withP50.Round(time.Millisecond), withP99.Round(time.Millisecond), hanging.most.Load(), hanging.total.Load())
	if withRate < 0.8*aloneRate {
		t.Errorf("throughput beside the hanging endpoint %.0f/s is below 80%% of %.0f/s alone", withRate, aloneRate)
	}
	if withP99 >= time.Second {
		t.Errorf("p99 latency beside the hanging endpoint is %v, want under 1s", withP99)
	}
	if m := hanging.most.Load(); m > 64 {
		t.Errorf("the hanging host held %d requests at once; the per-host limit is 64", m)
	}
}

// A failing pipeline's retry comes on its own schedule, not after a slow
// neighbour on the same event finished.
func TestARetryIsNotHeldBackByASlowNeighbour(t *testing.T) {
	in := startInstance(t, "dev", ownTopics("nbr."))
	failing := newReceiver(t)
	failing.respondWith(func(c captured, w http.ResponseWriter) { w.WriteHeader(500) })
	hanging := newHangingReceiver(t)
	in.CreatePipeline(t, `{"name":"fails","trigger_type":"click","steps":[{"order":1,"url":"`+failing.URL+`/f",
	  "retry_policy":{"max_attempts":2,"backoff_type":"fixed","initial_delay_seconds":1}}]}`)
	in.CreatePipeline(t, `{"name":"slow","trigger_type":"click","steps":[{"order":1,"url":"`+hanging.URL+`/h","timeout_seconds":5,"retry_policy":{"max_attempts":1}}]}`)
	produce(t, "nbr.events", "k", `{"id":"evt_nbr","type":"click.tracked","data":{"id":"clk_nbr"}}`)
	first, second := failing.next(t), failing.next(t)
	if gap := second.At.Sub(first.At); gap < time.Second || gap >= 3*time.Second {
		t.Fatalf("the 1 s retry came %v after the first attempt (a 5 s neighbour must not delay it)", gap)
	}
}

// noise is n random letters: brokers compress batches, so only data that
// does not compress makes a record large on the wire.
func noise(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(rand.IntN(26))
	}
	return string(b)
}

func setTopicConfig(t *testing.T, name, value string, topics ...string) {
	t.Helper()
	rs, err := kadm.NewClient(producer).AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Name: name, Value: &value}}, topics...)
	if err == nil {
		for _, r := range rs {
			if r.Err != nil {
				err = r.Err
			}
		}
	}
	if err != nil {
		t.Fatalf("set %s=%s on %v: %v", name, value, topics, err)
	}
}

// Records too large for the broker do not pin a partition: a ≥ 1 MB invalid
// event and a retry task the tier topic refuses both reach the DLQ (reduced
// where needed), the partition keeps flowing, and SIGTERM stays quick.
func TestOversizeRecordsReachTheDLQAndPinNothing(t *testing.T) {
	in := startInstance(t, "dev", merge(ownTopics("big."), map[string]string{
		"WEBHOOKD_RETRY_TIERS": "1s,5s", "WEBHOOKD_SHUTDOWN_GRACE": "30s"}))
	rcv := newReceiver(t)
	rcv.respondWith(func(c captured, w http.ResponseWriter) {
		if c.Path == "/fail" {
			w.WriteHeader(500)
		}
	})
	ok := in.CreatePipeline(t, `{"name":"after","trigger_type":"click","steps":[{"order":1,"url":"`+rcv.URL+`/ok","body_template":{"id":"{{click.id}}"}}]}`)
	failing := in.CreatePipeline(t, `{"name":"big-retry","trigger_type":"offer_joined","steps":[{"order":1,"url":"`+rcv.URL+`/fail",
	  "retry_policy":{"max_attempts":3,"backoff_type":"fixed","initial_delay_seconds":1}}]}`)
	// The platform's topic takes 4 MB records; the retry tiers only 64 KB.
	setTopicConfig(t, "max.message.bytes", strconv.Itoa(4<<20), "big.events")
	setTopicConfig(t, "max.message.bytes", strconv.Itoa(64<<10), "big.webhooks.retry.1s", "big.webhooks.retry.5s", "big.webhooks.failover")
	bigProducer, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ProducerBatchMaxBytes(8<<20), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer bigProducer.Close()
	send := func(v string) {
		if err := bigProducer.ProduceSync(context.Background(), &kgo.Record{Topic: "big.events", Key: []byte("k"), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	send(`{"type":"click.tracked","data":{"id":"` + noise(1200<<10) + `"}}`) // 1.2 MB: more than an event may be
	send(`{"id":"evt_after_big","type":"click.tracked","data":{"id":"after_big"}}`)
	if c := rcv.next(t); c.Path != "/ok" || string(c.Body) != `{"id":"after_big"}` {
		t.Fatalf("after the big record: %s %s", c.Path, c.Body)
	}
	send(`{"id":"evt_bigretry","type":"offer.joined","data":{"id":"oj_big","blob":"` + noise(100<<10) + `"}}`)
	if c := rcv.next(t); c.Path != "/fail" {
		t.Fatalf("got %s", c.Path)
	}

	// Both items are listed by the DLQ API.
	var invalid map[string]any
	for deadline := time.Now().Add(arriveWithin); invalid == nil && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		_, out := in.API(t, "GET", "/api/admin/webhooks/logs/dlq?limit=100", nil)
		for _, it := range out["data"].(map[string]any)["items"].([]any) {
			if m := it.(map[string]any); m["reason"] == "invalid_event" {
				invalid = m
			}
		}
	}
	if invalid == nil || invalid["payload_truncated"] != true || invalid["source"].(map[string]any)["topic"] != "big.events" {
		t.Fatalf("invalid event item %v", invalid)
	}
	tooLarge := in.DLQItems(t, "/api/admin/webhooks/logs/dlq", failing["id"].(string), 1)[0]
	if tooLarge["reason"] != "too_large" || tooLarge["trigger_id"] != "oj_big" || tooLarge["attempts"] != 1.0 {
		t.Fatalf("too-large item %v", tooLarge)
	}
	if l := in.WaitExecution(t, ok["id"].(string), "after_big"); l["status"] != "completed" {
		t.Fatalf("log %v", l)
	}
	// Retrying the too-large delivery cannot queue it (the failover topic
	// refuses it too): 422, and the item stays dead.
	if code, out := in.API(t, "POST", "/api/admin/webhooks/logs/dlq/"+tooLarge["id"].(string)+"/retry", nil); code != 422 {
		t.Fatalf("retry of a too-large item: %d %v", code, out)
	}
	if again := in.DLQItems(t, "/api/admin/webhooks/logs/dlq", failing["id"].(string), 1)[0]; again["state"] != "dead" || again["id"] != tooLarge["id"] {
		t.Fatalf("after a refused retry: %v", again)
	}
	// The reduced invalid event is read again from its topic and produced
	// there again.
	if code, out := in.API(t, "POST", "/api/admin/webhooks/logs/dlq/"+invalid["id"].(string)+"/retry", nil); code != 202 {
		t.Fatalf("retry of the reduced invalid event: %d %v", code, out)
	}
	readTopic(t, "big.events", func(r *kgo.Record) bool { return r.Offset >= 3 && len(r.Value) > 1200<<10 })

	// Nothing is stuck: SIGTERM with a 30 s grace returns at once, and a
	// restart redelivers nothing.
	took := in.Restart(t)
	if took > 5*time.Second {
		t.Fatalf("SIGTERM took %v", took)
	}
	t.Logf("SIGTERM took %v", took)
	in.WaitCaughtUp(t)
	rcv.noneSoFar(t)
}

// While the probe of a half-open circuit waits on a hanging host, deliveries
// for that host wait for the probe's deadline instead of re-checking in a
// loop: the retry tiers see a bounded number of records, and every delivery
// ends in the DLQ within its policy's window.
func TestAHalfOpenBreakerDoesNotSpin(t *testing.T) {
	in := startInstance(t, "dev", merge(ownTopics("brk."), map[string]string{
		"WEBHOOKD_RETRY_TIERS": "1s,5s,10s", "WEBHOOKD_BREAKER_FAILURES": "3", "WEBHOOKD_BREAKER_COOLDOWN": "2s"}))
	hanging := newHangingReceiver(t)
	p := in.CreatePipeline(t, `{"name":"to-a-dead-host","trigger_type":"postback","steps":[{"order":1,"url":"`+hanging.URL+`/x","timeout_seconds":5,
	  "retry_policy":{"max_attempts":2,"backoff_type":"fixed","initial_delay_seconds":1}}]}`)
	const n = 20
	for i := range n {
		produce(t, "brk.events", strconv.Itoa(i), fmt.Sprintf(`{"id":"evt_brk%d","type":"postback.received","data":{"id":"pb_brk%d"}}`, i, i))
	}
	items := in.DLQItems(t, "/api/admin/webhooks/logs/dlq", p["id"].(string), n)
	reasons := map[string]int{}
	for _, it := range items {
		reasons[it["reason"].(string)]++
	}
	// Every record the tiers ever held.
	var tierTopics []string
	for _, tier := range []string{"1s", "5s", "10s"} {
		tierTopics = append(tierTopics, "brk.webhooks.retry."+tier)
	}
	ends, err := kadm.NewClient(producer).ListEndOffsets(context.Background(), tierTopics...)
	if err != nil {
		t.Fatal(err)
	}
	var records int64
	ends.Each(func(o kadm.ListedOffset) { records += o.Offset })
	t.Logf("%d deliveries to a hanging host: DLQ reasons %v; %d records on the retry tiers; %d requests made", n, reasons, records, hanging.total.Load())
	if reasons["circuit_open"] == 0 || reasons["circuit_open"]+reasons["retries_exhausted"] != n {
		t.Fatalf("DLQ reasons %v", reasons)
	}
	// Per delivery: one retry, a deferral to the end of the cooldown, one to
	// the probe's deadline, and the hops the 1 s tier makes of them. A
	// re-check every second while the 5 s probe is out would add 5 each.
	if records > n*8 {
		t.Fatalf("%d records on the retry tiers for %d deliveries: deferred work is spinning", records, n)
	}
}

// SIGTERM ends the process within WEBHOOKD_SHUTDOWN_GRACE whatever is stuck:
// deliveries hanging on a receiver and a test call waiting on one. The cut
// deliveries are not lost: they run again after the restart.
func TestShutdownIsBoundedByTheGraceWhateverIsStuck(t *testing.T) {
	in := startInstance(t, "dev", merge(ownTopics("stop."), map[string]string{"WEBHOOKD_SHUTDOWN_GRACE": "3s"}))
	hanging := newHangingReceiver(t)
	in.CreatePipeline(t, `{"name":"hangs","trigger_type":"click","steps":[{"order":1,"url":"`+hanging.URL+`/h","timeout_seconds":60}]}`)
	for i := range 20 {
		produce(t, "stop.events", strconv.Itoa(i), fmt.Sprintf(`{"id":"evt_stop%d","type":"click.tracked","data":{"id":"c%d"}}`, i, i))
	}
	go func() { // a test call that would wait 60 s
		req, _ := http.NewRequest("POST", "http://"+in.AdminAddr+"/api/admin/webhooks/test/step", strings.NewReader(`{"url":"`+hanging.URL+`/t","timeout_seconds":60}`))
		req.Header.Set("Authorization", "Bearer "+testToken)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	hanging.waitArrivals(t, 21) // every delivery and the test call are out
	took, err := in.Stop()
	t.Logf("SIGTERM with 21 requests hanging and a 3 s grace: exited after %v (%v)", took, err)
	if err != nil || took > 3*time.Second+time.Second {
		t.Fatalf("exit after %v: %v", took, err)
	}
	// The cut deliveries run again (same delivery ids) once restarted.
	in.Start(t)
	hanging.waitArrivals(t, 20)
}
