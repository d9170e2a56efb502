package autodisable

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/pipeline"
	"github.com/afftok/webhookd/registry"
)

// Two replicas, each with its own registry on one real pipelines topic
// (kfake), judge the same failing pipelines at the same moment: each
// pipeline is disabled by exactly one write, with exactly one event, and
// both registries end on the same revision.
func TestTwoReplicasOnARealPipelinesTopicDisableEachPipelineOnce(t *testing.T) {
	const topic = "webhooks.pipelines"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	replica := func() *registry.Registry {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, registry.ConsumeOpts(topic)...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		r := registry.New(cl, topic, nil, quiet)
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		if err := r.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		return r
	}
	ra, rb := replica(), replica()
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	var att attempts
	const n = 10
	for i := range n {
		p := newPipeline(fmt.Sprintf("pipe_%d", i), t0, seconds(600))
		if err := ra.Put(ctx, &p, 0); err != nil {
			t.Fatal(err)
		}
		for j := range 26 { // a failure a minute, up to 5 min before now
			att.add(p.ID, t0.Add(time.Duration(j)*time.Minute), false)
		}
	}
	if err := rb.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return t0.Add(30 * time.Minute) }
	ev := &events{}
	a := &Checker{Pipes: ra, Health: &att, Events: ev, Default: 72 * time.Hour, Log: quiet, Now: now}
	b := &Checker{Pipes: rb, Health: &att, Events: ev, Default: 72 * time.Hour, Log: quiet, Now: now}
	var wg sync.WaitGroup
	var da, db []string
	var ea, eb error
	wg.Go(func() { da, ea = a.Sweep(ctx) })
	wg.Go(func() { db, eb = b.Sweep(ctx) })
	wg.Wait()
	if ea != nil || eb != nil {
		t.Fatal(ea, eb)
	}
	seen := map[string]int{}
	for _, id := range append(append([]string{}, da...), db...) {
		seen[id]++
	}
	perEvent := map[string]int{}
	for _, e := range ev.list() {
		perEvent[e.PipelineID]++
	}
	_ = ra.Sync(ctx)
	_ = rb.Sync(ctx)
	for i := range n {
		id := fmt.Sprintf("pipe_%d", i)
		pa, _ := ra.Get(id)
		pb, _ := rb.Get(id)
		if seen[id] != 1 || perEvent[id] != 1 || pa.Status != pipeline.StatusDisabled || pa.Revision != 2 || pb.Revision != 2 {
			t.Errorf("%s: disabled by %d writes, %d events, status %s, revisions %d/%d", id, seen[id], perEvent[id], pa.Status, pa.Revision, pb.Revision)
		}
	}
	t.Logf("replica A won %d, replica B won %d", len(da), len(db))
}
