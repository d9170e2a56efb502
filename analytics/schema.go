package analytics

import (
	"fmt"
	"strconv"
	"strings"
)

// The schema is a list of migrations (DESIGN.md §6, issue 10): each a
// version, a name and the statements that take a database from the previous
// version to it. Migrate applies the versions a database has not recorded,
// in order, and records each in schema_migrations once its statements ran
// (migrate.go). Statements stay idempotent (IF NOT EXISTS, ADD COLUMN IF NOT
// EXISTS…): a replica that crashes between applying and recording, or a
// database created before versions were recorded, re-applies them safely.
//
// A change to the schema is a new entry at the end of migrations — never an
// edit of an applied one (its checksum would no longer match, and Migrate
// refuses to start):
//
//	{Version: 3, Name: "attempts: add x", Statements: func(t Target) []string {
//		return []string{`ALTER TABLE ` + t.Table("attempts") + t.On() + ` ADD COLUMN IF NOT EXISTS x String`}
//	}},
//
// A table with TTL retention names its time column and retention class in
// ttlTables, and its CREATE ends with t.TTL(table): retention is
// configuration, not schema — the TTL text is left out of checksums, and
// Migrate reconciles a changed setting with ALTER TABLE … MODIFY TTL.

// Migration is one version of the schema.
type Migration struct {
	Version int
	Name    string
	// Breaking marks a migration older webhookd versions cannot work with
	// (a dropped or renamed column): a webhookd that does not know it
	// refuses to start on the database. Additive migrations leave it false,
	// so a rolled-back deployment keeps running (with a warning).
	Breaking   bool
	Statements func(t Target) []string
	// Guard, when set, tells before each statement (by its index) whether
	// it is still to do, given the database's tables as they are then
	// (name → engine_full): for a migration whose statements are not
	// idempotent by themselves.
	Guard func(i int, tables map[string]string) bool
}

// migrations is the schema's history, oldest first; versions ascend by one.
var migrations = []Migration{
	{Version: 1, Name: "base tables and aggregates", Statements: baseSchema},
	{Version: 2, Name: "dlq_items: payload_truncated", Statements: func(t Target) []string {
		return []string{`ALTER TABLE ` + t.Table("dlq_items") + t.On() + ` ADD COLUMN IF NOT EXISTS payload_truncated Bool DEFAULT false AFTER task`}
	}},
	{Version: 3, Name: "executions in time order and counts by status, for the log endpoints", Statements: logSchema},
	{Version: 4, Name: "latency and time-to-success quantile states by level", Statements: quantileSchema},
	{Version: 5, Name: "executions_by_time: the executions written while migration 3 ran", Statements: refillExecutionsByTime},
	{Version: 6, Name: "fed_keys: an execution, attempt or DLQ item redelivered is counted once", Statements: fedKeysSchema},
	{Version: 7, Name: "quantile tables with 16-row granules", Statements: quantileGranules, Guard: quantileGranulesGuard},
	{Version: 8, Name: "latency and time-to-success histograms by level, in place of the quantile states", Statements: histogramSchema, Guard: histogramGuard},
}

// Migrations returns the schema's migrations, oldest first.
func Migrations() []Migration { return append([]Migration(nil), migrations...) }

// Retention is how many days rows are kept, per kind of table.
type Retention struct {
	Logs       int // attempts, executions: the execution logs
	Aggregates int // the per-minute and per-hour aggregates
	DLQ        int // dlq_items
}

// Retention classes of ttlTables.
const (
	retainLogs       = "logs"
	retainAggregates = "aggregates"
	retainDLQ        = "dlq"
)

func (r Retention) days(class string) int {
	switch class {
	case retainLogs:
		return r.Logs
	case retainAggregates:
		return r.Aggregates
	case retainDLQ:
		return r.DLQ
	}
	panic("analytics: unknown retention class " + class)
}

// ttlTables are the tables with TTL retention: the time column rows expire
// by and their retention class.
var ttlTables = map[string]struct{ column, class string }{
	"attempts":      {"started_at", retainLogs},
	"executions":    {"started_at", retainLogs},
	"dlq_items":     {"failed_at", retainDLQ},
	"errors_1m":     {"minute", retainAggregates},
	"dlq_1m":        {"minute", retainAggregates},
	"attempts_1m":   {"minute", retainAggregates},
	"executions_1m": {"minute", retainAggregates},
	"attempts_1h":   {"hour", retainAggregates},
	"executions_1h": {"hour", retainAggregates},
	// migration 3
	"executions_by_time":   {"started_at", retainLogs},
	"executions_status_1h": {"hour", retainAggregates},
	// migration 4
	"latency_1m":         {"minute", retainAggregates},
	"latency_1h":         {"hour", retainAggregates},
	"time_to_success_1m": {"minute", retainAggregates},
	"time_to_success_1h": {"hour", retainAggregates},
	// migration 8
	"latency_hist_1m":         {"minute", retainAggregates},
	"latency_hist_1h":         {"hour", retainAggregates},
	"time_to_success_hist_1m": {"minute", retainAggregates},
	"time_to_success_hist_1h": {"hour", retainAggregates},
}

