package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/afftok/webhookd/bus/bustest"
	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/dlq"
	"github.com/afftok/webhookd/event"
	"github.com/afftok/webhookd/pipeline"
)

// script is a fake dispatcher: it returns the scripted decisions in order.
type script struct{ decs []delivery.Decision }

func (s *script) Step(_ context.Context, _ *pipeline.Compiled, t *delivery.Task) delivery.Decision {
	d := s.decs[0]
	s.decs = s.decs[1:]
	if d.Task == nil {
		d.Task = t.Clone()
	}
	return d
}

func (s *script) Unknown(t *delivery.Task) delivery.Decision {
	return s.Step(context.Background(), nil, t)
}

type pipes map[string]*pipeline.Compiled

func (p pipes) Get(id string) (*pipeline.Compiled, bool) { c, ok := p[id]; return c, ok }
func (p pipes) Deleted(string) bool                      { return false }

// env is a kfake broker with webhookd's topics (tiers 1s, 5s, 30s).
type env struct{ *bustest.Env }

func newEnv(t *testing.T, maxBytes map[string]int, opts ...kgo.Opt) *env {
	t.Helper()
	// Produce v9 names topics (v13 identifies them by id), which the fault
	// injection (refuse) reads.
	opts = append([]kgo.Opt{kgo.RecordDeliveryTimeout(10 * time.Second), kgo.MaxVersions(kversion.V3_6_0())}, opts...)
	return &env{bustest.Start(t, "1s,5s,30s", maxBytes, opts...)}
}

func (e *env) read(t *testing.T, topic string) []*kgo.Record { return e.Read(t, topic) }

