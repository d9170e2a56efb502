package analytics

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Range bounds a stats query: aggregate minutes starting in [From, To)
// (From is taken down to its minute), of one pipeline or of all when
// PipelineID is empty.
type Range struct {
	From, To   time.Time
	PipelineID string
}

// params are a range's bounds in Unix seconds: from and to on minutes (the
// minutes starting before To), hfrom–hto the whole hours between them. The
// SQL compares them as DateTime (sqlTime): the aggregates' time columns are
// DateTime, and a DateTime64 bound (fromUnixTimestamp64Milli) made every
// part's analysis and planning convert them — measured: /stats 24 h at
// 10 M attempts 89 → 77 ms, alternating runs (issue 10).
func (r Range) params() Params {
	from := r.From.UTC().Truncate(time.Minute)
	to := r.To.UTC().Truncate(time.Minute)
	if to.Before(r.To) {
		to = to.Add(time.Minute)
	}
	hfrom := from.Truncate(time.Hour)
	if hfrom.Before(from) {
		hfrom = hfrom.Add(time.Hour)
	}
	hto := to.Truncate(time.Hour)
	if !hfrom.Before(hto) {
		hfrom, hto = to, to
	}
	return Params{"from": from.Unix(), "to": to.Unix(), "hfrom": hfrom.Unix(), "hto": hto.Unix(), "pid": r.PipelineID}
}

// sqlTime is the DateTime of the Unix-seconds parameter name.
func sqlTime(name string) string { return "toDateTime({" + name + ":Int64}, 'UTC')" }

// span is the columns cols (a select list) of the rows of the per-hour
// table kind_1h for a range's whole hours and of kind_1m for the minutes at
// its edges, with the time column named t. The columns are named, not *:
// through UNION ALL every column of * is read (the aggregates' quantile
// states too), which measured twice the time of the named ones.
func (s *Store) span(kind, cols, pid string) string { return s.spanWhere(kind, cols, pidCond(pid)) }

// pidCond is the condition narrowing a table to the pipeline {pid} when a
// range names one, and nothing otherwise: a condition that is always true
// still costs its analysis in every part of a query (measured: issue 10).
func pidCond(pid string) string {
	if pid == "" {
		return ""
	}
	return " AND pipeline_id = {pid:String}"
}

// spanWhere is span with conditions (SQL, each starting with AND; the
// pipeline's too).
func (s *Store) spanWhere(kind, cols, cond string) string {
	return `(SELECT hour AS t, ` + cols + ` FROM ` + s.t(kind+"_1h") + `
		WHERE hour >= ` + sqlTime("hfrom") + ` AND hour < ` + sqlTime("hto") + cond + `
		UNION ALL
		SELECT minute AS t, ` + cols + ` FROM ` + s.t(kind+"_1m") + `
		WHERE ((minute >= ` + sqlTime("from") + ` AND minute < ` + sqlTime("hfrom") + `)
		    OR (minute >= ` + sqlTime("hto") + ` AND minute < ` + sqlTime("to") + `))` + cond + `)`
}

// Columns of span parts: each table's group keys and the figures read.
const (
	keyCols       = "pipeline_id, trigger_type"
	stepKeyCols   = keyCols + ", step_id"
	executionSums = keyCols + ", finished, successful, failed, last_started, retries_opened, retried_closed"
	attemptSums   = stepKeyCols + ", attempts, step_runs, successful, latency_sum, latency_n, retries"
)

// histCols are the columns of a histogram table read by a span.
const histCols = stepKeyCols + ", level, hist"

// histKind is the span kind of kind's histogram tables.
func histKind(kind string) string { return kind + "_hist" }

// A stats answer is one query (issue 10: chDB runs one query at a time,
// and each costs its parsing, planning and table opening): the figures it
// needs are parts of a UNION ALL, each part's rows tagged with its name and
// shaped alike — a group key, whether the row is the total, numbers and
// quantiles.
type figPart struct{ tag, sql string }

// figRow is one row of a part.
type figRow struct {
	key  string
	nums []int64
	q    Quantiles
}

// noNums and noQuantiles fill the columns a part has not.
const (
	noNums      = "CAST([] AS Array(Int64))"
	noQuantiles = "CAST([] AS Array(Float64))"
)

