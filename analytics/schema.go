package analytics

import "fmt"

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
	return stmts
}
