package retrytopics

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/afftok/webhookd/consumer"
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