// figures runs parts as one query and returns each part's rows by tag;
// a part's quantiles column is empty or a merged histogram (quantileSQL),
// read into its percentiles here.
func (s *Store) figures(ctx context.Context, p Params, parts ...figPart) (map[string][]figRow, error) {
	var sb strings.Builder
	for i, pt := range parts {
		if i > 0 {
			sb.WriteString("\n\t\tUNION ALL\n\t\t")
		}
		// The tag heads each part's own select list: a wrapping
		// SELECT … FROM (part) is one more query level to analyse.
		sb.WriteString("SELECT '" + pt.tag + "' AS tag, " + strings.TrimPrefix(strings.TrimSpace(pt.sql), "SELECT "))
	}
	rows, err := s.b.query(ctx, sb.String(), p)
	if err != nil {
		return nil, err
	}
	out := map[string][]figRow{}
	for _, row := range rows {
		if len(row) < 5 {
			return nil, fmt.Errorf("stats: a row of %d columns", len(row))
		}
		nums := asInts(row[3])
		out[asString(row[0])] = append(out[asString(row[0])], figRow{key: groupKey(row[1:]), nums: nums, q: histQuantiles(asFloats(row[4]))})
	}
	return out, nil
}

// num is a row's i-th number (0 when absent).
func (f figRow) num(i int) int64 {
	if i < len(f.nums) {
		return f.nums[i]
	}
	return 0
}

// quantileSQL is the part that merges the histograms of kind ("latency"
// or "time_to_success") over the range grouped by key like the figures
// parts, from the one level of the histogram tables that answers it: a
// merged histogram in the quantiles column, read by figures
// (histQuantiles; histogramSchema).
func (s *Store) quantileSQL(r Range, kind, key string, withTotal bool) string {
	run := func(level, key string, withTotal bool) string {
		sel, group := grouped(key, withTotal)
		return `SELECT ` + sel + `, ` + noNums + `, sumForEachMerge(hist)
			FROM ` + s.spanWhere(histKind(kind), histCols, pidCond(r.PipelineID)+" AND level = '"+level+"'") + group
	}
	switch {
	case key == "step_id":
		return run(levelStep, key, withTotal)
	case r.PipelineID != "" || key == "pipeline_id":
		return run(levelPipeline, key, withTotal)
	case key == "":
		return run(levelAll, "", true)
	}
	// Every trigger type's and the total: the total merges the trigger
	// types' histograms (GROUPING SETS) rather than reading the "all" level's
	// too: those rows lie in other granules, whose every state is read
	// (measured: 10-15 % less CPU for the part at 10 M attempts).
	return run(levelTrigger, key, withTotal)
}

// aggRange is the WHERE clause of a minute table for a Range of the
// pipeline pid (all when "").
func aggRange(pid string) string {
	return `minute >= ` + sqlTime("from") + ` AND minute < ` + sqlTime("to") + pidCond(pid)
}

// Quantiles are the 50th, 95th and 99th percentiles, in milliseconds
// (read from histograms by nearest rank: histQuantiles).
type Quantiles struct {
	P50 int64 `json:"p50"`
	P95 int64 `json:"p95"`
	P99 int64 `json:"p99"`
}

// PipelineStats are a pipeline's execution figures over a Range (spec:
// pipeline stats).
type PipelineStats struct {
	TotalExecutions int64      `json:"total_executions"`
	Successful      int64      `json:"successful"`
	Failed          int64      `json:"failed"`
	InRetry         int64      `json:"in_retry"`
	InDLQ           int64      `json:"in_dlq"`
	SuccessRate     float64    `json:"success_rate"`
	LatencyMS       Quantiles  `json:"latency_ms"`
	TimeToSuccessMS Quantiles  `json:"time_to_success_ms"`
	LastTriggered   *time.Time `json:"-"`
}

// StepStats are one step's figures over a Range.
type StepStats struct {
	Executions      int64     `json:"executions"`
	Successful      int64     `json:"successful"`
	AvgLatencyMS    int64     `json:"avg_latency_ms"`
	LatencyMS       Quantiles `json:"latency_ms"`
	TimeToSuccessMS Quantiles `json:"time_to_success_ms"`
}

// Stats are the figures of the admin API's /stats over a Range.
type Stats struct {
	Executions      int64
	Completed       int64
	Failed          int64
	Finished        int64 // executions not still retrying
	InRetry         int64
	AvgLatencyMS    int64
	LatencyMS       Quantiles
	TimeToSuccessMS Quantiles
	ByTrigger       map[string]TriggerStats
	TopErrors       []ErrorCount
	DLQDead         int64
}