// Target is what DDL is generated for: a database, optionally on a cluster
// (ON CLUSTER, Replicated engines), with a retention.
type Target struct {
	Database  string
	Cluster   string
	Retention Retention

	// ttlPlaceholders renders TTL clauses as placeholders: for checksums,
	// which must not change with the retention setting.
	ttlPlaceholders bool
}

// On is the statement's ON CLUSTER clause ("" on a single node).
func (t Target) On() string {
	if t.Cluster == "" {
		return ""
	}
	return " ON CLUSTER " + t.Cluster
}

// Table is a table's qualified name.
func (t Target) Table(name string) string { return t.Database + "." + name }

// Engine is a MergeTree-family engine for a table: kind ("ReplacingMergeTree",
// "AggregatingMergeTree"…) with args, or its Replicated form with a
// ZooKeeper path per shard and table on a cluster.
func (t Target) Engine(table, kind string, args ...string) string {
	if t.Cluster != "" {
		args = append([]string{fmt.Sprintf("'/clickhouse/tables/{shard}/%s/%s'", t.Database, table), "'{replica}'"}, args...)
		kind = "Replicated" + kind
	}
	return kind + "(" + strings.Join(args, ", ") + ")"
}

// TTL is a table's TTL clause for the target's retention (ttlTables).
func (t Target) TTL(table string) string {
	spec, ok := ttlTables[table]
	if !ok {
		panic("analytics: table " + table + " is not in ttlTables")
	}
	if t.ttlPlaceholders {
		return "TTL {" + spec.class + "}"
	}
	return ttlClause(spec.column, t.Retention.days(spec.class))
}

func ttlClause(column string, days int) string {
	return fmt.Sprintf("TTL toDateTime(%s) + INTERVAL %d DAY", column, days)
}

// bootstrap creates the database and the table migrations are recorded in
// (replicated like the rest on a cluster, so every replica reads the same
// records).
func bootstrap(t Target) []string {
	return []string{
		"CREATE DATABASE IF NOT EXISTS " + t.Database + t.On(),
		`CREATE TABLE IF NOT EXISTS ` + t.Table("schema_migrations") + t.On() + ` (
			version       UInt32,
			name          String,
			checksum      String,
			breaking      Bool DEFAULT false,
			applied_at    DateTime64(3, 'UTC'),
			applied_by    String
		) ENGINE = ` + t.Engine("schema_migrations", "ReplacingMergeTree", "applied_at") + `
		ORDER BY version`,
	}
}

// Statements is every statement the schema is made of, in order: the
// bootstrap, then each migration's.
func Statements(t Target) []string {
	stmts := bootstrap(t)
	for _, m := range migrations {
		stmts = append(stmts, m.Statements(t)...)
	}
	return stmts
}

