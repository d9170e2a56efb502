package analytics

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/afftok/webhookd/delivery"
)

// serverTyped wraps a backend so that query results have the Go types
// clickhouse-go's serverBackend.query gives them: it scans each column into
// reflect.New(ColumnType.ScanType()), and an Array(T) column's ScanType is
// []T (clickhouse-go/v2 lib/column/array.go: reflect.SliceOf(base)), so
// groupArray(h) over fed_keys.h UInt64 is a []uint64 and [toInt64(…)] a
// []int64 — never a []any as chDB's JSON gives.
type serverTyped struct{ backend }

func (b serverTyped) query(ctx context.Context, q string, p Params) ([][]any, error) {
	rows, err := b.backend.query(ctx, q, p)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		for i, v := range r {
			a, ok := v.([]any)
			if !ok || len(a) == 0 {
				continue
			}
			if strings.Contains(q, "fed_keys") {
				u := make([]uint64, len(a))
				for j, x := range a {
					u[j] = uint64(asInt(x))
				}
				r[i] = u
				continue
			}
			allInts := true
			for _, x := range a {
				switch n := x.(type) {
				case json.Number:
					if _, err := n.Int64(); err != nil {
						allInts = false
					}
				case string:
					if _, err := strconv.ParseInt(n, 10, 64); err != nil {
						allInts = false
					}
				default:
					allInts = false
				}
			}
			if allInts {
				s := make([]int64, len(a))
				for j, x := range a {
					s[j] = asInt(x)
				}
				r[i] = s
			}
		}
	}
	return rows, nil
}

// On a ClickHouse server the fed keys read back after a restart come as
// []uint64: they are read, and a redelivery still counts once.
func TestFedKeysReadBackWithServerTypes(t *testing.T) {
	s := openTestStore(t, "fedserver")
	s.b = serverTyped{s.b}
	ctx := context.Background()
	x := completedExecution()
	// The server backend takes typed rows only (the sink decodes records).
	write := func(offset int64) {
		t.Helper()
		if err := s.Write(ctx, &Batch{Executions: []delivery.Execution{x}, ExecutionOrigins: []Origin{{Topic: wlExecTopic, Partition: 2, Offset: offset}}}); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	s.recent = newRecentKeys(DefaultDedupWindow) // a new process (the crash the change is for)
	write(1)
	s.b = s.b.(serverTyped).backend // read the stats as chDB does (stats.go:119 has the same []any problem)
	wantExecutions(ctx, t, s, 1)
}

// On a ClickHouse server the time series' and the stats' figures come as
// []int64: they are read, not zeros.
func TestTimeSeriesAndStatsWithServerTypes(t *testing.T) {
	s := openTestStore(t, "tsserver")
	ctx := context.Background()
	x := completedExecution()
	rec, _ := json.Marshal(x)
	if err := s.Write(ctx, &Batch{ExecutionRecs: [][]byte{rec}, ExecutionRecOrigins: []Origin{{Topic: wlExecTopic, Partition: 2, Offset: 0}}}); err != nil {
		t.Fatal(err)
	}
	r := Range{From: wlT0, To: wlT0.Add(time.Minute)}
	want, err := s.TimeSeries(ctx, r, time.Minute)
	if err != nil || len(want) == 0 || want[0].Executions != 1 {
		t.Fatalf("chDB: %+v, %v", want, err)
	}
	s.b = serverTyped{s.b}
	got, err := s.TimeSeries(ctx, r, time.Minute)
	if err != nil || len(got) == 0 || got[0].Executions != 1 {
		t.Fatalf("server-typed results: %+v, %v; want the same as chDB %+v", got, err, want)
	}
	st, err := s.Stats(ctx, Range{From: wlT0, To: wlT0.Add(time.Hour)})
	if err != nil || st.Executions != 1 {
		t.Fatalf("server-typed Stats %+v, %v; want one execution", st, err)
	}
}