// TriggerStats are one trigger type's figures.
type TriggerStats struct {
	Executions      int64     `json:"executions"`
	SuccessRate     float64   `json:"success_rate"`
	LatencyMS       Quantiles `json:"latency_ms"`
	TimeToSuccessMS Quantiles `json:"time_to_success_ms"`
}

// ErrorCount is one of the most frequent attempt errors.
type ErrorCount struct {
	Error string `json:"error"`
	Count int64  `json:"count"`
}

// execFigures are one group's execution figures.
type execFigures struct {
	finished, successful, failed, inRetry int64
	tts                                   Quantiles
	last                                  time.Time
}

func (f execFigures) total() int64 { return f.finished + f.inRetry }

// executionSQL is the part of the execution aggregates over a range
// grouped by key (a column; "" for one total row): finished, successful,
// failed, the latest start (ms), retries opened and closed.
func (s *Store) executionSQL(r Range, key string, withTotal bool) string {
	sel, group := grouped(key, withTotal)
	return `SELECT ` + sel + `, [toInt64(sum(finished)), toInt64(sum(successful)), toInt64(sum(failed)),
		       toInt64(toUnixTimestamp64Milli(max(last_started))), toInt64(sum(retries_opened)), toInt64(sum(retried_closed))], ` + noQuantiles + `
		FROM ` + s.span("executions", executionSums, r.PipelineID) + group
}

// executionFigures reads the rows of an executionSQL part and a
// setExecutions fills a pipeline's execution figures.
func (st *PipelineStats) setExecutions(f *execFigures) {
	st.TotalExecutions, st.Successful, st.Failed, st.InRetry, st.TimeToSuccessMS = f.total(), f.successful, f.failed, f.inRetry, f.tts
	if st.TotalExecutions > 0 {
		st.SuccessRate = roundRate(st.Successful, st.TotalExecutions)
	}
	if !f.last.IsZero() {
		t := f.last
		st.LastTriggered = &t
	}
}

// time-to-success quantileSQL part by group key.
func executionFigures(ex, tts []figRow) map[string]*execFigures {
	out := map[string]*execFigures{}
	get := func(k string) *execFigures {
		if out[k] == nil {
			out[k] = &execFigures{}
		}
		return out[k]
	}
	for _, row := range ex {
		f := get(row.key)
		f.finished, f.successful, f.failed = row.num(0), row.num(1), row.num(2)
		if t := msTime(row.num(3)); !t.IsZero() {
			f.last = t
		}
		// Executions whose latest state is "retrying": those that went
		// into retry less those that have since ended.
		f.inRetry = max(0, row.num(4)-row.num(5))
	}
	for _, row := range tts {
		get(row.key).tts = row.q
	}
	return out
}

// totalKey is the key of the total row in a figures map.
const totalKey = "\x00total"

// grouped is the select list head and GROUP BY of a figures query: by key
// (a column), with a total row too when withTotal (GROUPING SETS: one read
// for both); one total row when key is "". Each row starts with the key and
// whether it is the total.
func grouped(key string, withTotal bool) (sel, group string) {
	switch {
	case key == "":
		return "'', toUInt8(1)", ""
	case withTotal:
		return "toString(" + key + "), toUInt8(grouping(" + key + "))", " GROUP BY GROUPING SETS ((" + key + "), ())"
	}
	return "toString(" + key + "), toUInt8(0)", " GROUP BY " + key
}

func groupKey(row []any) string {
	if asInt(row[1]) == 1 {
		return totalKey
	}
	return asString(row[0])
}

// latFigures are one group's attempt figures.
type latFigures struct {
	attempts, stepRuns, successful, avg int64
	lat                                 Quantiles
}

// attemptSQL is the part of the attempt aggregates over a range grouped by
// key: attempts, step runs, successful attempts, mean latency.
func (s *Store) attemptSQL(r Range, key string, withTotal bool) string {
	sel, group := grouped(key, withTotal)
	return `SELECT ` + sel + `, [toInt64(sum(attempts)), toInt64(sum(step_runs)), toInt64(sum(successful)),
		       toInt64(if(sum(latency_n) = 0, 0, round(sum(latency_sum) / sum(latency_n))))], ` + noQuantiles + `
		FROM ` + s.span("attempts", attemptSums, r.PipelineID) + group
}

// attemptFigures reads the rows of an attemptSQL part and a latency
// quantileSQL part by group key.
func attemptFigures(at, lat []figRow) map[string]*latFigures {
	out := map[string]*latFigures{}
	for _, row := range at {
		out[row.key] = &latFigures{attempts: row.num(0), stepRuns: row.num(1), successful: row.num(2), avg: row.num(3)}
	}
	for _, row := range lat {
		if out[row.key] == nil {
			out[row.key] = &latFigures{}
		}
		out[row.key].lat = row.q
	}
	return out
}

