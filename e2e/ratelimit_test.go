package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// arrivalReceiver answers 200 and records when each request came, its
// delivery id and its retry count.
type arrivalReceiver struct {
	*httptest.Server
	mu      sync.Mutex
	arrived []arrival
	changed chan struct{}
}

type arrival struct {
	at         time.Time
	deliveryID string
	retryCount string
}

func newArrivalReceiver(t *testing.T) *arrivalReceiver {
	r := &arrivalReceiver{changed: make(chan struct{}, 1)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		a := arrival{at: time.Now(), deliveryID: req.Header.Get("X-Afftok-Delivery-ID"), retryCount: req.Header.Get("X-Afftok-Retry-Count")}
		r.mu.Lock()
		r.arrived = append(r.arrived, a)
		r.mu.Unlock()
		select {
		case r.changed <- struct{}{}:
		default:
		}
		w.WriteHeader(200)
	}))
	t.Cleanup(r.Close)
	return r
}

// waitDistinct waits until n distinct deliveries have arrived.
func (r *arrivalReceiver) waitDistinct(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(arriveWithin)
	for {
		r.mu.Lock()
		ids := map[string]bool{}
		for _, a := range r.arrived {
			ids[a.deliveryID] = true
		}
		r.mu.Unlock()
		if len(ids) >= n {
			return
		}
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatalf("%d of %d deliveries arrived within %v", len(ids), n, arriveWithin)
		}
	}
}

func (r *arrivalReceiver) all() []arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.arrived)
}

// rateFigures are the observed rate over the whole run ((n-1) ÷ first to
// last arrival) and the fewest and most arrivals in any whole one-second
// window of it.
type rateFigures struct {
	overall          float64
	minPerS, maxPerS int
	span             time.Duration
	// bulk is the rate of the first 90 % of arrivals (a few late ones
	// make the overall figure of an uneven run).
	bulk float64
}

func observe(got []arrival) rateFigures {
	at := make([]time.Time, len(got))
	for i, a := range got {
		at[i] = a.at
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	f := rateFigures{span: at[len(at)-1].Sub(at[0]), minPerS: len(at)}
	f.overall = float64(len(at)-1) / f.span.Seconds()
	if n := len(at) * 9 / 10; n > 1 {
		f.bulk = float64(n-1) / at[n-1].Sub(at[0]).Seconds()
	}
	// Windows [at[i], at[i]+1s) that end before the last arrival.
	for i := range at {
		end := at[i].Add(time.Second)
		if end.After(at[len(at)-1]) {
			break
		}
		n := 0
		for j := i; j < len(at) && at[j].Before(end); j++ {
			n++
		}
		f.minPerS, f.maxPerS = min(f.minPerS, n), max(f.maxPerS, n)
	}
	return f
}

// perSecond counts arrivals in each second from the first.
func perSecond(got []arrival) []int {
	first := got[0].at
	for _, a := range got {
		if a.at.Before(first) {
			first = a.at
		}
	}
	var n []int
	for _, a := range got {
		i := int(a.at.Sub(first) / time.Second)
		for len(n) <= i {
			n = append(n, 0)
		}
		n[i]++
	}
	return n
}

// produceBurst writes n click events, keyed one apart, in one batch.
func produceBurst(t *testing.T, topic, tag string, n int) {
	t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "%s-%d", tag, i),
			Value: fmt.Appendf(nil, `{"id":"evt_%s%d","type":"click.tracked","data":{"id":"c_%s%d"}}`, tag, i, tag, i)}
	}
	if err := producer.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// countAttempts counts the attempt records of a pipeline on an executions
