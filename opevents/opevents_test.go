package opevents

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/bus/bustest"
)

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"id":"opev_1","type":"pipeline_auto_disabled","pipeline_id":"pipe_1","at":"2026-11-27T10:00:00Z","failures":12}`))
	f.Add([]byte(`{"id":"","type":"x"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			return
		}
		if e.ID == "" || e.Type == "" {
			t.Fatalf("decoded an event without id or type: %s", b)
		}
	})
}

func TestIDIsDeterministicPerRevision(t *testing.T) {
	a, b := ID(TypeAutoDisabled, "pipe_1", 4), ID(TypeAutoDisabled, "pipe_1", 4)
	if a != b || a == ID(TypeAutoDisabled, "pipe_1", 5) || a == ID(TypeEnabled, "pipe_1", 4) {
		t.Fatalf("ids %s %s", a, b)
	}
}

// Events produced (one twice) are listed once each, newest first, filtered
// and paged, as soon as the producer's Emit returned.
func TestLogListsWhatWasEmittedNewestFirstOnce(t *testing.T) {
	env := bustest.Start(t, "", nil)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	em := &Emitter{Client: env.Client, Topic: env.Topics.OperatorEvents, Log: quiet}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, env.Opts...), ConsumeOpts(env.Topics.OperatorEvents)...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	l := NewLog(cl, env.Topics.OperatorEvents, quiet)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- l.Run(ctx) }()
	defer func() { cancel(); <-done }()

	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	evs := []Event{
		{ID: ID(TypeAutoDisabled, "pipe_1", 2), Type: TypeAutoDisabled, PipelineID: "pipe_1", At: t0, Failures: 12},
		{ID: ID(TypeEnabled, "pipe_1", 3), Type: TypeEnabled, PipelineID: "pipe_1", At: t0.Add(time.Minute)},
		{ID: ID(TypeAutoDisabled, "pipe_2", 7), Type: TypeAutoDisabled, PipelineID: "pipe_2", At: t0.Add(2 * time.Minute)},
	}
	evs = append(evs, evs[0]) // produced twice
	for _, e := range evs {
		if err := em.Emit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	got, total, err := l.List(t.Context(), Filter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if total != 3 || len(got) != 3 || got[0].PipelineID != "pipe_2" || got[2].ID != evs[0].ID {
		t.Fatalf("listed %d (%+v)", total, got)
	}
	got, total, _ = l.List(t.Context(), Filter{Type: TypeAutoDisabled, PipelineID: "pipe_1", Limit: 10})
	if total != 1 || got[0].Failures != 12 {
		t.Fatalf("filtered: %d %+v", total, got)
	}
	got, total, _ = l.List(t.Context(), Filter{Offset: 2, Limit: 2})
	if total != 3 || len(got) != 1 || got[0].ID != evs[0].ID {
		t.Fatalf("page 2: %d %+v", total, got)
	}
}
