package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// orderedReceiver answers 500 to the first fails[id] requests for an event id
// (the last path segment) and 200 after, and records every request.
type orderedReceiver struct {
	*receiver
	mu    sync.Mutex
	fails map[string]int
}

func newOrderedReceiver(t *testing.T, fails map[string]int) *orderedReceiver {
	r := &orderedReceiver{receiver: newReceiver(t), fails: fails}
	r.respondWith(func(c captured, w http.ResponseWriter) {
		id := c.Path[strings.LastIndex(c.Path, "/")+1:]
		r.mu.Lock()
		n := r.fails[id]
		if n != 0 {
			r.fails[id] = n - 1
		}
		r.mu.Unlock()
		if n != 0 { // < 0: fails for ever
			w.WriteHeader(500)
			return
		}
		w.WriteHeader(200)
	})
	return r
}

// idOf is the event id a request was for.
func idOf(c captured) string { return c.Path[strings.LastIndex(c.Path, "/")+1:] }

func status(c captured) string {
	return c.Header.Get("X-Afftok-Retry-Count")
}

func TestOrderedPipelineHoldsAKeyBehindItsRetryWhileOtherKeysFlow(t *testing.T) {
	rcv := newOrderedReceiver(t, map[string]int{"ordA1": 3})
	// A1's retries 1 s apart (50 s scaled): B's five deliveries, one after
	// the other on their key, must all fit before the first of them, which
	// the default schedule's 100 ms does not leave a loaded machine.
	p := createPipeline(t, `{"name":"ordered","trigger_type":"conversion","ordering":"key",
	  "steps":[{"order":1,"url":"`+rcv.URL+`/o/{{conversion.id}}",
	  "retry_policy":{"max_attempts":5,"backoff_type":"fixed","initial_delay_seconds":50}}]}`)
	if p["ordering"] != "key" {
		t.Fatalf("create answered ordering %v", p["ordering"])
	}
	if code, out := api(t, "GET", "/api/admin/webhooks/pipelines/"+p["id"].(string), nil); code != 200 || out["data"].(map[string]any)["ordering"] != "key" {
		t.Fatalf("GET: %d %v", code, out)
	}
	// All ten in one produce: B5 is there as soon as A1 (ten produces one
	// after the other can take longer than A1's first retry).
	var recs []*kgo.Record
	for i := 1; i <= 5; i++ {
		for _, k := range []string{"A", "B"} {
			recs = append(recs, &kgo.Record{Topic: "afftok.conversions", Key: []byte("ordkey-" + k),
				Value: []byte(fmt.Sprintf(`{"id":"evt_ord%s%d","type":"conversion.created","data":{"id":"ord%s%d"}}`, k, i, k, i))})
		}
	}
	if err := producer.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// A1 fails three times (retries 1 s apart, scaled), then succeeds;
	// A2…A5 come after it, in order; B's five come at once.
	var got []captured
	for range 5 + 4 + 4 {
		got = append(got, rcv.next(t))
	}
	var aOrder []string
	a1Done, bDone := -1, 0
	for i, c := range got {
		id := idOf(c)
		switch {
		case strings.HasPrefix(id, "ordB"):
			bDone = i
		case id == "ordA1" && status(c) == "3":
			a1Done = i
			aOrder = append(aOrder, id)
		case id == "ordA1":
		default:
			aOrder = append(aOrder, id)
		}
	}
	if a1Done < 0 || bDone > a1Done {
		t.Fatalf("B's events waited behind A1's retries (last B at %d, A1 delivered at %d)", bDone, a1Done)
	}
	if want := []string{"ordA1", "ordA2", "ordA3", "ordA4", "ordA5"}; fmt.Sprint(aOrder) != fmt.Sprint(want) {
		t.Fatalf("A's deliveries in order %v, want %v", aOrder, want)
	}
	for _, c := range got {
		if id := idOf(c); strings.HasPrefix(id, "ordA") && id != "ordA1" && status(c) != "0" {
			t.Fatalf("parked %s was delivered as attempt %s, want a first attempt", id, status(c))
		}
	}
	// B's ran while A1 waited: before A1's first retry, in fact.
	firstRetry := -1
	for i, c := range got {
		if idOf(c) == "ordA1" && status(c) == "1" {
			firstRetry = i
			break
		}
	}
	if bDone > firstRetry {
		t.Errorf("B's last event came after A1's first retry (%d > %d): B did not flow at full speed", bDone, firstRetry)
	}
	// A key unlocked again delivers at once.
	produce(t, "afftok.conversions", "ordkey-A", `{"id":"evt_ordA6","type":"conversion.created","data":{"id":"ordA6"}}`)
	if c := rcv.next(t); idOf(c) != "ordA6" {
		t.Fatalf("got %s, want ordA6", idOf(c))
	}
	waitExecution(t, p["id"].(string), "ordA6")
	rcv.noneSoFar(t)
}

