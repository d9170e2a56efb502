package jobs

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/dlq"
	"github.com/afftok/webhookd/pipeline"
)

type pipes map[string]*pipeline.Compiled

func (p pipes) Get(id string) (*pipeline.Compiled, bool) { c, ok := p[id]; return c, ok }
func (p pipes) ForTrigger(tt string) []*pipeline.Compiled {
	var out []*pipeline.Compiled
	for _, c := range p {
		if c.TriggerType == tt {
			out = append(out, c)
		}
	}
	return out
}

func compiled(id, trigger, status string) *pipeline.Compiled {
	return &pipeline.Compiled{Pipeline: &pipeline.Pipeline{ID: id, TriggerType: trigger, Status: status},
		Steps: []pipeline.CompiledStep{{Step: &pipeline.Step{Order: 1}}}}
}

// events produces 10 records to topic, record i at t0+i s: conversions,
// but record 3 is not an event and record 4 is a click.
func events(t *testing.T, s *stack, topic string, t0 time.Time) {
	t.Helper()
	for i := range 10 {
		v := fmt.Sprintf(`{"id":"evt_%d","trigger_type":"conversion","trigger_id":"c%d","data":{"conversion":{"id":"c%d"}}}`, i, i, i)
		switch i {
		case 3:
			v = "not an event"
		case 4:
			v = `{"id":"evt_4","trigger_type":"click","trigger_id":"k4","data":{"click":{"id":"k4"}}}`
		}
		rec := &kgo.Record{Topic: topic, Value: []byte(v), Timestamp: t0.Add(time.Duration(i) * time.Second)}
		if err := s.env.Client.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *stack) checkpointer(j *Job) *Checkpointer {
	return &Checkpointer{r: &Runner{Store: s.store, CheckpointEvery: 1, CheckpointInterval: time.Hour, Log: quiet}, job: j, last: time.Now()}
}

// replayed reads the failover topic's tasks made by replay id.
func (s *stack) replayed(t *testing.T, id string, want int) []*delivery.Task {
	t.Helper()
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, s.env.Opts...), kgo.ConsumeTopics(s.env.Topics.Failover), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*delivery.Task
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d of %d tasks of %s on the failover topic", len(out), want, id)
		}
		for _, rec := range fs.Records() {
			if task, err := delivery.DecodeTask(rec.Value); err == nil && task.Replay == id {
				out = append(out, task)
			}
		}
	}
	return out
}

