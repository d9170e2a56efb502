package analytics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/dlq"
	"github.com/afftok/webhookd/lease"
)

// openRawStore opens a chDB store without migrating it.
func openRawStore(t *testing.T, o Options) *Store {
	t.Helper()
	s, err := OpenChDB(FindChDB(), filepath.Join(t.TempDir(), "ch"), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// sibling is another store on the same backend (as another replica would
// be on the same ClickHouse), changed by f.
func sibling(s *Store, f func(*Store)) *Store {
	c := *s
	f(&c)
	return &c
}

// sqlFile runs the statements of a testdata file.
func sqlFile(t *testing.T, s *Store, name string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(l, "--") {
			lines = append(lines, l)
		}
	}
	for _, stmt := range strings.Split(strings.Join(lines, "\n"), ";\n") {
		if stmt = strings.TrimSpace(stmt); stmt != "" {
			if err := s.b.exec(context.Background(), stmt, nil); err != nil {
				t.Fatalf("%v\n%s", err, stmt)
			}
		}
	}
}

func mustExec(t *testing.T, s *Store, q string) {
	t.Helper()
	if err := s.b.exec(context.Background(), q, nil); err != nil {
		t.Fatalf("%v\n%s", err, q)
	}
}

func count(t *testing.T, s *Store, q string) int64 {
	t.Helper()
	rows, err := s.b.query(context.Background(), q, nil)
	if err != nil || len(rows) != 1 {
		t.Fatalf("%s: %v %v", q, rows, err)
	}
	return asInt(rows[0][0])
}

func versions(t *testing.T, s *Store) []int {
	t.Helper()
	recs, err := s.Applied(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var vs []int
	for _, r := range recs {
		vs = append(vs, r.Version)
	}
	return vs
}

// The ALTER path: a database made by the first release (no
// schema_migrations, no aggregates, dlq_items without payload_truncated)
// with rows in it is adopted — migrations 1 and 2 recorded, the column
// and the aggregate tables added — and its rows read by today's queries.
func TestMigrateAdoptsTheFirstReleasesDatabase(t *testing.T) {
	s := openRawStore(t, Options{Database: "webhookd", Replica: "replica-a"})
	ctx := context.Background()
	sqlFile(t, s, "schema_release1.sql")
	mustExec(t, s, `INSERT INTO webhookd.attempts (attempt_id, execution_id, delivery_id, pipeline_id, pipeline_name, trigger_type, trigger_id, event_id,
		step_id, step_name, step_order, attempt, failover, tier, status, http_status, latency_ms, error, request_url, request_body, response_body, started_at)
		VALUES ('a1', 'e1', 'd1', 'p1', 'Pipeline one', 'click', 't1', 'ev1', 's1', 'notify', 0, 0, false, '', 'failed', 500, 120, 'HTTP 500',
		'https://crm.example/hook', '{"x":1}', 'oops', now64(3) - INTERVAL 1 HOUR)`)
	mustExec(t, s, `INSERT INTO webhookd.executions VALUES ('e1', 'd1', 'p1', 'Pipeline one', 'click', 't1', 'ev1', 'failed',
		now64(3) - INTERVAL 1 HOUR, now64(3) - INTERVAL 59 MINUTE, 2)`)
	mustExec(t, s, `INSERT INTO webhookd.dlq_items VALUES ('dlq_1', 'dead', 'retries_exhausted', 'HTTP 500', 'd1', 'e1', 'p1', 'click', 't1',
		0, 3, now64(3) - INTERVAL 59 MINUTE, '{"conversion":{"id":"c1"}}', '', '', 1)`)
	oldDLQEngine, _ := s.tables(ctx)

	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := versions(t, s); !reflect.DeepEqual(got, []int{1, 2}) {
		t.Fatalf("schema_migrations has %v, want [1 2]", got)
	}
	recs, _ := s.Applied(ctx)
	for _, r := range recs {
		if r.AppliedBy != "replica-a" || r.Checksum != migrations[r.Version-1].Checksum(false) || time.Since(r.AppliedAt) > time.Minute {
			t.Errorf("record %+v", r)
		}
	}
	if n := count(t, s, `SELECT count() FROM system.columns WHERE database = 'webhookd' AND table = 'dlq_items' AND name = 'payload_truncated'`); n != 1 {
		t.Errorf("dlq_items has no payload_truncated column")
	}
	tables, _ := s.tables(ctx)
	for _, n := range []string{"attempts_1m", "attempts_1h", "executions_1m", "executions_1h", "errors_1m", "dlq_1m", "sink_offsets", "attempts_feed"} {
		if _, ok := tables[n]; !ok {
			t.Errorf("table %s was not created", n)
		}
	}
	// Its TTL (30 + 60 days, written the old way) is the default DLQ
	// retention: left alone.
	if tables["dlq_items"] != oldDLQEngine["dlq_items"] {
		t.Errorf("dlq_items altered needlessly: %s", tables["dlq_items"])
	}

	// The old rows, through today's queries.
	items, total, err := s.DeadLetters(ctx, dlq.Filter{})
	if err != nil || total != 1 || len(items) != 1 {
		t.Fatalf("DLQ list: %d items of %d, %v", len(items), total, err)
	}
	it := items[0]
	if it.ID != "dlq_1" || it.PayloadTruncated || string(it.Payload) != `{"conversion":{"id":"c1"}}` || it.Attempts != 3 || it.Reason != "retries_exhausted" {
		t.Errorf("old DLQ item read back as %+v", it)
	}
	logs, n, err := s.RecentExecutions(ctx, ExecutionFilter{PipelineID: "p1"})
	if err != nil || n != 1 || len(logs) != 1 || len(logs[0].Steps) != 1 {
		t.Fatalf("logs: %+v (%d), %v", logs, n, err)
	}
	if l := logs[0]; l.Status != "failed" || l.Steps[0].HTTPStatus != 500 || l.Steps[0].Error != "HTTP 500" || l.Steps[0].ResponseBody != "oops" || l.CompletedAt == nil {
		t.Errorf("old execution read back as %+v", l)
	}
	// And new rows use the new column.
	rec := it
	rec.ID, rec.PayloadTruncated = "dlq_2", true
	if err := s.InsertDeadLetters(ctx, []DeadLetterRow{{Record: rec, Version: 1}}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.DeadLetter(ctx, "dlq_2"); err != nil || got == nil || !got.PayloadTruncated {
		t.Errorf("new DLQ item: %+v, %v", got, err)
	}

	// A restart applies nothing and records nothing again.
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	again, _ := s.Applied(ctx)
	if !reflect.DeepEqual(again, recs) {
		t.Errorf("a second Migrate changed the records: %+v", again)
	}
}

// A recorded migration whose statements changed in the code stops the
// start, naming it.
func TestMigrateRefusesAnAppliedMigrationThatChanged(t *testing.T) {
	s := openTestStore(t, "webhookd")
	mustExec(t, s, `INSERT INTO webhookd.schema_migrations VALUES (2, 'dlq_items: payload_truncated', 'feedface', false, now64(3) + INTERVAL 1 SECOND, 'old-build')`)
	err := s.Migrate(context.Background())
	if err == nil || !strings.Contains(err.Error(), "schema migration 2 (dlq_items: payload_truncated)") || !strings.Contains(err.Error(), "checksum feedface") ||
		!strings.Contains(err.Error(), "old-build") {
		t.Fatalf("err = %v", err)
	}
}

// A database migrated by a newer webhookd: additive migrations (a rollback)
// are a warning, a breaking one refuses the start.
func TestMigrateOnANewerSchema(t *testing.T) {
	var logs bytes.Buffer
	s := openTestStore(t, "webhookd")
	s = sibling(s, func(s *Store) { s.log = slog.New(slog.NewTextHandler(&logs, nil)) })
	ctx := context.Background()
	mustExec(t, s, `INSERT INTO webhookd.schema_migrations VALUES (3, 'attempts: add x', 'abc', false, now64(3), 'newer-build')`)
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("additive newer migration: %v", err)
	}
	if !strings.Contains(logs.String(), "newer than this webhookd") || !strings.Contains(logs.String(), "version=3") {
		t.Errorf("no warning: %s", logs.String())
	}
	mustExec(t, s, `INSERT INTO webhookd.schema_migrations VALUES (4, 'attempts: drop error', 'def', true, now64(3), 'newer-build')`)
	err := s.Migrate(ctx)
	if !errors.Is(err, ErrSchemaNewer) || !strings.Contains(err.Error(), "migration 4 (attempts: drop error") || !strings.Contains(err.Error(), "knows up to 2") {
		t.Fatalf("err = %v", err)
	}
}

// Replicas starting together on an empty database, each with its own Kafka
// client for the lease (as separate processes), all succeed, and every
// migration's statements ran exactly once: the test migrations insert a
// row each time they run.
func TestReplicasStartingTogetherApplyEachMigrationOnce(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	kopts := []kgo.Opt{kgo.SeedBrokers(kc.ListenAddrs()...)}
	adm, err := kgo.NewClient(kopts...)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := kadm.NewClient(adm).CreateTopic(ctx, 1, 1, nil, "webhooks.leases"); err != nil {
		t.Fatal(err)
	}

	ms := append(Migrations(),
		Migration{Version: 3, Name: "test: runs table, first run", Statements: func(t Target) []string {
			return []string{
				`CREATE TABLE IF NOT EXISTS ` + t.Table("migration_runs") + t.On() + ` (version UInt32) ENGINE = MergeTree ORDER BY version`,
				`INSERT INTO ` + t.Table("migration_runs") + ` VALUES (3)`,
			}
		}},
		Migration{Version: 4, Name: "test: second run", Statements: func(t Target) []string {
			return []string{`INSERT INTO ` + t.Table("migration_runs") + ` VALUES (4)`}
		}})

	base := openRawStore(t, Options{Database: "webhookd"})
	const replicas = 6
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	startLine := make(chan struct{})
	for i := range replicas {
		name := fmt.Sprintf("replica-%d", i)
		r := sibling(base, func(s *Store) {
			s.replica = name
			s.lease = lease.New(lease.Options{ClientOpts: kopts, Topic: "webhooks.leases", Name: "analytics-schema/webhookd", Owner: name, TTL: 10 * time.Second})
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startLine
			errs[i] = r.migrate(ctx, ms)
		}()
	}
	close(startLine)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica-%d: %v", i, err)
		}
	}
	if got := versions(t, base); !reflect.DeepEqual(got, []int{1, 2, 3, 4}) {
		t.Fatalf("schema_migrations has %v", got)
	}
	for _, v := range []int{3, 4} {
		if n := count(t, base, fmt.Sprintf(`SELECT count() FROM webhookd.migration_runs WHERE version = %d`, v)); n != 1 {
			t.Errorf("migration %d ran %d times", v, n)
		}
	}
	// One replica applied them all; the others found nothing left to do.
	recs, _ := base.Applied(ctx)
	for _, r := range recs[1:] {
		if r.AppliedBy != recs[0].AppliedBy {
			t.Errorf("migrations applied by %s and %s", recs[0].AppliedBy, r.AppliedBy)
		}
	}
}