func TestOrderedPipelineDeadLetteredBlockerUnblocksItsKey(t *testing.T) {
	rcv := newOrderedReceiver(t, map[string]int{"ordC1": -1})
	p := createPipeline(t, `{"name":"ordered-dlq","trigger_type":"conversion","ordering":"key",
	  "steps":[{"order":1,"url":"`+rcv.URL+`/o/{{conversion.id}}","retry_policy":{"max_attempts":2,"backoff_type":"fixed","initial_delay_seconds":10}}]}`)
	for i := 1; i <= 3; i++ {
		produce(t, "afftok.conversions", "ordkey-C", fmt.Sprintf(`{"id":"evt_ordC%d","type":"conversion.created","data":{"id":"ordC%d"}}`, i, i))
	}
	var ids []string
	for range 4 {
		ids = append(ids, idOf(rcv.next(t)))
	}
	if want := []string{"ordC1", "ordC1", "ordC2", "ordC3"}; fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Fatalf("requests %v, want %v (C1's two attempts, then the rest in order)", ids, want)
	}
	items := dlqItems(t, "/api/admin/webhooks/dlq", p["id"].(string), 1)
	if items[0]["trigger_id"] != "ordC1" && !strings.Contains(fmt.Sprint(items[0]), "ordC1") {
		t.Fatalf("DLQ item %v is not C1's", items[0])
	}
	waitExecution(t, p["id"].(string), "ordC3")
	rcv.noneSoFar(t)
}

func TestOrderedPipelineFailoverOutcomeUnblocksItsKey(t *testing.T) {
	rcv := newOrderedReceiver(t, map[string]int{"ordF1": -1})
	fo := newReceiver(t)
	p := createPipeline(t, `{"name":"ordered-failover","trigger_type":"conversion","ordering":"key","failover_url":"`+fo.URL+`/fo/{{conversion.id}}",
	  "steps":[{"order":1,"url":"`+rcv.URL+`/o/{{conversion.id}}","retry_policy":{"max_attempts":1}}]}`)
	for i := 1; i <= 3; i++ {
		produce(t, "afftok.conversions", "ordkey-F", fmt.Sprintf(`{"id":"evt_ordF%d","type":"conversion.created","data":{"id":"ordF%d"}}`, i, i))
	}
	if c := rcv.next(t); idOf(c) != "ordF1" {
		t.Fatalf("first request for %s, want ordF1", idOf(c))
	}
	f := fo.next(t) // F1 went to failover, and was delivered there
	if idOf(f) != "ordF1" {
		t.Fatalf("failover got %s", idOf(f))
	}
	for _, want := range []string{"ordF2", "ordF3"} {
		c := rcv.next(t)
		if idOf(c) != want || c.At.Before(f.At) {
			t.Fatalf("got %s at %v (failover of F1 at %v), want %s after it", idOf(c), c.At, f.At, want)
		}
	}
	waitExecution(t, p["id"].(string), "ordF3")
	rcv.noneSoFar(t)
	fo.noneSoFar(t)
}

