package engine

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/afftok/webhookd/delivery"
)

const clickEvent = `{"id":"evt_o1","type":"click.tracked","data":{"id":"clk_o1"}}`

// A delivery of an ordered pipeline that leaves for a tier holds its key
// (the task says so, and RunLeft reports it); its end releases the key.
func TestOrderedDeliveryLeavingHoldsItsKeyAndItsEndReleasesIt(t *testing.T) {
	e := newEnv(t, nil)
	tk := task(t, clickEvent)
	tk.Order = delivery.OrderKey("pipe_1", []byte("K"))
	left, err := e.engine(delivery.Decision{Verdict: delivery.Retry, At: time.Now().Add(time.Second), Attempt: &delivery.Attempt{Kind: delivery.KindAttempt, Status: "failed"}}).
		RunLeft(context.Background(), e.Client, tk)
	if err != nil || !left {
		t.Fatalf("RunLeft = %v, %v; want left", left, err)
	}
	tier := e.read(t, e.Topics.Tiers[0].Topic)
	back, err := delivery.DecodeTask(tier[0].Value)
	if err != nil || !back.Blocks || back.Order != tk.Order {
		t.Fatalf("task on the tier: %+v, %v; want it to hold %s", back, err, tk.Order)
	}
	if recs := e.read(t, e.Topics.Order); len(recs) != 0 {
		t.Fatalf("a delivery still waiting released its key: %d records", len(recs))
	}
	for _, v := range []delivery.Verdict{delivery.Done, delivery.Dead, delivery.Cancelled} {
		left, err := e.engine(delivery.Decision{Verdict: v, Status: delivery.ExecCompleted, Reason: delivery.ReasonExhausted}).RunLeft(context.Background(), e.Client, back.Clone())
		if err != nil || left {
			t.Fatalf("%v: RunLeft = %v, %v", v, left, err)
		}
	}
	recs := e.read(t, e.Topics.Order)
	if len(recs) != 3 {
		t.Fatalf("%d releases, want one per ending (delivered, dead, cancelled)", len(recs))
	}
	var rel struct {
		DeliveryID string `json:"delivery_id"`
	}
	if err := json.Unmarshal(recs[0].Value, &rel); err != nil || string(recs[0].Key) != "rel|"+tk.Order || rel.DeliveryID != tk.DeliveryID {
		t.Fatalf("release %s = %s", recs[0].Key, recs[0].Value)
	}
}

// A delivery that ends in place, or is unordered, writes nothing to the
// order topic; a DLQ retry of an ordered one is nobody's blocker.
func TestOnlyABlockerWritesARelease(t *testing.T) {
	e := newEnv(t, nil)
	ordered := task(t, clickEvent)
	ordered.Order = delivery.OrderKey("pipe_1", []byte("K"))
	for _, tk := range []*delivery.Task{ordered, task(t, clickEvent)} {
		if _, err := e.engine(delivery.Decision{Verdict: delivery.Done, Status: delivery.ExecCompleted}).RunLeft(context.Background(), e.Client, tk); err != nil {
			t.Fatal(err)
		}
	}
	if recs := e.read(t, e.Topics.Order); len(recs) != 0 {
		t.Fatalf("%d order records, want none", len(recs))
	}
	b := ordered.Clone()
	b.Blocks = true
	if n := b.NewCycle("dlq_1", time.Now()); n.Blocks || n.Order != "" {
		t.Fatalf("a DLQ retry still holds the key: %+v", n)
	}
}
