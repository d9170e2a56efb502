package retrytopics

import (
	"context"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/bus"
	"github.com/afftok/webhookd/consumer"
	"github.com/afftok/webhookd/delivery"
)

func TestDueNeverPassesTheHoldExceptBySlack(t *testing.T) {
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		nb   time.Duration // notBefore - produced
		want time.Duration // due - produced
	}{
		{5 * time.Second, 5 * time.Second},                                           // exactly the tier
		{5*time.Second + 500*time.Microsecond, 5*time.Second + 500*time.Microsecond}, // ms truncation: wait in place
		{7 * time.Second, 5 * time.Second},                                           // remainder: look at it at the hold, then hop
		{300 * time.Millisecond, 300 * time.Millisecond},                             // remainder hopped into a longer tier
	}
	for _, c := range cases {
		if got := Due(ts, 5*time.Second, ts.Add(c.nb)).Sub(ts); got != c.want {
			t.Errorf("notBefore +%v: due +%v, want +%v", c.nb, got, c.want)
		}
	}
}

// The partition hold waits on the clock, never less than asked, and a stop ends it.
func TestWaitUntilHoldsUntilDueOrStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if !consumer.WaitUntil(start.Add(5*time.Second), nil) || time.Since(start) != 5*time.Second {
			t.Fatalf("waited %v", time.Since(start))
		}
		stop := make(chan struct{})
		go func() {
			time.Sleep(time.Second)
			close(stop)
		}()
		start = time.Now()
		if consumer.WaitUntil(start.Add(time.Hour), stop) || time.Since(start) != time.Second {
			t.Fatalf("stop not honoured: %v", time.Since(start))
		}
		if !consumer.WaitUntil(time.Time{}, nil) {
			t.Fatal("zero due must not wait")
		}
	})
}

type recordRunner struct{ ran, hopped, unreadable int }

func (r *recordRunner) Run(context.Context, *kgo.Client, *delivery.Task) error { r.ran++; return nil }
func (r *recordRunner) Hop(context.Context, *kgo.Client, *delivery.Task) error {
	r.hopped++
	return nil
}
func (r *recordRunner) Unreadable(context.Context, *kgo.Client, *kgo.Record, string, error) error {
	r.unreadable++
	return nil
}

func taskRecord(t *testing.T, ts, notBefore time.Time) *kgo.Record {
	t.Helper()
	rec := (&delivery.Task{DeliveryID: "d", ExecutionID: "e", PipelineID: "p", NotBefore: notBefore}).Record("webhooks.retry.5s")
	rec.Timestamp = ts
	return rec
}

// A record stamped in the future (a fast clock elsewhere) holds its
// partition no longer than the tier's delay from now.
func TestAFutureTimestampDoesNotHoldATierPartition(t *testing.T) {
	h := &TierHandler{Tier: bus.Tier{Name: "5s", Delay: 5 * time.Second}, Engine: &recordRunner{}, Log: slog.Default()}
	now := time.Now()
	w := h.Prepare(taskRecord(t, now.Add(10*time.Minute), now.Add(10*time.Minute)))
	if w.Due.After(time.Now().Add(5 * time.Second)) {
		t.Fatalf("held until +%v", time.Until(w.Due))
	}
}

// A task due further ahead than any retry may wait is dead-lettered, not
// hopped through the tiers for ever; so is a negative attempt.
func TestImpossibleTasksAreDeadLettered(t *testing.T) {
	r := &recordRunner{}
	h := &TierHandler{Tier: bus.Tier{Name: "1h", Delay: time.Hour}, Engine: r, Log: slog.Default()}
	for _, rec := range []*kgo.Record{
		taskRecord(t, time.Now(), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)),
		{Value: []byte(`{"delivery_id":"d","execution_id":"e","pipeline_id":"p","attempt":-3}`)},
	} {
		for _, job := range h.Prepare(rec).Jobs {
			_ = job(context.Background(), nil)
		}
	}
	f := &FailoverHandler{Engine: r, Log: slog.Default()}
	if w := f.Prepare(taskRecord(t, time.Now(), time.Now().Add(time.Hour))); w.Due.After(time.Now().Add(time.Second)) {
		t.Fatalf("failover record held until +%v", time.Until(w.Due))
	}
	if r.unreadable != 2 || r.ran+r.hopped != 0 {
		t.Fatalf("%+v", r)
	}
}
