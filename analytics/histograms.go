package analytics

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Latency and time-to-success percentiles come from log-scale histograms
// (migration 8), per minute and per hour by level, like the quantile
// tables before them (quantileSchema), which they replace.
//
// Bucket 0 holds the values ≤ 0; bucket b ≥ 1 the values in
// [2^((b-1)/8), 2^(b/8)) ms — eight a doubling, each 9 % wide — up to the
// last, which holds everything from 2^31.75 ms (about 40 days) on. A
// histogram is one Array(Float64): for each bucket up to its highest
// non-empty one, three numbers — the count of its values, their sum and the
// sum of their squares. Histograms merge by adding (sumForEach; arrays of
// different lengths add as if padded with zeros): a range's figures merge a
// few hundred short arrays, where t-digest states cost their decoding and
// centroid merging (issue 10; figures in README).
//
// A percentile is read by nearest rank: the bucket holding the rank, then
// within it a value spread around the bucket's mean as its values are
// (half-width √3·σ, a uniform spread of that deviation, kept within the
// bucket's bounds), placed by the rank's place among the bucket's values.
// Equal values give that value exactly, values 9 % or more apart (a
// bucket each) too, and smooth or two-mode distributions within 2 %
// (TestHistogramPercentiles); the bound is the bucket holding the exact
// value, 9 % wide (up to rounding to the millisecond), but for the last,
// from ~40 days on, where the answer is the bucket's mean.
const (
	histBuckets   = 256
	histPerDouble = 8
)

// histLevels are the percentiles read: p50, p95, p99.
var histLevels = [3]float64{0.5, 0.95, 0.99}

// histBucketSQL is the bucket of the value v (SQL, Int64 or UInt64).
func histBucketSQL(v string) string {
	return fmt.Sprintf("least(if(%[1]s <= 0, 0, toUInt32(floor(log2(%[1]s) * %[2]d)) + 1), %[3]d)", v, histPerDouble, histBuckets-1)
}

// histArraySQL is the histogram of c values in bucket b summing to s, their
// squares to q.
func histArraySQL(b, c, s, q string) string {
	return fmt.Sprintf("arrayConcat(arrayResize(CAST([] AS Array(Float64)), 3 * %s), [toFloat64(%s), toFloat64(%s), toFloat64(%s)])", b, c, s, q)
}

// histQuantiles reads the percentiles of a merged histogram h (for answers
// of a few rows: the stats and pipeline figures get the merged arrays; the
// time series' many rows get their picks, histPicksSQL).
func histQuantiles(h []float64) Quantiles {
	n := len(h) / 3
	cs := make([]float64, n)
	var tot float64
	for b := range n {
		tot += h[3*b]
		cs[b] = tot
	}
	if tot <= 0 {
		return Quantiles{}
	}
	var q [3]int64
	for k, level := range histLevels {
		r := histRank(level, tot)
		b := 0
		for b < n-1 && cs[b] < r {
			b++
		}
		q[k] = histValue(b, r, cs[b], h[3*b], h[3*b+1], h[3*b+2])
	}
	return Quantiles{P50: q[0], P95: q[1], P99: q[2]}
}

// histRank is the nearest rank of the percentile level among tot values.
func histRank(level, tot float64) float64 { return math.Max(math.Ceil(level*tot), 1) }

// histValue is the value of rank r, found in bucket b whose values number
// cnt, sum to sum and their squares to sq, and with cs the count of the
// values up to b's; rounded to the millisecond, 0 for bucket 0 (values ≤ 0).
func histValue(b int, r, cs, cnt, sum, sq float64) int64 {
	if b <= 0 {
		return 0
	}
	mean := sum / cnt
	lo, hi := math.Pow(2, float64(b-1)/histPerDouble), math.Pow(2, float64(b)/histPerDouble)
	half := math.Max(math.Min(math.Sqrt(3*math.Max(sq/cnt-mean*mean, 0)), math.Min(mean-lo, hi-mean)), 0)
	frac := (r - (cs - cnt) - 0.5) / cnt
	if v := mean + half*(2*frac-1); !math.IsNaN(v) && !math.IsInf(v, 0) {
		return int64(math.Round(v))
	}
	return 0
}

