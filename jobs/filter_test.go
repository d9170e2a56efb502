package jobs

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/filter"
)

func TestReplayHonoursThePipelinesFilter(t *testing.T) {
	p := compiled("pipe_a", "conversion", "active")
	f, err := filter.Parse([]byte(`{"conversion.id":"nope"}`))
	if err != nil || f == nil {
		t.Fatal(err)
	}
	p.Filter = f
	from := time.Unix(1000, 0)
	rp := &Replayer{Pipes: pipes{"pipe_a": p}}
	j := &Job{ID: "rpl_x", Replay: &Replay{From: from, To: from.Add(time.Hour)}}
	rec := &kgo.Record{Topic: "ev", Value: []byte(`{"id":"evt_1","trigger_type":"conversion","trigger_id":"c1","data":{"conversion":{"id":"c1"}}}`), Timestamp: from.Add(time.Second)}
	if ts := rp.tasks(j, rec); len(ts) != 0 {
		t.Fatalf("replay made %d deliveries of an event the pipeline's filter rejects", len(ts))
	}
}
