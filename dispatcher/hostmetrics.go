package dispatcher

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Breaker states, as reported by HostStat and the metrics.
const (
	BreakerClosed   = "closed"
	BreakerOpen     = "open"
	BreakerHalfOpen = "half_open"
)

// HostStat is one host's state at a moment.
type HostStat struct {
	Host     string
	InFlight int
	Breaker  string // BreakerClosed, BreakerOpen or BreakerHalfOpen
	Fails    int    // consecutive failures
}

// Snapshot returns every host the limiter knows (those called recently).
func (h *Hosts) Snapshot() []HostStat {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	out := make([]HostStat, 0, len(h.hosts))
	for k, hs := range h.hosts {
		st := HostStat{Host: k, InFlight: hs.inflight.len(), Breaker: BreakerClosed, Fails: hs.fails}
		if h.open(hs) {
			st.Breaker = BreakerHalfOpen
			if now.Before(hs.openUntil) {
				st.Breaker = BreakerOpen
			}
		}
		out = append(out, st)
	}
	return out
}

// The host metrics keep a bounded number of series whatever the number of
// hosts: the TopHosts busiest hosts by requests in flight (the rest summed
// as host="other"), and the breaker state of at most TopHosts hosts whose
// circuit is not closed (the rest counted in webhookd_breakers).
const TopHosts = 10

var (
	hostInFlightDesc = prometheus.NewDesc("webhookd_host_in_flight_requests",
		"Webhook HTTP requests in flight to the busiest hosts (at most 10; the rest summed as host=\"other\").", []string{"host"}, nil)
	inFlightDesc = prometheus.NewDesc("webhookd_in_flight_requests", "Webhook HTTP requests in flight, all hosts.", nil, nil)
	breakerDesc  = prometheus.NewDesc("webhookd_host_breaker_state",
		"Circuit breaker of hosts whose circuit is not closed: 1 open, 2 half-open (at most 10 hosts, most failures first).", []string{"host"}, nil)
	breakersDesc = prometheus.NewDesc("webhookd_breakers", "Hosts by circuit breaker state (closed, open, half_open).", []string{"state"}, nil)
)

// hostCollector reports the Hosts given to ExportHostMetrics, read at
// scrape time (no state kept between scrapes, so a host that went quiet
// leaves no stale series).
type hostCollector struct{ hosts atomic.Pointer[Hosts] }

var (
	exported     hostCollector
	registerOnce sync.Once
)

// ExportHostMetrics makes h the limiter the process's host metrics report
// (the delivery dispatcher's; the admin API's test calls have their own).
func ExportHostMetrics(h *Hosts) {
	registerOnce.Do(func() { prometheus.MustRegister(&exported) })
	exported.hosts.Store(h)
}

func (c *hostCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- hostInFlightDesc
	ch <- inFlightDesc
	ch <- breakerDesc
	ch <- breakersDesc
}

func (c *hostCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range hostMetrics(c.hosts.Load().Snapshot()) {
		ch <- m
	}
}

// hostMetrics turns a snapshot into the bounded metric set.
func hostMetrics(stats []HostStat) []prometheus.Metric {
	var out []prometheus.Metric
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...))
	}
	total := 0
	states := map[string]int{BreakerClosed: 0, BreakerOpen: 0, BreakerHalfOpen: 0}
	var busy, broken []HostStat
	for _, s := range stats {
		total += s.InFlight
		states[s.Breaker]++
		if s.InFlight > 0 {
			busy = append(busy, s)
		}
		if s.Breaker != BreakerClosed {
			broken = append(broken, s)
		}
	}
	gauge(inFlightDesc, float64(total))
	slices.SortFunc(busy, func(a, b HostStat) int { return cmp.Or(b.InFlight-a.InFlight, cmp.Compare(a.Host, b.Host)) })
	other := 0
	for i, s := range busy {
		if i < TopHosts {
			gauge(hostInFlightDesc, float64(s.InFlight), s.Host)
		} else {
			other += s.InFlight
		}
	}
	if len(busy) > TopHosts {
		gauge(hostInFlightDesc, float64(other), "other")
	}
	slices.SortFunc(broken, func(a, b HostStat) int { return cmp.Or(b.Fails-a.Fails, cmp.Compare(a.Host, b.Host)) })
	for i, s := range broken {
		if i == TopHosts {
			break
		}
		v := 1.0
		if s.Breaker == BreakerHalfOpen {
			v = 2
		}
		gauge(breakerDesc, v, s.Host)
	}
	for st, n := range states {
		gauge(breakersDesc, float64(n), st)
	}
	return out
}