// topic, all of them: up to the topic's end offsets.
func countAttempts(t *testing.T, topic, pipelineID string) int {
	t.Helper()
	ends, err := kadm.NewClient(producer).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), arriveWithin)
	defer cancel()
	n := 0
	var started []arrival
	for len(left) > 0 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var rec struct {
				Kind       string    `json:"kind"`
				PipelineID string    `json:"pipeline_id"`
				StartedAt  time.Time `json:"started_at"`
			}
			if json.Unmarshal(r.Value, &rec) == nil && rec.Kind == "attempt" && rec.PipelineID == pipelineID {
				n++
				started = append(started, arrival{at: rec.StartedAt})
			}
			if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
				delete(left, r.Partition)
			}
		})
	}
	if len(left) > 0 {
		t.Fatalf("reading %s: partitions %v not read to their end within %v", topic, left, arriveWithin)
	}
	if len(started) > 1 {
		// When webhookd started each attempt, by its own clock: tells a
		// burst webhookd made from arrivals bunched on their way.
		f := observe(started)
		t.Logf("attempt records: %d, started at %.2f/s; busiest second %d, quietest %d", n, f.overall, f.maxPerS, f.minPerS)
	}
	return n
}

// rateEnv: retry tiers fine enough to bring deferred work back on time,
// four partitions a topic (two replicas own half each), quick logs.
func rateEnv(prefix string) map[string]string {
	return merge(ownTopics(prefix), map[string]string{
		"WEBHOOKD_TOPIC_PARTITIONS": "4", "WEBHOOKD_RETRY_TIERS": "100ms,500ms,2s,10s",
		"WEBHOOKD_ANALYTICS_FLUSH_INTERVAL": "100ms", "WEBHOOKD_LOG_LEVEL": "info",
	})
}

const (
	rateLimit  = 20
	rateEvents = 200
)

// checkRateRun asserts what a user of a rate-limited pipeline sees after a
// burst of rateEvents events: every event delivered once, on its first
// attempt (deferral spends none), at the limit ±15 %. It returns the figures.
func checkRateRun(t *testing.T, rcv *arrivalReceiver, executions, pipelineID string) rateFigures {
	t.Helper()
	got := rcv.all()
	perDelivery := map[string]int{}
	for _, a := range got {
		perDelivery[a.deliveryID]++
		if a.retryCount != "0" {
			t.Errorf("delivery %s arrived with X-Afftok-Retry-Count %s: an attempt was spent", a.deliveryID, a.retryCount)
		}
	}
	if len(perDelivery) != rateEvents || len(got) != rateEvents {
		t.Errorf("%d requests for %d deliveries; want %d each once", len(got), len(perDelivery), rateEvents)
	}
	if n := countAttempts(t, executions, pipelineID); n != rateEvents {
		t.Errorf("%d attempt records on %s, want one per event (%d)", n, executions, rateEvents)
	}
	f := observe(got)
	if ratio := f.overall / rateLimit; ratio < 0.85 || ratio > 1.15 {
		t.Errorf("observed %.2f/s over %v, limit %d/s: accuracy %.3f, outside ±15%%", f.overall, f.span.Round(time.Millisecond), rateLimit, ratio)
	}
	// No second of the run goes much faster than the limit (one extra for
	// a window's edges, 15 % for the tiers' timing).
	if most := int(rateLimit*1.15) + 1; f.maxPerS > most {
		t.Errorf("%d deliveries in one second, limit %d/s", f.maxPerS, rateLimit)
	}
	return f
}

