package lagwatch

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/metrics"
)

func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// TestRefreshSetsLagDepthAndDLQSize: a tier group that consumed 3 of 10
// records shows lag 7 for its topic and depth 7 for its tier; the DLQ
// count is reported; a ClickHouse failure is logged once, not per refresh.
func TestRefreshSetsLagDepthAndDLQSize(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "retry.5s", "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("retry.5s"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 10 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Partition: int32(i % 2)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(cl)
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "retry.5s", Partition: 0, At: 3})
	offs.Add(kadm.Offset{Topic: "retry.5s", Partition: 1, At: 0})
	if _, err := adm.CommitOffsets(ctx, "g-retry-5s", offs); err != nil {
		t.Fatal(err)
	}
	dead := int64(4)
	var dlqErr error
	var logs bytes.Buffer
	w := &Watcher{Admin: adm, Groups: []string{"g-retry-5s"}, Tiers: map[string]string{"g-retry-5s": "5s"},
		DeadLetters: func(context.Context) (int64, error) { return dead, dlqErr }, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	w.Refresh(ctx)
	if got := value(t, metrics.ConsumerLag.WithLabelValues("g-retry-5s", "retry.5s")); got != 7 {
		t.Errorf("lag %v, want 7", got)
	}
	if got := value(t, metrics.RetryTierDepth.WithLabelValues("5s")); got != 7 {
		t.Errorf("tier depth %v, want 7", got)
	}
	if got := value(t, metrics.DLQItems); got != 4 {
		t.Errorf("dlq items %v, want 4", got)
	}
	dlqErr, dead = errors.New("clickhouse down"), 9
	for range 3 {
		w.Refresh(ctx)
	}
	if got := value(t, metrics.DLQItems); got != 4 {
		t.Errorf("dlq items %v after failed refreshes, want the last value 4", got)
	}
	dlqErr = nil
	w.Refresh(ctx)
	if got := value(t, metrics.DLQItems); got != 9 {
		t.Errorf("dlq items %v, want 9", got)
	}
	if n := strings.Count(logs.String(), "refresh failed"); n != 1 || !strings.Contains(logs.String(), "works again") {
		t.Errorf("logs:\n%s", logs.String())
	}
}
