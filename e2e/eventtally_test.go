package e2e

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// eventTally counts what a receiver answered 2xx to, by event id (pipelines with
// the body template {"id":"{{event_id}}"}), for the crash and shutdown tests.
type eventTally struct {
	mu        sync.Mutex
	delivered map[string]int // event id → 2xx answers
	total     int
	progress  chan int
}

func newEventTally(capacity int) *eventTally {
	return &eventTally{delivered: map[string]int{}, progress: make(chan int, capacity)}
}

// record counts one 2xx answer to body.
func (y *eventTally) record(body []byte) {
	var b struct{ ID string }
	_ = json.Unmarshal(body, &b)
	y.mu.Lock()
	y.delivered[b.ID]++
	y.total++
	n := len(y.delivered)
	y.mu.Unlock()
	y.progress <- n
}

// distinct is how many events were delivered at least once.
func (y *eventTally) distinct() int {
	y.mu.Lock()
	defer y.mu.Unlock()
	return len(y.delivered)
}

// waitFor waits until n distinct events were delivered.
func (y *eventTally) waitFor(t testing.TB, n int) {
	t.Helper()
	deadline := time.After(arriveWithin)
	for {
		select {
		case got := <-y.progress:
			if got >= n {
				return
			}
		case <-deadline:
			t.Fatalf("only %d of %d events delivered after %v", y.distinct(), n, arriveWithin)
		}
	}
}

// checkAll fails for each of events evt_0… never delivered, and returns the
// redeliveries (2xx answers beyond one per event).
func (y *eventTally) checkAll(t testing.TB, events int) (dups int) {
	t.Helper()
	y.mu.Lock()
	defer y.mu.Unlock()
	for i := range events {
		if y.delivered["evt_"+strconv.Itoa(i)] == 0 {
			t.Errorf("evt_%d was never delivered", i)
		}
	}
	return y.total - len(y.delivered)
}

// produceClicks produces events click events evt_0… to topic.
func produceClicks(t testing.TB, topic string, events int) {
	t.Helper()
	recs := make([]*kgo.Record, events)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i)), Value: []byte(fmt.Sprintf(`{"id":"evt_%d","type":"click.tracked","data":{"id":"c%d"}}`, i, i))}
	}
	if err := producer.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}