// baseSchema is migration 1: the base tables (the log endpoints' source) as
// the first release created them, and the aggregates.
//
// Tables are partitioned by day (month for the DLQ), ordered for the admin
// API's queries, and expire by TTL. Replays of the executions and DLQ topics
// are idempotent: every base table is a ReplacingMergeTree whose sorting key
// identifies the row, and readers use FINAL. ClickHouse ≥ 23.8.
func baseSchema(t Target) []string {
	db, on := t.Database, t.On()
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS ` + db + `.attempts` + on + ` (
			attempt_id    String,
			execution_id  String,
			delivery_id   String,
			pipeline_id   String,
			pipeline_name String,
			trigger_type  LowCardinality(String),
			trigger_id    String,
			event_id      String,
			step_id       String,
			step_name     String,
			step_order    Int64,
			attempt       Int64,
			failover      Bool,
			tier          LowCardinality(String),
			status        LowCardinality(String),
			http_status   Int64,
			latency_ms    Int64,
			error         String,
			request_url   String,
			request_body  String CODEC(ZSTD(3)),
			response_body String CODEC(ZSTD(3)),
			started_at    DateTime64(3, 'UTC'),
			inserted_at   DateTime64(3, 'UTC') DEFAULT now64(3)
		) ENGINE = ` + t.Engine("attempts", "ReplacingMergeTree", "inserted_at") + `
		PARTITION BY toYYYYMMDD(started_at)
		ORDER BY (pipeline_id, started_at, attempt_id)
		` + t.TTL("attempts"),
		`CREATE TABLE IF NOT EXISTS ` + db + `.executions` + on + ` (
			execution_id  String,
			delivery_id   String,
			pipeline_id   String,
			pipeline_name String,
			trigger_type  LowCardinality(String),
			trigger_id    String,
			event_id      String,
			status        LowCardinality(String),
			started_at    DateTime64(3, 'UTC'),
			completed_at  DateTime64(3, 'UTC'),
			seq           Int64
		) ENGINE = ` + t.Engine("executions", "ReplacingMergeTree", "seq") + `
		PARTITION BY toYYYYMMDD(started_at)
		ORDER BY (pipeline_id, execution_id)
		` + t.TTL("executions"),
		`CREATE TABLE IF NOT EXISTS ` + db + `.dlq_items` + on + ` (
			id            String,
			state         LowCardinality(String),
			reason        LowCardinality(String),
			error         String,
			delivery_id   String,
			execution_id  String,
			pipeline_id   String,
			trigger_type  LowCardinality(String),
			trigger_id    String,
			step_order    Int64,
			attempts      Int64,
			failed_at     DateTime64(3, 'UTC'),
			payload       String CODEC(ZSTD(3)),
			source        String CODEC(ZSTD(3)),
			task          String CODEC(ZSTD(3)),
			version       Int64
		) ENGINE = ` + t.Engine("dlq_items", "ReplacingMergeTree", "version") + `
		PARTITION BY toYYYYMM(failed_at)
		ORDER BY id
		` + t.TTL("dlq_items"),
	}
	return append(stmts, aggregateSchema(t)...)
}

// quantileLevels are the rows of the quantile tables: every pipeline, each
// trigger type, each pipeline (and trigger type), each pipeline's steps.
// Each asks for the states of one level only: a day of all pipelines'
// latency is 24 hourly states to merge, not one per pipeline, step,
// trigger type and tier.
const (
	levelAll      = "all"
	levelTrigger  = "trigger"
	levelPipeline = "pipeline"
	levelStep     = "step"
)

// levelKeys is the SQL array of a row's keys (level, pipeline, trigger
// type, step) at each level, its steps' too when withSteps.
func levelKeys(withSteps bool) string {
	steps := ""
	if withSteps {
		steps = `, ('` + levelStep + `', pipeline_id, '', step_id)`
	}
	return `[('` + levelAll + `', '', '', ''), ('` + levelTrigger + `', '', toString(trigger_type), ''),
		('` + levelPipeline + `', pipeline_id, toString(trigger_type), '')` + steps + `]`
}

// quantileSchema is the latency and time-to-success quantile states per
// minute and per hour by level (issue 10: t-digest states are costly to
// merge, so stats merge as few as the question needs; a state is a few
// kilobytes, hence small granules: a range reads little besides its rows). Fed from the feeds
// like the other aggregates (exact under replay); filled once from the
// per-minute/hour aggregates' states when created empty.
func quantileSchema(t Target) []string {
	db, on := t.Database, t.On()
	withSteps, noSteps := levelKeys(true), levelKeys(false)
	var stmts []string
	for _, g := range []struct{ suffix, col, fn string }{{"1m", "minute", "toStartOfMinute"}, {"1h", "hour", "toStartOfHour"}} {
		for _, k := range []struct{ name, src, value, levels string }{
			{"latency", "attempts", "latency_ms, http_status > 0", withSteps},
			{"time_to_success", "executions", "toInt64(dateDiff('millisecond', started_at, completed_at)), status = 'completed'", noSteps},
		} {
			table := db + "." + k.name + "_" + g.suffix
			stmts = append(stmts,
				// quantile states by level
				quantileTable(t, k.name, g.suffix, g.col, "", 256),
				// quantile states by level — from the aggregates' states when created
				`INSERT INTO `+table+`
		SELECT `+g.col+`, k.1 AS level, k.2 AS pipeline_id, k.3 AS trigger_type, k.4 AS step_id, quantilesTDigestMergeState(`+quantileLevels+`)(`+k.name+`)
		FROM (SELECT `+g.col+`, `+k.name+`, arrayJoin(`+k.levels+`) AS k FROM `+db+`.`+k.src+`_`+g.suffix+`
		      WHERE (SELECT count() FROM `+table+`) = 0)
		GROUP BY `+g.col+`, level, pipeline_id, trigger_type, step_id`,
				// quantile states by level — fed like the other aggregates
				`CREATE MATERIALIZED VIEW IF NOT EXISTS `+table+`_mv`+on+` TO `+table+` AS
		SELECT `+g.col+`, k.1 AS level, k.2 AS pipeline_id, k.3 AS trigger_type, k.4 AS step_id,
		       quantilesTDigestStateIf(`+quantileLevels+`)(`+k.value+`) AS `+k.name+`
		FROM (SELECT `+g.fn+`(started_at) AS `+g.col+`, *, arrayJoin(`+k.levels+`) AS k FROM `+db+`.`+k.src+`_feed)
		GROUP BY `+g.col+`, level, pipeline_id, trigger_type, step_id`)
		}
	}
	return stmts
}

// quantileTable is the CREATE of the quantile table kind_suffix (time
// column col) named with the suffix as (its replacement's "_next"), with
// granules of granularity rows.
func quantileTable(t Target, kind, suffix, col, as string, granularity int) string {
	name := kind + "_" + suffix
	return `CREATE TABLE IF NOT EXISTS ` + t.Database + "." + name + as + t.On() + ` (
			` + col + `        DateTime('UTC'),
			level         LowCardinality(String),
			pipeline_id   String,
			trigger_type  LowCardinality(String),
			step_id       String,
			` + kind + `    AggregateFunction(quantilesTDigest(` + quantileLevels + `), Int64)
		) ENGINE = ` + t.Engine(name+as, "AggregatingMergeTree") + `
		PARTITION BY toYYYYMMDD(` + col + `)
		ORDER BY (level, pipeline_id, trigger_type, step_id, ` + col + `)
		` + t.TTL(name) + `
		SETTINGS index_granularity = ` + strconv.Itoa(granularity)
}

// quantileTables are the quantile tables by kind, suffix and time column.
var quantileTables = []struct{ kind, suffix, col string }{
	{"latency", "1m", "minute"}, {"time_to_success", "1m", "minute"},
	{"latency", "1h", "hour"}, {"time_to_success", "1h", "hour"},
}

// quantileGranules is migration 7: the quantile tables with granules of
// 16 rows. A range's edge minutes of one key (level, pipeline, trigger
// type, step) are 30–60 rows, but every 256-row granule holding them was
// read and its t-digest states (~1.5 KB each) decoded: most of a
// percentile part's cost (issue 10; measured on 10 M attempts, the
// pipeline level of 20 pipelines 97 → 51 ms, one pipeline 44 → 20 ms).
// ClickHouse does not change index_granularity by ALTER, so each table is
// made again:
//
//  1. X_next is created empty with the new granules;
//  2. EXCHANGE TABLES X AND X_next (atomic): the view feeding X, which
//     names its target, writes into the new table from that instant — no
//     insert is lost or counted twice;
//  3. the old states are copied into it (AggregatingMergeTree merges them
//     with the new ones);
//  4. X_next (the old table) is dropped.
//
// Each step runs only while it is still to do (quantileGranulesGuard), so
// a migration stopped anywhere converges when it runs again; a stop in the
// middle of step 3 copies the old states again, counting them twice in the
// percentiles of that period (percentiles only: no count reads these
// tables). On a cluster the new tables keep their ZooKeeper paths (…/X_next):
// a later migration making X again must name its new table otherwise.
func quantileGranules(t Target) []string {
	var stmts []string
	for _, q := range quantileTables {
		x := t.Table(q.kind + "_" + q.suffix)
		stmts = append(stmts,
			quantileTable(t, q.kind, q.suffix, q.col, "_next", 16),
			`EXCHANGE TABLES `+x+` AND `+x+`_next`+t.On(),
			`INSERT INTO `+x+` SELECT * FROM `+x+`_next`,
			`DROP TABLE IF EXISTS `+x+`_next`+t.On()+` SYNC`)
	}
	return stmts
}

// quantileGranulesGuard tells whether statement i of quantileGranules is
// still to do, given the database's tables (name → engine_full).
func quantileGranulesGuard(i int, tables map[string]string) bool {
	q := quantileTables[i/4]
	x := q.kind + "_" + q.suffix
	cur, hasCur := tables[x]
	next, hasNext := tables[x+"_next"]
	fine := func(ef string) bool { return strings.Contains(ef, "index_granularity = 16") }
	switch i % 4 {
	case 0: // create X_next
		return hasCur && !fine(cur) && !hasNext
	case 1: // exchange
		return hasCur && !fine(cur) && hasNext && fine(next)
	case 2: // copy the old states
		return hasCur && fine(cur) && hasNext && !fine(next)
	}
	return hasNext && hasCur && fine(cur) // drop the old table
}

// executionsByTimeColumns are executions_by_time's columns by name:
// executions may gain columns this table has not.
const executionsByTimeColumns = "execution_id, delivery_id, pipeline_id, pipeline_name, trigger_type, trigger_id, event_id, status, started_at, completed_at, seq"

// refillExecutionsByTime is migration 5. Migration 3 fills executions_by_time
// from executions before it creates the view that copies each insert: the
// rows another replica's sink inserted meanwhile (a rolling upgrade keeps
// the old replicas' sinks running; the copy of a large table takes minutes)
// reached neither, and the log endpoints, which read only this table, never
// showed those executions or their latest state. With the view in place,
// this copies executions again: a row already there is the same row under
// the same key (ReplacingMergeTree, read with FINAL), so copying twice is
// harmless and nothing inserted during the copy is missed.
func refillExecutionsByTime(t Target) []string {
	return []string{`INSERT INTO ` + t.Table("executions_by_time") + ` (` + executionsByTimeColumns + `) SELECT ` + executionsByTimeColumns + ` FROM ` + t.Table("executions")}
}

// logSchema is what makes the log endpoints fast (issue 10): executions in
// time order, for "newest first", and execution counts by status, for
// their totals. Each statement is idempotent.
//
// executions_by_time holds the rows of executions (a view copies every
// insert) ordered by (started_at, execution_id): an execution keeps its
// started_at in every state, so the key still identifies it and FINAL
// still picks its highest seq, and "newest first" reads only the newest
// granules. executions_status_1h counts executions by the hour they
// started and their current status, from the executions feed (exact under
// replay like the other aggregates): a final state adds one to its status,
// the first "retrying" state one to retrying, a final state after retries
// takes that one back.
//
// Each table is filled once from executions when it is created empty on a
// database that has executions (the view is created after, so rows
// inserted in between are missed; migration 5 copies executions_by_time's
// again once its view exists).
func logSchema(t Target) []string {
	db, on := t.Database, t.On()
	cols := `execution_id  String,
			delivery_id   String,
			pipeline_id   String,
			pipeline_name String,
			trigger_type  LowCardinality(String),
			trigger_id    String,
			event_id      String,
			status        LowCardinality(String),
			started_at    DateTime64(3, 'UTC'),
			completed_at  DateTime64(3, 'UTC'),
			seq           Int64`
	names := executionsByTimeColumns
	statusFromState := `toStartOfHour(started_at) AS hour, pipeline_id, trigger_type, status`
	return []string{
		// executions in time order for the log endpoints
		`CREATE TABLE IF NOT EXISTS ` + db + `.executions_by_time` + on + ` (
			` + cols + `
		) ENGINE = ` + t.Engine("executions_by_time", "ReplacingMergeTree", "seq") + `
		PARTITION BY toYYYYMMDD(started_at)
		ORDER BY (started_at, execution_id)
		` + t.TTL("executions_by_time"),
		// executions in time order — the rows written before the table
		`INSERT INTO ` + db + `.executions_by_time (` + names + `) SELECT ` + names + ` FROM ` + db + `.executions
		WHERE (SELECT count() FROM ` + db + `.executions_by_time) = 0`,
		// executions in time order — every insert copied
		`CREATE MATERIALIZED VIEW IF NOT EXISTS ` + db + `.executions_by_time_mv` + on + ` TO ` + db + `.executions_by_time AS
		SELECT ` + names + ` FROM ` + db + `.executions`,
		// execution counts by status for the log endpoints' totals
		`CREATE TABLE IF NOT EXISTS ` + db + `.executions_status_1h` + on + ` (
			hour          DateTime('UTC'),
			pipeline_id   String,
			trigger_type  LowCardinality(String),
			status        LowCardinality(String),
			executions    SimpleAggregateFunction(sum, Int64)
		) ENGINE = ` + t.Engine("executions_status_1h", "AggregatingMergeTree") + `
		PARTITION BY toYYYYMMDD(hour)
		ORDER BY (hour, pipeline_id, trigger_type, status)
		` + t.TTL("executions_status_1h"),
		// execution counts by status — the executions written before the table
		`INSERT INTO ` + db + `.executions_status_1h
		SELECT ` + statusFromState + `, toInt64(count()) FROM ` + db + `.executions FINAL
		WHERE (SELECT count() FROM ` + db + `.executions_status_1h) = 0
		GROUP BY hour, pipeline_id, trigger_type, status`,
		// execution counts by status — fed like the other aggregates
		`CREATE MATERIALIZED VIEW IF NOT EXISTS ` + db + `.executions_status_1h_mv` + on + ` TO ` + db + `.executions_status_1h AS
		SELECT toStartOfHour(started_at) AS hour, pipeline_id, trigger_type, d.1 AS status, sum(d.2) AS executions
		FROM (SELECT started_at, pipeline_id, trigger_type,
		             arrayJoin([(status, toInt64(status != 'retrying' OR first_retry)),
		                        ('retrying', -toInt64(status != 'retrying' AND retried))]) AS d
		      FROM ` + db + `.executions_feed)
		WHERE d.2 != 0
		GROUP BY hour, pipeline_id, trigger_type, status`,
	}
}

// quantileLevels are the latency and time-to-success percentiles kept.
const quantileLevels = "0.5, 0.95, 0.99"

// aggregateSchema is the per-minute aggregates (DESIGN.md §6, issue 10).
//
// The sink writes every row to the base tables (the log endpoints' source,
// idempotent by ReplacingMergeTree) and, once, to a feed: a Null-engine
// table whose materialized views fill the aggregates. A feed row carries the
// Kafka topic, partition and offset it was read from, and a view of each feed
// keeps the highest offset fed per partition (sink_offsets) — written by the
// same INSERT as the aggregates it guards. Before feeding a batch the store
// drops the rows at or below that mark, so a batch replayed after a crash
// (inserted, not committed) reaches the base tables again but the aggregates
// not: sums stay exact, with no FINAL and no uniqExact at read time.
func aggregateSchema(t Target) []string {
	db, on := t.Database, t.On()
	engine := func(name, kind string) string { return t.Engine(name, kind) }
	src := `,
			src_topic     String,
			src_partition Int32,
			src_offset    Int64`
	sum := "SimpleAggregateFunction(sum, UInt64)"
	q := "AggregateFunction(quantilesTDigest(" + quantileLevels + "), Int64)"
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS ` + db + `.attempts_feed` + on + ` (
			pipeline_id   String,
			trigger_type  LowCardinality(String),
			step_id       String,
			attempt       Int64,
			failover      Bool,
			tier          LowCardinality(String),
			status        LowCardinality(String),
			http_status   Int64,
			latency_ms    Int64,
			error         String,
			started_at    DateTime64(3, 'UTC')` + src + `
		) ENGINE = Null`,
		`CREATE TABLE IF NOT EXISTS ` + db + `.executions_feed` + on + ` (
			pipeline_id   String,
			trigger_type  LowCardinality(String),
			status        LowCardinality(String),
			started_at    DateTime64(3, 'UTC'),
			completed_at  DateTime64(3, 'UTC'),
			first_retry   Bool DEFAULT false,
			retried       Bool DEFAULT false` + src + `
		) ENGINE = Null`,
		`CREATE TABLE IF NOT EXISTS ` + db + `.dlq_feed` + on + ` (
			pipeline_id   String,
			trigger_type  LowCardinality(String),
			state         LowCardinality(String),
			reason        LowCardinality(String),
			failed_at     DateTime64(3, 'UTC')` + src + `
		) ENGINE = Null`,
		`CREATE TABLE IF NOT EXISTS ` + db + `.sink_offsets` + on + ` (
			feed          LowCardinality(String),
			topic         String,
			partition     Int32,
			offset        SimpleAggregateFunction(max, Int64)
		) ENGINE = ` + engine("sink_offsets", "AggregatingMergeTree") + `
		ORDER BY (feed, topic, partition)`,
		`CREATE TABLE IF NOT EXISTS ` + db + `.errors_1m` + on + ` (
			minute        DateTime('UTC'),
			pipeline_id   String,
			step_id       String,
			trigger_type  LowCardinality(String),
			error         String,
			count         ` + sum + `
		) ENGINE = ` + engine("errors_1m", "AggregatingMergeTree") + `
		PARTITION BY toYYYYMMDD(minute)
		ORDER BY (minute, pipeline_id, step_id, trigger_type, error)
		` + t.TTL("errors_1m"),
		`CREATE MATERIALIZED VIEW IF NOT EXISTS ` + db + `.errors_1m_mv` + on + ` TO ` + db + `.errors_1m AS
		SELECT toStartOfMinute(started_at) AS minute, pipeline_id, step_id, trigger_type, error, toUInt64(count()) AS count
		FROM ` + db + `.attempts_feed WHERE status = 'failed' AND error != ''
		GROUP BY minute, pipeline_id, step_id, trigger_type, error`,
		`CREATE TABLE IF NOT EXISTS ` + db + `.dlq_1m` + on + ` (
			minute        DateTime('UTC'),
			pipeline_id   String,
			trigger_type  LowCardinality(String),
			reason        LowCardinality(String),
			dead          ` + sum + `
		) ENGINE = ` + engine("dlq_1m", "AggregatingMergeTree") + `
		PARTITION BY toYYYYMMDD(minute)
		ORDER BY (minute, pipeline_id, trigger_type, reason)
		` + t.TTL("dlq_1m"),
		`CREATE MATERIALIZED VIEW IF NOT EXISTS ` + db + `.dlq_1m_mv` + on + ` TO ` + db + `.dlq_1m AS
		SELECT toStartOfMinute(failed_at) AS minute, pipeline_id, trigger_type, reason, toUInt64(count()) AS dead
		FROM ` + db + `.dlq_feed WHERE state = 'dead'
		GROUP BY minute, pipeline_id, trigger_type, reason`,
	}
	// Attempts and executions per minute (time series, range edges) and
	// per hour (the whole hours of a range: 60 times fewer states to merge).
	for _, g := range []struct{ suffix, col, fn string }{
		{"1m", "minute", "toStartOfMinute"},
		{"1h", "hour", "toStartOfHour"},
	} {
		stmts = append(stmts, []string{
			// One row per minute (hour), pipeline, step, trigger type and tier.
			`CREATE TABLE IF NOT EXISTS ` + db + `.attempts_` + g.suffix + on + ` (
			` + g.col + `        DateTime('UTC'),
			pipeline_id   String,
			step_id       String,
			trigger_type  LowCardinality(String),
			tier          LowCardinality(String),
			attempts      ` + sum + `,
			step_runs     ` + sum + `, -- first attempts: a step of an execution
			successful    ` + sum + `,
			failed        ` + sum + `,
			retries       ` + sum + `, -- attempts after the first, failover included
			latency_n     ` + sum + `,
			latency_sum   ` + sum + `,
			latency       ` + q + `
		) ENGINE = ` + engine("attempts_"+g.suffix, "AggregatingMergeTree") + `
		PARTITION BY toYYYYMMDD(` + g.col + `)
		ORDER BY (` + g.col + `, pipeline_id, step_id, trigger_type, tier)
		` + t.TTL("attempts_"+g.suffix),
			`CREATE MATERIALIZED VIEW IF NOT EXISTS ` + db + `.attempts_` + g.suffix + `_mv` + on + ` TO ` + db + `.attempts_` + g.suffix + ` AS
		SELECT ` + g.fn + `(started_at) AS ` + g.col + `, pipeline_id, step_id, trigger_type, tier,
		       toUInt64(count()) AS attempts,
		       toUInt64(countIf(attempt = 0 AND NOT failover)) AS step_runs,
		       toUInt64(countIf(status = 'success')) AS successful,
		       toUInt64(countIf(status = 'failed')) AS failed,
		       toUInt64(countIf(attempt > 0 OR failover)) AS retries,
		       toUInt64(countIf(http_status > 0)) AS latency_n,
		       toUInt64(sumIf(latency_ms, http_status > 0)) AS latency_sum,
		       quantilesTDigestStateIf(` + quantileLevels + `)(latency_ms, http_status > 0) AS latency
		FROM ` + db + `.attempts_feed
		GROUP BY ` + g.col + `, pipeline_id, step_id, trigger_type, tier`,
			// Executions by the minute (hour) they started; a final state row counts
			// once (retrying rows count retries scheduled).
			`CREATE TABLE IF NOT EXISTS ` + db + `.executions_` + g.suffix + on + ` (
			` + g.col + `        DateTime('UTC'),
			pipeline_id   String,
			trigger_type  LowCardinality(String),
			finished      ` + sum + `,
			successful    ` + sum + `,
			failed        ` + sum + `, -- failed or partial
			cancelled     ` + sum + `,
			retrying      ` + sum + `,
			retries_opened ` + sum + `, -- executions that went into retry
			retried_closed ` + sum + `, -- … and have since ended
			last_started  SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
			time_to_success ` + q + `
		) ENGINE = ` + engine("executions_"+g.suffix, "AggregatingMergeTree") + `
		PARTITION BY toYYYYMMDD(` + g.col + `)
		ORDER BY (` + g.col + `, pipeline_id, trigger_type)
		` + t.TTL("executions_"+g.suffix),
			`CREATE MATERIALIZED VIEW IF NOT EXISTS ` + db + `.executions_` + g.suffix + `_mv` + on + ` TO ` + db + `.executions_` + g.suffix + ` AS
		SELECT ` + g.fn + `(started_at) AS ` + g.col + `, pipeline_id, trigger_type,
		       toUInt64(countIf(status != 'retrying')) AS finished,
		       toUInt64(countIf(status = 'completed')) AS successful,
		       toUInt64(countIf(status IN ('failed', 'partial'))) AS failed,
		       toUInt64(countIf(status = 'cancelled')) AS cancelled,
		       toUInt64(countIf(status = 'retrying')) AS retrying,
		       toUInt64(countIf(status = 'retrying' AND first_retry)) AS retries_opened,
		       toUInt64(countIf(status != 'retrying' AND retried)) AS retried_closed,
		       max(started_at) AS last_started,
		       quantilesTDigestStateIf(` + quantileLevels + `)(toInt64(dateDiff('millisecond', started_at, completed_at)), status = 'completed') AS time_to_success
		FROM ` + db + `.executions_feed
		GROUP BY ` + g.col + `, pipeline_id, trigger_type`,
		}...)
	}
	// The high-water marks, one view per feed (each has its own: the
	// attempts and executions feeds read the same partitions).
	for _, feed := range []string{"attempts", "executions", "dlq"} {
		stmts = append(stmts, `CREATE MATERIALIZED VIEW IF NOT EXISTS `+db+`.sink_offsets_`+feed+`_mv`+on+` TO `+db+`.sink_offsets AS
		SELECT '`+feed+`' AS feed, src_topic AS topic, src_partition AS partition, max(src_offset) AS offset
		FROM `+db+`.`+feed+`_feed WHERE src_topic != ''
		GROUP BY topic, partition`)
	}
	return stmts
}

