package bus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// TopicState is a planned topic against what the brokers have.
type TopicState struct {
	Spec
	// Managed: webhookd creates the topic when missing. Event topics are
	// not managed unless WEBHOOKD_CREATE_EVENT_TOPICS is set.
	Managed bool
	Exists  bool
	// What exists (when Exists): partitions, replication factor and the
	// values of the spec's configs as the brokers report them.
	Partitions  int32
	Replication int
	Configs     map[string]string
	// Differences between the plan and what exists, one sentence each.
	Diffs []string
}

// Plan compares specs (replication: -1 for the brokers' default) with the
// topics on the brokers. unmanaged names topics webhookd uses but does not
// create. It changes nothing.
func Plan(ctx context.Context, adm *kadm.Client, specs []Spec, replication int, unmanaged map[string]bool) ([]TopicState, error) {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	// WithAuthorizedOps makes the metadata request go to the brokers: the
	// client's cached metadata may predate topics just created.
	details, err := adm.ListTopics(kadm.WithAuthorizedOps(ctx), names...)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	var existing []string
	for _, n := range names {
		if d, ok := details[n]; ok && d.Err == nil {
			existing = append(existing, n)
		}
	}
	configs := map[string]map[string]string{}
	if len(existing) > 0 {
		rcs, err := adm.DescribeTopicConfigs(ctx, existing...)
		if err != nil {
			return nil, fmt.Errorf("describe topic configs: %w", err)
		}
		for _, rc := range rcs {
			if rc.Err != nil {
				return nil, fmt.Errorf("describe topic %s configs: %w", rc.Name, rc.Err)
			}
			m := map[string]string{}
			for _, c := range rc.Configs {
				if c.Value != nil {
					m[c.Key] = *c.Value
				}
			}
			configs[rc.Name] = m
		}
	}
	out := make([]TopicState, len(specs))
	for i, s := range specs {
		st := TopicState{Spec: s, Managed: !unmanaged[s.Name]}
		d, ok := details[s.Name]
		if !ok || d.Err != nil {
			if ok && d.Err != nil && !errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
				return nil, fmt.Errorf("topic %s: %w", s.Name, d.Err)
			}
			out[i] = st
			continue
		}
		st.Exists = true
		st.Partitions = int32(len(d.Partitions))
		if p, ok := d.Partitions[0]; ok {
			st.Replication = len(p.Replicas)
		}
		st.Configs = map[string]string{}
		if st.Partitions != s.Partitions {
			st.Diffs = append(st.Diffs, fmt.Sprintf("partitions: %d, planned %d", st.Partitions, s.Partitions))
		}
		if replication > 0 && st.Replication != replication {
			st.Diffs = append(st.Diffs, fmt.Sprintf("replication factor: %d, planned %d", st.Replication, replication))
		}
		for _, k := range slices.Sorted(maps.Keys(s.Configs)) {
			want := *s.Configs[k]
			got, ok := configs[s.Name][k]
			if ok {
				st.Configs[k] = got
			}
			switch {
			case !ok:
				st.Diffs = append(st.Diffs, fmt.Sprintf("%s: not reported, planned %s", k, want))
			case got != want:
				st.Diffs = append(st.Diffs, fmt.Sprintf("%s: %s, planned %s", k, got, want))
			}
		}
		out[i] = st
	}
	return out, nil
}

// CreateTopic creates one planned topic; a topic created meanwhile by
// someone else is no error.
func CreateTopic(ctx context.Context, adm *kadm.Client, s Spec, replication int) error {
	resp, err := adm.CreateTopic(ctx, s.Partitions, int16(replication), s.Configs, s.Name)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", s.Name, err)
	}
	return nil
}
