package analytics

import (
	"context"
	"fmt"
	"time"
)

// Outcomes are a pipeline's attempt counts since a moment.
type Outcomes struct {
	Successes int64
	Failures  int64
}

// AttemptOutcomes counts each pipeline's successful and failed attempts
// since its own moment (since maps pipeline id → moment). Pipelines without
// attempts since then are absent. Counts are read without FINAL: a replayed
// batch can count an attempt twice until ClickHouse merges, which does not
// change whether a pipeline had any success or failure.
func (s *Store) AttemptOutcomes(ctx context.Context, since map[string]time.Time) (map[string]Outcomes, error) {
	out := map[string]Outcomes{}
	if len(since) == 0 {
		return out, nil
	}
	ids := make([]string, 0, len(since))
	ms := make([]int64, 0, len(since))
	earliest := int64(0)
	for id, t := range since {
		ids = append(ids, id)
		ms = append(ms, t.UnixMilli())
		if earliest == 0 || t.UnixMilli() < earliest {
			earliest = t.UnixMilli()
		}
	}
	// The sorting key (pipeline_id, started_at) and the day partitions make
	// this read only the pipelines' recent rows.
	rows, err := s.b.query(ctx, `
		SELECT pipeline_id, countIf(status = 'success'), countIf(status != 'success')
		FROM `+s.t("attempts")+`
		WHERE has({ids:Array(String)}, pipeline_id)
		  AND started_at >= fromUnixTimestamp64Milli({earliest:Int64}, 'UTC')
		  AND toUnixTimestamp64Milli(started_at) >= arrayElement({since:Array(Int64)}, indexOf({ids:Array(String)}, pipeline_id))
		GROUP BY pipeline_id`, Params{"ids": ids, "since": ms, "earliest": earliest})
	if err != nil {
		return nil, fmt.Errorf("attempt outcomes: %w", err)
	}
	for _, r := range rows {
		out[asString(r[0])] = Outcomes{Successes: asInt(r[1]), Failures: asInt(r[2])}
	}
	return out, nil
}

// FailureStreak is a pipeline's run of failed attempts since its last
// successful one.
type FailureStreak struct {
	LastSuccess time.Time // zero: none since the moment asked about
	Failures    int64
	First, Last time.Time // of the failed attempts; zero when none
}

// FailureStreak reads the failed attempts of one pipeline after its last
// successful attempt, counting nothing before since.
func (s *Store) FailureStreak(ctx context.Context, pipelineID string, since time.Time) (FailureStreak, error) {
	var fs FailureStreak
	p := Params{"id": pipelineID, "since": since.UnixMilli()}
	// Newest first with the sorting key's prefix fixed: ClickHouse reads
	// the pipeline's rows backwards and stops at the first success.
	ok, err := s.b.query(ctx, `
		SELECT toUnixTimestamp64Milli(started_at) FROM `+s.t("attempts")+`
		WHERE pipeline_id = {id:String} AND status = 'success'
		  AND started_at >= fromUnixTimestamp64Milli({since:Int64}, 'UTC')
		ORDER BY started_at DESC LIMIT 1`, p)
	if err != nil {
		return fs, fmt.Errorf("last success: %w", err)
	}
	from := since.UnixMilli()
	if len(ok) == 1 {
		fs.LastSuccess = msTime(asInt(ok[0][0]))
		from = max(from, fs.LastSuccess.UnixMilli()+1)
	}
	p["from"] = from
	rows, err := s.b.query(ctx, `
		SELECT count(), toUnixTimestamp64Milli(min(started_at)), toUnixTimestamp64Milli(max(started_at))
		FROM `+s.t("attempts")+` FINAL
		WHERE pipeline_id = {id:String} AND status != 'success'
		  AND started_at >= fromUnixTimestamp64Milli({from:Int64}, 'UTC')`, p)
	if err != nil {
		return fs, fmt.Errorf("failure streak: %w", err)
	}
	if len(rows) == 1 && asInt(rows[0][0]) > 0 {
		fs.Failures = asInt(rows[0][0])
		fs.First, fs.Last = msTime(asInt(rows[0][1])), msTime(asInt(rows[0][2]))
	}
	return fs, nil
}
