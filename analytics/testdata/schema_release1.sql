-- The schema of webhookd's first release (database webhookd, 30 days): no
-- schema_migrations, no aggregates, dlq_items without payload_truncated.
-- TestMigrateAdoptsTheFirstReleasesDatabase migrates it with data in it.

CREATE DATABASE IF NOT EXISTS webhookd;

CREATE TABLE IF NOT EXISTS webhookd.attempts (
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
		) ENGINE = ReplacingMergeTree(inserted_at)
		PARTITION BY toYYYYMMDD(started_at)
		ORDER BY (pipeline_id, started_at, attempt_id)
		TTL toDateTime(started_at) + INTERVAL 30 DAY;

CREATE TABLE IF NOT EXISTS webhookd.executions (
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
		) ENGINE = ReplacingMergeTree(seq)
		PARTITION BY toYYYYMMDD(started_at)
		ORDER BY (pipeline_id, execution_id)
		TTL toDateTime(started_at) + INTERVAL 30 DAY;

CREATE TABLE IF NOT EXISTS webhookd.dlq_items (
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
		) ENGINE = ReplacingMergeTree(version)
		PARTITION BY toYYYYMM(failed_at)
		ORDER BY id
		TTL toDateTime(failed_at) + INTERVAL 30 DAY + INTERVAL 60 DAY;
