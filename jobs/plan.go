package jobs

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Offsets is what planning a replay needs of Kafka (*kadm.Client).
type Offsets interface {
	ListStartOffsets(ctx context.Context, topics ...string) (kadm.ListedOffsets, error)
	ListEndOffsets(ctx context.Context, topics ...string) (kadm.ListedOffsets, error)
	ListOffsetsAfterMilli(ctx context.Context, millisecond int64, topics ...string) (kadm.ListedOffsets, error)
}

// PlanReplay fixes the offsets a replay of [from, to) reads in each
// partition of topics: from the first record at or after from to the first
// at or after to (Kafka's offsets-by-time). When retention has deleted
// records that may have been in the window — a partition's log starts later
// than its first offset at from would be — it says so in warnings and
// returns the oldest time still held as effectiveFrom.
func PlanReplay(ctx context.Context, adm Offsets, topics []string, from, to time.Time) (ranges []Range, effectiveFrom time.Time, warnings []string, err error) {
	list := func(what string, f func() (kadm.ListedOffsets, error)) (kadm.ListedOffsets, error) {
		// A broker answering from stale metadata (a topic just created, a
		// leader moving) is asked again, a bounded number of times.
		for try := 0; ; try++ {
			o, err := f()
			if err == nil {
				err = o.Error()
			}
			if err == nil {
				return o, nil
			}
			if try == 4 || !kerr.IsRetriable(err) {
				return nil, fmt.Errorf("list %s offsets: %w", what, err)
			}
			if serr := sleep(ctx, time.Duration(100<<try)*time.Millisecond); serr != nil {
				return nil, fmt.Errorf("list %s offsets: %w", what, err)
			}
		}
	}
	starts, err := list("start", func() (kadm.ListedOffsets, error) { return adm.ListStartOffsets(ctx, topics...) })
	if err != nil {
		return nil, time.Time{}, nil, err
	}
	atFrom, err := list("from", func() (kadm.ListedOffsets, error) { return adm.ListOffsetsAfterMilli(ctx, from.UnixMilli(), topics...) })
	if err != nil {
		return nil, time.Time{}, nil, err
	}
	atTo, err := list("to", func() (kadm.ListedOffsets, error) { return adm.ListOffsetsAfterMilli(ctx, to.UnixMilli(), topics...) })
	if err != nil {
		return nil, time.Time{}, nil, err
	}
	ends, err := list("end", func() (kadm.ListedOffsets, error) { return adm.ListEndOffsets(ctx, topics...) })
	if err != nil {
		return nil, time.Time{}, nil, err
	}
	ends.Each(func(e kadm.ListedOffset) {
		s, _ := starts.Lookup(e.Topic, e.Partition)
		f, okF := atFrom.Lookup(e.Topic, e.Partition)
		t, okT := atTo.Lookup(e.Topic, e.Partition)
		start, end := e.Offset, e.Offset
		if okF && f.Offset >= 0 {
			start = f.Offset
		}
		if okT && t.Offset >= 0 {
			end = min(t.Offset, e.Offset)
		}
		start = max(start, s.Offset)
		// The log starts after offset 0 (retention or a deletion removed
		// records), and the first record at from is its first record: what
		// was before it may have been in the window.
		if s.Offset > 0 && start == s.Offset {
			held := "holds no records"
			if start < e.Offset && okF && f.Timestamp >= 0 {
				oldest := time.UnixMilli(f.Timestamp).UTC()
				if oldest.After(from) {
					held = "holds records from " + oldest.Format(time.RFC3339Nano) + " on"
					if oldest.After(effectiveFrom) {
						effectiveFrom = oldest
					}
				} else {
					held = ""
				}
			}
			if held != "" {
				warnings = append(warnings, fmt.Sprintf("from is older than what %s partition %d retains: records before offset %d were deleted and it %s; events deleted by retention are not replayed", e.Topic, e.Partition, s.Offset, held))
			}
		}
		if start < end {
			ranges = append(ranges, Range{Topic: e.Topic, Partition: e.Partition, Start: start, End: end})
		}
	})
	sort.Slice(ranges, func(a, b int) bool {
		if ranges[a].Topic != ranges[b].Topic {
			return ranges[a].Topic < ranges[b].Topic
		}
		return ranges[a].Partition < ranges[b].Partition
	})
	sort.Strings(warnings)
	if !effectiveFrom.After(from) || effectiveFrom.After(to) {
		effectiveFrom = time.Time{}
	}
	return ranges, effectiveFrom, warnings, nil
}
