// Package outagetest runs one webhookd (app.New, as `webhookd dev` builds
// it: kfake, chDB, real HTTP receivers) whose analytics sink writes through
// a fault-injecting store, to show what a ClickHouse outage does and does
// not do. It is a package of its own because chDB allows one session per
// process.
package outagetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/analytics"
	"github.com/afftok/webhookd/analytics/analyticstest"
	"github.com/afftok/webhookd/app"
	"github.com/afftok/webhookd/config"
	"github.com/afftok/webhookd/metrics"
)

const adminToken = "outage-admin-token-0123456789"

// lockedBuffer collects the app's log lines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// receiver counts the deliveries it answers 200 to, and signals each.
type receiver struct {
	*httptest.Server
	n   atomic.Int64
	got chan struct{}
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{got: make(chan struct{}, 1<<16)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		r.n.Add(1)
		r.got <- struct{}{}
	}))
	t.Cleanup(r.Close)
	return r
}

// wait returns once n more deliveries arrived, and how long that took.
func (r *receiver) wait(t *testing.T, n int) time.Duration {
	t.Helper()
	start := time.Now()
	timeout := time.NewTimer(2 * time.Minute)
	defer timeout.Stop()
	for range n {
		select {
		case <-r.got:
		case <-timeout.C:
			t.Fatalf("receiver: %d deliveries so far, waiting for more", r.n.Load())
		}
	}
	return time.Since(start)
}

