package analytics

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/afftok/webhookd/delivery"
)

// Percentiles read from the histograms are those of the values: exact for
// equal values, for values a bucket apart and for small integers; within
// 2 % for thousands of values spread smoothly, in two modes or over hours;
// per pipeline (read in Go) and in the time series (read in SQL) alike.
func TestHistogramPercentiles(t *testing.T) {
	s := openTestStore(t, "hist")
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Date(2026, 11, 27, 9, 40, 0, 0, time.UTC) // the range: 09:40–12:20
	dists := map[string]func() int64{
		"lognormal": func() int64 { return int64(math.Exp(5.5 + 0.6*rng.NormFloat64())) },
		"uniform":   func() int64 { return 20 + rng.Int64N(480) },
		"bimodal": func() int64 {
			if rng.IntN(10) < 7 {
				return 25 + rng.Int64N(15)
			}
			return 2500 + rng.Int64N(1500)
		},
		"hours": func() int64 {
			return int64(time.Hour/time.Millisecond) + rng.Int64N(int64(3*time.Hour/time.Millisecond))
		},
		"equal":    func() int64 { return 400 },
		"apart":    nil, // 70, 90, 100, 400
		"one":      func() int64 { return 12345 },
		"tiny":     func() int64 { return rng.Int64N(12) },
		"mostzero": func() int64 { return max(0, rng.Int64N(10)-8) },
	}
	exactly := map[string]bool{"equal": true, "apart": true, "one": true, "tiny": true, "mostzero": true}
	values := map[string][]int64{}
	var b Batch
	for name, next := range dists {
		n := 4000
		switch name {
		case "equal":
			n = 5
		case "one":
			n = 1
		case "apart":
			n = 4
		}
		for i := range n {
			v := int64([]int{70, 90, 100, 400}[i%4])
			if next != nil {
				v = next()
			}
			values[name] = append(values[name], v)
			at := t0.Add(time.Duration(rng.Int64N(int64(160 * time.Minute))))
			if exactly[name] {
				at = t0.Add(90 * time.Minute) // one minute: the time series' too
			}
			b.Attempts = append(b.Attempts, delivery.Attempt{V: 1, Kind: delivery.KindAttempt, AttemptID: fmt.Sprintf("%s-%d", name, i),
				ExecutionID: fmt.Sprintf("%s-%d", name, i), PipelineID: name, TriggerType: "click", StepID: "s", Status: "success",
				HTTPStatus: 200, LatencyMS: v, StartedAt: at})
		}
	}
	if err := s.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}
	exact := func(vs []int64) Quantiles {
		vs = slices.Sorted(slices.Values(vs))
		at := func(q float64) int64 { return vs[max(int(math.Ceil(q*float64(len(vs)))), 1)-1] }
		return Quantiles{at(0.5), at(0.95), at(0.99)}
	}
	near := func(got, want Quantiles, tol float64) bool {
		ok := func(g, w int64) bool { return math.Abs(float64(g-w)) <= math.Max(1, tol*float64(w)) }
		return ok(got.P50, want.P50) && ok(got.P95, want.P95) && ok(got.P99, want.P99)
	}
	r := Range{From: t0, To: t0.Add(160 * time.Minute)}
	ps, err := s.PipelineStats(ctx, nil, r)
	if err != nil {
		t.Fatal(err)
	}
	for name, vs := range values {
		tol := 0.02
		if exactly[name] {
			tol = 0
		}
		if got, want := ps[name].LatencyMS, exact(vs); !near(got, want, tol) {
			t.Errorf("%s: percentiles %+v, exact %+v (tolerance %.0f %%)", name, got, want, 100*tol)
		}
		if !exactly[name] {
			continue
		}
		buckets, err := s.TimeSeries(ctx, Range{From: t0.Add(90 * time.Minute), To: t0.Add(91 * time.Minute), PipelineID: name}, time.Minute)
		if err != nil || len(buckets) != 1 {
			t.Fatalf("%s: time series %+v, %v", name, buckets, err)
		}
		got := Quantiles{buckets[0].LatencyMSP50, buckets[0].LatencyMSP95, buckets[0].LatencyMSP99}
		if want := exact(vs); got != want {
			t.Errorf("%s: time series percentiles %+v, exact %+v", name, got, want)
		}
	}
	// The picks (the time series') and the whole histogram (the
	// figures') give the same percentiles for every pipeline.
	for name := range values {
		rows, err := s.b.query(ctx, `SELECT sumForEachMerge(hist), `+histPicksSQL("hist")+` FROM `+s.t("latency_hist_1m")+`
			WHERE level = 'pipeline' AND pipeline_id = {p:String}`, Params{"p": name})
		if err != nil || len(rows) != 1 {
			t.Fatalf("%s: %v, %v", name, rows, err)
		}
		if whole, picks := histQuantiles(asFloats(rows[0][0])), histPicksQuantiles(asFloats(rows[0][1])); whole != picks {
			t.Errorf("%s: percentiles of the whole histogram %+v, of its picks %+v", name, whole, picks)
		}
	}
	var all []int64
	for _, vs := range values {
		all = append(all, vs...)
	}
	st, err := s.Stats(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if want := exact(all); !near(st.LatencyMS, want, 0.02) {
		t.Errorf("all pipelines: percentiles %+v, exact %+v", st.LatencyMS, want)
	}
}

