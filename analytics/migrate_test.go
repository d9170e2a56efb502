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

	"github.com/afftok/webhookd/delivery"
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
	if got := versions(t, s); !reflect.DeepEqual(got, known()) {
		t.Fatalf("schema_migrations has %v, want %v", got, known())
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
	start := time.Now()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("a restart with nothing to migrate: %v", time.Since(start).Round(time.Microsecond))
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
	next := len(Migrations()) + 1
	mustExec(t, s, fmt.Sprintf(`INSERT INTO webhookd.schema_migrations VALUES (%d, 'attempts: add x', 'abc', false, now64(3), 'newer-build')`, next))
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("additive newer migration: %v", err)
	}
	if !strings.Contains(logs.String(), "newer than this webhookd") || !strings.Contains(logs.String(), fmt.Sprintf("version=%d", next)) {
		t.Errorf("no warning: %s", logs.String())
	}
	mustExec(t, s, fmt.Sprintf(`INSERT INTO webhookd.schema_migrations VALUES (%d, 'attempts: drop error', 'def', true, now64(3), 'newer-build')`, next+1))
	err := s.Migrate(ctx)
	if !errors.Is(err, ErrSchemaNewer) || !strings.Contains(err.Error(), fmt.Sprintf("migration %d (attempts: drop error", next+1)) ||
		!strings.Contains(err.Error(), fmt.Sprintf("knows up to %d", next-1)) {
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

	first := len(Migrations()) + 1
	ms := append(Migrations(),
		Migration{Version: first, Name: "test: runs table, first run", Statements: func(t Target) []string {
			return []string{
				`CREATE TABLE IF NOT EXISTS ` + t.Table("migration_runs") + t.On() + ` (version UInt32) ENGINE = MergeTree ORDER BY version`,
				fmt.Sprintf(`INSERT INTO `+t.Table("migration_runs")+` VALUES (%d)`, first),
			}
		}},
		Migration{Version: first + 1, Name: "test: second run", Statements: func(t Target) []string {
			return []string{fmt.Sprintf(`INSERT INTO `+t.Table("migration_runs")+` VALUES (%d)`, first+1)}
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
	start := time.Now()
	close(startLine)
	wg.Wait()
	t.Logf("%d replicas started together: every one done after %v", replicas, time.Since(start).Round(time.Millisecond))
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica-%d: %v", i, err)
		}
	}
	if got := versions(t, base); !reflect.DeepEqual(got, append(known(), first, first+1)) {
		t.Fatalf("schema_migrations has %v", got)
	}
	for _, v := range []int{first, first + 1} {
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

// Retention per table: a changed setting is applied to the existing tables
// at the next start (ALTER TABLE … MODIFY TTL), and rows past their
// table's retention go while younger ones stay. Logs are kept 7 days,
// aggregates 60, the DLQ 30.
func TestRetentionChangesApplyToExistingTablesAndExpireRows(t *testing.T) {
	ctx := context.Background()
	// Created keeping everything for a year.
	s := openRawStore(t, Options{Database: "webhookd", TTLDays: 365})
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	ages := []int{1, 10, 45, 90} // days
	b := &Batch{}
	for i, age := range ages {
		at := now.Add(-time.Duration(age) * 24 * time.Hour)
		pipe := fmt.Sprintf("d%d", age)
		exec := "e_" + pipe
		b.Attempts = append(b.Attempts, delivery.Attempt{V: 1, Kind: delivery.KindAttempt, AttemptID: "a_" + pipe, ExecutionID: exec, DeliveryID: "del_" + pipe,
			PipelineID: pipe, TriggerType: "click", StepID: "s1", Status: "failed", HTTPStatus: 500, LatencyMS: 10, Error: "HTTP 500", StartedAt: at})
		b.AttemptOrigins = append(b.AttemptOrigins, Origin{Topic: "x", Offset: int64(i)})
		b.Executions = append(b.Executions, delivery.Execution{V: 1, Kind: delivery.KindExecution, ExecutionID: exec, DeliveryID: "del_" + pipe, PipelineID: pipe,
			TriggerType: "click", Status: "failed", StartedAt: at, CompletedAt: at.Add(time.Second), Seq: 1})
		b.ExecutionOrigins = append(b.ExecutionOrigins, Origin{Topic: "x", Offset: int64(100 + i)})
		b.Dead = append(b.Dead, DeadLetterRow{Record: dlq.Record{V: 1, ID: "dlq_" + pipe, State: "dead", Reason: "retries_exhausted", Error: "HTTP 500",
			DeliveryID: "del_" + pipe, ExecutionID: exec, PipelineID: pipe, TriggerType: "click", Attempts: 1, FailedAt: at}, Version: 1})
		b.DeadOrigins = append(b.DeadOrigins, Origin{Topic: "y", Offset: int64(i)})
	}
	if err := s.Write(ctx, b); err != nil {
		t.Fatal(err)
	}
	tables := []string{"attempts", "executions", "dlq_items", "attempts_1m", "attempts_1h", "executions_1m", "executions_1h", "errors_1m", "dlq_1m"}
	kept := func() map[string][]string {
		out := map[string][]string{}
		for _, tb := range tables {
			rows, err := s.b.query(ctx, `SELECT DISTINCT pipeline_id FROM webhookd.`+tb+` ORDER BY length(pipeline_id), pipeline_id`, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				out[tb] = append(out[tb], asString(r[0]))
			}
		}
		return out
	}
	all := []string{"d1", "d10", "d45", "d90"}
	for tb, got := range kept() {
		if !reflect.DeepEqual(got, all) {
			t.Fatalf("%s before: %v", tb, got)
		}
	}

	// The next start, with new settings.
	r := sibling(s, func(s *Store) { s.retention = Retention{Logs: 7, Aggregates: 60, DLQ: 30} })
	if err := r.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	engines, _ := r.tables(ctx)
	for _, tb := range tables {
		spec := ttlTables[tb]
		if col, days, ok := parseTTL(engines[tb]); !ok || col != spec.column || days != r.retention.days(spec.class) {
			t.Errorf("%s TTL after the change: %s", tb, engines[tb])
		}
	}
	// The MODIFY TTL's own materialization runs in the background; this
	// one waits (mutations run in order), then merges force the TTL.
	for _, tb := range tables {
		mustExec(t, r, `ALTER TABLE webhookd.`+tb+` MATERIALIZE TTL SETTINGS mutations_sync = 2`)
		mustExec(t, r, `OPTIMIZE TABLE webhookd.`+tb+` FINAL`)
	}
	want := map[string][]string{
		"attempts": {"d1"}, "executions": {"d1"},
		"dlq_items":   {"d1", "d10"},
		"attempts_1m": {"d1", "d10", "d45"}, "attempts_1h": {"d1", "d10", "d45"}, "executions_1m": {"d1", "d10", "d45"},
		"executions_1h": {"d1", "d10", "d45"}, "errors_1m": {"d1", "d10", "d45"}, "dlq_1m": {"d1", "d10", "d45"},
	}
	if got := kept(); !reflect.DeepEqual(got, want) {
		t.Errorf("rows kept per table:\n got %v\nwant %v", got, want)
	}
	// Nothing to change at the start after.
	if p, err := r.plan(ctx, migrations, false); err != nil || !p.empty() {
		t.Errorf("plan after: %+v, %v", p, err)
	}
}

// parseTTL reads what ClickHouse prints, and refuses TTLs of other forms.
func TestParseTTL(t *testing.T) {
	for _, c := range []struct {
		engine string
		col    string
		days   int
		ok     bool
	}{
		{"ReplacingMergeTree(seq) PARTITION BY toYYYYMMDD(started_at) ORDER BY (pipeline_id, execution_id) TTL toDateTime(started_at) + toIntervalDay(30) SETTINGS index_granularity = 8192", "started_at", 30, true},
		{"ReplacingMergeTree(version) PARTITION BY toYYYYMM(failed_at) ORDER BY id TTL (toDateTime(failed_at) + toIntervalDay(30)) + toIntervalDay(60) SETTINGS index_granularity = 8192", "failed_at", 90, true},
		{"AggregatingMergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (hour, pipeline_id) TTL toDateTime(hour) + toIntervalDay(400)", "hour", 400, true},
		{"AggregatingMergeTree ORDER BY (feed, topic, partition) SETTINGS index_granularity = 8192", "", 0, true},
		{"MergeTree ORDER BY x TTL toDateTime(started_at) + toIntervalDay(30) TO VOLUME 'cold' SETTINGS index_granularity = 8192", "", 0, false},
		{"MergeTree ORDER BY x TTL toDateTime(started_at) + toIntervalMonth(1)", "", 0, false},
	} {
		col, days, ok := parseTTL(c.engine)
		if col != c.col || days != c.days || ok != c.ok {
			t.Errorf("parseTTL(%q) = %q, %d, %v", c.engine, col, days, ok)
		}
	}
}

// parseTTL reads engine_full text from the server: any text is refused or
// read, never a panic, and what it reads it reads back the same once
// written as ClickHouse prints it.
func FuzzParseTTL(f *testing.F) {
	f.Add("ReplacingMergeTree(seq) PARTITION BY toYYYYMMDD(started_at) ORDER BY (pipeline_id, execution_id) TTL toDateTime(started_at) + toIntervalDay(30) SETTINGS index_granularity = 8192")
	f.Add("ReplacingMergeTree(version) ORDER BY id TTL (toDateTime(failed_at) + toIntervalDay(30)) + toIntervalDay(60) SETTINGS index_granularity = 8192")
	f.Add("MergeTree ORDER BY x TTL toDateTime(d) + toIntervalDay(1) TO VOLUME 'cold'")
	f.Add("Null")
	f.Fuzz(func(t *testing.T, engine string) {
		col, days, ok := parseTTL(engine)
		if !ok || col == "" || days < 0 {
			return
		}
		again := fmt.Sprintf("MergeTree ORDER BY x TTL toDateTime(%s) + toIntervalDay(%d) SETTINGS index_granularity = 8192", col, days)
		if c2, d2, ok2 := parseTTL(again); !ok2 || c2 != col || d2 != days {
			t.Errorf("%q read as %s %d; written back %q read as %s %d %v", engine, col, days, again, c2, d2, ok2)
		}
	})
}

// fakeLease hands out held contexts the test controls.
type fakeLease struct {
	block bool                    // never granted: Acquire waits for ctx
	held  context.CancelCauseFunc // the current holding's cancel
}

func (f *fakeLease) Acquire(ctx context.Context) (context.Context, func(), error) {
	if f.block {
		<-ctx.Done()
		return nil, nil, fmt.Errorf("held by busy-replica: %w", ctx.Err())
	}
	held, cancel := context.WithCancelCause(context.Background())
	f.held = cancel
	return held, func() { cancel(errors.New("released")) }, nil
}

// The wait for another replica's migration is bounded, and says which
// setting bounds it; nothing is applied meanwhile.
func TestMigrateWaitForTheLeaseIsBounded(t *testing.T) {
	s := openRawStore(t, Options{Database: "webhookd", Lease: &fakeLease{block: true}, MigrateWait: 200 * time.Millisecond})
	err := s.Migrate(context.Background())
	if err == nil || !strings.Contains(err.Error(), "WEBHOOKD_CLICKHOUSE_MIGRATE_WAIT") || !strings.Contains(err.Error(), "busy-replica") {
		t.Fatalf("err = %v", err)
	}
	if tables, _ := s.tables(context.Background()); len(tables) != 0 {
		t.Errorf("tables created without the lease: %v", tables)
	}
}

// A replica that loses the lease mid-migration stops before its next
// statement, and does not record the migration it did not finish.
func TestMigrateStopsWhenTheLeaseIsLost(t *testing.T) {
	fl := &fakeLease{}
	s := openRawStore(t, Options{Database: "webhookd", Lease: fl})
	next := len(Migrations()) + 1
	ms := append(Migrations(), Migration{Version: next, Name: "test: lease lost here", Statements: func(Target) []string {
		fl.held(lease.ErrLost)
		return []string{`CREATE TABLE IF NOT EXISTS webhookd.never (x UInt8) ENGINE = Memory`}
	}})
	err := s.migrate(context.Background(), ms)
	if !errors.Is(err, lease.ErrLost) || !strings.Contains(err.Error(), fmt.Sprintf("migration %d", next)) {
		t.Fatalf("err = %v", err)
	}
	if got := versions(t, s); !reflect.DeepEqual(got, known()) {
		t.Errorf("recorded %v", got)
	}
	if tables, _ := s.tables(context.Background()); tables["never"] != "" {
		t.Error("a statement ran after the lease was lost")
	}
}

// known is the versions of the code's migrations: 1, 2, … N.
func known() []int {
	var vs []int
	for _, m := range Migrations() {
		vs = append(vs, m.Version)
	}
	return vs
}