// fedKeysSchema is migration 6: what keeps a redelivered execution from
// being counted twice. After a crash, a source event whose offset was not
// committed is delivered again: its execution writes its states again at
// new offsets of the executions topic (same execution and attempt ids), so
// the feeds' high-water marks, which only catch the sink's own replays, let
// them through, and every aggregate counted those executions, attempts and
// DLQ items twice while the logs (FINAL by id) list each once.
//
// Each feed row that counts something once per id carries fed_key, the
// hash of a key (feedKeyHash: 63 bits of SHA-256; 0 for none): the
// attempt's id, the execution's id with its final state or its first
// "retrying" state, the DLQ item's id when it goes dead. A view of the same
// feed INSERT records it in fed_keys with the row's partition and the time,
// so a key is recorded if and only if its row was fed. The store remembers
// the keys fed in the last dedup window (WEBHOOKD_ANALYTICS_DEDUP_WINDOW,
// recentKeys), reading a partition's back from fed_keys the first time it
// feeds it, and leaves out a row whose key it holds (Store.Feed): a
// redelivery comes within moments of its first delivery, so the window
// bounds the memory, and the hot path makes no lookup. fed_keys is read
// only for the window, so it keeps a day.
func fedKeysSchema(t Target) []string {
	db, on := t.Database, t.On()
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS ` + db + `.fed_keys` + on + ` (
			topic      String,
			partition  Int32,
			at         DateTime('UTC'),
			h          UInt64
		) ENGINE = ` + t.Engine("fed_keys", "MergeTree") + `
		PARTITION BY toYYYYMMDD(at)
		ORDER BY (topic, partition, at)
		TTL at + INTERVAL 1 DAY`,
	}
	for _, f := range []string{"attempts", "executions", "dlq"} {
		stmts = append(stmts,
			`ALTER TABLE `+db+`.`+f+`_feed`+on+` ADD COLUMN IF NOT EXISTS fed_key UInt64 DEFAULT 0`,
			`CREATE MATERIALIZED VIEW IF NOT EXISTS `+db+`.fed_keys_`+f+`_mv`+on+` TO `+db+`.fed_keys AS
		SELECT src_topic AS topic, src_partition AS partition, now() AS at, fed_key AS h FROM `+db+`.`+f+`_feed WHERE fed_key != 0`)
	}
	return stmts
}