// histPicksSQL merges the histograms of the column col and picks out what
// reading its percentiles needs (histPicksQuantiles): an Array(Float64) of
// the count of values, then for each level the 1-based index of the
// bucket holding its rank, the count of the values up to and including
// that bucket's, and the bucket's count, sum and sum of squares. It names
// h, cs, tot and i0… in its SELECT. A level whose rank no bucket reaches
// (counts that are not whole numbers: never from the views) has index 0,
// read as 0.
//
// The time series has a row a bucket, too many to send whole histograms;
// computing the percentiles themselves in SQL read each bucket's figures
// out of h under lambdas, which copy every array they read from outside
// for each element they run on: the 1-minute series of a day at 10 M
// attempts took 61 ms for this part, the picks 40 ms (issue 10).
func histPicksSQL(col string) string {
	parts := []string{"[(arrayCumSum(arrayFilter((x, j) -> j % 3 = 1, (sumForEachMerge(" + col + ") AS h), arrayEnumerate(h))) AS cs)[-1] AS tot]"}
	for k, l := range histLevels {
		i := "i" + strconv.Itoa(k)
		parts = append(parts,
			"[toFloat64(arrayFirstIndex(c -> c >= greatest(ceil("+strconv.FormatFloat(l, 'f', -1, 64)+" * tot), 1), cs) AS "+i+"), cs["+i+"]]",
			"arraySlice(h, greatest(3 * "+i+" - 2, 1), 3)")
	}
	return "arrayConcat(" + strings.Join(parts, ", ") + ")"
}

// histPicksQuantiles reads the percentiles out of histPicksSQL's picks,
// as histQuantiles does out of the whole histogram.
func histPicksQuantiles(p []float64) Quantiles {
	const per = 5 // index, count up to, count, sum, squares
	if len(p) < 1+per*len(histLevels) || p[0] <= 0 {
		return Quantiles{}
	}
	var q [3]int64
	for k, level := range histLevels {
		f := p[1+per*k:]
		q[k] = histValue(int(f[0])-1, histRank(level, p[0]), f[1], f[2], f[3], f[4])
	}
	return Quantiles{P50: q[0], P95: q[1], P99: q[2]}
}

