package delivery

import (
	"testing"
	"time"
)

// Task records come from Kafka: anything can be in them. Decoding never
// panics and accepts only tasks that name their delivery.
func FuzzDecodeTask(f *testing.F) {
	good := (&Task{DeliveryID: "wh_del_1", ExecutionID: "exec_1", PipelineID: "pipe_1", Event: []byte(`{"type":"click.tracked","data":{"id":"c"}}`),
		StepOrder: 1, Attempt: 2, NotBefore: time.Unix(1700000000, 0), Tiers: []string{"5s"}}).Record("t").Value
	for _, s := range []string{string(good), `{}`, `{"delivery_id":"x","pipeline_id":"p"}`, `null`, `[]`, `{"event":5}`, "\x00\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tk, err := DecodeTask(b)
		if err != nil {
			return
		}
		if tk.DeliveryID == "" || tk.PipelineID == "" || tk.ExecutionID == "" {
			t.Fatalf("accepted a task without ids: %q", b)
		}
		_, _ = tk.Decoded() // may fail; must not panic
		c := tk.Clone()
		c.AddTier("1s")
		if len(c.Tiers) > maxTiers {
			t.Fatalf("%d tiers", len(c.Tiers))
		}
		if again, err := DecodeTask(tk.Record("t").Value); err != nil || again.DeliveryID != tk.DeliveryID {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func TestAddTierKeepsTheLastFew(t *testing.T) {
	var tk Task
	for i := range 40 {
		tk.AddTier(time.Duration(i).String())
	}
	if len(tk.Tiers) != maxTiers || tk.Tiers[maxTiers-1] != time.Duration(39).String() {
		t.Fatalf("%v", tk.Tiers)
	}
}

func TestResumableStartsTheStepAfresh(t *testing.T) {
	tk := &Task{Attempt: 4, Failover: true, Tiers: []string{"5s"}, Dead: 2, DeferredSince: time.Now(), Steps: map[string]any{"1": 1}}
	r := tk.Resumable("HTTP 500")
	if r.Attempt != 0 || r.Failover || r.Tiers != nil || r.Dead != 0 || !r.DeferredSince.IsZero() || r.LastError != "HTTP 500" || r.Steps["1"] != 1 {
		t.Fatalf("%+v", r)
	}
	if tk.Attempt != 4 || !tk.Failover {
		t.Fatal("Resumable changed its task")
	}
}