// A pipeline limited to 20/s gets a burst of 200 events at once: the
// receiver sees them at 20/s (±15 %), each once and on its first attempt —
// work over the limit waits in the retry tiers without spending attempts —
// and the execution logs count one attempt per event, nothing retried or
// dead.
func TestRateLimitPacesABurst(t *testing.T) {
	const prefix = "rate1."
	in := startInstance(t, "dev", rateEnv(prefix))
	rcv := newArrivalReceiver(t)
	// Validated when saved, with its field path.
	for _, bad := range []string{"0", "-5", "100001", `"20"`, "null"} {
		body := `{"name":"bad","trigger_type":"click","rate_limit_per_second":` + bad + `,"steps":[{"order":1,"url":"` + rcv.URL + `/r"}]}`
		code, out := in.API(t, "POST", "/api/admin/webhooks/pipelines", body)
		errObj, _ := out["error"].(map[string]any)
		details, _ := errObj["details"].([]any)
		if bad == "null" { // null is absent: no limit
			if code != 201 {
				t.Errorf("null: %d %v", code, out)
			} else {
				in.API(t, "DELETE", "/api/admin/webhooks/pipelines/"+out["data"].(map[string]any)["id"].(string), nil)
			}
			continue
		}
		if code != 400 || len(details) != 1 || details[0].(map[string]any)["field"] != "rate_limit_per_second" {
			t.Errorf("rate_limit_per_second %s: %d %v", bad, code, out)
		}
	}
	p := in.CreatePipeline(t, fmt.Sprintf(`{"name":"rated","trigger_type":"click","rate_limit_per_second":%d,"steps":[{"order":1,"url":"%s/r"}]}`, rateLimit, rcv.URL))
	id := p["id"].(string)
	if p["rate_limit_per_second"] != float64(rateLimit) {
		t.Fatalf("the answer shows rate_limit_per_second %v", p["rate_limit_per_second"])
	}
	produceBurst(t, prefix+"events", "one", rateEvents)
	rcv.waitDistinct(t, rateEvents)
	in.WaitCaughtUp(t)
	f := checkRateRun(t, rcv, prefix+"webhooks.executions", id)
	t.Logf("one replica, limit %d/s, %d events at once: observed %.2f/s over %v (accuracy %.3f); busiest second %d, quietest %d",
		rateLimit, rateEvents, f.overall, f.span.Round(time.Millisecond), f.overall/rateLimit, f.maxPerS, f.minPerS)
	// The execution logs: every execution completed, none retrying or dead.
	for deadline := time.Now().Add(arriveWithin); ; time.Sleep(200 * time.Millisecond) {
		_, out := in.API(t, "GET", "/api/admin/webhooks/pipelines/"+id, nil)
		st, _ := out["data"].(map[string]any)["stats"].(map[string]any)
		if st != nil && st["total_executions"] == float64(rateEvents) {
			if st["successful"] != float64(rateEvents) || st["in_retry"] != 0.0 || st["in_dlq"] != 0.0 {
				t.Fatalf("stats %v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats after %v: %v", arriveWithin, st)
		}
	}
	// A new limit applies without a restart.
	if code, out := in.API(t, "PUT", "/api/admin/webhooks/pipelines/"+id, `{"rate_limit_per_second":100}`); code != 200 {
		t.Fatalf("PUT: %d %v", code, out)
	}
	_, out := in.API(t, "GET", "/api/admin/webhooks/pipelines/"+id, nil)
	if v := out["data"].(map[string]any)["rate_limit_per_second"]; v != 100.0 {
		t.Fatalf("GET after the change shows %v", v)
	}
	before := len(rcv.all())
	produceBurst(t, prefix+"events", "two", 100)
	rcv.waitDistinct(t, rateEvents+100)
	g := observe(rcv.all()[before:])
	t.Logf("after PUT rate_limit_per_second 100: 100 events at %.1f/s", g.overall)
	// Never above the new limit; clearly above the old one (the change took
	// effect). How close to 100/s it gets depends on how busy the machine
	// is, so that is logged, not asserted.
	if g.overall > 100*1.15 || g.overall < rateLimit*1.5 {
		t.Errorf("after the change to 100/s: observed %.1f/s (old limit %d/s)", g.overall, rateLimit)
	}
}

// Two replicas share the consumer groups: the limit holds for the
// deployment (the combined rate is the limit, not twice it), each replica
// pacing at its share — half, as each owns half of the partitions.
func TestRateLimitHoldsAcrossTwoReplicas(t *testing.T) {
	const prefix = "rate2."
	env := rateEnv(prefix)
	a := startInstance(t, "dev", env)
	b := startInstance(t, "dev", env)
	// Wait until the second replica took its half of every group (the
	// first gave it up before): the groups are balanced.
	groups := []string{prefix + "group", prefix + "group-failover"}
	for _, tier := range []string{"100ms", "500ms", "2s", "10s"} {
		groups = append(groups, prefix+"group-retry-"+tier)
	}
	var bEvents []int32 // the event partitions the second replica owns
	for _, g := range groups {
		line := b.WaitLog(t, `"msg":"partitions assigned"`, `"group":"`+g+`","partitions":{"`)
		if g == prefix+"group" {
			var m struct{ Partitions map[string][]int32 }
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatal(err)
			}
			bEvents = m.Partitions[prefix+"events"]
		}
	}
	rcv := newArrivalReceiver(t)
	p := a.CreatePipeline(t, fmt.Sprintf(`{"name":"rated-2","trigger_type":"click","rate_limit_per_second":%d,"steps":[{"order":1,"url":"%s/r"}]}`, rateLimit, rcv.URL))
	// The second replica knows the pipeline (its registry caught up).
	if code, _ := b.API(t, "GET", "/api/admin/webhooks/pipelines/"+p["id"].(string), nil); code != 200 {
		t.Fatalf("the second replica does not know the pipeline: %d", code)
	}
	produceBurst(t, prefix+"events", "pair", rateEvents)
	rcv.waitDistinct(t, rateEvents)
	a.WaitCaughtUp(t)
	f := checkRateRun(t, rcv, prefix+"webhooks.executions", p["id"].(string))
	t.Logf("two replicas, limit %d/s, %d events at once: observed %.2f/s combined over %v (accuracy %.3f); busiest second %d, quietest %d; per second %v",
		rateLimit, rateEvents, f.overall, f.span.Round(time.Millisecond), f.overall/rateLimit, f.maxPerS, f.minPerS, perSecond(rcv.all()))

	// Uneven keys: every event on the first replica's event partitions.
	// What it has no place for soon hops through a retry tier (keyed by
	// delivery id, so the hops land on both replicas' tier partitions) and
	// is booked where it lands: both halves of the budget are used, and the
	// combined rate is still the limit.
	var aEvents []int32
	for p := range int32(4) {
		if !slices.Contains(bEvents, p) {
			aEvents = append(aEvents, p)
		}
	}
	manual, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer manual.Close()
	before := len(rcv.all())
	recs := make([]*kgo.Record, rateEvents)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: prefix + "events", Partition: aEvents[i%len(aEvents)],
			Value: fmt.Appendf(nil, `{"id":"evt_uneven%d","type":"click.tracked","data":{"id":"c_uneven%d"}}`, i, i)}
	}
	if err := manual.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	rcv.waitDistinct(t, 2*rateEvents)
	a.WaitCaughtUp(t)
	uneven := rcv.all()[before:]
	if len(uneven) != rateEvents {
		t.Errorf("uneven keys: %d requests for %d events", len(uneven), rateEvents)
	}
	u := observe(uneven)
	t.Logf("two replicas, every event on one replica's partitions (%v of 4): observed %.2f/s combined over %v (accuracy %.3f; the first 90 %% at %.2f/s, %.3f); busiest second %d, quietest %d",
		aEvents, u.overall, u.span.Round(time.Millisecond), u.overall/rateLimit, u.bulk, u.bulk/rateLimit, u.maxPerS, u.minPerS)
	t.Logf("per second: %v", perSecond(uneven))
	if ratio := u.overall / rateLimit; ratio < 0.85 || ratio > 1.15 || u.maxPerS > int(rateLimit*1.15)+1 {
		t.Errorf("uneven keys: %.2f/s overall (accuracy %.3f), %d in one second; limit %d/s", u.overall, ratio, u.maxPerS, rateLimit)
	}
	if n := countAttempts(t, prefix+"webhooks.executions", p["id"].(string)); n != 2*rateEvents {
		t.Errorf("%d attempt records, want one per event (%d)", n, 2*rateEvents)
	}
}
