package worker

import (
	"context"
	"io"
	"log/slog"
	"testing"
)

type fn struct {
	name string
	run  func(ctx context.Context) error
}

func (f fn) Name() string                  { return f.name }
func (f fn) Run(ctx context.Context) error { return f.run(ctx) }

// A server (the probes) keeps running while the other workers drain, and
// the supervisor says it is stopping from the moment the drain begins.
func TestServersStopAfterTheOtherWorkersDrained(t *testing.T) {
	s := NewSupervisor(slog.New(slog.NewTextHandler(io.Discard, nil)))
	draining := make(chan struct{})
	finish := make(chan struct{})
	serverStopped := make(chan struct{})
	s.Add(fn{"consumer", func(ctx context.Context) error {
		<-ctx.Done()
		close(draining)
		<-finish // in-flight work
		select {
		case <-serverStopped:
			t.Error("the server stopped before the consumer finished draining")
		default:
		}
		return nil
	}})
	s.AddServer(fn{"admin", func(ctx context.Context) error {
		<-ctx.Done()
		close(serverStopped)
		return nil
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	if s.Stopping() {
		t.Fatal("stopping before the signal")
	}
	cancel()
	<-draining
	if !s.Stopping() {
		t.Fatal("not stopping while draining")
	}
	close(finish)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	<-serverStopped
}