func (e *env) engine(decs ...delivery.Decision) *Engine {
	p := &pipeline.Compiled{Pipeline: &pipeline.Pipeline{ID: "pipe_1", Name: "P"}}
	return &Engine{Pipes: pipes{"pipe_1": p}, Steps: &script{decs: decs}, Topics: e.Topics, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func task(t *testing.T, raw string) *delivery.Task {
	t.Helper()
	ev, err := event.Decode([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return delivery.NewTask(ev, []byte(raw), &delivery.Source{Topic: "afftok.clicks", Partition: 0, Offset: 42}, "id:"+ev.ID, "pipe_1", 1, time.Now())
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

const smallEvent = `{"id":"evt_1","type":"click.tracked","data":{"id":"clk_1"}}`

func kinds(t *testing.T, recs []*kgo.Record) []string {
	var out []string
	for _, r := range recs {
		var k struct{ Kind, Status string }
		if err := json.Unmarshal(r.Value, &k); err != nil {
			t.Fatal(err)
		}
		out = append(out, k.Kind+":"+k.Status)
	}
	return out
}

// Each decision becomes exactly the records DESIGN.md §3a lists.
func TestApplyWritesTheRecordsOfEachDecision(t *testing.T) {
	att := &delivery.Attempt{Kind: delivery.KindAttempt, Status: delivery.AttemptFailed, ExecutionID: "exec_x"}
	cases := []struct {
		name      string
		decs      []delivery.Decision
		execs     []string // kind:status on the executions topic
		tier, fo  int      // tasks on the tiers, on the failover topic
		dead      string   // DLQ reason, "" for none
		tierTopic string
	}{
		{name: "done", decs: []delivery.Decision{{Verdict: delivery.Done, Attempt: att, Status: delivery.ExecCompleted}},
			execs: []string{"attempt:failed", "execution:completed"}},
		{name: "next then done, in place", decs: []delivery.Decision{{Verdict: delivery.Next, Attempt: att}, {Verdict: delivery.Done, Attempt: att, Status: delivery.ExecCompleted}},
			execs: []string{"attempt:failed", "attempt:failed", "execution:completed"}},
		{name: "retry in 20s goes to the 5s tier", decs: []delivery.Decision{{Verdict: delivery.Retry, Attempt: att, At: time.Now().Add(20 * time.Second)}},
			execs: []string{"attempt:failed", "execution:retrying"}, tier: 1, tierTopic: "webhooks.retry.5s"},
		{name: "defer writes the task only", decs: []delivery.Decision{{Verdict: delivery.Defer, Reason: delivery.ReasonCircuitOpen, At: time.Now().Add(2 * time.Minute)}},
			tier: 1, tierTopic: "webhooks.retry.30s"},
		{name: "failover", decs: []delivery.Decision{{Verdict: delivery.Failover, Attempt: att, At: time.Now()}},
			execs: []string{"attempt:failed", "execution:retrying"}, fo: 1},
		{name: "dead", decs: []delivery.Decision{{Verdict: delivery.Dead, Attempt: att, Reason: delivery.ReasonPermanent, Error: "Blocked: 10.0.0.1", Attempts: 1, Status: delivery.ExecFailed}},
			execs: []string{"attempt:failed", "execution:failed"}, dead: delivery.ReasonPermanent},
		{name: "dead and go on", decs: []delivery.Decision{{Verdict: delivery.Dead, Attempt: att, Reason: delivery.ReasonExhausted, Continue: &delivery.Task{}}, {Verdict: delivery.Done, Attempt: att, Status: delivery.ExecPartial}},
			execs: []string{"attempt:failed", "attempt:failed", "execution:partial"}, dead: delivery.ReasonExhausted},
		{name: "cancelled", decs: []delivery.Decision{{Verdict: delivery.Cancelled, Status: delivery.ExecCancelled}},
			execs: []string{"execution:cancelled"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			tk := task(t, smallEvent)
			for i := range c.decs {
				if c.decs[i].Continue != nil {
					c.decs[i].Continue = tk.Clone()
				}
			}
			if err := e.engine(c.decs...).Run(context.Background(), e.Client, tk); err != nil {
				t.Fatal(err)
			}
			if got := kinds(t, e.read(t, e.Topics.Executions)); strings.Join(got, ",") != strings.Join(c.execs, ",") {
				t.Fatalf("executions %v, want %v", got, c.execs)
			}
			tiers := 0
			for _, tier := range e.Topics.Tiers {
				recs := e.read(t, tier.Topic)
				tiers += len(recs)
				if len(recs) > 0 && tier.Topic != c.tierTopic {
					t.Fatalf("task on %s, want %s", tier.Topic, c.tierTopic)
				}
			}
			if tiers != c.tier || len(e.read(t, e.Topics.Failover)) != c.fo {
				t.Fatalf("%d tier tasks, %d failover tasks", tiers, len(e.read(t, e.Topics.Failover)))
			}
			dead := e.read(t, e.Topics.DLQ)
			if (c.dead == "") != (len(dead) == 0) {
				t.Fatalf("%d DLQ records, want reason %q", len(dead), c.dead)
			}
			if len(dead) > 0 {
				var r dlq.Record
				_ = json.Unmarshal(dead[0].Value, &r)
				if r.Reason != c.dead || r.Task == nil || r.Task.Attempt != 0 || r.TriggerID != "clk_1" || r.PayloadTruncated {
					t.Fatalf("DLQ record %.400s", dead[0].Value)
				}
			}
		})
	}
}

// A retry task too large for the broker does not pin its partition: it
// becomes a DLQ item (too_large) that keeps where the event can be re-read.
func TestATaskTooLargeForTheBrokerGoesToTheDLQ(t *testing.T) {
	e := newEnv(t, map[string]int{"webhooks.retry.1s": 4096})
	big := `{"id":"evt_big","type":"click.tracked","data":{"id":"clk_big","ua":"` + noise(10000) + `"}}`
	tk := task(t, big)
	err := e.engine(delivery.Decision{Verdict: delivery.Retry, At: time.Now().Add(time.Second), Attempt: &delivery.Attempt{Kind: delivery.KindAttempt, Status: "failed"}}).
		Run(context.Background(), e.Client, tk)
	if err != nil {
		t.Fatal(err)
	}
	dead := e.read(t, e.Topics.DLQ)
	if len(dead) != 1 {
		t.Fatalf("%d DLQ records", len(dead))
	}
	var r dlq.Record
	_ = json.Unmarshal(dead[0].Value, &r)
	if r.Reason != delivery.ReasonTooLarge || !strings.Contains(r.Error, "MESSAGE_TOO_LARGE") || r.Task == nil || r.Task.Source.Offset != 42 {
		t.Fatalf("DLQ record %.400s", dead[0].Value)
	}
	if got := kinds(t, e.read(t, e.Topics.Executions)); got[len(got)-1] != "execution:failed" {
		t.Fatalf("executions %v", got)
	}
}

// A DLQ item too large for the DLQ topic is written reduced.
func TestADLQItemTooLargeIsWrittenReduced(t *testing.T) {
	e := newEnv(t, map[string]int{"webhooks.dlq": 8192})
	big := `{"id":"evt_big","type":"click.tracked","data":{"id":"clk_big","ua":"` + noise(20000) + `"}}`
	err := e.engine(delivery.Decision{Verdict: delivery.Dead, Reason: delivery.ReasonExhausted, Error: "HTTP 500", Attempts: 6, Status: delivery.ExecFailed}).
		Run(context.Background(), e.Client, task(t, big))
	if err != nil {
		t.Fatal(err)
	}
	dead := e.read(t, e.Topics.DLQ)
	var r dlq.Record
	_ = json.Unmarshal(dead[0].Value, &r)
	if len(dead) != 1 || !r.PayloadTruncated || r.Task.Event != nil || r.Task.Source.Offset != 42 || r.Reason != delivery.ReasonExhausted ||
		!strings.Contains(string(r.Payload), `"trigger_id":"clk_big"`) || strings.Contains(string(r.Payload), `"ua"`) {
		t.Fatalf("DLQ record %.400s", dead[0].Value)
	}
}

// An unreadable record of a megabyte or more reaches the DLQ without its
// bytes, with where it came from.
func TestAnUnreadableRecordOfAMegabyteReachesTheDLQReduced(t *testing.T) {
	e := newEnv(t, nil)
	rec := &kgo.Record{Topic: "afftok.clicks", Partition: 2, Offset: 7, Value: []byte("\x00" + noise(1200000))}
	if err := e.engine().Unreadable(context.Background(), e.Client, rec, delivery.ReasonInvalidEvent, errors.New("invalid event: too big")); err != nil {
		t.Fatal(err)
	}
	dead := e.read(t, e.Topics.DLQ)
	var r dlq.Record
	_ = json.Unmarshal(dead[0].Value, &r)
	if len(dead) != 1 || !r.PayloadTruncated || r.Source == nil || r.Source.Value != nil || r.Source.Offset != 7 || r.Source.Partition != 2 || r.Reason != delivery.ReasonInvalidEvent {
		t.Fatalf("DLQ record %.300s", dead[0].Value)
	}
}

// When the DLQ refuses an item in every form, nothing can take the delivery:
// that is fatal, and nothing is lost (the caller does not mark the offset).
func TestADLQThatRefusesEverythingIsFatal(t *testing.T) {
	e := newEnv(t, map[string]int{"webhooks.dlq": 600})
	err := e.engine(delivery.Decision{Verdict: delivery.Dead, Reason: delivery.ReasonExhausted, Error: strings.Repeat("e", 2000), Status: delivery.ExecFailed}).
		Run(context.Background(), e.Client, task(t, smallEvent))
	var fe *FatalError
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v", err)
	}
}

// Shutdown mid-delivery: nothing is produced and the caller must not mark.
func TestAbortProducesNothing(t *testing.T) {
	e := newEnv(t, nil)
	err := e.engine(delivery.Decision{Verdict: delivery.Next, Attempt: &delivery.Attempt{Kind: delivery.KindAttempt}}, delivery.Decision{Verdict: delivery.Abort}).
		Run(context.Background(), e.Client, task(t, smallEvent))
	if !errors.Is(err, ErrAborted) || len(e.read(t, e.Topics.Executions)) != 0 {
		t.Fatalf("err %v", err)
	}
}

// A hop moves a task to the tier for what is left of its wait, unchanged.
func TestHopPlacesTheTaskOnTheTierForTheRemainder(t *testing.T) {
	e := newEnv(t, nil)
	tk := task(t, smallEvent)
	tk.Attempt = 3
	tk.NotBefore = time.Now().Add(7 * time.Second)
	if err := e.engine().Hop(context.Background(), e.Client, tk); err != nil {
		t.Fatal(err)
	}
	recs := e.read(t, "webhooks.retry.5s")
	if len(recs) != 1 {
		t.Fatalf("%d records on the 5s tier", len(recs))
	}
	got, err := delivery.DecodeTask(recs[0].Value)
	if err != nil || got.Attempt != 3 || !got.NotBefore.Equal(tk.NotBefore) || got.Tiers[len(got.Tiers)-1] != "5s" {
		t.Fatalf("%+v %v", got, err)
	}
}

// refuse makes the broker answer produce requests for topic with code while
// fail() says so; records for other topics in the same request are told to
// retry (they are sent again and written).
func (e *env) refuse(topic string, code int16, fail func() bool) {
	e.Cluster.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.ProduceRequest)
		hit := false
		for _, t := range req.Topics {
			hit = hit || t.Topic == topic
		}
		if !hit || !fail() {
			return nil, nil, false
		}
		e.Cluster.KeepControl()
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, t := range req.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = kerr.NotLeaderForPartition.Code
				if t.Topic == topic {
					rp.ErrorCode = code
				}
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
}

var retryDec = delivery.Decision{Verdict: delivery.Retry, At: time.Now().Add(time.Hour), Attempt: &delivery.Attempt{Kind: delivery.KindAttempt, Status: "failed"}}

// A task Kafka refuses for good (not for its size) becomes a DLQ item.
func TestATaskKafkaRefusesForGoodGoesToTheDLQ(t *testing.T) {
	e := newEnv(t, nil)
	e.refuse("webhooks.retry.30s", kerr.PolicyViolation.Code, func() bool { return true })
	dec := retryDec
	if err := e.engine(dec).Run(context.Background(), e.Client, task(t, smallEvent)); err != nil {
		t.Fatal(err)
	}
	dead := e.read(t, e.Topics.DLQ)
	var r dlq.Record
	if len(dead) != 1 || json.Unmarshal(dead[0].Value, &r) != nil || r.Reason != delivery.ReasonProduceFailed || !strings.Contains(r.Error, "POLICY_VIOLATION") {
		t.Fatalf("%d DLQ records: %+v", len(dead), r)
	}
}

// A transient refusal is tried again (the delivery goes on once Kafka takes
// it); one that lasts is fatal, and nothing is marked done.
func TestTransientRefusalsAreBounded(t *testing.T) {
	transientBackoff = []time.Duration{10 * time.Millisecond, 10 * time.Millisecond}
	for _, c := range []struct {
		name  string
		lasts time.Duration // longer than the client's own retries (1 s)
		fatal bool
	}{{"passing", 1500 * time.Millisecond, false}, {"lasting", time.Hour, true}} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil, kgo.RecordDeliveryTimeout(time.Second))
			until := time.Now().Add(c.lasts)
			e.refuse("webhooks.retry.30s", kerr.NotEnoughReplicas.Code, func() bool { return time.Now().Before(until) })
			err := e.engine(retryDec).Run(context.Background(), e.Client, task(t, smallEvent))
			var fe *FatalError
			if c.fatal != errors.As(err, &fe) {
				t.Fatalf("err = %v", err)
			}
			if !c.fatal && len(e.read(t, "webhooks.retry.30s")) != 1 {
				t.Fatal("the task was not written once Kafka took it")
			}
		})
	}
}