func TestOrderingIsValidated(t *testing.T) {
	code, out := api(t, "POST", "/api/admin/webhooks/pipelines", `{"name":"bad-order","trigger_type":"click","ordering":"fifo","steps":[{"order":1,"url":"https://example.com/x"}]}`)
	if code != 400 || !strings.Contains(fmt.Sprint(out), "ordering") {
		t.Fatalf("ordering fifo: %d %v", code, out)
	}
}

// produceAsync writes one record without waiting (flushProducer waits).
func produceAsync(t testing.TB, topic, key, value string) {
	t.Helper()
	producer.Produce(context.Background(), &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(value)}, func(_ *kgo.Record, err error) {
		if err != nil {
			t.Errorf("produce to %s: %v", topic, err)
		}
	})
}

func flushProducer(t testing.TB) {
	t.Helper()
	if err := producer.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestOrderedKeyThroughputBesideUnordered(t *testing.T) {
	if testing.Short() {
		t.Skip("a measurement")
	}
	const events = 2000
	var n atomic.Int64
	var last atomic.Int64
	var done atomic.Pointer[chan struct{}]
	rcv := newReceiver(t)
	rcv.respondWith(func(c captured, w http.ResponseWriter) {
		w.WriteHeader(200)
		last.Store(time.Now().UnixNano())
		if n.Add(1) == events {
			close(*done.Load())
		}
	})
	stop := make(chan struct{})
	defer close(stop)
	go func() { // requests are counted, not looked at
		for {
			select {
			case <-rcv.reqs:
			case <-stop:
				return
			}
		}
	}()
	in := startInstance(t, "dev", merge(ownTopics("tput."), map[string]string{"WEBHOOKD_TOPIC_PARTITIONS": "4"}))
	// Each phase: one pipeline alone, a fresh batch of events, timed from
	// the first produce to the last delivery.
	phase := 0
	measure := func(ordering string, keys int) float64 {
		phase++
		ch := make(chan struct{})
		done.Store(&ch)
		n.Store(0)
		p := in.CreatePipeline(t, `{"name":"tput","trigger_type":"click","ordering":"`+ordering+`","steps":[{"order":1,"url":"`+rcv.URL+`/t/{{click.id}}"}]}`)
		start := time.Now()
		for i := range events {
			produceAsync(t, "tput.events", fmt.Sprintf("k%d", i%keys), fmt.Sprintf(`{"id":"evt_tput%d_%d","type":"click.tracked","data":{"id":"c%d"}}`, phase, i, i))
		}
		flushProducer(t)
		select {
		case <-ch:
		case <-time.After(arriveWithin):
			t.Fatalf("%s, %d keys: %d of %d delivered", ordering, keys, n.Load(), events)
		}
		took := time.Unix(0, last.Load()).Sub(start)
		in.WaitCaughtUp(t)
		in.API(t, "DELETE", "/api/admin/webhooks/pipelines/"+p["id"].(string), nil)
		return events / took.Seconds()
	}
	measure("none", 100) // warm-up: connections, the sink, the first batches
	for _, keys := range []int{100, 1} {
		// Each side twice, interleaved; the better run of each counts (the
		// machine is shared, a slow run is noise, not the design).
		var un, ord float64
		for range 2 {
			un = max(un, measure("none", keys))
			ord = max(ord, measure("key", keys))
		}
		t.Logf("%d events over %d keys (4 partitions), one pipeline at a time, best of 2: unordered %.0f deliveries/s, ordered by key %.0f deliveries/s (%.0f %%)",
			events, keys, un, ord, 100*ord/un)
	}
}

// A SIGKILL while a key is blocked (its later events parked), and another in
// the middle of draining it, lose nothing and never deliver the key out of
// order: after each restart the new process reads the locks back from the
// order topic and drains again from the first parked event (a redo may
// repeat a delivery, with the same delivery id).
func TestOrderedKeySurvivesSIGKILLWhileBlockedAndWhileDraining(t *testing.T) {
	type answer struct {
		id     string
		status int
	}
	var mu sync.Mutex
	var answers []answer // requests answered with their status, in order
	failK1 := 1
	gate, k3 := make(chan struct{}), make(chan struct{})
	hangK3 := true
	rcv := newReceiver(t)
	rcv.respondWith(func(c captured, w http.ResponseWriter) {
		id := idOf(c)
		mu.Lock()
		st := 200
		if id == "ordK1" && failK1 > 0 {
			failK1--
			st = 500
		}
		hang := id == "ordK3" && hangK3
		if hang {
			hangK3 = false
		}
		mu.Unlock()
		if hang { // the drain is mid-way: K3's request is in flight when the process dies
			close(k3)
			<-gate
			return
		}
		mu.Lock()
		answers = append(answers, answer{id, st})
		mu.Unlock()
		w.WriteHeader(st)
	})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-rcv.reqs:
			case <-stop:
				return
			}
		}
	}()
	in := ownInstance(t, "ordcrash.", testTiers, "0.02")
	p := in.CreatePipeline(t, `{"name":"ordered-crash","trigger_type":"click","ordering":"key","steps":[{"order":1,"url":"`+rcv.URL+`/o/{{click.id}}",
	  "retry_policy":{"max_attempts":3,"backoff_type":"fixed","initial_delay_seconds":150}}]}`) // 3 s scaled
	for i := 1; i <= 5; i++ {
		produce(t, "ordcrash.events", "K", fmt.Sprintf(`{"id":"evt_ordK%d","type":"click.tracked","data":{"id":"ordK%d"}}`, i, i))
	}
	for i := 1; i <= 3; i++ {
		produce(t, "ordcrash.events", "L", fmt.Sprintf(`{"id":"evt_ordL%d","type":"click.tracked","data":{"id":"ordL%d"}}`, i, i))
	}
	parked := 0
	readTopic(t, "ordcrash.webhooks.parked", func(*kgo.Record) bool { parked++; return parked == 4 })
	in.Kill() // K1 waits in a tier, K2…K5 are parked
	in.Start(t)
	select {
	case <-k3:
	case <-time.After(arriveWithin):
		t.Fatal("the key was not drained after the restart")
	}
	in.Kill() // mid-drain: K2 delivered, K3 in flight
	close(gate)
	in.Start(t)
	waitFor := func(id string) {
		for deadline := time.Now().Add(arriveWithin); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			mu.Lock()
			for _, a := range answers {
				if a.id == id && a.status == 200 {
					mu.Unlock()
					return
				}
			}
			mu.Unlock()
		}
		t.Fatalf("%s was never delivered", id)
	}
	waitFor("ordK5")
	in.WaitExecution(t, p["id"].(string), "ordK5")
	mu.Lock()
	defer mu.Unlock()
	first := map[string]int{}
	var order []string
	k1Done := -1
	for i, a := range answers {
		if a.status != 200 {
			continue
		}
		if a.id == "ordK1" && k1Done < 0 {
			k1Done = i
		}
		if _, seen := first[a.id]; !seen {
			first[a.id] = i
			if strings.HasPrefix(a.id, "ordK") {
				order = append(order, a.id)
			}
		}
	}
	for i, a := range answers {
		if strings.HasPrefix(a.id, "ordK") && a.id != "ordK1" && i < k1Done {
			t.Fatalf("%s was delivered before K1 (answers %v)", a.id, answers)
		}
	}
	if want := []string{"ordK1", "ordK2", "ordK3", "ordK4", "ordK5"}; fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("K delivered first in order %v, want %v (answers %v)", order, want, answers)
	}
	for _, id := range []string{"ordL1", "ordL2", "ordL3"} {
		if _, ok := first[id]; !ok {
			t.Fatalf("%s lost (answers %v)", id, answers)
		}
	}
	t.Logf("answers across two SIGKILLs: %v", answers)
}