// histogramSchema is migration 8: for each kind, the histogram tables,
// each filled from the base tables (each row once: FINAL) and then fed
// from the feeds by its view like every aggregate (exact under replay: the
// feeds carry each row once, fedKeysSchema); then the quantile tables'
// views dropped (their tables stay, unfed, and expire by their TTL).
//
// A fill runs only while its table's view is missing, after emptying the
// table (histogramGuard): a fill stopped partway is made again whole, and
// one done is not made twice. The per-hour table is filled from the
// per-minute one once that one's view feeds it.
//
// Around a fill the percentiles (no count reads these tables) can be off:
// a row fed by a replica of the older version between the fill and the
// view's creation is in neither, and a row in the base tables but not yet
// fed when the fill read them (a sink between its two inserts) is counted
// twice. During a rolling upgrade the older replicas read the quantile
// tables, unfed from the migration on: their percentiles of later periods
// are stale until they are upgraded. Periods the base tables no longer
// hold (logs kept shorter than aggregates) lose their percentiles.
func histogramSchema(t Target) []string {
	db, on := t.Database, t.On()
	// rows is the histograms of src's rows (cond) by time column col (fn
	// of started_at) and level.
	rows := func(col, fn, src string, k histKindSpec) string {
		return `SELECT ` + col + `, k.1 AS level, k.2 AS pipeline_id, k.3 AS trigger_type, k.4 AS step_id,
		       sumForEachState(` + histArraySQL("b", "c", "s", "q") + `) AS hist
		FROM (SELECT ` + col + `, k, b, count() AS c, sum(v) AS s, sum(toFloat64(v) * v) AS q
		      FROM (SELECT ` + fn + `(started_at) AS ` + col + `, arrayJoin(` + levelKeys(k.steps) + `) AS k,
		                   toUInt64(greatest(` + k.value + `, 0)) AS v, ` + histBucketSQL("v") + ` AS b
		            FROM ` + src + ` WHERE ` + k.cond + `)
		      GROUP BY ` + col + `, k, b)
		GROUP BY ` + col + `, k`
	}
	var stmts []string
	for _, k := range histKinds {
		m, h := t.Table(k.name+"_hist_1m"), t.Table(k.name+"_hist_1h")
		view := func(table, col, fn string) string {
			return `CREATE MATERIALIZED VIEW IF NOT EXISTS ` + table + `_mv` + on + ` TO ` + table + ` AS
		` + rows(col, fn, db+"."+k.base+"_feed", k)
		}
		stmts = append(stmts,
			histTable(t, k.name, "1m", "minute"),
			histTable(t, k.name, "1h", "hour"),
			`TRUNCATE TABLE `+m+on,
			// histograms — filled from the base tables
			`INSERT INTO `+m+` `+rows("minute", "toStartOfMinute", db+"."+k.base+" FINAL", k),
			// histograms — fed like the other aggregates
			view(m, "minute", "toStartOfMinute"),
			`TRUNCATE TABLE `+h+on,
			`INSERT INTO `+h+` SELECT toStartOfHour(minute) AS hour, level, pipeline_id, trigger_type, step_id, sumForEachMergeState(hist)
		FROM `+m+` GROUP BY hour, level, pipeline_id, trigger_type, step_id`,
			view(h, "hour", "toStartOfHour"))
	}
	for _, q := range quantileTables {
		stmts = append(stmts, `DROP VIEW IF EXISTS `+t.Table(q.kind+"_"+q.suffix)+`_mv`+on)
	}
	return stmts
}

// histKindSpec is a kind of histogram: its base table (and feed), the
// value of a row, which rows, and whether it has the step level.
type histKindSpec struct {
	name, base, value, cond string
	steps                   bool
}

var histKinds = []histKindSpec{
	{"latency", "attempts", "latency_ms", "http_status > 0", true},
	{"time_to_success", "executions", "toInt64(dateDiff('millisecond', started_at, completed_at))", "status = 'completed'", false},
}

// histStatements is the number of statements of a kind in histogramSchema.
const histStatements = 8

// histogramGuard tells whether statement i of histogramSchema is still to
// do: a table's emptying and fill only while its view is missing.
func histogramGuard(i int, tables map[string]string) bool {
	if i >= histStatements*len(histKinds) {
		return true
	}
	k := histKinds[i/histStatements]
	switch i % histStatements {
	case 2, 3:
		_, ok := tables[k.name+"_hist_1m_mv"]
		return !ok
	case 5, 6:
		_, ok := tables[k.name+"_hist_1h_mv"]
		return !ok
	}
	return true
}

// histTable is the CREATE of the histogram table kind_hist_suffix (time
// column col): 16-row granules, as the quantile tables (quantileGranules).
func histTable(t Target, kind, suffix, col string) string {
	name := kind + "_hist_" + suffix
	return `CREATE TABLE IF NOT EXISTS ` + t.Table(name) + t.On() + ` (
			` + col + `        DateTime('UTC'),
			level         LowCardinality(String),
			pipeline_id   String,
			trigger_type  LowCardinality(String),
			step_id       String,
			hist          AggregateFunction(sumForEach, Array(Float64))
		) ENGINE = ` + t.Engine(name, "AggregatingMergeTree") + `
		PARTITION BY toYYYYMMDD(` + col + `)
		ORDER BY (level, pipeline_id, trigger_type, step_id, ` + col + `)
		` + t.TTL(name) + `
		SETTINGS index_granularity = 16`
}