func TestReplayerDeliversTheWindowFromItsCheckpointWithTheOriginalIDs(t *testing.T) {
	s := newStack(t)
	topic := "afftok.conversions"
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	events(t, s, topic, t0)
	ctx := context.Background()
	// [t0+2s, t0+7s): offsets 2..6.
	ranges, eff, warnings, err := PlanReplay(ctx, kadm.NewClient(s.env.Client), []string{topic}, t0.Add(2*time.Second), t0.Add(7*time.Second))
	if err != nil || len(warnings) != 0 || !eff.IsZero() {
		t.Fatalf("plan: %v %v %v", err, warnings, eff)
	}
	if want := []Range{{Topic: topic, Partition: 0, Start: 2, End: 7}}; !equal(ranges, want) {
		t.Fatalf("ranges %v, want %v", ranges, want)
	}
	rp := &Replayer{ReaderOpts: s.env.Opts, Producer: s.env.Client, Topics: s.env.Topics,
		Pipes: pipes{"p1": compiled("p1", "conversion", pipeline.StatusActive), "p2": compiled("p2", "conversion", pipeline.StatusPaused)}}
	j := &Job{ID: "rpl_test1", Kind: KindReplay, State: StateRunning,
		Replay: &Replay{From: t0.Add(2 * time.Second), To: t0.Add(7 * time.Second), Ranges: ranges}}
	if err := rp.Execute(ctx, j, s.checkpointer(j)); err != nil {
		t.Fatal(err)
	}
	// Every active conversion pipeline (p2 is paused): events 2, 5, 6 (3 is
	// not an event, 4 a click).
	if j.Progress.EventsScanned != 5 || j.Progress.DeliveriesQueued != 3 || !equal(j.Progress.Next, []int64{7}) {
		t.Fatalf("progress %+v", j.Progress)
	}
	got := map[string]*delivery.Task{}
	for _, task := range s.replayed(t, j.ID, 3) {
		got[task.EventKey] = task
	}
	for _, i := range []int{2, 5, 6} {
		key := delivery.EventKey(fmt.Sprintf("evt_%d", i), topic, 0, int64(i))
		task := got[key]
		if task == nil || task.PipelineID != "p1" || task.DeliveryID != delivery.ID(key, "p1") ||
			task.ExecutionID != delivery.ReplayExecutionID(task.DeliveryID, j.ID) || task.Source.Offset != int64(i) {
			t.Fatalf("event %d: task %+v", i, task)
		}
	}
	if stored, _, ok := s.store.Get(j.ID); !ok || stored.Progress.EventsScanned != 5 {
		t.Fatalf("checkpoint on the topic: %+v", stored)
	}

	// Resumed from a checkpoint at offset 5, a named pipeline (paused ones
	// included: the delivery path holds them): only events 5 and 6.
	k := &Job{ID: "rpl_test2", Kind: KindReplay, State: StateRunning, Progress: Progress{Next: []int64{5}, EventsScanned: 3},
		Replay: &Replay{From: t0, To: t0.Add(7 * time.Second), PipelineIDs: []string{"p2"}, Ranges: ranges}}
	if err := rp.Execute(ctx, k, s.checkpointer(k)); err != nil {
		t.Fatal(err)
	}
	tasks := s.replayed(t, k.ID, 2)
	if k.Progress.EventsScanned != 5 || k.Progress.DeliveriesQueued != 2 || len(tasks) != 2 ||
		tasks[0].Source.Offset != 5 || tasks[1].Source.Offset != 6 || tasks[0].PipelineID != "p2" {
		t.Fatalf("resumed: %+v, tasks %v", k.Progress, tasks)
	}
}