// A key blocked on one replica is drained by another: replica A writes the
// lock and parks, A dies, B takes the partitions over, reads the lock back,
// and drains the key when the blocker's retry (run by B's tier consumer)
// succeeds.
func TestOrderedKeyBlockedOnAReplicaThatDiesIsDrainedByTheSurvivor(t *testing.T) {
	const prefix = "ordtake."
	var mu sync.Mutex
	var delivered []string // 200 answers, in order
	failK1 := 1
	rcv := newReceiver(t)
	rcv.respondWith(func(c captured, w http.ResponseWriter) {
		id := idOf(c)
		mu.Lock()
		defer mu.Unlock()
		if id == "ordK1" && failK1 > 0 {
			failK1--
			w.WriteHeader(500)
			return
		}
		delivered = append(delivered, id)
		w.WriteHeader(200)
	})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-rcv.reqs:
			case <-stop:
				return
			}
		}
	}()
	env := merge(ownTopics(prefix), map[string]string{"WEBHOOKD_TOPIC_PARTITIONS": "2", "WEBHOOKD_KAFKA_SESSION_TIMEOUT": "6s",
		"WEBHOOKD_RETRY_TIERS": testTiers, "WEBHOOKD_RETRY_DELAY_SCALE": "0.02", "WEBHOOKD_BREAKER_FAILURES": "0"})
	a := startInstance(t, "dev", env)
	a.CreatePipeline(t, `{"name":"ordered-takeover","trigger_type":"click","ordering":"key","steps":[{"order":1,"url":"`+rcv.URL+`/o/{{click.id}}",
	  "retry_policy":{"max_attempts":3,"backoff_type":"fixed","initial_delay_seconds":750}}]}`) // 15 s scaled: past the takeover
	for i := 1; i <= 4; i++ {
		produce(t, prefix+"events", "K", fmt.Sprintf(`{"id":"evt_ordtK%d","type":"click.tracked","data":{"id":"ordK%d"}}`, i, i))
	}
	produce(t, prefix+"events", "L", `{"id":"evt_ordtL1","type":"click.tracked","data":{"id":"ordL1"}}`)
	parked := 0
	readTopic(t, prefix+"webhooks.parked", func(*kgo.Record) bool { parked++; return parked == 3 })
	b := startInstance(t, "serve", merge(env, map[string]string{"WEBHOOKD_ROLES": "dispatcher,retry", "WEBHOOKD_ALLOW_PRIVATE_TARGETS": "true"}))
	from := b.logs.count()
	a.Kill()
	if _, err := b.logs.waitLine(from, func(l string) (string, bool) {
		return l, strings.Contains(l, `"msg":"partitions assigned"`) && strings.Contains(l, prefix+"events")
	}, b.proc.done, arriveWithin); err != nil {
		t.Fatalf("the survivor never took the event partitions over: %v", err)
	}
	for deadline := time.Now().Add(arriveWithin); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		n := len(delivered)
		mu.Unlock()
		if n >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivered %v after %v", delivered, arriveWithin)
		}
	}
	b.WaitCaughtUp(t)
	mu.Lock()
	defer mu.Unlock()
	var ks []string
	seen := map[string]bool{}
	for _, id := range delivered {
		if strings.HasPrefix(id, "ordK") && !seen[id] {
			ks = append(ks, id)
		}
		seen[id] = true
	}
	if want := []string{"ordK1", "ordK2", "ordK3", "ordK4"}; fmt.Sprint(ks) != fmt.Sprint(want) || !seen["ordL1"] {
		t.Fatalf("delivered %v: want K1…K4 first delivered in order, and L1", delivered)
	}
	if !strings.Contains(strings.Join(b.Logs(), "\n"), "took over locked keys") {
		t.Errorf("the survivor did not log taking over the locked key")
	}
	t.Logf("delivered across the takeover: %v", delivered)
}
