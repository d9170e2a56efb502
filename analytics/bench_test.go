package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/afftok/webhookd/delivery"
)

// BenchmarkStatsQueries loads WEBHOOKD_BENCH_STATS_ATTEMPTS attempt rows
// (with the matching executions and DLQ items, over the last 24 hours,
// 20 pipelines of two steps) into chDB and times the queries behind
// /stats, /stats/timeseries, the pipeline list and detail, logs/recent and
// logs/failures, reporting each one's median. It runs only when the
// variable is set (`make bench-stats`: 10,000,000).
//
// The bulk load is generated in ClickHouse (INSERT … SELECT FROM numbers)
// into the base tables and the feeds, so it measures what ClickHouse does
// with the rows: parts, sorting, the views and their aggregates. The
// sink's own path (records as JSON through Store.Write, high-water marks
// included) is timed separately on 200,000 attempts.
func BenchmarkStatsQueries(b *testing.B) {
	n, _ := strconv.Atoi(os.Getenv("WEBHOOKD_BENCH_STATS_ATTEMPTS"))
	if n <= 0 {
		b.Skip("set WEBHOOKD_BENCH_STATS_ATTEMPTS (make bench-stats)")
	}
	dir := os.Getenv("WEBHOOKD_BENCH_STATS_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	s, err := OpenChDB(FindChDB(), filepath.Join(dir, "ch"), Options{Database: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Minute)
	t0 := now.Add(-24 * time.Hour)
	// A kept directory (WEBHOOKD_BENCH_STATS_DIR) whose data was loaded
	// with the same size and schema is reused, timed from the moment it
	// was loaded: only the queries run.
	key := benchKey(n, s.db)
	if at, ok := loadedBefore(ctx, s, key); ok {
		now, t0 = at, at.Add(-24*time.Hour)
		b.Logf("reusing the %d attempts loaded in %s at %s", n, dir, now.Format(time.RFC3339))
	} else if at, ok := loadedBefore(ctx, s, fmt.Sprintf("%d/", n)); ok {
		// Loaded with an older schema: the new migrations apply to it as
		// on a production database (their fills timed), then it is reused.
		start := time.Now()
		if err := s.Migrate(ctx); err != nil {
			b.Fatal(err)
		}
		b.Logf("migrated the %d attempts loaded in %s at %s to this schema in %s", n, dir, at.Format(time.RFC3339), time.Since(start).Round(time.Millisecond))
		if err := markLoaded(ctx, s, key, at); err != nil {
			b.Fatal(err)
		}
		now, t0 = at, at.Add(-24*time.Hour)
	} else {
		if err := s.b.exec(ctx, "DROP DATABASE IF EXISTS bench", nil); err != nil {
			b.Fatal(err)
		}
		if err := s.Migrate(ctx); err != nil {
			b.Fatal(err)
		}
		rows, elapsed, err := loadSynthetic(ctx, s, n, t0)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("loaded %d attempts and %d execution, DLQ and feed rows in all: %d rows in %s = %.0f rows/s (%.0f attempts/s)",
			n, rows-int64(n), rows, elapsed.Round(time.Millisecond), float64(rows)/elapsed.Seconds(), float64(n)/elapsed.Seconds())
		b.ReportMetric(float64(rows)/elapsed.Seconds(), "load-rows/s")
		if rate, err := writeRate(ctx, s, 200_000, t0); err != nil {
			b.Fatal(err)
		} else {
			b.Logf("Store.Write (sink path, JSON records): %.0f attempts/s", rate)
			b.ReportMetric(rate, "write-attempts/s")
		}
		if err := s.b.exec(ctx, "OPTIMIZE TABLE bench.attempts_1m FINAL", nil); err != nil {
			b.Logf("optimize: %v", err) // merged or not, the queries are the same
		}
		if err := markLoaded(ctx, s, key, now); err != nil {
			b.Fatal(err)
		}
	}

	day := Range{From: t0, To: now}
	pipes := make([]string, 20)
	for i := range pipes {
		pipes[i] = fmt.Sprintf("pipe_%d", i)
	}
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	queries := []struct {
		name string
		run  func() error
	}{
		{"stats_24h", func() error { _, err := s.Stats(ctx, day); return err }},
		{"stats_today", func() error { _, err := s.Stats(ctx, Range{From: midnight, To: now}); return err }},
		{"stats_24h_one_pipeline", func() error { _, err := s.Stats(ctx, Range{From: t0, To: now, PipelineID: "pipe_3"}); return err }},
		{"timeseries_1m_24h", func() error { _, err := s.TimeSeries(ctx, day, time.Minute); return err }},
		{"timeseries_5m_24h_one_pipeline", func() error {
			_, err := s.TimeSeries(ctx, Range{From: t0, To: now, PipelineID: "pipe_3"}, 5*time.Minute)
			return err
		}},
		{"pipeline_list_20_with_stats", func() error { _, err := s.PipelineStats(ctx, pipes, day); return err }},
		{"pipeline_detail", func() error {
			_, _, err := s.PipelineDetailStats(ctx, "pipe_3", day)
			return err
		}},
		{"logs_recent", func() error { _, _, err := s.RecentExecutions(ctx, ExecutionFilter{Limit: 20}); return err }},
		{"logs_recent_pipeline_trigger", func() error {
			_, _, err := s.RecentExecutions(ctx, ExecutionFilter{PipelineID: "pipe_3", TriggerType: "click", Limit: 20, Offset: 40})
			return err
		}},
		{"logs_failures", func() error {
			_, _, err := s.RecentExecutions(ctx, ExecutionFilter{Statuses: []string{delivery.ExecFailed, delivery.ExecPartial, delivery.ExecRetrying}, Limit: 20})
			return err
		}},
		{"logs_failures_pipeline", func() error {
			_, _, err := s.RecentExecutions(ctx, ExecutionFilter{PipelineID: "pipe_4", Statuses: []string{delivery.ExecFailed}, Limit: 20})
			return err
		}},
	}
	// Runs per query (WEBHOOKD_BENCH_STATS_RUNS, default 5). Beside the
	// wall time, the process's CPU time: on a shared machine other
	// tenants disturb it less.
	runs := 5
	if n, err := strconv.Atoi(os.Getenv("WEBHOOKD_BENCH_STATS_RUNS")); err == nil && n > 0 {
		runs = n
	}
	b.ResetTimer()
	for _, q := range queries {
		b.Run(q.name, func(b *testing.B) {
			var ds, cpu []time.Duration
			for range runs {
				start, c := time.Now(), processCPU()
				if err := q.run(); err != nil {
					b.Fatal(err)
				}
				ds, cpu = append(ds, time.Since(start)), append(cpu, processCPU()-c)
			}
			sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
			sort.Slice(cpu, func(i, j int) bool { return cpu[i] < cpu[j] })
			med := ds[runs/2]
			b.ReportMetric(float64(med.Microseconds())/1000, "median-ms")
			b.ReportMetric(float64(ds[runs-1].Microseconds())/1000, "max-ms")
			b.ReportMetric(float64(cpu[runs/2].Microseconds())/1000, "cpu-median-ms")
			b.Logf("%s: median %s, min %s, max %s; CPU median %s", q.name, med.Round(100*time.Microsecond), ds[0].Round(100*time.Microsecond),
				ds[runs-1].Round(100*time.Microsecond), cpu[runs/2].Round(100*time.Microsecond))
		})
	}
}

// benchKey identifies a load: its size and the schema it was loaded with.
func benchKey(n int, db string) string {
	h := fnv.New64a()
	for _, stmt := range Statements(Target{Database: db, Retention: Retention{Logs: 30, Aggregates: 30, DLQ: 90}}) {
		h.Write([]byte(stmt))
	}
	return fmt.Sprintf("%d/%x", n, h.Sum64())
}

// loadedBefore reports when the data of key was loaded into s, if it was;
// a key ending in "/" is a size, whatever the schema.
func loadedBefore(ctx context.Context, s *Store, key string) (time.Time, bool) {
	rows, err := s.b.query(ctx, "SELECT toUnixTimestamp(max(loaded_at)) FROM "+s.t("bench_loaded")+`
		WHERE if(endsWith({key:String}, '/'), startsWith(key, {key:String}), key = {key:String}) HAVING count() > 0`, Params{"key": key})
	if err != nil || len(rows) != 1 {
		return time.Time{}, false
	}
	return time.Unix(asInt(rows[0][0]), 0).UTC(), true
}

func markLoaded(ctx context.Context, s *Store, key string, at time.Time) error {
	if err := s.b.exec(ctx, "CREATE TABLE IF NOT EXISTS "+s.t("bench_loaded")+" (key String, loaded_at DateTime('UTC')) ENGINE = MergeTree ORDER BY key", nil); err != nil {
		return err
	}
	return s.b.exec(ctx, "INSERT INTO "+s.t("bench_loaded")+" VALUES ({key:String}, toDateTime({at:Int64}, 'UTC'))", Params{"key": key, "at": at.Unix()})
}

// loadSynthetic generates n attempts: 0.4n executions of 20 pipelines over
// the 24 hours from t0, each with two steps; every fourth execution's first
// step fails (HTTP 500) and is retried twice (HTTP 503, then success —
// every sixteenth fails again and goes to the DLQ). The last executions
// with retries are left retrying. Returns the rows written (base tables
// and feeds).
func loadSynthetic(ctx context.Context, s *Store, n int, t0 time.Time) (int64, time.Duration, error) {
	e := int64(n) * 2 / 5
	n64 := int64(e*2 + e/2)
	spacing := float64(24*time.Hour/time.Millisecond) / float64(e)
	vars := strings.NewReplacer("{E}", strconv.FormatInt(e, 10), "{N}", strconv.FormatInt(n64, 10),
		"{T0}", strconv.FormatInt(t0.UnixMilli(), 10), "{SP}", strconv.FormatFloat(spacing, 'f', 6, 64), "{DB}", s.db)
	attemptsSel := `
		SELECT n, i, step, att,
		       concat('pipe_', toString(i % 20)) AS pipeline_id,
		       ['click', 'conversion', 'postback'][(i % 20) % 3 + 1] AS trigger_type,
		       concat(pipeline_id, '_s', toString(step)) AS step_id,
		       multiIf(att = 0 AND step = 0 AND i % 4 = 0, 'failed', att = 1, 'failed', att = 2 AND i % 16 = 0, 'failed', 'success') AS status,
		       if(status = 'failed', if(att = 0, 500, 503), 200) AS http_status,
		       if(status = 'failed', concat('HTTP ', toString(http_status)), '') AS error,
		       toInt64(20 + cityHash64(n) % 480) AS latency_ms,
		       fromUnixTimestamp64Milli(toInt64({T0} + i * {SP} + step * 600 + att * 5000), 'UTC') AS started_at,
		       multiIf(att = 0, '', att = 1, '5s', '1m') AS tier
		FROM (SELECT number AS n,
		             if(n < {E} * 2, intDiv(n, 2), 4 * intDiv(n - {E} * 2, 2)) AS i,
		             if(n < {E} * 2, n % 2, 0) AS step,
		             if(n < {E} * 2, 0, 1 + (n - {E} * 2) % 2) AS att
		      FROM numbers({N}))`
	execSel := `
		SELECT m, i,
		       concat('pipe_', toString(i % 20)) AS pipeline_id,
		       ['click', 'conversion', 'postback'][(i % 20) % 3 + 1] AS trigger_type,
		       if(m >= {E}, 'retrying', if(i % 16 = 0, 'failed', 'completed')) AS status,
		       fromUnixTimestamp64Milli(toInt64({T0} + i * {SP}), 'UTC') AS started_at,
		       if(status = 'retrying', toDateTime64(0, 3, 'UTC'), started_at + toIntervalMillisecond(if(i % 4 = 0, 10000, 0) + 400 + cityHash64(i) % 600)) AS completed_at,
		       toInt64(if(m >= {E}, 1 + (m - {E}) % 2, 3)) AS seq
		FROM (SELECT number AS m, if(m < {E}, m, 4 * intDiv(m - {E}, 2)) AS i FROM numbers({E} + {E} / 2))
		WHERE NOT (m < {E} AND i % 4 = 0 AND i >= {E} - 4000)`
	dlqSel := `
		SELECT concat('dlq_', toString(i)) AS id, concat('pipe_', toString(i % 20)) AS pipeline_id,
		       ['click', 'conversion', 'postback'][(i % 20) % 3 + 1] AS trigger_type,
		       fromUnixTimestamp64Milli(toInt64({T0} + i * {SP} + 11000), 'UTC') AS failed_at
		FROM (SELECT number * 16 AS i FROM numbers(intDiv({E}, 16)))`
	stmts := []string{
		`INSERT INTO {DB}.attempts (attempt_id, execution_id, delivery_id, pipeline_id, pipeline_name, trigger_type, trigger_id, event_id, step_id, step_name,
			step_order, attempt, failover, tier, status, http_status, latency_ms, error, request_url, request_body, response_body, started_at)
		SELECT concat('att_', toString(n)), concat('exec_', toString(i)), concat('del_', toString(i)), pipeline_id, pipeline_id, trigger_type,
		       concat('t_', toString(i)), concat('ev_', toString(i)), step_id, step_id, step + 1, att, false, tier, status, http_status, latency_ms, error,
		       'https://hooks.example.com/in', concat('{"event_id":"ev_', toString(i), '","amount":12.5}'), '{"ok":true}', started_at
		FROM (` + attemptsSel + `)`,
		`INSERT INTO {DB}.attempts_feed (pipeline_id, trigger_type, step_id, attempt, failover, tier, status, http_status, latency_ms, error, started_at, src_topic, src_partition, src_offset)
		SELECT pipeline_id, trigger_type, step_id, att, false, tier, status, http_status, latency_ms, error, started_at, '', 0, 0 FROM (` + attemptsSel + `)`,
		`INSERT INTO {DB}.executions (execution_id, delivery_id, pipeline_id, pipeline_name, trigger_type, trigger_id, event_id, status, started_at, completed_at, seq)
		SELECT concat('exec_', toString(i)), concat('del_', toString(i)), pipeline_id, pipeline_id, trigger_type, concat('t_', toString(i)),
		       concat('ev_', toString(i)), status, started_at, completed_at, seq FROM (` + execSel + `)`,
		`INSERT INTO {DB}.executions_feed (pipeline_id, trigger_type, status, started_at, completed_at, first_retry, retried, src_topic, src_partition, src_offset)
		SELECT pipeline_id, trigger_type, status, started_at, completed_at, status = 'retrying' AND seq = 1, status != 'retrying' AND i % 4 = 0,
		       '', 0, 0 FROM (` + execSel + `)`,
		`INSERT INTO {DB}.dlq_items (id, state, reason, error, delivery_id, execution_id, pipeline_id, trigger_type, trigger_id, step_order, attempts, failed_at, payload, source, task, version)
		SELECT id, 'dead', 'retries_exhausted', 'HTTP 503', '', '', pipeline_id, trigger_type, '', 1, 3, failed_at, '{}', '', '', 1 FROM (` + dlqSel + `)`,
		`INSERT INTO {DB}.dlq_feed (pipeline_id, trigger_type, state, reason, failed_at, src_topic, src_partition, src_offset)
		SELECT pipeline_id, trigger_type, 'dead', 'retries_exhausted', failed_at, '', 0, 0 FROM (` + dlqSel + `)`,
	}
	start := time.Now()
	for _, q := range stmts {
		if err := s.b.exec(ctx, vars.Replace(q), nil); err != nil {
			return 0, 0, fmt.Errorf("%w\n%s", err, vars.Replace(q))
		}
	}
	elapsed := time.Since(start)
	var total int64
	for _, t := range []string{"attempts", "executions", "dlq_items"} {
		r, err := s.b.query(ctx, "SELECT count() FROM "+s.t(t), nil)
		if err != nil {
			return 0, 0, err
		}
		total += asInt(r[0][0])
	}
	return total * 2, elapsed, nil // each row went to its base table and its feed
}

// writeRate times Store.Write with records as the sink hands them over
// (JSON, 5,000 a batch), in attempts per second.
func writeRate(ctx context.Context, s *Store, n int, t0 time.Time) (float64, error) {
	const batch = 5000
	var elapsed time.Duration
	for off := 0; off < n; off += batch {
		b := &Batch{}
		for i := off; i < off+batch && i < n; i++ {
			a := delivery.Attempt{V: 1, Kind: delivery.KindAttempt, AttemptID: fmt.Sprintf("w_%d", i), ExecutionID: fmt.Sprintf("w_exec_%d", i),
				DeliveryID: "d", PipelineID: "pipe_w", PipelineName: "w", TriggerType: "click", StepID: "s", Status: "success", HTTPStatus: 200,
				LatencyMS: int64(i % 300), RequestURL: "https://hooks.example.com/in", RequestBody: `{"event_id":"x","amount":12.5}`, ResponseBody: `{"ok":true}`,
				StartedAt: t0.Add(time.Duration(i) * time.Millisecond)}
			v, _ := json.Marshal(a)
			b.AttemptRecs = append(b.AttemptRecs, v)
			b.AttemptRecOrigins = append(b.AttemptRecOrigins, Origin{Topic: "bench.executions", Offset: int64(i)})
		}
		start := time.Now()
		if err := s.Write(ctx, b); err != nil {
			return 0, err
		}
		elapsed += time.Since(start)
	}
	return float64(n) / elapsed.Seconds(), nil
}
