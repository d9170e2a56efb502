package analytics

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// A rolling upgrade: while a new replica runs migration 3, an old replica's
// sink goes on inserting executions. The one inserted between migration 3's
// copy of executions and the creation of its view reached neither, so the
// log endpoints (which read executions_by_time only) never listed it;
// migration 5 copies it, and a row copied twice is still one execution.
func TestExecutionsInsertedWhileMigration3RanAreListed(t *testing.T) {
	s := openRawStore(t, Options{Database: "webhookd", Replica: "replica-new"})
	ctx := context.Background()
	tg := s.target()
	for _, stmt := range bootstrap(tg) {
		mustExec(t, s, stmt)
	}
	record := func(m Migration) {
		row := []any{uint32(m.Version), m.Name, m.Checksum(false), m.Breaking, time.Now().UTC(), "replica-new"}
		if err := s.b.insert(ctx, s.t("schema_migrations"), []string{"version", "name", "checksum", "breaking", "applied_at", "applied_by"}, [][]any{row}); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range migrations[:2] {
		for _, stmt := range m.Statements(tg) {
			mustExec(t, s, stmt)
		}
		record(m)
	}
	// An execution keeps its started_at in every state.
	started := time.Now().Add(-time.Hour).UTC().Format("2006-01-02 15:04:05.000")
	insert := func(id, status string, seq int) {
		mustExec(t, s, fmt.Sprintf(`INSERT INTO webhookd.executions VALUES ('%s', 'd-%[1]s', 'p1', 'Pipeline one', 'click', 't1', 'ev-%[1]s', '%s',
			'%s', toDateTime64('%[3]s', 3, 'UTC') + INTERVAL 1 MINUTE, %d)`, id, status, started, seq))
	}
	insert("e1", "completed", 1)
	m3 := migrations[2].Statements(tg)
	// CREATE TABLE executions_by_time, then its copy of executions …
	mustExec(t, s, m3[0])
	mustExec(t, s, m3[1])
	// … meanwhile the old replica's sink inserts e2, and e1's next state …
	insert("e2", "completed", 1)
	insert("e1", "failed", 2)
	// … then the view and the rest.
	for _, stmt := range m3[2:] {
		mustExec(t, s, stmt)
	}
	record(migrations[2])
	for _, stmt := range migrations[3].Statements(tg) {
		mustExec(t, s, stmt)
	}
	record(migrations[3])
	if n := count(t, s, `SELECT count() FROM webhookd.executions_by_time FINAL WHERE execution_id = 'e2'`); n != 0 {
		t.Fatalf("the gap this test is about did not happen (%d rows of e2)", n)
	}

	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	logs, total, err := s.RecentExecutions(ctx, ExecutionFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range logs {
		got[l.ID] = l.Status
	}
	if len(logs) != 2 || got["e1"] != "failed" || got["e2"] != "completed" {
		t.Errorf("listed %v (total %d), want e1 failed and e2 completed, once each", got, total)
	}
	if _, _, err := s.Execution(ctx, "e2"); err != nil {
		t.Fatal(err)
	}
}
