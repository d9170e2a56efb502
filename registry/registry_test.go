package registry

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/pipeline"
)

const topic = "webhooks.pipelines"

func start(t *testing.T, brokers []string, sealer *pipeline.Sealer) (*Registry, context.CancelFunc) {
	t.Helper()
	return startWith(t, brokers, topic, sealer)
}

func startOn(t *testing.T, brokers []string, topic string) (*Registry, context.CancelFunc) {
	t.Helper()
	return startWith(t, brokers, topic, nil)
}

func startWith(t *testing.T, brokers []string, topic string, sealer *pipeline.Sealer) (*Registry, context.CancelFunc) {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, ConsumeOpts(topic)...)...)
	if err != nil {
		t.Fatal(err)
	}
	r := New(cl, topic, sealer, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := r.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	return r, func() { cancel(); <-done; cl.Close() }
}

func pipe(id, key string) *pipeline.Pipeline {
	p := &pipeline.Pipeline{ID: id, Name: id, TriggerType: "click", Revision: 1, Steps: []pipeline.Step{{ID: "s", Order: 1, URL: "https://x.io", SigningKey: key}}}
	p.Normalize()
	return p
}

func TestSigningKeysAreSealedOnTheTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	key, _ := pipeline.NewSealer("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	r, stop := start(t, c.ListenAddrs(), key)
	defer stop()
	if err := r.Put(context.Background(), pipe("pipe_sealed", "super-secret-key"), 0); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(context.Background(), pipe("pipe_plain", ""), 0); err != nil {
		t.Fatal(err)
	}
	// Read-your-writes, with the key opened.
	got, ok := r.Get("pipe_sealed")
	if !ok || got.Pipeline.Steps[0].SigningKey != "super-secret-key" {
		t.Fatalf("get: %v %+v", ok, got)
	}
	// The topic itself never holds the key in clear.
	raw, _ := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer raw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	for n < 2 && ctx.Err() == nil {
		raw.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			n++
			if bytes.Contains(rec.Value, []byte("super-secret-key")) {
				t.Fatalf("plaintext key on the topic: %s", rec.Value)
			}
			if string(rec.Key) == "pipe_sealed" && !bytes.Contains(rec.Value, []byte("enc:v1:")) {
				t.Fatalf("key not sealed: %s", rec.Value)
			}
		})
	}
	// A replica with another key (or none) cannot open it: that pipeline is
	// refused, the others are served.
	other, _ := pipeline.NewSealer("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=")
	for _, s := range []*pipeline.Sealer{other, nil} {
		r2, stop2 := start(t, c.ListenAddrs(), s)
		if _, ok := r2.Get("pipe_sealed"); ok {
			t.Fatal("a pipeline with an unopenable key was loaded")
		}
		if _, ok := r2.Get("pipe_plain"); !ok {
			t.Fatal("the other pipeline was not loaded")
		}
		stop2()
	}
	// Deleting writes a tombstone.
	if err := r.Delete(context.Background(), "pipe_plain", 1); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Get("pipe_plain"); ok || !r.Deleted("pipe_plain") {
		t.Fatal("delete not applied")
	}
}

func TestNewSealerRejectsBadKeys(t *testing.T) {
	for _, k := range []string{"", "not base64!", "c2hvcnQ="} {
		if _, err := pipeline.NewSealer(k); err == nil {
			t.Errorf("%q accepted", k)
		}
	}
}
