package bus

import (
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/config"
)

// The plan reports missing topics, and for existing ones what differs from
// the plan; creating the missing ones leaves the others as they were.
func TestPlanAgainstBrokerThenCreateMissing(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()

	cfg := config.Defaults(config.ModeServe)
	cfg.RetryTiers, cfg.EventTopics = "1s,5s", "ev.one"
	tp, err := NewTopics(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	specs := tp.Specs(3, true)
	// The DLQ exists with 2 partitions and a shorter retention.
	if _, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"retention.ms": ptr("1000")}, tp.DLQ); err != nil {
		t.Fatal(err)
	}
	plan, err := Plan(ctx, adm, specs, -1, map[string]bool{"ev.one": true})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != len(specs) {
		t.Fatalf("%d states for %d specs", len(plan), len(specs))
	}
	for _, st := range plan {
		switch st.Name {
		case tp.DLQ:
			got := strings.Join(st.Diffs, "; ")
			if !st.Exists || st.Partitions != 2 || st.Replication != 1 || got != "partitions: 2, planned 3; retention.ms: 1000, planned 7776000000" {
				t.Errorf("DLQ: %+v (diffs %q)", st, got)
			}
		case "ev.one":
			if st.Exists || st.Managed {
				t.Errorf("event topic: %+v", st)
			}
		default:
			if st.Exists || !st.Managed {
				t.Errorf("%s: %+v", st.Name, st)
			}
		}
	}
	for _, st := range plan {
		if !st.Exists && st.Managed {
			if err := CreateTopic(ctx, adm, st.Spec, -1); err != nil {
				t.Fatal(err)
			}
		}
	}
	plan, err = Plan(ctx, adm, specs, -1, map[string]bool{"ev.one": true})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range plan {
		switch {
		case st.Name == "ev.one":
			if st.Exists {
				t.Error("an unmanaged topic was created")
			}
		case !st.Exists:
			t.Errorf("%s not created", st.Name)
		case st.Name == tp.DLQ:
			if st.Partitions != 2 || len(st.Diffs) != 2 {
				t.Errorf("the existing DLQ was altered: %+v", st)
			}
		case len(st.Diffs) != 0:
			t.Errorf("%s created unlike its plan: %v", st.Name, st.Diffs)
		}
	}
}
