package app_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The start migrated the schema under the lease: schema_migrations lists
// the versions applied by this replica, and the leases topic holds its
// claim and its release.
func TestStartMigratesTheSchemaUnderTheLease(t *testing.T) {
	a := startStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	host, _ := os.Hostname()
	recs, err := a.Store.Applied(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) < 2 || recs[0].Version != 1 || recs[1].Version != 2 {
		t.Fatalf("schema_migrations: %+v", recs)
	}
	for _, r := range recs {
		if r.AppliedBy != host {
			t.Errorf("migration %d applied by %q, want %q", r.Version, r.AppliedBy, host)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(a.Config.KafkaBrokers, ",")...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{a.Topics.Leases: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var ops []string
	for len(ops) < 2 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("lease records: %v", ops)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var v struct{ Op, Owner string }
			_ = json.Unmarshal(r.Value, &v)
			if string(r.Key) == "analytics-schema/webhookd" && v.Owner == host {
				ops = append(ops, v.Op)
			}
		})
	}
	if ops[0] != "claim" || ops[len(ops)-1] != "release" {
		t.Errorf("lease records %v, want a claim and a release", ops)
	}
}