// Migration 8 stopped anywhere converges when it runs again: a fill cut
// short (here: one pipeline's rows only) is made again whole, and a fill
// whose view already feeds the table is not made twice. The answers are
// the workload's, computed by hand.
func TestHistogramMigrationStoppedAnywhereConverges(t *testing.T) {
	for _, stopAfter := range []int{-1, 2, 4, 6, histStatements + 3, 2*histStatements - 1} {
		t.Run(fmt.Sprintf("stopped after %d", stopAfter), func(t *testing.T) {
			s := openRawStore(t, Options{Database: fmt.Sprintf("hmig%d", stopAfter+1)})
			ctx := context.Background()
			if err := s.migrate(ctx, migrations[:7]); err != nil {
				t.Fatal(err)
			}
			if err := s.Write(ctx, batchOf(workload(), 0, len(workload()))); err != nil {
				t.Fatal(err)
			}
			stmts := runUpTo(ctx, t, s, migrations[7], stopAfter)
			if stopAfter%histStatements == 2 {
				// The fill that followed stopped after one pipeline's rows.
				part := strings.Replace(stmts[stopAfter+1], "WHERE http_status > 0", "WHERE http_status > 0 AND pipeline_id = 'p2'", 1)
				part = strings.Replace(part, "WHERE status = 'completed'", "WHERE status = 'completed' AND pipeline_id = 'p2'", 1)
				if err := s.b.exec(ctx, part, nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			checkWorkload(t, s)
		})
	}
}

// histPicks picks out of h what histPicksSQL does, the way SQL does it.
func histPicks(h []float64) []float64 {
	var cs []float64
	var tot float64
	for b := 0; b < len(h)/3; b++ {
		tot += h[3*b]
		cs = append(cs, tot)
	}
	p := []float64{tot}
	for _, level := range histLevels {
		i := slices.IndexFunc(cs, func(c float64) bool { return c >= histRank(level, tot) }) + 1
		if i == 0 { // SQL: cs[0] is 0, the slice starts at the first bucket
			p = append(append(p, 0, 0), h[:min(3, len(h))]...)
			continue
		}
		p = append(append(p, float64(i), cs[i-1]), h[3*i-3:3*i]...)
	}
	return p
}

// FuzzHistQuantiles: any set of values, made into a histogram as the views
// make it, reads back percentiles in order, each within the bucket of the
// exact nearest-rank value (up to rounding), and exactly when the values
// are all equal; its picks (histPicksSQL) read back the same; a malformed
// array (any floats) reads back without a panic.
func FuzzHistQuantiles(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 200, 1, 0, 0}, false)
	f.Add([]byte{0, 0, 0, 0}, false)
	f.Add([]byte{7, 7, 7, 7, 7, 7, 7, 7}, false)
	f.Add([]byte{255, 255, 255, 127, 1, 2, 3, 4}, true)
	f.Fuzz(func(t *testing.T, data []byte, raw bool) {
		if raw {
			var h []float64
			for i := 0; i+8 <= len(data); i += 8 {
				h = append(h, math.Float64frombits(binary.LittleEndian.Uint64(data[i:])))
			}
			histQuantiles(h)
			histPicksQuantiles(h)
			return
		}
		var vs []int64
		for i := 0; i+4 <= len(data); i += 4 {
			vs = append(vs, int64(binary.LittleEndian.Uint32(data[i:])>>(data[i]%24)))
		}
		if len(vs) == 0 {
			return
		}
		bucket := func(v int64) int {
			if v <= 0 {
				return 0
			}
			return min(int(math.Floor(math.Log2(float64(v))*histPerDouble))+1, histBuckets-1)
		}
		var h []float64
		for _, v := range vs {
			b := bucket(v)
			for len(h) < 3*(b+1) {
				h = append(h, 0)
			}
			h[3*b]++
			h[3*b+1] += float64(v)
			h[3*b+2] += float64(v) * float64(v)
		}
		got := histQuantiles(h)
		if picks := histPicksQuantiles(histPicks(h)); picks != got {
			t.Fatalf("percentiles of the picks %+v, of the whole histogram %+v", picks, got)
		}
		sorted := slices.Sorted(slices.Values(vs))
		allEqual := sorted[0] == sorted[len(sorted)-1]
		for k, q := range []int64{got.P50, got.P95, got.P99} {
			exact := sorted[max(int(math.Ceil(histLevels[k]*float64(len(sorted)))), 1)-1]
			b := bucket(exact)
			switch {
			case allEqual && q != exact:
				t.Fatalf("level %v of %d equal values %d: %d", histLevels[k], len(vs), exact, q)
			case b == 0 && q != 0:
				t.Fatalf("level %v: %d where the exact value %d is ≤ 0", histLevels[k], q, exact)
			case b > 0 && b < histBuckets-1:
				lo, hi := math.Pow(2, float64(b-1)/histPerDouble), math.Pow(2, float64(b)/histPerDouble)
				if float64(q) < math.Floor(lo) || float64(q) > math.Ceil(hi) {
					t.Fatalf("level %v: %d outside [%v, %v), the bucket of the exact %d", histLevels[k], q, lo, hi, exact)
				}
			}
		}
		if got.P50 > got.P95 || got.P95 > got.P99 {
			t.Fatalf("percentiles out of order: %+v", got)
		}
	})
}
