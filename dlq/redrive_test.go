package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/bus"
	"github.com/afftok/webhookd/bus/bustest"
	"github.com/afftok/webhookd/delivery"
)

// redriveEnv is a kfake broker with webhookd's topics, the failover topic
// taking at most failoverMax bytes a record.
func redriveEnv(t *testing.T, failoverMax int) (*Redriver, *bustest.Env) {
	t.Helper()
	e := bustest.Start(t, "", map[string]int{"webhooks.failover": failoverMax})
	r := &Redriver{Client: e.Client, Topics: e.Topics, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		ReadSource: func(ctx context.Context, src *delivery.Source) ([]byte, error) {
			return bus.ReadRecord(ctx, e.Opts, src.Topic, src.Partition, src.Offset)
		}}
	return r, e
}

func deadItem(t *testing.T, reduced bool, cl *kgo.Client) *Record {
	t.Helper()
	raw := `{"id":"evt_r","type":"click.tracked","data":{"id":"clk_r"}}`
	// The event as the platform produced it, so a reduced item can read it.
	src := &kgo.Record{Topic: "afftok.clicks", Value: []byte(raw)}
	if err := cl.ProduceSync(context.Background(), src).FirstErr(); err != nil {
		t.Fatal(err)
	}
	tk, _ := bigTask(t, 0)
	tk.Event, tk.Source = []byte(raw), &delivery.Source{Topic: src.Topic, Partition: src.Partition, Offset: src.Offset}
	tk.Attempt, tk.Cycle = 3, 0
	r := ForDecision(&delivery.Decision{Verdict: delivery.Dead, Task: tk, Reason: delivery.ReasonExhausted, Error: "HTTP 500", Attempts: 4}, nil, time.Now())
	if reduced {
		r = r.Reduce()
	}
	return r
}

// A retry queues a new cycle of the dead step on the failover topic, then
// marks the item retried; a reduced item's event is read again first.
func TestRetryQueuesANewCycleThenMarksTheItem(t *testing.T) {
	for _, reduced := range []bool{false, true} {
		r, e := redriveEnv(t, 1<<20)
		it := deadItem(t, reduced, e.Client)
		execID, err := r.Retry(context.Background(), it)
		if err != nil {
			t.Fatal(err)
		}
		tasks := e.Read(t, r.Topics.Failover)
		if len(tasks) != 1 {
			t.Fatalf("%d failover records", len(tasks))
		}
		got, err := delivery.DecodeTask(tasks[0].Value)
		if err != nil || got.ExecutionID != execID || got.Cycle != 1 || got.Attempt != 0 || !strings.Contains(string(got.Event), "clk_r") ||
			got.ExecutionID == it.Task.ExecutionID || got.DeliveryID != it.Task.DeliveryID {
			t.Fatalf("reduced %v: %+v %v", reduced, got, err)
		}
		states := e.Read(t, r.Topics.DLQ)
		var st Record
		if len(states) != 1 || json.Unmarshal(states[0].Value, &st) != nil || st.State != StateRetried || st.ID != it.ID {
			t.Fatalf("state records %d: %+v", len(states), st)
		}
		// The same item retried again (another replica) makes the same execution.
		if again, _ := r.Retry(context.Background(), it); again != execID {
			t.Fatalf("second retry made execution %s, first %s", again, execID)
		}
	}
}

// A retry the failover topic refuses leaves the item dead: nothing is marked.
func TestARefusedRetryLeavesTheItemDead(t *testing.T) {
	r, e := redriveEnv(t, 200)
	_, err := r.Retry(context.Background(), deadItem(t, false, e.Client))
	if !errors.Is(err, ErrNotRetryable) {
		t.Fatalf("err = %v", err)
	}
	if n := len(e.Read(t, r.Topics.DLQ)); n != 0 {
		t.Fatalf("%d state records after a refused retry", n)
	}
}

func TestDeleteAndWhatCannotBeRetried(t *testing.T) {
	r, e := redriveEnv(t, 1<<20)
	it := deadItem(t, false, e.Client)
	if err := r.Delete(context.Background(), it); err != nil {
		t.Fatal(err)
	}
	var st Record
	if recs := e.Read(t, r.Topics.DLQ); len(recs) != 1 || json.Unmarshal(recs[0].Value, &st) != nil || st.State != StateDeleted {
		t.Fatalf("%+v", st)
	}
	bad := ForSource(&kgo.Record{Topic: "webhooks.retry.5s", Value: []byte("garbage")}, delivery.ReasonInvalidTask, errors.New("undecodable"), time.Now())
	if _, err := r.Retry(context.Background(), bad); !errors.Is(err, ErrNotRetryable) {
		t.Fatalf("an unreadable task was retried: %v", err)
	}
}
