package dispatcher

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/event"
	"github.com/afftok/webhookd/pipeline"
)

func TestBreakerOpensProbesAndCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &Breaker{Failures: 3, Cooldown: 30 * time.Second}
		for range 2 {
			b.Record("h", true)
		}
		if ok, _ := b.Allow("h"); !ok {
			t.Fatal("open before the threshold")
		}
		b.Record("h", true)
		if ok, wait := b.Allow("h"); ok || wait != 30*time.Second {
			t.Fatalf("not open after 3 failures: %v %v", ok, wait)
		}
		if ok, _ := b.Allow("other"); !ok {
			t.Fatal("another host was shed")
		}
		time.Sleep(30 * time.Second)
		if ok, _ := b.Allow("h"); !ok {
			t.Fatal("no probe after the cooldown")
		}
		if ok, _ := b.Allow("h"); ok {
			t.Fatal("a second request went through while the probe is out")
		}
		b.Record("h", true) // the probe failed: open again
		if ok, wait := b.Allow("h"); ok || wait != 30*time.Second {
			t.Fatalf("failed probe did not re-open: %v %v", ok, wait)
		}
		time.Sleep(30 * time.Second)
		b.Allow("h")
		b.Record("h", false) // the probe succeeded: closed
		for range 5 {
			if ok, _ := b.Allow("h"); !ok {
				t.Fatal("closed circuit shed a request")
			}
		}
		var off *Breaker
		if ok, _ := off.Allow("h"); !ok {
			t.Fatal("nil breaker shed a request")
		}
	})
}

type captureRouter struct{ tasks []*delivery.Task }

func (c *captureRouter) Retry(t *delivery.Task) *kgo.Record {
	c.tasks = append(c.tasks, t)
	return &kgo.Record{Topic: "retry"}
}
func (c *captureRouter) Failover(t *delivery.Task) *kgo.Record { return c.Retry(t) }

// Once a receiver host's circuit is open, a delivery to it makes no request
// and waits in the retry path without spending an attempt.
func TestOpenCircuitDefersWithoutSpendingAnAttempt(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(503)
	}))
	defer srv.Close()
	router := &captureRouter{}
	d := New(Options{Client: NewHTTPClient(Guard{AllowPrivate: true}, 4), Router: router, Breaker: &Breaker{Failures: 2, Cooldown: time.Minute}})
	p := &pipeline.Pipeline{ID: "pipe_b", Name: "b", TriggerType: "click", Steps: []pipeline.Step{{ID: "s1", Order: 1, URL: srv.URL + "/x"}}}
	p.Normalize()
	cp, err := pipeline.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte(`{"id":"e1","type":"click.tracked","data":{"id":"c1"}}`)
	ev, _ := event.Decode(raw)
	for i := range 2 {
		out := d.Execute(context.Background(), cp, NewJob(ev, raw, "k", p.ID, time.Now()))
		if out.Status != delivery.ExecRetrying || router.tasks[i].Attempt != 1 {
			t.Fatalf("run %d: %s, task %+v", i, out.Status, router.tasks[i])
		}
	}
	if hits.Load() != 2 {
		t.Fatalf("%d requests", hits.Load())
	}
	// The circuit is open: a retry (attempt 1) is deferred, not made.
	task := router.tasks[1]
	job, err := JobForTask(task)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	out := d.Run(context.Background(), cp, task, job)
	deferred := router.tasks[2]
	if hits.Load() != 2 || out.Status != delivery.ExecRetrying || deferred.Attempt != 1 || deferred.LastError != "Circuit open" ||
		deferred.NotBefore.Before(before.Add(59*time.Second)) {
		t.Fatalf("hits %d, status %s, deferred %+v", hits.Load(), out.Status, deferred)
	}
	for _, r := range out.Records {
		if r.Topic != "retry" {
			var a delivery.Attempt
			if json.Unmarshal(r.Value, &a) == nil && a.Kind == delivery.KindAttempt {
				t.Fatalf("a deferred delivery recorded an attempt: %s", r.Value)
			}
		}
	}
}
