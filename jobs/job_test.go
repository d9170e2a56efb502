package jobs

import (
	"encoding/json"
	"testing"
	"time"
)

func FuzzDecodeJob(f *testing.F) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, j := range []*Job{
		{ID: "rpl_1", Kind: KindReplay, State: StateRunning, CreatedAt: now, Replay: &Replay{From: now, To: now.Add(time.Hour),
			Ranges: []Range{{Topic: "t", Partition: 1, Start: 3, End: 9}}}, Progress: Progress{Next: []int64{5}, EventsScanned: 2}},
		{ID: "rdr_1", Kind: KindRedrive, State: StateDone, Redrive: &Redrive{Items: []string{"a", "b"}, RatePerSecond: 5}, Progress: Progress{Position: 2, Retried: 2}},
	} {
		b, _ := json.Marshal(j)
		f.Add(b)
	}
	f.Add([]byte(`{"id":"x","kind":"replay","state":"queued","replay":{"ranges":[{"start":5,"end":1}]}}`))
	f.Add([]byte(`{"id":"x","kind":"redrive","state":"running","redrive":{"items":[]},"progress":{"position":3}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := Decode(b)
		if err != nil {
			return
		}
		// What decodes is consistent enough to run: its kind's request is
		// there, the checkpoint fits it, and it encodes back to itself.
		if j.Kind == KindReplay && j.Replay == nil || j.Kind == KindRedrive && j.Redrive == nil {
			t.Fatalf("kind %s without its request", j.Kind)
		}
		if j.Redrive != nil && j.Progress.Position > len(j.Redrive.Items) {
			t.Fatalf("position %d past %d items", j.Progress.Position, len(j.Redrive.Items))
		}
		again, err := Decode(j.Record("t").Value)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if again.ID != j.ID || again.State != j.State || again.Progress.Position != j.Progress.Position {
			t.Fatalf("round trip changed the job: %+v → %+v", j, again)
		}
	})
}

func TestDecodeRefusesJobsThatCannotRun(t *testing.T) {
	for _, b := range []string{
		`{}`,
		`{"id":"x","kind":"replay","state":"queued"}`,
		`{"id":"x","kind":"nope","state":"queued","replay":{"ranges":[]}}`,
		`{"id":"x","kind":"replay","state":"sleeping","replay":{"ranges":[]}}`,
		`{"id":"x","kind":"replay","state":"queued","replay":{"ranges":[{"topic":"t","start":5,"end":1}]}}`,
		`{"id":"x","kind":"replay","state":"queued","replay":{"ranges":[{"topic":"t","start":1,"end":5}]},"progress":{"next":[1,2]}}`,
		`{"id":"x","kind":"redrive","state":"queued","redrive":{"items":["a"]},"progress":{"position":2}}`,
		`{"id":"x","kind":"redrive","state":"queued","redrive":{"items":["a"]},"progress":{"position":-1}}`,
	} {
		if _, err := Decode([]byte(b)); err == nil {
			t.Errorf("Decode(%s) accepted it", b)
		}
	}
}
