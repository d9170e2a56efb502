package analytics

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// Migration 7 makes the quantile tables again with 16-row granules, on a
// database that has states in them: the answers are the same after, the
// tables have the new granules, and rows written after reach them — also
// when the migration was stopped after any of its statements and runs
// again.
func TestQuantileGranulesMigrationKeepsTheStates(t *testing.T) {
	stmts := len(quantileGranules(Target{Database: "x"}))
	for _, stopAfter := range []int{-1, 0, 1, 2, 5, stmts - 2} {
		t.Run(fmt.Sprintf("stopped after %d", stopAfter), func(t *testing.T) {
			s := openRawStore(t, Options{Database: fmt.Sprintf("gran%d", stopAfter+1)})
			ctx := context.Background()
			if err := s.migrate(ctx, migrations[:6]); err != nil {
				t.Fatal(err)
			}
			recs := workload()
			half := len(recs) / 2
			if err := s.Write(ctx, batchOf(recs, 0, half)); err != nil {
				t.Fatal(err)
			}
			// The quantile tables' states merged by key (since
			// migration 8 no answer reads them; they stay for older
			// replicas).
			answers := func() string {
				var b strings.Builder
				for _, q := range quantileTables {
					rows, err := s.b.query(ctx, `SELECT level, pipeline_id, trigger_type, step_id, toString(quantilesTDigestMerge(`+quantileLevels+`)(`+q.kind+`))
						FROM `+s.t(q.kind+"_"+q.suffix)+` GROUP BY level, pipeline_id, trigger_type, step_id ORDER BY level, pipeline_id, trigger_type, step_id`, nil)
					if err != nil {
						t.Fatal(err)
					}
					fmt.Fprintf(&b, "%s %v\n", q.kind+"_"+q.suffix, rows)
				}
				return b.String()
			}
			before := answers()
			runUpTo(ctx, t, s, migrations[6], stopAfter)
			if err := s.migrate(ctx, migrations[:7]); err != nil {
				t.Fatal(err)
			}
			if after := answers(); after != before {
				t.Fatalf("answers changed by the migration:\n%s\n%s", before, after)
			}
			tables, _ := s.tables(ctx)
			for _, q := range quantileTables {
				name := q.kind + "_" + q.suffix
				if !strings.Contains(tables[name], "index_granularity = 16") {
					t.Errorf("%s: %s", name, tables[name])
				}
				if _, ok := tables[name+"_next"]; ok {
					t.Errorf("%s_next left", name)
				}
			}
			// Written after: the views feed the new tables.
			if err := s.Write(ctx, batchOf(recs, half, len(recs))); err != nil {
				t.Fatal(err)
			}
			if answers() == before {
				t.Error("the rows written after the migration did not reach the quantile tables")
			}
			// Migration 8 fills the histograms from the base tables:
			// every answer as computed by hand.
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			checkWorkload(t, s)
			if got := versions(t, s); !reflect.DeepEqual(got, known()) {
				t.Errorf("versions %v", got)
			}
		})
	}
}

// runUpTo runs migration m's statements up to stopAfter (none when
// negative), each as the migration would run it (its guard asked), and
// returns them all.
func runUpTo(ctx context.Context, t *testing.T, s *Store, m Migration, stopAfter int) []string {
	t.Helper()
	stmts := m.Statements(s.target())
	for i, stmt := range stmts[:stopAfter+1] {
		tables, err := s.tables(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Guard(i, tables) {
			if err := s.b.exec(ctx, stmt, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	return stmts
}