// deadSQL is the part counting the DLQ items now dead by pipeline (their
// current state, from the base table: a redrive changes it), of the
// pipelines {ids} (all when ids is empty).
func (s *Store) deadSQL(ids []string) string {
	cond := ""
	if len(ids) > 0 {
		cond = " AND pipeline_id IN {ids:Array(String)}"
	}
	return `SELECT pipeline_id, toUInt8(0), [toInt64(count())], ` + noQuantiles + ` FROM ` + s.t("dlq_items") + ` FINAL
		WHERE state = 'dead'` + cond + `
		GROUP BY pipeline_id`
}

// PipelineStats returns stats over r for the given pipelines (all when ids
// is empty; r.PipelineID narrows further).
func (s *Store) PipelineStats(ctx context.Context, ids []string, r Range) (map[string]*PipelineStats, error) {
	if len(ids) == 1 && r.PipelineID == "" {
		r.PipelineID = ids[0]
	}
	want := func(id string) bool {
		if len(ids) == 0 {
			return true
		}
		for _, x := range ids {
			if x == id {
				return true
			}
		}
		return false
	}
	p := r.params()
	p["ids"] = append([]string{}, ids...)
	res, err := s.figures(ctx, p,
		figPart{"ex", s.executionSQL(r, "pipeline_id", false)},
		figPart{"tts", s.quantileSQL(r, "time_to_success", "pipeline_id", false)},
		figPart{"lat", s.quantileSQL(r, "latency", "pipeline_id", false)},
		figPart{"dead", s.deadSQL(ids)})
	if err != nil {
		return nil, fmt.Errorf("pipeline stats: %w", err)
	}
	ex := executionFigures(res["ex"], res["tts"])
	out := map[string]*PipelineStats{}
	get := func(id string) *PipelineStats {
		if out[id] == nil {
			out[id] = &PipelineStats{}
		}
		return out[id]
	}
	for id, f := range ex {
		if !want(id) {
			continue
		}
		get(id).setExecutions(f)
	}
	for _, row := range res["lat"] {
		if want(row.key) {
			get(row.key).LatencyMS = row.q
		}
	}
	for _, row := range res["dead"] {
		if id := row.key; id != "" && want(id) && (r.PipelineID == "" || id == r.PipelineID) {
			get(id).InDLQ = row.num(0)
		}
	}
	return out, nil
}

// PipelineDetailStats returns one pipeline's stats over r and its steps'
// (keyed by step id) as PipelineStats and StepStats do, in one query: the
// figures of the pipeline detail.
func (s *Store) PipelineDetailStats(ctx context.Context, pipelineID string, r Range) (*PipelineStats, map[string]*StepStats, error) {
	r.PipelineID = pipelineID
	p := r.params()
	p["ids"] = []string{pipelineID}
	res, err := s.figures(ctx, p,
		figPart{"ex", s.executionSQL(r, "", true)},
		figPart{"tts", s.quantileSQL(r, "time_to_success", "", true)},
		figPart{"dead", s.deadSQL(p["ids"].([]string))},
		figPart{"at", s.attemptSQL(r, "step_id", false)},
		// The steps' latency states and their merge, the pipeline's: one
		// part fewer than reading the pipeline level too.
		figPart{"steplat", s.quantileSQL(r, "latency", "step_id", true)})
	if err != nil {
		return nil, nil, fmt.Errorf("pipeline detail stats: %w", err)
	}
	st := &PipelineStats{}
	if f := executionFigures(res["ex"], res["tts"])[totalKey]; f != nil {
		st.setExecutions(f)
	}
	for _, row := range res["steplat"] {
		if row.key == totalKey {
			st.LatencyMS = row.q
		}
	}
	for _, row := range res["dead"] {
		if row.key == pipelineID {
			st.InDLQ = row.num(0)
		}
	}
	steps := map[string]*StepStats{}
	for id, f := range attemptFigures(res["at"], res["steplat"]) {
		if id == totalKey {
			continue
		}
		steps[id] = &StepStats{Executions: f.stepRuns, Successful: f.successful, AvgLatencyMS: f.avg, LatencyMS: f.lat, TimeToSuccessMS: st.TimeToSuccessMS}
	}
	return st, steps, nil
}

