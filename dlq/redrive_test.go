package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/bus"
	"github.com/afftok/webhookd/config"
	"github.com/afftok/webhookd/delivery"
)

// redriveEnv is a kfake broker with the DLQ and failover topics (failover
// taking at most failoverMax bytes a record) and an event topic.
func redriveEnv(t *testing.T, failoverMax int) (*Redriver, *kgo.Client, []string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg := config.Defaults(config.ModeServe)
	topics, err := bus.NewTopics(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	cl, err := kgo.NewClient(append(opts, kgo.ProducerBatchMaxBytes(4<<20))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	specs := topics.Specs(1, true)
	for i := range specs {
		if specs[i].Name == topics.Failover {
			v := strconv.Itoa(failoverMax)
			specs[i].Configs["max.message.bytes"] = &v
		}
	}
	if err := bus.Ensure(context.Background(), kadm.NewClient(cl), specs, 1, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	r := &Redriver{Client: cl, Topics: topics, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		ReadSource: func(ctx context.Context, src *delivery.Source) ([]byte, error) {
			return bus.ReadRecord(ctx, opts, src.Topic, src.Partition, src.Offset)
		}}
	return r, cl, c.ListenAddrs()
}

func records(t *testing.T, addrs []string, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	var out []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for int64(len(out)) < n && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
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
		r, cl, addrs := redriveEnv(t, 1<<20)
		it := deadItem(t, reduced, cl)
		execID, err := r.Retry(context.Background(), it)
		if err != nil {
			t.Fatal(err)
		}
		tasks := records(t, addrs, r.Topics.Failover)
		if len(tasks) != 1 {
			t.Fatalf("%d failover records", len(tasks))
		}
		got, err := delivery.DecodeTask(tasks[0].Value)
		if err != nil || got.ExecutionID != execID || got.Cycle != 1 || got.Attempt != 0 || !strings.Contains(string(got.Event), "clk_r") ||
			got.ExecutionID == it.Task.ExecutionID || got.DeliveryID != it.Task.DeliveryID {
			t.Fatalf("reduced %v: %+v %v", reduced, got, err)
		}
		states := records(t, addrs, r.Topics.DLQ)
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
	r, cl, addrs := redriveEnv(t, 200)
	_, err := r.Retry(context.Background(), deadItem(t, false, cl))
	if !errors.Is(err, ErrNotRetryable) {
		t.Fatalf("err = %v", err)
	}
	if n := len(records(t, addrs, r.Topics.DLQ)); n != 0 {
		t.Fatalf("%d state records after a refused retry", n)
	}
}

func TestDeleteAndWhatCannotBeRetried(t *testing.T) {
	r, cl, addrs := redriveEnv(t, 1<<20)
	it := deadItem(t, false, cl)
	if err := r.Delete(context.Background(), it); err != nil {
		t.Fatal(err)
	}
	var st Record
	if recs := records(t, addrs, r.Topics.DLQ); len(recs) != 1 || json.Unmarshal(recs[0].Value, &st) != nil || st.State != StateDeleted {
		t.Fatalf("%+v", st)
	}
	bad := ForSource(&kgo.Record{Topic: "webhooks.retry.5s", Value: []byte("garbage")}, delivery.ReasonInvalidTask, errors.New("undecodable"), time.Now())
	if _, err := r.Retry(context.Background(), bad); !errors.Is(err, ErrNotRetryable) {
		t.Fatalf("an unreadable task was retried: %v", err)
	}
}