// TestClickHouseOutageDelaysLogsButNotDeliveries: ClickHouse goes down,
// then slow, then fails one insert after taking its rows. Deliveries keep
// flowing the whole time; the sink backs off (logging state changes, not
// tries); after recovery every attempt and execution row is in ClickHouse
// exactly once (raw counts, no FINAL).
func TestClickHouseOutageDelaysLogsButNotDeliveries(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{
		"WEBHOOKD_DATA_DIR": filepath.Join(dir, "data"), "WEBHOOKD_DEV_KAFKA_ADDR": "127.0.0.1:0",
		"WEBHOOKD_ADMIN_ADDR": "127.0.0.1:0", "WEBHOOKD_ADMIN_TOKEN": adminToken,
		"WEBHOOKD_CHDB_LIBRARY": os.Getenv("WEBHOOKD_CHDB_LIBRARY"), "WEBHOOKD_ALLOW_PRIVATE_TARGETS": "true",
		"WEBHOOKD_ANALYTICS_FLUSH_INTERVAL": "50ms", "WEBHOOKD_ANALYTICS_BATCH_SIZE": "100",
		// The aggregates fed at their own cadence (pending batches fed
		// together, then committed) go through the outage as well.
		"WEBHOOKD_ANALYTICS_FEED_INTERVAL": "300ms",
		// One receiver takes every delivery: its host's in-flight limit
		// must not defer any to a retry tier (a pause of seconds that has
		// nothing to do with ClickHouse and would blur the rates compared).
		"WEBHOOKD_MAX_IN_FLIGHT_PER_HOST": "1024",
	}
	cfg, err := config.Load(config.ModeDev, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	began := time.Now()
	fault := &analyticstest.FaultStore{}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)), app.WithSinkStore(func(s analytics.SinkStore) analytics.SinkStore {
		fault.SinkStore = s
		return fault
	}))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done; a.Close() }()
	for tick := time.NewTicker(20 * time.Millisecond); !a.Ready(); {
		select {
		case err := <-done:
			t.Fatalf("webhookd stopped while starting: %v", err)
		case <-tick.C:
		}
	}

	rcv := newReceiver(t)
	body := `{"name":"outage","trigger_type":"click","steps":[{"order":1,"url":"` + rcv.URL + `/hook"}]}`
	req, _ := http.NewRequest("POST", "http://"+a.Admin.Addr()+"/api/admin/webhooks/pipelines", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 && resp.StatusCode != 200 {
		t.Fatalf("create pipeline: %d", resp.StatusCode)
	}
	var pipe struct {
		Data struct{ ID string } `json:"data"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&pipe)

	producer, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(a.Config.KafkaBrokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	sent := 0
	produce := func(n int) {
		t.Helper()
		recs := make([]*kgo.Record, n)
		for i := range recs {
			sent++
			recs[i] = &kgo.Record{Topic: "afftok.clicks", Key: []byte(fmt.Sprint(sent)),
				Value: fmt.Appendf(nil, `{"id":"evt_%d","type":"click.tracked","data":{"id":"clk_%d"}}`, sent, sent)}
		}
		if err := producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(producer)
	sinkGroup := a.Config.ConsumerGroup + "-analytics"
	// caughtUp waits until ClickHouse holds every attempt and execution of
	// the events sent so far and the sink has committed its offsets: no
	// batch can land after that.
	// The deadline follows progress: it fails when no row was added for
	// two minutes, not when a loaded machine takes longer than that for
	// all of them (rows stop growing at sent, so the loop ends).
	caughtUp := func() (attempts, executions [][]string) {
		t.Helper()
		rows, deadline := -1, time.Now()
		for ; ; time.Sleep(50 * time.Millisecond) { // polling: the store has no change signal
			if n := len(attempts) + len(executions); n > rows {
				rows, deadline = n, time.Now().Add(2*time.Minute)
			}
			if time.Now().After(deadline) {
				t.Fatalf("the sink did not catch up: %d attempt rows, %d executions, want %d", len(attempts), distinct(executions, 0), sent)
			}
			var err error
			if attempts, err = a.Store.Rows(ctx, "attempts"); err != nil || len(attempts) < sent {
				continue
			}
			if executions, err = a.Store.Rows(ctx, "executions"); err != nil || distinct(executions, 0) < sent {
				continue
			}
			lags, err := adm.Lag(ctx, sinkGroup)
			if err == nil && lags.Error() == nil && lags[sinkGroup].Lag.Total() == 0 {
				return attempts, executions
			}
		}
	}
	const n = 300
	// Healthy: the reference delivery rate.
	produce(n)
	healthy := rcv.wait(t, n)
	caughtUp()

	// Down: every call refused. Deliveries go on at their rate.
	fault.Down(true)
	produce(n)
	down := rcv.wait(t, n)
	for fault.Refused.Load() < 3 {
		// A few tries of the sink's backoff (200 ms, 400 ms, …) while down.
		time.Sleep(10 * time.Millisecond)
	}
	if got := gauge(metrics.AnalyticsFailing); got != 1 {
		t.Errorf("webhookd_analytics_sink_failing = %v while ClickHouse is down", got)
	}
	if got := gauge(metrics.AnalyticsBackoff); got <= 0 {
		t.Errorf("webhookd_analytics_sink_backoff_seconds = %v while ClickHouse is down", got)
	}
	t.Logf("deliveries: healthy %d in %v (%.0f/s); ClickHouse down %d in %v (%.0f/s)",
		n, healthy, float64(n)/healthy.Seconds(), n, down, float64(n)/down.Seconds())
	// Full rate: within a factor of the healthy phase (generous, as the
	// machine's cores are shared; a delivery path that waited for the
	// sink would not finish at all while the store is down).
	if down > 4*healthy+2*time.Second {
		t.Errorf("deliveries while ClickHouse is down took %v, healthy %v", down, healthy)
	}

	// Slow: up again, every call 300 ms.
	fault.Slow(300 * time.Millisecond)
	fault.Down(false)
	produce(n)
	slow := rcv.wait(t, n)
	t.Logf("deliveries while ClickHouse is slow: %d in %v (%.0f/s)", n, slow, float64(n)/slow.Seconds())
	caughtUp()
	if got := gauge(metrics.AnalyticsFailing); got != 0 {
		t.Errorf("webhookd_analytics_sink_failing = %v after recovery", got)
	}

	// One insert written and then reported failed.
	fault.Slow(0)
	fault.FailNextAfterWrite()
	produce(n)
	rcv.wait(t, n)

	// Recovery: every row there exactly once.
	att, exe := caughtUp()
	if len(att) != sent || distinct(att, 0) != sent {
		t.Errorf("attempts: %d raw rows, %d distinct, want %d each", len(att), distinct(att, 0), sent)
	}
	if distinct(exe, 0) != sent || len(exe) != distinct(exe, 0, 10) {
		t.Errorf("executions: %d raw rows, %d distinct (id, seq), %d executions; want %d executions, no doubled row", len(exe), distinct(exe, 0, 10), distinct(exe, 0), sent)
	}
	if got := rcv.n.Load(); got != int64(sent) {
		t.Errorf("receiver got %d deliveries, want %d", got, sent)
	}
	// The aggregates too: every row fed once, whatever failed on the way
	// (the StoredKeys re-check skips stored rows for the base table, not
	// for the feed; a feed made again drops what it had fed).
	st, err := a.Store.Stats(ctx, analytics.Range{From: began.Add(-time.Minute), To: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if st.Executions != int64(sent) || st.Completed != int64(sent) || st.Finished != int64(sent) {
		t.Errorf("stats: %d executions, %d completed, %d finished; want %d each", st.Executions, st.Completed, st.Finished, sent)
	}
	if mfs, err := prometheus.DefaultGatherer.Gather(); err == nil {
		for _, mf := range mfs {
			if mf.GetName() == "webhookd_in_flight_requests" || mf.GetName() == "webhookd_host_in_flight_requests" {
				for _, m := range mf.Metric {
					t.Logf("%s %v: %v", mf.GetName(), m.Label, m.GetGauge().GetValue())
				}
			}
			if mf.GetName() == "webhookd_deferred_total" {
				for _, m := range mf.Metric {
					t.Logf("deferred %v: %v", m.Label, m.GetCounter().GetValue())
				}
			}
		}
	}
	// Two outages in the sink's view (down; the one failed insert), each
	// logged when it began and when it ended, whatever the number of tries.
	if f, r := logs.count("ClickHouse inserts failing"), logs.count("ClickHouse inserts recovered"); f != 2 || r != 2 {
		t.Errorf("logged %d failing and %d recovered lines, want 2 and 2 (%d calls refused)", f, r, fault.Refused.Load())
	}
}

// distinct counts the distinct values of the given columns over rows.
func distinct(rows [][]string, cols ...int) int {
	seen := map[string]bool{}
	for _, r := range rows {
		var k []string
		for _, c := range cols {
			k = append(k, r[c])
		}
		seen[strings.Join(k, "\x00")] = true
	}
	return len(seen)
}

func gauge(g prometheus.Gauge) float64 {
	var m dto.Metric
	_ = g.Write(&m)
	return m.GetGauge().GetValue()
}