// StepStats returns per-step stats of one pipeline over r, keyed by step id.
// Executions counts the executions that attempted the step (first
// attempts); time-to-success is the pipeline's (an execution succeeds as a
// whole).
func (s *Store) StepStats(ctx context.Context, pipelineID string, r Range) (map[string]*StepStats, error) {
	r.PipelineID = pipelineID
	res, err := s.figures(ctx, r.params(),
		figPart{"at", s.attemptSQL(r, "step_id", false)},
		figPart{"lat", s.quantileSQL(r, "latency", "step_id", false)},
		figPart{"tts", s.quantileSQL(r, "time_to_success", "", true)})
	if err != nil {
		return nil, fmt.Errorf("step stats: %w", err)
	}
	var tts Quantiles
	for _, row := range res["tts"] {
		tts = row.q
	}
	out := map[string]*StepStats{}
	for id, f := range attemptFigures(res["at"], res["lat"]) {
		out[id] = &StepStats{Executions: f.stepRuns, Successful: f.successful, AvgLatencyMS: f.avg, LatencyMS: f.lat, TimeToSuccessMS: tts}
	}
	return out, nil
}

// Stats returns the figures of r: executions by trigger type, attempt
// latency, time to success, the most frequent errors and the DLQ.
func (s *Store) Stats(ctx context.Context, r Range) (*Stats, error) {
	st := &Stats{ByTrigger: map[string]TriggerStats{}, TopErrors: []ErrorCount{}}
	var ids []string
	if r.PipelineID != "" {
		ids = []string{r.PipelineID}
	}
	p := r.params()
	p["ids"] = append([]string{}, ids...)
	res, err := s.figures(ctx, p,
		figPart{"ex", s.executionSQL(r, "trigger_type", true)},
		figPart{"tts", s.quantileSQL(r, "time_to_success", "trigger_type", true)},
		figPart{"at", s.attemptSQL(r, "trigger_type", true)},
		figPart{"lat", s.quantileSQL(r, "latency", "trigger_type", true)},
		figPart{"err", `SELECT error, toUInt8(0), [toInt64(c)], ` + noQuantiles + ` FROM (
			SELECT error, sum(count) AS c FROM ` + s.t("errors_1m") + ` WHERE ` + aggRange(r.PipelineID) + `
			GROUP BY error ORDER BY c DESC, error LIMIT 5)`},
		figPart{"dead", s.deadSQL(ids)})
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	ex := executionFigures(res["ex"], res["tts"])
	at := attemptFigures(res["at"], res["lat"])
	// The summary's quantiles merge every group's states (percentiles do
	// not add up): the total row of each query.
	if f := ex[totalKey]; f != nil {
		st.TimeToSuccessMS = f.tts
	}
	if a := at[totalKey]; a != nil {
		st.LatencyMS, st.AvgLatencyMS = a.lat, a.avg
	}
	delete(ex, totalKey)
	delete(at, totalKey)
	for tt, f := range ex {
		ts := TriggerStats{Executions: f.total(), TimeToSuccessMS: f.tts}
		if f.finished > 0 {
			ts.SuccessRate = roundRate(f.successful, f.finished)
		}
		if a := at[tt]; a != nil {
			ts.LatencyMS = a.lat
		}
		st.ByTrigger[tt] = ts
		st.Executions += f.total()
		st.Completed += f.successful
		st.Failed += f.failed
		st.Finished += f.finished
		st.InRetry += f.inRetry
	}
	for tt, a := range at {
		if _, ok := st.ByTrigger[tt]; !ok {
			st.ByTrigger[tt] = TriggerStats{LatencyMS: a.lat}
		}
	}
	for _, row := range res["err"] {
		st.TopErrors = append(st.TopErrors, ErrorCount{Error: row.key, Count: row.num(0)})
	}
	// UNION ALL keeps no order: most frequent first again.
	sort.Slice(st.TopErrors, func(i, j int) bool {
		a, b := st.TopErrors[i], st.TopErrors[j]
		return a.Count > b.Count || a.Count == b.Count && a.Error < b.Error
	})
	for _, row := range res["dead"] {
		st.DLQDead += row.num(0)
	}
	return st, nil
}

// Bucket is one interval of a time series.
type Bucket struct {
	Start        time.Time `json:"start"`
	Executions   int64     `json:"executions"`
	Successful   int64     `json:"successful"`
	Failed       int64     `json:"failed"`
	Retried      int64     `json:"retried"`
	DLQ          int64     `json:"dlq"`
	LatencyMSP50 int64     `json:"latency_ms_p50"`
	LatencyMSP95 int64     `json:"latency_ms_p95"`
	LatencyMSP99 int64     `json:"latency_ms_p99"`
}

