package dispatcher

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// TestHostMetricsAreBoundedWhateverTheNumberOfHosts: 25 busy hosts and 15
// open circuits give 10 host series plus "other" for in-flight and at most
// 10 breaker series, with the totals intact.
func TestHostMetricsAreBoundedWhateverTheNumberOfHosts(t *testing.T) {
	var stats []HostStat
	for i := range 25 {
		s := HostStat{Host: fmt.Sprintf("h%02d.example", i), InFlight: i + 1, Breaker: BreakerClosed}
		if i < 15 {
			s.Breaker, s.Fails = BreakerOpen, 5+i
		}
		if i == 14 {
			s.Breaker = BreakerHalfOpen
		}
		stats = append(stats, s)
	}
	series := map[string]map[string]float64{}
	for _, m := range hostMetrics(stats) {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		name := m.Desc().String()
		label := ""
		if len(d.Label) > 0 {
			label = d.Label[0].GetValue()
		}
		for _, n := range []string{"webhookd_host_in_flight_requests", "webhookd_in_flight_requests", "webhookd_host_breaker_state", "webhookd_breakers"} {
			if contains(name, `"`+n+`"`) {
				if series[n] == nil {
					series[n] = map[string]float64{}
				}
				series[n][label] = d.GetGauge().GetValue()
			}
		}
	}
	if got := series["webhookd_in_flight_requests"][""]; got != 325 { // 1+…+25
		t.Errorf("in flight: %v", got)
	}
	hosts := series["webhookd_host_in_flight_requests"]
	if len(hosts) != 11 || hosts["h24.example"] != 25 || hosts["h15.example"] != 16 || hosts["other"] != 325-(16+25)*10/2 {
		t.Errorf("per host: %v", hosts)
	}
	br := series["webhookd_host_breaker_state"]
	if len(br) != 10 || br["h14.example"] != 2 || br["h13.example"] != 1 || br["h04.example"] != 0 {
		t.Errorf("breakers: %v", br)
	}
	if b := series["webhookd_breakers"]; b["open"] != 14 || b["half_open"] != 1 || b["closed"] != 10 {
		t.Errorf("breaker counts: %v", b)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestSnapshotReportsInFlightAndBreakerStates follows one host through
// in flight, open, and half-open.
func TestSnapshotReportsInFlightAndBreakerStates(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := &Hosts{Limit: 4, Failures: 2, Cooldown: time.Minute, Now: func() time.Time { return now }}
	ctx := context.Background()
	p1, _, _ := h.Acquire(ctx, "a.example", time.Second)
	p2, _, _ := h.Acquire(ctx, "a.example", time.Second)
	if s := h.Snapshot(); len(s) != 1 || s[0].InFlight != 2 || s[0].Breaker != BreakerClosed {
		t.Fatalf("%+v", s)
	}
	p1.Done(Unhealthy)
	p2.Done(Unhealthy)
	if s := h.Snapshot(); s[0].InFlight != 0 || s[0].Breaker != BreakerOpen {
		t.Fatalf("%+v", s)
	}
	now = now.Add(2 * time.Minute)
	if s := h.Snapshot(); s[0].Breaker != BreakerHalfOpen {
		t.Fatalf("%+v", s)
	}
}
