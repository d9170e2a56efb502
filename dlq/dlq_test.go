package dlq

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/event"
)

func bigTask(t *testing.T, dataBytes int) (*delivery.Task, *event.Event) {
	t.Helper()
	raw := []byte(`{"id":"evt_1","type":"click.tracked","data":{"id":"clk_1","blob":"` + strings.Repeat("b", dataBytes) + `"}}`)
	ev, err := event.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	tk := delivery.NewTask(ev, raw, &delivery.Source{Topic: "afftok.clicks", Partition: 1, Offset: 99}, "id:evt_1", "pipe_1", 1, time.Now())
	tk.Steps = map[string]any{"1": map[string]any{"status": 200}}
	return tk, ev
}

func decode(t *testing.T, r *kgo.Record) *Record {
	t.Helper()
	var out Record
	if err := json.Unmarshal(r.Value, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// A record within MaxBytes keeps everything a retry needs.
func TestEncodeKeepsASmallItemWhole(t *testing.T) {
	tk, ev := bigTask(t, 10)
	r := ForDecision(&delivery.Decision{Verdict: delivery.Dead, Task: tk, Reason: delivery.ReasonExhausted, Error: "HTTP 500", Attempts: 6}, ev, time.Now())
	got := decode(t, r.Encode("dlq"))
	if got.PayloadTruncated || got.Task == nil || len(got.Task.Event) == 0 || got.TriggerID != "clk_1" || got.Attempts != 6 ||
		got.Payload != nil || !strings.Contains(string(got.PayloadView()), `"blob"`) || string(r.Encode("dlq").Key) != tk.DeliveryID {
		t.Fatalf("%+v", got)
	}
}

// Over MaxBytes the record is reduced: no event data, no step results, the
// source kept so the event can be read again.
func TestEncodeReducesALargeItem(t *testing.T) {
	tk, ev := bigTask(t, MaxBytes) // the event alone is over the bound
	r := ForDecision(&delivery.Decision{Verdict: delivery.Dead, Task: tk, Reason: delivery.ReasonExhausted, Error: strings.Repeat("e", 5000)}, ev, time.Now())
	rec := r.Encode("dlq")
	got := decode(t, rec)
	if len(rec.Value) > 16<<10 || !got.PayloadTruncated || len(got.Task.Event) != 0 || got.Task.Steps != nil ||
		got.Task.Source.Offset != 99 || strings.Contains(string(got.Payload), "bbbb") || !strings.Contains(string(got.Payload), `"trigger_id":"clk_1"`) || len(got.Error) > 1100 {
		t.Fatalf("%d bytes: %.400s", len(rec.Value), rec.Value)
	}
	// The original is untouched (the engine may still need it).
	if len(tk.Event) == 0 || tk.Steps == nil {
		t.Fatal("Reduce changed the task it was given")
	}
}

func TestAnUnreadableRecordKeepsItsBytesUnlessTooLarge(t *testing.T) {
	small := ForSource(&kgo.Record{Topic: "afftok.clicks", Partition: 2, Offset: 7, Key: []byte("k"), Value: []byte("not json")}, delivery.ReasonInvalidEvent, errString("bad"), time.Now())
	got := decode(t, small.Encode("dlq"))
	if string(got.Source.Value) != "not json" || got.PayloadView() != nil || got.PayloadTruncated || got.Reason != delivery.ReasonInvalidEvent {
		t.Fatalf("%+v", got)
	}
	big := ForSource(&kgo.Record{Topic: "afftok.clicks", Partition: 2, Offset: 8, Value: []byte(`"` + strings.Repeat("x", MaxBytes) + `"`)}, delivery.ReasonInvalidEvent, errString("bad"), time.Now())
	got = decode(t, big.Encode("dlq"))
	if got.Source.Value != nil || got.Source.Offset != 8 || !got.PayloadTruncated || got.PayloadView() != nil {
		t.Fatalf("%+v", got.Source)
	}
	if small.ID == big.ID {
		t.Fatal("two source records share an id")
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestClaimsAreExclusiveUntilReleased(t *testing.T) {
	var r Redriver
	if !r.Claim("a") || r.Claim("a") || !r.Claim("b") {
		t.Fatal("claim")
	}
	r.Release("a")
	if !r.Claim("a") {
		t.Fatal("release")
	}
}