// Intervals are the time series' bucket widths.
var Intervals = map[string]time.Duration{"1m": time.Minute, "5m": 5 * time.Minute, "1h": time.Hour}

// TimeSeries returns r in buckets of step, every bucket present (zeros
// where nothing happened). Executions are counted in the bucket they
// started in; retried counts retry attempts (failover included); dlq the
// items that went dead.
func (s *Store) TimeSeries(ctx context.Context, r Range, step time.Duration) ([]Bucket, error) {
	if step < time.Minute || step%time.Minute != 0 {
		return nil, fmt.Errorf("interval %s: whole minutes only", step)
	}
	p := r.params()
	p["step"] = int64(step / time.Second)
	bucket := func(col string) string {
		return `toUnixTimestamp(toStartOfInterval(` + col + `, toIntervalSecond({step:Int64}), 'UTC'))`
	}
	start := r.From.UTC().Truncate(time.Minute)
	start = time.Unix(start.Unix()-start.Unix()%int64(step/time.Second), 0).UTC()
	var out []Bucket
	index := map[int64]int{}
	for t := start; t.Before(r.To); t = t.Add(step) {
		index[t.Unix()] = len(out)
		out = append(out, Bucket{Start: t})
	}
	at := func(sec int64) *Bucket {
		if i, ok := index[sec]; ok {
			return &out[i]
		}
		return nil
	}
	// Whole hours read the per-hour tables; shorter buckets the minutes.
	from := func(kind string) string { return s.t(kind+"_1m") + ` WHERE ` + aggRange(r.PipelineID) }
	tcol := "minute"
	if step%time.Hour == 0 {
		from = func(kind string) string {
			return s.span(kind, map[string]string{"executions": executionSums, "attempts": attemptSums}[kind], r.PipelineID)
		}
		tcol = "t"
	}
	// Latency from the quantile states of every pipeline, or of the one.
	p["level"] = levelAll
	if r.PipelineID != "" {
		p["level"] = levelPipeline
	}
	latFrom := s.t("latency_hist_1m") + ` WHERE ` + aggRange(r.PipelineID) + ` AND level = {level:String}`
	if step%time.Hour == 0 {
		latFrom = s.spanWhere(histKind("latency"), histCols, pidCond(r.PipelineID)+" AND level = {level:String}")
	}
	// One query (each costs chDB its parsing and planning): a part per
	// figure, its rows tagged, a bucket's numbers in an array.
	rows, err := s.b.query(ctx, `
		SELECT 'ex' AS tag, `+bucket(tcol)+` AS b, [toInt64(sum(finished)), toInt64(sum(successful)), toInt64(sum(failed)), toInt64(sum(retries_opened)), toInt64(sum(retried_closed))], `+noQuantiles+`
		FROM `+from("executions")+` GROUP BY b
		UNION ALL
		SELECT 'at', `+bucket(tcol)+` AS b, [toInt64(sum(retries))], `+noQuantiles+` FROM `+from("attempts")+` GROUP BY b
		UNION ALL
		SELECT 'lat', `+bucket(tcol)+` AS b, `+noNums+`, `+histPicksSQL("hist")+` FROM `+latFrom+` GROUP BY b
		UNION ALL
		SELECT 'dlq', `+bucket("minute")+` AS b, [toInt64(sum(dead))], `+noQuantiles+` FROM `+s.t("dlq_1m")+` WHERE `+aggRange(r.PipelineID)+` GROUP BY b`, p)
	if err != nil {
		return nil, fmt.Errorf("time series: %w", err)
	}
	for _, row := range rows {
		if len(row) < 4 {
			return nil, fmt.Errorf("time series: a row of %d columns", len(row))
		}
		b := at(asInt(row[1]))
		if b == nil {
			continue
		}
		n := asInts(row[2])
		num := func(i int) int64 {
			if i < len(n) {
				return n[i]
			}
			return 0
		}
		switch asString(row[0]) {
		case "ex":
			b.Executions, b.Successful, b.Failed = num(0)+max(0, num(3)-num(4)), num(1), num(2)
		case "at":
			b.Retried = num(0)
		case "lat":
			q := histPicksQuantiles(asFloats(row[3]))
			b.LatencyMSP50, b.LatencyMSP95, b.LatencyMSP99 = q.P50, q.P95, q.P99
		case "dlq":
			b.DLQ = num(0)
		}
	}
	return out, nil
}
