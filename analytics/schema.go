package analytics

import (
	"fmt"
	"strings"
)

// Schema returns the DDL, in order. With a cluster, statements run ON
// CLUSTER and tables use Replicated engines. Tables are partitioned by day
// (month for the DLQ), ordered for the admin API's queries, and expire by TTL.
//
// Replays of the executions and DLQ topics are idempotent: every table is a
// ReplacingMergeTree whose sorting key identifies the row, and readers use
// FINAL. ClickHouse ≥ 23.8.
func Schema(db, cluster string, ttlDays int) []string {
	on := ""
	if cluster != "" {
		on = " ON CLUSTER " + cluster
	}
	engine := func(name, version string) string {
		if cluster != "" {
			return fmt.Sprintf("ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/%s/%s', '{replica}', %s)", db, name, version)
		}
		return "ReplacingMergeTree(" + version + ")"
	}
	ttl := fmt.Sprintf("TTL toDateTime(%%s) + INTERVAL %d DAY", ttlDays)
	stmts := []string{
		"CREATE DATABASE IF NOT EXISTS " + db + on,
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
		) ENGINE = ` + engine("attempts", "inserted_at") + `
		PARTITION BY toYYYYMMDD(started_at)
		ORDER BY (pipeline_id, started_at, attempt_id)
		` + fmt.Sprintf(ttl, "started_at"),
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
		) ENGINE = ` + engine("executions", "seq") + `
		PARTITION BY toYYYYMMDD(started_at)
		ORDER BY (pipeline_id, execution_id)
		` + fmt.Sprintf(ttl, "started_at"),
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
			payload_truncated Bool DEFAULT false,
			version       Int64
		) ENGINE = ` + engine("dlq_items", "version") + `
		PARTITION BY toYYYYMM(failed_at)
		ORDER BY id
		` + fmt.Sprintf(ttl, "failed_at") + ` + INTERVAL 60 DAY`,
		// Added after the first release: tables created before it gain it.
		`ALTER TABLE ` + db + `.dlq_items` + on + ` ADD COLUMN IF NOT EXISTS payload_truncated Bool DEFAULT false AFTER task`,
	}
	stmts = append(stmts, aggregateSchema(db, on, cluster, ttlDays)...)
	stmts = append(stmts, logSchema(db, on, cluster, ttl)...)
	return append(stmts, quantileSchema(db, on, cluster, ttlDays)...)
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

// quantileSchema is the latency and time-to-success quantile states per
// minute and per hour by level (issue 10: t-digest states are costly to
// merge, so stats merge as few as the question needs; a state is a few
// kilobytes, hence small granules: a range reads little besides its rows). Fed from the feeds
// like the other aggregates (exact under replay); filled once from the
// per-minute/hour aggregates' states when created empty.
func quantileSchema(db, on, cluster string, ttlDays int) []string {
	engine := func(name string) string {
		if cluster != "" {
			return fmt.Sprintf("ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/%s/%s', '{replica}')", db, name)
		}
		return "AggregatingMergeTree()"
	}
	state := "AggregateFunction(quantilesTDigest(" + quantileLevels + "), Int64)"
	levels := `[('` + levelAll + `', '', '', ''), ('` + levelTrigger + `', '', toString(trigger_type), ''),
		('` + levelPipeline + `', pipeline_id, toString(trigger_type), '')%s]`
	withSteps := fmt.Sprintf(levels, `, ('`+levelStep+`', pipeline_id, '', step_id)`)
	noSteps := fmt.Sprintf(levels, "")
	var stmts []string
	for _, g := range []struct{ suffix, col, fn string }{{"1m", "minute", "toStartOfMinute"}, {"1h", "hour", "toStartOfHour"}} {
		for _, k := range []struct{ name, src, value, levels string }{
			{"latency", "attempts", "latency_ms, http_status > 0", withSteps},
			{"time_to_success", "executions", "toInt64(dateDiff('millisecond', started_at, completed_at)), status = 'completed'", noSteps},
		} {
			table := db + "." + k.name + "_" + g.suffix
			stmts = append(stmts,
				// migration: quantile states by level
				`CREATE TABLE IF NOT EXISTS `+table+on+` (
			`+g.col+`        DateTime('UTC'),
			level         LowCardinality(String),
			pipeline_id   String,
			trigger_type  LowCardinality(String),
			step_id       String,
			`+k.name+`    `+state+`
		) ENGINE = `+engine(k.name+"_"+g.suffix)+`
		PARTITION BY toYYYYMMDD(`+g.col+`)
		ORDER BY (level, pipeline_id, trigger_type, step_id, `+g.col+`)
		`+fmt.Sprintf("TTL toDateTime(%s) + INTERVAL %d DAY", g.col, ttlDays)+`
		SETTINGS index_granularity = 256`,
				// migration: quantile states by level — from the aggregates' states when created
				`INSERT INTO `+table+`
		SELECT `+g.col+`, k.1 AS level, k.2 AS pipeline_id, k.3 AS trigger_type, k.4 AS step_id, quantilesTDigestMergeState(`+quantileLevels+`)(`+k.name+`)
		FROM (SELECT `+g.col+`, `+k.name+`, arrayJoin(`+k.levels+`) AS k FROM `+db+`.`+k.src+`_`+g.suffix+`
		      WHERE (SELECT count() FROM `+table+`) = 0)
		GROUP BY `+g.col+`, level, pipeline_id, trigger_type, step_id`,
				// migration: quantile states by level — fed like the other aggregates
				`CREATE MATERIALIZED VIEW IF NOT EXISTS `+table+`_mv`+on+` TO `+table+` AS
		SELECT `+g.col+`, k.1 AS level, k.2 AS pipeline_id, k.3 AS trigger_type, k.4 AS step_id,
		       quantilesTDigestStateIf(`+quantileLevels+`)(`+k.value+`) AS `+k.name+`
		FROM (SELECT `+g.fn+`(started_at) AS `+g.col+`, *, arrayJoin(`+k.levels+`) AS k FROM `+db+`.`+k.src+`_feed)
		GROUP BY `+g.col+`, level, pipeline_id, trigger_type, step_id`)
		}
	}
	return stmts
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
// inserted in between are missed: run migrations before the sink starts).
func logSchema(db, on, cluster, ttl string) []string {
	engine := func(name, kind, version string) string {
		if cluster != "" {
			return fmt.Sprintf("Replicated%s('/clickhouse/tables/{shard}/%s/%s', '{replica}'%s)", kind, db, name, version)
		}
		return kind + "(" + strings.TrimPrefix(version, ", ") + ")"
	}
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
	// The columns by name: executions may gain columns this table has not.
	names := "execution_id, delivery_id, pipeline_id, pipeline_name, trigger_type, trigger_id, event_id, status, started_at, completed_at, seq"
	statusFromState := `toStartOfHour(started_at) AS hour, pipeline_id, trigger_type, status`
	return []string{
		// migration: executions in time order for the log endpoints
		`CREATE TABLE IF NOT EXISTS ` + db + `.executions_by_time` + on + ` (
			` + cols + `
		) ENGINE = ` + engine("executions_by_time", "ReplacingMergeTree", ", seq") + `
		PARTITION BY toYYYYMMDD(started_at)
		ORDER BY (started_at, execution_id)
		` + fmt.Sprintf(ttl, "started_at"),
		// migration: executions in time order — the rows written before the table
		`INSERT INTO ` + db + `.executions_by_time (` + names + `) SELECT ` + names + ` FROM ` + db + `.executions
		WHERE (SELECT count() FROM ` + db + `.executions_by_time) = 0`,
		// migration: executions in time order — every insert copied
		`CREATE MATERIALIZED VIEW IF NOT EXISTS ` + db + `.executions_by_time_mv` + on + ` TO ` + db + `.executions_by_time AS
		SELECT ` + names + ` FROM ` + db + `.executions`,
		// migration: execution counts by status for the log endpoints' totals
		`CREATE TABLE IF NOT EXISTS ` + db + `.executions_status_1h` + on + ` (
			hour          DateTime('UTC'),
			pipeline_id   String,
			trigger_type  LowCardinality(String),
			status        LowCardinality(String),
			executions    SimpleAggregateFunction(sum, Int64)
		) ENGINE = ` + engine("executions_status_1h", "AggregatingMergeTree", "") + `
		PARTITION BY toYYYYMMDD(hour)
		ORDER BY (hour, pipeline_id, trigger_type, status)
		` + fmt.Sprintf(ttl, "hour"),
		// migration: execution counts by status — the executions written before the table
		`INSERT INTO ` + db + `.executions_status_1h
		SELECT ` + statusFromState + `, toInt64(count()) FROM ` + db + `.executions FINAL
		WHERE (SELECT count() FROM ` + db + `.executions_status_1h) = 0
		GROUP BY hour, pipeline_id, trigger_type, status`,
		// migration: execution counts by status — fed like the other aggregates
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
func aggregateSchema(db, on, cluster string, ttlDays int) []string {
	engine := func(name, kind string) string {
		if cluster != "" {
			return fmt.Sprintf("Replicated%s('/clickhouse/tables/{shard}/%s/%s', '{replica}')", kind, db, name)
		}
		return kind + "()"
	}
	ttl := fmt.Sprintf("TTL toDateTime(minute) + INTERVAL %d DAY", ttlDays)
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
		` + ttl,
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
		` + ttl,
		`CREATE MATERIALIZED VIEW IF NOT EXISTS ` + db + `.dlq_1m_mv` + on + ` TO ` + db + `.dlq_1m AS
		SELECT toStartOfMinute(failed_at) AS minute, pipeline_id, trigger_type, reason, toUInt64(count()) AS dead
		FROM ` + db + `.dlq_feed WHERE state = 'dead'
		GROUP BY minute, pipeline_id, trigger_type, reason`,
	}
	// Attempts and executions per minute (time series, range edges) and
	// per hour (the whole hours of a range: 60 times fewer states to merge).
	for _, g := range []struct{ suffix, col, fn, ttl string }{
		{"1m", "minute", "toStartOfMinute", ttl},
		{"1h", "hour", "toStartOfHour", strings.Replace(ttl, "minute", "hour", 1)},
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
		` + g.ttl,
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
		` + g.ttl,
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
