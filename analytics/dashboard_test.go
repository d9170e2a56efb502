package analytics

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/dlq"
)

// grafanaMacros turns the ClickHouse data source's macros and the
// dashboard's variables into plain SQL, the way Grafana would.
func grafanaMacros(sql string, from, to time.Time) string {
	tf := regexp.MustCompile(`\$__timeFilter\(([a-z_]+)\)`)
	sql = tf.ReplaceAllString(sql, "$1 >= toDateTime64('"+chTime(from)+"', 3, 'UTC') AND $1 <= toDateTime64('"+chTime(to)+"', 3, 'UTC')")
	return strings.ReplaceAll(sql, "${pipeline:singlequote}", "'pipe_1'")
}

// Every panel and variable query of the shipped Grafana dashboard runs on the
// real schema (chDB), reads the per-minute aggregates, and returns data.
func TestGrafanaDashboardQueriesRunOnTheSchema(t *testing.T) {
	raw, err := os.ReadFile("../deploy/helm/webhookd/dashboards/webhookd.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct {
				RawSQL string `json:"rawSql"`
			}
		}
		Templating struct{ List []struct{ Query string } }
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	s := openTestStore(t, "webhookd")
	ctx := context.Background()
	now := time.Now().UTC()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Write(ctx, &Batch{
		Executions: []delivery.Execution{{ExecutionID: "e1", PipelineID: "pipe_1", TriggerType: "click", Status: "completed", StartedAt: now, CompletedAt: now.Add(time.Second), Seq: 1}},
		Attempts: []delivery.Attempt{
			{AttemptID: "a1", ExecutionID: "e1", PipelineID: "pipe_1", TriggerType: "click", StepID: "s1", Status: "failed", Error: "HTTP 500", HTTPStatus: 500, LatencyMS: 40, StartedAt: now},
			{AttemptID: "a2", ExecutionID: "e1", PipelineID: "pipe_1", TriggerType: "click", StepID: "s1", Attempt: 1, Status: "success", HTTPStatus: 200, LatencyMS: 30, StartedAt: now, Tier: "5s"},
		},
		Dead: []DeadLetterRow{{Record: dlq.Record{ID: "d1", State: "dead", Reason: "retries_exhausted", PipelineID: "pipe_1", FailedAt: now}, Version: 1}},
	}))
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			// Charts over time read the aggregates; only the DLQ's current
			// state is a base table (small: items, not attempts).
			if !strings.Contains(tg.RawSQL, "_1m") && !strings.Contains(tg.RawSQL, "webhookd.dlq_items FINAL") {
				t.Errorf("panel %q does not read the aggregates: %s", p.Title, tg.RawSQL)
			}
			rows, err := s.b.query(ctx, grafanaMacros(tg.RawSQL, now.Add(-time.Hour), now.Add(time.Minute)), nil)
			if err != nil {
				t.Errorf("panel %q: %v", p.Title, err)
				continue
			}
			if len(rows) == 0 {
				t.Errorf("panel %q returned no rows", p.Title)
			}
			n++
		}
	}
	for _, v := range dash.Templating.List {
		if v.Query != "" && strings.HasPrefix(v.Query, "SELECT") {
			if rows, err := s.b.query(ctx, v.Query, nil); err != nil || len(rows) == 0 {
				t.Errorf("variable query %q: %v rows, %v", v.Query, len(rows), err)
			}
		}
	}
	if n < 9 {
		t.Fatalf("only %d panel queries found", n)
	}
}
