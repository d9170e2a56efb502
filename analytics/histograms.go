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
// Equal values give that value exactly, values a bucket apart each
// exactly, and smooth or two-mode distributions within 2 %
// (TestHistogramPercentiles); the bound is the bucket holding the exact value, 9 % wide.
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

// histQuantiles reads the percentiles of a merged histogram h (the Go
// twin of histQuantilesSQL, for answers of a few rows: the stats and
// pipeline figures get the merged arrays).
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
		r := math.Max(math.Ceil(level*tot), 1)
		b := 0
		for b < n-1 && cs[b] < r {
			b++
		}
		if b == 0 {
			continue // values ≤ 0
		}
		cnt, sum, sq := h[3*b], h[3*b+1], h[3*b+2]
		mean := sum / cnt
		lo, hi := math.Pow(2, float64(b-1)/histPerDouble), math.Pow(2, float64(b)/histPerDouble)
		half := math.Max(math.Min(math.Sqrt(3*math.Max(sq/cnt-mean*mean, 0)), math.Min(mean-lo, hi-mean)), 0)
		frac := (r - (cs[b] - cnt) - 0.5) / cnt
		if v := mean + half*(2*frac-1); !math.IsNaN(v) && !math.IsInf(v, 0) {
			q[k] = int64(math.Round(v))
		}
	}
	return Quantiles{P50: q[0], P95: q[1], P99: q[2]}
}

// histQuantilesSQL merges the histograms of the column col and reads its
// percentiles as histQuantiles does: an Array(Float64), one value a level,
// or none when there is no value (the time series: a row a bucket, too
// many to send whole). It names h, cs, tot and rs in its SELECT.
//
// A lambda copies each column it reads from outside for every element it
// runs on: no lambda here that runs on a bucket reads an array from
// outside (the counts are filtered out of h, the ranks computed before the
// buckets are searched for them); indexing the counts out of h made the
// 1-minute time series of a day 3× slower.
func histQuantilesSQL(col string) string {
	cnt, sum, sq := "h[3 * i - 2]", "h[3 * i - 1]", "h[3 * i]"
	mean := "(" + sum + " / " + cnt + ")"
	sd := "sqrt(3 * greatest(" + sq + " / " + cnt + " - " + mean + " * " + mean + ", 0))"
	lo := "pow(2, (i - 2) / " + strconv.Itoa(histPerDouble) + ")"
	hi := "pow(2, (i - 1) / " + strconv.Itoa(histPerDouble) + ")"
	half := "greatest(least(" + sd + ", " + mean + " - " + lo + ", " + hi + " - " + mean + "), 0)"
	frac := "((r - (cs[i] - " + cnt + ") - 0.5) / " + cnt + ")"
	levels := make([]string, len(histLevels))
	for k, l := range histLevels {
		levels[k] = strconv.FormatFloat(l, 'f', -1, 64)
	}
	counts := "arrayFilter((x, j) -> j % 3 = 1, (sumForEachMerge(" + col + ") AS h), arrayEnumerate(h))"
	ranks := "arrayMap(q -> greatest(ceil(q * tot), 1), if(length((arrayCumSum(" + counts + ") AS cs)) > 0 AND (cs[-1] AS tot) > 0, [" + strings.Join(levels, ", ") + "], []))"
	return "arrayMap((r, i) -> if(i <= 1, 0., " + mean + " + " + half + " * (2 * " + frac + " - 1)), (" + ranks + " AS rs)," +
		" arrayMap(r -> toInt64(arrayFirstIndex(c -> c >= r, cs)), rs))"
}

// histogramSchema is migration 8: the histogram tables, filled from the
// base tables (each row once: FINAL) when created empty, then fed from the
// feeds by views like every aggregate (exact under replay: the feeds carry
// each row once, fedKeysSchema); and the quantile tables' views dropped
// (their tables stay, unfed, for the replicas of an older version during a
// rolling upgrade; they expire by their TTL).
//
// Rows fed between a table's fill and its view's creation (a replica of
// the older version still feeding) are in neither: percentiles only, no
// count reads these tables. Periods the base tables no longer hold (logs
// kept shorter than aggregates) have no percentiles after the upgrade.
func histogramSchema(t Target) []string {
	db, on := t.Database, t.On()
	withSteps, noSteps := levelKeys(true), levelKeys(false)
	kinds := []struct{ name, base, value, cond, levels string }{
		{"latency", "attempts", "latency_ms", "http_status > 0", withSteps},
		{"time_to_success", "executions", "toInt64(dateDiff('millisecond', started_at, completed_at))", "status = 'completed'", noSteps},
	}
	// rows is the histograms of src's rows (cond) by time column col (fn
	// of started_at) and level.
	rows := func(col, fn, src, value, cond, levels string) string {
		return `SELECT ` + col + `, k.1 AS level, k.2 AS pipeline_id, k.3 AS trigger_type, k.4 AS step_id,
		       sumForEachState(` + histArraySQL("b", "c", "s", "q") + `) AS hist
		FROM (SELECT ` + col + `, k, b, count() AS c, sum(v) AS s, sum(toFloat64(v) * v) AS q
		      FROM (SELECT ` + fn + `(started_at) AS ` + col + `, arrayJoin(` + levels + `) AS k,
		                   toUInt64(greatest(` + value + `, 0)) AS v, ` + histBucketSQL("v") + ` AS b
		            FROM ` + src + ` WHERE ` + cond + `)
		      GROUP BY ` + col + `, k, b)
		GROUP BY ` + col + `, k`
	}
	var stmts []string
	for _, k := range kinds {
		m, h := db+"."+k.name+"_hist_1m", db+"."+k.name+"_hist_1h"
		stmts = append(stmts,
			histTable(t, k.name, "1m", "minute"),
			histTable(t, k.name, "1h", "hour"),
			// histograms — filled from the base tables when created
			`INSERT INTO `+m+` `+rows("minute", "toStartOfMinute", db+"."+k.base+" FINAL", k.value, k.cond+` AND (SELECT count() FROM `+m+`) = 0`, k.levels),
			`INSERT INTO `+h+` SELECT toStartOfHour(minute) AS hour, level, pipeline_id, trigger_type, step_id, sumForEachMergeState(hist)
		FROM `+m+` WHERE (SELECT count() FROM `+h+`) = 0
		GROUP BY hour, level, pipeline_id, trigger_type, step_id`)
		for _, g := range []struct{ suffix, col, fn string }{{"1m", "minute", "toStartOfMinute"}, {"1h", "hour", "toStartOfHour"}} {
			table := db + "." + k.name + "_hist_" + g.suffix
			stmts = append(stmts,
				// histograms — fed like the other aggregates
				`CREATE MATERIALIZED VIEW IF NOT EXISTS `+table+`_mv`+on+` TO `+table+` AS
		`+rows(g.col, g.fn, db+"."+k.base+"_feed", k.value, k.cond, k.levels))
		}
	}
	for _, q := range quantileTables {
		stmts = append(stmts, `DROP VIEW IF EXISTS `+t.Table(q.kind+"_"+q.suffix)+`_mv`+on)
	}
	return stmts
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
