// Package bustest starts a real Kafka wire-protocol broker (kfake) with
// webhookd's topics for tests, and reads topics back.
package bustest

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/bus"
	"github.com/afftok/webhookd/config"
)

// Env is a broker with webhookd's topics (one partition each, the event
// topics included) and a client on it.
type Env struct {
	Cluster *kfake.Cluster
	Client  *kgo.Client
	Topics  bus.Topics
	// Opts reach the broker (for clients of the code under test).
	Opts []kgo.Opt
}

// Start starts the broker; retryTiers as WEBHOOKD_RETRY_TIERS ("" for the
// default), maxBytes sets max.message.bytes per topic, opts add to the
// client's options (which allow 4 MB records).
func Start(t testing.TB, retryTiers string, maxBytes map[string]int, opts ...kgo.Opt) *Env {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg := config.Defaults(config.ModeServe)
	if retryTiers != "" {
		cfg.RetryTiers = retryTiers
	}
	topics, err := bus.NewTopics(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	seed := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	cl, err := kgo.NewClient(append(append(append([]kgo.Opt{}, seed...), kgo.ProducerBatchMaxBytes(4<<20)), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	specs := topics.Specs(1, true)
	for i := range specs {
		if n := maxBytes[specs[i].Name]; n > 0 {
			v := strconv.Itoa(n)
			specs[i].Configs["max.message.bytes"] = &v
		}
	}
	if err := bus.Ensure(context.Background(), kadm.NewClient(cl), specs, 1, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	return &Env{Cluster: c, Client: cl, Topics: topics, Opts: seed}
}

// Read returns every record topic holds now, in order per partition.
func (e *Env) Read(t testing.TB, topic string) []*kgo.Record {
	t.Helper()
	ends, err := kadm.NewClient(e.Client).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	if n == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, e.Opts...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []*kgo.Record
	for int64(len(out)) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: %d of %d records", topic, len(out), n)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}
