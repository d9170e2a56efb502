//go:build reliability

package e2e

import (
	"fmt"
	"testing"
	"time"
)

// A measurement, not part of `make test-reliability` (its name does not
// match -run Reliability): with the default per-host cap, 10,000 events × 2
// pipelines to one busy but healthy host, with and without transactions,
// side by side — every pair must arrive; the log gives each mode's duration
// and its host deferrals. With transactions a deferral costs its delivery
// nothing unless it is paced by the host (Hosts.AwaitTurn); unpaced, the
// consumer turned its backlog into deferrals (5,287–11,948 against 32–606
// without, and 1.5–8 min against 22–31 s), so the run fails if transactions
// defer more than twice as many deliveries as the run without, plus an
// eighth of the pairs. The spiral shows only on a loaded machine (on a quiet
// one both modes defer next to nothing, with the pacing or without); the
// dispatcher's TestTransactionalDeferralWaitsForTheHostsNextFinish checks
// the pacing itself. Run:
//
//	go test -race -count=1 -timeout 30m -tags reliability -run TestPacingTransactionsOnAndOff -v ./e2e
func TestPacingTransactionsOnAndOff(t *testing.T) {
	const events = 10000
	took := map[string]time.Duration{}
	deferred := map[string]float64{}
	for _, txn := range []string{"false", "true"} {
		t.Run("transactions="+txn, func(t *testing.T) {
			prefix := "pace" + txn + "."
			in := startInstance(t, "dev", merge(ownTopics(prefix), map[string]string{
				"WEBHOOKD_TOPIC_PARTITIONS": "3", "WEBHOOKD_RETRY_TIERS": "100ms,500ms,1s", "WEBHOOKD_RETRY_DELAY_SCALE": "0.1",
				"WEBHOOKD_MAX_IN_FLIGHT": "256", "WEBHOOKD_PARTITION_MAX_IN_FLIGHT": "64",
				"WEBHOOKD_BREAKER_FAILURES": "0", "WEBHOOKD_LOG_LEVEL": "info", "WEBHOOKD_KAFKA_TRANSACTIONS": txn,
			}))
			rcv := newPairReceiver(t)
			in.CreatePipeline(t, fmt.Sprintf(relPipelines, "a", rcv.URL, "a"))
			in.CreatePipeline(t, fmt.Sprintf(relPipelines, "b", rcv.URL, "b"))
			start := time.Now()
			produceSeq(t, prefix+"events", 0, events)
			rcv.waitPairs(t, 2*events, 10*time.Minute)
			took[txn] = time.Since(start)
			m := scrape(t, in)
			pairs, dups := rcv.counts()
			deferred[txn] = m[`webhookd_deferred_total{reason="host_saturated"}`]
			t.Logf("transactions=%s: %d pairs in %v (%.0f/s), %d duplicates; deferred host_saturated %v",
				txn, pairs, took[txn].Round(time.Millisecond), float64(pairs)/took[txn].Seconds(), dups,
				m[`webhookd_deferred_total{reason="host_saturated"}`])
		})
	}
	t.Logf("on/off: %v / %v", took["true"], took["false"])
	if on, off := deferred["true"], deferred["false"]; on > 2*off+2*events/8 {
		t.Errorf("with transactions %.0f host deferrals, without %.0f: transactional deferrals are not paced by the host", on, off)
	}
}
