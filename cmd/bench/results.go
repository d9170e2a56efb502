package main

import (
	"fmt"
	"io"
)

// results is bench-results.json.
type results struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`

	Bare    bareResult    `json:"bare_client"`
	One     phaseResult   `json:"one_pipeline"`
	Ten     phaseResult   `json:"ten_pipelines"`
	Backlog backlogResult `json:"backlog"`

	// The headline figures and their targets.
	ThroughputRatio float64         `json:"throughput_ratio"` // webhookd ÷ bare, one pipeline
	CPURatio        float64         `json:"cpu_ratio"`        // webhookd CPU per delivery ÷ bare CPU per request
	P99MsHalfPeak   float64         `json:"p99_ms_half_peak"`
	PeakRSSMB       float64         `json:"peak_rss_mb"`
	Targets         map[string]bool `json:"targets_met"`
	// HalfRate is -half-rate: the latency phases' fixed deliveries/s
	// (absent: half of each phase's peak).
	HalfRate float64 `json:"half_rate_fixed,omitempty"`

	// The ledger, over every phase: published = delivered + dead + missing.
	Ledger    []ledgerRow `json:"ledger"`
	Published int64       `json:"published"`
	Delivered int64       `json:"delivered"`
	Dead      int64       `json:"dead"`
	Missing   int64       `json:"missing"`
	Void      bool        `json:"void"`
}

type bareResult struct {
	Rate       float64 `json:"requests_per_second"`
	CPUPer1000 float64 `json:"cpu_seconds_per_1000"`
}

type phaseResult struct {
	// Rate and CPUPer1000 run from the steady state's start (20 % of the
	// phase's deliveries) to when the execution log had caught up with
	// every delivery: what a delivery costs with its logging.
	Rate               float64 `json:"deliveries_per_second"`
	CPUPer1000         float64 `json:"cpu_seconds_per_1000"`
	LogsCatchUpSeconds float64 `json:"logs_catch_up_seconds"` // after the last delivery
	// The deliveries alone, 20 % to 80 % of them (the measure before
	// logging was counted), and how many deliveries the execution log was
	// behind when the last arrived (beyond where it was at 20 %).
	DeliveriesRate       float64 `json:"deliveries_only_per_second"`
	DeliveriesCPUPer1000 float64 `json:"deliveries_only_cpu_seconds_per_1000"`
	LogsBehind           int64   `json:"logs_behind_at_last_delivery"`
	HalfPeakRate         float64 `json:"half_peak_deliveries_per_second"`
	P50Half              float64 `json:"p50_ms_half_peak"`
	P99Half              float64 `json:"p99_ms_half_peak"`
	// Deferred is the deliveries deferred to the retry topics because the
	// receiver host had its limit of requests in flight, during the peak.
	Deferred int64 `json:"host_saturated_deferrals"`
}

type backlogResult struct {
	Events     int     `json:"events"`
	Seconds    float64 `json:"seconds"`
	Rate       float64 `json:"deliveries_per_second"`
	PeakRSSMB  float64 `json:"peak_rss_mb"`
	PeakHeapMB float64 `json:"peak_heap_mb"`
	Deferred   int64   `json:"host_saturated_deferrals"`
}

type ledgerRow struct {
	Phase     string `json:"phase"`
	Published int64  `json:"published"` // deliveries owed: events × pipelines
	Delivered int64  `json:"delivered"` // unique (event, pipeline) pairs the receiver got
}

func (r *results) ledger(phase string, published, delivered int64) {
	r.Ledger = append(r.Ledger, ledgerRow{Phase: phase, Published: published, Delivered: delivered})
	r.Published += published
	r.Delivered += delivered
}

// finish computes the ratios, the ledger's balance and the targets.
func (r *results) finish() {
	if r.Bare.Rate > 0 {
		r.ThroughputRatio = r.One.Rate / r.Bare.Rate
	}
	if r.Bare.CPUPer1000 > 0 {
		r.CPURatio = r.One.CPUPer1000 / r.Bare.CPUPer1000
	}
	r.P99MsHalfPeak = r.One.P99Half
	r.PeakRSSMB = r.Backlog.PeakRSSMB
	r.Missing = max(r.Published-r.Delivered-r.Dead, 0)
	r.Void = r.Missing > 0
	r.Targets["throughput_ratio >= 0.5"] = r.ThroughputRatio >= 0.5
	r.Targets["cpu_ratio <= 3"] = r.CPURatio > 0 && r.CPURatio <= 3
	r.Targets["p99_ms_half_peak <= 50"] = r.P99MsHalfPeak > 0 && r.P99MsHalfPeak <= 50
	if r.Backlog.Events > 0 { // -backlog 0 measures no peak
		r.Targets["peak_rss_mb <= 512"] = r.PeakRSSMB <= 512
	}
}

func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "\nwebhookd end to end vs a bare net/http client (%d CPUs, %s; broker, receiver, webhookd and load generator on this machine)\n\n", r.CPUs, r.GoVersion)
	fmt.Fprintf(w, "| | deliveries/s | CPU-s / 1000 | p50 ms @ half peak | p99 ms @ half peak | deliveries alone: /s, CPU-s / 1000 |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(w, "| bare client | %.0f | %.3f | | | |\n", r.Bare.Rate, r.Bare.CPUPer1000)
	for _, p := range []struct {
		name string
		r    phaseResult
	}{{"webhookd, 1 pipeline", r.One}, {"webhookd, 10 pipelines", r.Ten}} {
		fmt.Fprintf(w, "| %s | %.0f | %.3f | %.1f | %.1f | %.0f, %.3f |\n", p.name, p.r.Rate, p.r.CPUPer1000, p.r.P50Half, p.r.P99Half, p.r.DeliveriesRate, p.r.DeliveriesCPUPer1000)
	}
	fmt.Fprintf(w, "(deliveries/s and CPU-s count until the execution log has caught up with the deliveries; the last column, the deliveries alone)\n")
	fmt.Fprintf(w, "\nbacklog of %d events from cold: %.1f s (%.0f/s), peak RSS %.0f MB, peak heap %.0f MB\n",
		r.Backlog.Events, r.Backlog.Seconds, r.Backlog.Rate, r.Backlog.PeakRSSMB, r.Backlog.PeakHeapMB)
	fmt.Fprintf(w, "throughput_ratio %.2f, cpu_ratio %.2f, p99_ms_half_peak %.1f, peak_rss_mb %.0f\n", r.ThroughputRatio, r.CPURatio, r.P99MsHalfPeak, r.PeakRSSMB)
	for k, ok := range r.Targets {
		mark := "met"
		if !ok {
			mark = "NOT met"
		}
		fmt.Fprintf(w, "  target %s: %s\n", k, mark)
	}
	if r.Backlog.Events == 0 {
		fmt.Fprintf(w, "  target peak_rss_mb <= 512: not measured (-backlog 0)\n")
	}
	if r.HalfRate > 0 {
		fmt.Fprintf(w, "  (the latency phases ran at -half-rate %.0f deliveries/s, not half of each peak)\n", r.HalfRate)
	}
	fmt.Fprintf(w, "ledger: published %d = delivered %d + dead %d + missing %d", r.Published, r.Delivered, r.Dead, r.Missing)
	if r.Void {
		fmt.Fprintf(w, " — VOID RUN: deliveries are missing")
	}
	fmt.Fprintln(w)
}