func TestPlanReplaySaysWhenRetentionDeletedPartOfTheWindow(t *testing.T) {
	s := newStack(t)
	topic := "afftok.postbacks"
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	events(t, s, topic, t0)
	adm := kadm.NewClient(s.env.Client)
	del := kadm.Offsets{}
	del.AddOffset(topic, 0, 4, -1)
	if resp, err := adm.DeleteRecords(context.Background(), del); err != nil || resp.Error() != nil {
		t.Fatalf("delete records: %v %v", err, resp.Error())
	}
	ranges, eff, warnings, err := PlanReplay(context.Background(), adm, []string{topic}, t0.Add(-time.Minute), t0.Add(8*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "records before offset 4 were deleted") || !eff.Equal(t0.Add(4*time.Second)) {
		t.Fatalf("warnings %v, effective_from %v", warnings, eff)
	}
	if want := []Range{{Topic: topic, Start: 4, End: 8}}; !equal(ranges, want) {
		t.Fatalf("ranges %v", ranges)
	}
	// A window after what was deleted needs no warning.
	if _, _, warnings, _ := PlanReplay(context.Background(), adm, []string{topic}, t0.Add(5*time.Second), t0.Add(8*time.Second)); len(warnings) != 0 {
		t.Fatalf("warnings for a retained window: %v", warnings)
	}
}

type fakeDLQ map[string]*dlq.Record

func (f fakeDLQ) DeadLetter(_ context.Context, id string) (*dlq.Record, error) {
	if id == "broken" {
		return nil, fmt.Errorf("clickhouse down")
	}
	return f[id], nil
}

type fakeRetrier struct{ retried []string }

func (f *fakeRetrier) Retry(_ context.Context, it *dlq.Record) (string, error) {
	if it.Reason == "unretryable" {
		return "", dlq.ErrNotRetryable
	}
	f.retried = append(f.retried, it.ID)
	return "exec", nil
}

func TestRedriverRetriesDeadItemsSkipsHandledOnesAndFailsOnOutage(t *testing.T) {
	s := newStack(t)
	store := fakeDLQ{
		"a": {ID: "a", State: dlq.StateDead}, "b": {ID: "b", State: dlq.StateRetried},
		"c": {ID: "c", State: dlq.StateDead, Reason: "unretryable"}, "d": {ID: "d", State: dlq.StateDead},
	}
	rt := &fakeRetrier{}
	rd := &Redriver{DLQ: store, Retrier: rt, Attempts: 2, Backoff: time.Millisecond}
	j := &Job{ID: "rdr_t", Kind: KindRedrive, Redrive: &Redrive{Items: []string{"a", "b", "c", "gone", "d"}}}
	if err := rd.Execute(context.Background(), j, s.checkpointer(j)); err != nil {
		t.Fatal(err)
	}
	p := j.Progress
	if p.Position != 5 || p.Retried != 2 || p.Skipped != 2 || p.Failed != 1 || !equal(rt.retried, []string{"a", "d"}) {
		t.Fatalf("progress %+v, retried %v", p, rt.retried)
	}
	// Resumed at item 1 of a job whose next item cannot be read: the job
	// fails there, the items from it on untouched.
	k := &Job{ID: "rdr_u", Kind: KindRedrive, Redrive: &Redrive{Items: []string{"a", "d", "broken", "a"}}, Progress: Progress{Position: 1}}
	rt.retried = nil
	err := rd.Execute(context.Background(), k, s.checkpointer(k))
	if err == nil || !strings.Contains(err.Error(), "broken") || k.Progress.Position != 2 || !equal(rt.retried, []string{"d"}) {
		t.Fatalf("err %v, progress %+v, retried %v", err, k.Progress, rt.retried)
	}
}

func TestPacerSpacesItemsAtTheRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(10, time.Now)
		start := time.Now()
		for range 11 {
			if err := p.wait(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if took := time.Since(start); took != time.Second {
			t.Fatalf("11 items at 10/s took %v, want 1s", took)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := p.wait(ctx); err == nil {
			t.Fatal("a cancelled wait went on")
		}
		if err := newPacer(0, time.Now).wait(context.Background()); err != nil || time.Since(start) != time.Second {
			t.Fatal("rate 0 paced")
		}
	})
}

func TestReplayerFinishesARangeThatEndsInATransactionMarker(t *testing.T) {
	s := newStack(t)
	topic := "afftok.fraud"
	t0 := time.Now().UTC().Add(-time.Minute).Truncate(time.Millisecond)
	txn, err := kgo.NewClient(append(append([]kgo.Opt{}, s.env.Opts...), kgo.TransactionalID("replay-test"), kgo.DefaultProduceTopic(topic))...)
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	ctx := context.Background()
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		v := fmt.Sprintf(`{"id":"evt_f%d","trigger_type":"fraud","trigger_id":"f%d","data":{"fraud":{"id":"f%d"}}}`, i, i, i)
		if err := txn.ProduceSync(ctx, &kgo.Record{Value: []byte(v), Timestamp: t0.Add(time.Duration(i) * time.Millisecond)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	// The range ends after the commit marker (offset 3): the last offset
	// read as a record is 2.
	to := time.Now().Add(time.Hour) // after the marker's own timestamp
	ranges, _, _, err := PlanReplay(ctx, kadm.NewClient(s.env.Client), []string{topic}, t0.Add(-time.Second), to)
	if err != nil || len(ranges) != 1 || ranges[0].End != 4 {
		t.Fatalf("plan: %v %v", ranges, err)
	}
	rp := &Replayer{ReaderOpts: s.env.Opts, Producer: s.env.Client, Topics: s.env.Topics, Pipes: pipes{"p": compiled("p", "fraud", pipeline.StatusActive)}}
	j := &Job{ID: "rpl_txn", Kind: KindReplay, Replay: &Replay{From: t0.Add(-time.Second), To: to, Ranges: ranges}}
	done := make(chan error, 1)
	go func() { done <- rp.Execute(ctx, j, s.checkpointer(j)) }()
	select {
	case err := <-done:
		if err != nil || j.Progress.EventsScanned != 3 || j.Progress.DeliveriesQueued != 3 || j.Progress.Next[0] != 4 {
			t.Fatalf("err %v, progress %+v", err, j.Progress)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the replay never got past the transaction marker")
	}
}
