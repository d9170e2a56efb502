package engine

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/afftok/webhookd/bus"
	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/dlq"
)

type collect struct{ ds []bus.Deferred }

func (c *collect) Add(ds ...bus.Deferred) { c.ds = append(c.ds, ds...) }

// Inside a consumer transaction the engine produces nothing itself: a
// decision's records are buffered, each with what takes its place if Kafka
// refuses it for good — the same chain as outside one: a task becomes a DLQ
// item (and a failed execution), a DLQ item too large becomes a reduced one,
// and a reduced one refused again is fatal; a log record is dropped.
func TestInATransactionRecordsAreBufferedWithTheirReplacements(t *testing.T) {
	e := newEnv(t, nil)
	buf := &collect{}
	ctx := bus.WithBuffer(context.Background(), buf)
	err := e.engine(delivery.Decision{Verdict: delivery.Retry, At: time.Now().Add(time.Second), Attempt: &delivery.Attempt{Kind: delivery.KindAttempt, Status: "failed"}}).
		Run(ctx, e.Client, task(t, smallEvent))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(e.read(t, e.Topics.Tiers[0].Topic)); n != 0 {
		t.Fatalf("%d tasks produced outside the transaction", n)
	}
	var topics []string
	var tk, log *bus.Deferred
	for i, d := range buf.ds {
		topics = append(topics, d.Rec.Topic)
		switch d.Rec.Topic {
		case e.Topics.Tiers[0].Topic:
			tk = &buf.ds[i]
		case e.Topics.Executions:
			log = &buf.ds[i]
		}
	}
	if len(buf.ds) != 3 || tk == nil || log == nil {
		t.Fatalf("buffered %v", topics)
	}
	if more, err := log.Refused(kerr.MessageTooLarge); err != nil || len(more) != 0 {
		t.Fatalf("refused log record: %v %v", more, err)
	}
	more, err := tk.Refused(kerr.MessageTooLarge)
	if err != nil || len(more) != 2 || more[0].Rec.Topic != e.Topics.DLQ || more[1].Rec.Topic != e.Topics.Executions {
		t.Fatalf("refused task: %d records, %v", len(more), err)
	}
	var r dlq.Record
	if err := json.Unmarshal(more[0].Rec.Value, &r); err != nil || r.Reason != delivery.ReasonTooLarge || r.PayloadTruncated {
		t.Fatalf("DLQ item %.300s", more[0].Rec.Value)
	}
	reduced, err := more[0].Refused(kerr.MessageTooLarge)
	if err != nil || len(reduced) != 1 {
		t.Fatalf("refused DLQ item: %v", err)
	}
	if err := json.Unmarshal(reduced[0].Rec.Value, &r); err != nil || !r.PayloadTruncated {
		t.Fatalf("reduced DLQ item %.300s", reduced[0].Rec.Value)
	}
	if _, err := reduced[0].Refused(kerr.MessageTooLarge); !errors.As(err, new(*FatalError)) {
		t.Fatalf("refused reduced DLQ item: %v, want fatal", err)
	}
}