// An execution's state records say when it first went into retry and, at
// its end, that it had: retry, retry again (from the tier's task), failover,
// done → retrying (first), retrying, retrying, completed (retried). One that
// never retried says neither.
func TestStateRecordsMarkTheFirstRetryAndARetriedEnd(t *testing.T) {
	att := &delivery.Attempt{Kind: delivery.KindAttempt, Status: delivery.AttemptFailed, ExecutionID: "exec_x"}
	e := newEnv(t, nil)
	tk := task(t, smallEvent)
	run := func(tk *delivery.Task, dec delivery.Decision) {
		t.Helper()
		if err := e.engine(dec).Run(context.Background(), e.Client, tk); err != nil {
			t.Fatal(err)
		}
	}
	// The task as written to its next topic (only the newest is taken).
	next := func(topic string, n int) *delivery.Task {
		t.Helper()
		recs := e.read(t, topic)
		if len(recs) != n {
			t.Fatalf("%d records on %s, want %d", len(recs), topic, n)
		}
		nt, err := delivery.DecodeTask(recs[n-1].Value)
		if err != nil {
			t.Fatal(err)
		}
		if !nt.Retried {
			t.Fatalf("the task on %s does not carry retried: %s", topic, recs[n-1].Value)
		}
		return nt
	}
	run(tk, delivery.Decision{Verdict: delivery.Retry, Attempt: att, At: time.Now().Add(20 * time.Second)})
	tk = next("webhooks.retry.5s", 1)
	run(tk, delivery.Decision{Verdict: delivery.Retry, Attempt: att, At: time.Now().Add(20 * time.Second)})
	tk = next("webhooks.retry.5s", 2)
	run(tk, delivery.Decision{Verdict: delivery.Failover, Attempt: att, At: time.Now()})
	tk = next(e.Topics.Failover, 1)
	run(tk, delivery.Decision{Verdict: delivery.Done, Attempt: att, Status: delivery.ExecCompleted})
	run(task(t, smallEvent), delivery.Decision{Verdict: delivery.Done, Attempt: att, Status: delivery.ExecCompleted})
	var got []string
	for _, r := range e.read(t, e.Topics.Executions) {
		var x delivery.Execution
		if err := json.Unmarshal(r.Value, &x); err != nil {
			t.Fatal(err)
		}
		if x.Kind == delivery.KindExecution {
			got = append(got, fmt.Sprintf("%s first=%v retried=%v", x.Status, x.FirstRetry, x.Retried))
		}
	}
	want := []string{"retrying first=true retried=false", "retrying first=false retried=false", "retrying first=false retried=false",
		"completed first=false retried=true", "completed first=false retried=false"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("state records\n got %v\nwant %v", got, want)
	}
}
