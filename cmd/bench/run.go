package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type options struct {
	bin, out, dir    string
	events, events10 int
	backlog, bareN   int
	halfSeconds      int
	halfRate         float64
	keep             bool
	profile          string
	set              setFlags
}

// setFlags are WEBHOOKD_* settings given to webhookd (-set K=V, repeated).
type setFlags []string

func (s *setFlags) String() string     { return strings.Join(*s, " ") }
func (s *setFlags) Set(v string) error { *s = append(*s, v); return nil }

func runBench(args []string) error {
	var o options
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	self, _ := os.Executable()
	fs.StringVar(&o.bin, "bin", filepath.Dir(self), "directory holding webhookd and devkafka")
	fs.StringVar(&o.out, "out", "bench-results.json", "where to write the results")
	fs.StringVar(&o.dir, "dir", "", "working directory for data and logs (default: a temporary one)")
	fs.IntVar(&o.events, "events", 200000, "events for the one-pipeline peak phase")
	fs.IntVar(&o.events10, "events10", 30000, "events for the ten-pipeline peak phase (ten deliveries each)")
	fs.IntVar(&o.backlog, "backlog", 1000000, "events in the backlog drained from cold")
	fs.IntVar(&o.bareN, "bare", 200000, "requests of the bare client")
	fs.IntVar(&o.halfSeconds, "half-seconds", 15, "length of each half-peak latency phase")
	fs.Float64Var(&o.halfRate, "half-rate", 0, "deliveries/s of both latency phases (default: half of each phase's peak, the deliveries alone); a fixed rate compares builds at the same load")
	fs.BoolVar(&o.keep, "keep", false, "keep the working directory")
	fs.StringVar(&o.profile, "profile", "", "write webhookd's CPU profile during the one-pipeline peak to this file (its allocations until then to FILE.allocs, a heap profile of the backlog to FILE.heap)")
	fs.Var(&o.set, "set", "a WEBHOOKD_*=value setting for webhookd (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.dir == "" {
		d, err := os.MkdirTemp("", "webhookd-bench-")
		if err != nil {
			return err
		}
		o.dir = d
		if !o.keep {
			defer os.RemoveAll(d)
		}
	} else if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	b := &bench{o: o}
	defer b.stopAll()
	res, err := b.run()
	if res != nil {
		res.print(os.Stdout)
		raw, _ := json.MarshalIndent(res, "", "  ")
		if werr := os.WriteFile(o.out, append(raw, '\n'), 0o644); werr != nil && err == nil {
			err = werr
		}
	}
	if err == nil && res.Missing > 0 {
		err = fmt.Errorf("void run: %d deliveries missing", res.Missing)
	}
	return err
}

const token = "bench-token-0123456789abcdef"

type bench struct {
	o        options
	kafka    *child
	rcv      *child
	wh       *child
	brokers  string
	rcvAddr  string
	admin    string
	producer *kgo.Client
	// The last values read from this webhookd's /metrics (sampleNow).
	last     sample
	seq      uint64 // next event sequence number
	children []*child
}

// child is a process of the benchmark, its output in a log file.
type child struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

func (b *bench) start(name string, env []string, bin string, args ...string) (*child, error) {
	f, err := os.Create(filepath.Join(b.o.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c := &child{cmd: cmd, log: f, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	b.children = append(b.children, c)
	return c, nil
}

// waitLine waits until the child's log has a line match accepts.
func (c *child) waitLine(match func(string) (string, bool), within time.Duration) (string, error) {
	deadline := time.Now().Add(within)
	for {
		f, err := os.Open(c.log.Name())
		if err != nil {
			return "", err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if v, ok := match(sc.Text()); ok {
				f.Close()
				return v, nil
			}
		}
		f.Close()
		select {
		case <-c.done:
			return "", fmt.Errorf("exited (see %s)", c.log.Name())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("not within %v (see %s)", within, c.log.Name())
		}
	}
}

func (c *child) stop() {
	if c == nil {
		return
	}
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(60 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func (b *bench) stopAll() {
	if b.producer != nil {
		b.producer.Close()
	}
	for i := len(b.children) - 1; i >= 0; i-- {
		b.children[i].stop()
	}
}

// cpu is the child's user+system CPU so far (Linux /proc).
func (c *child) cpu() time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// memKB reads a VmXXX field of the child's /proc status, in kB.
func (c *child) memKB(field string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

func (b *bench) environ(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WEBHOOKD_") || strings.HasPrefix(kv, "WEBHOOKD_CHDB_LIBRARY=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func (b *bench) startWebhookd() error {
	env := append([]string{"WEBHOOKD_KAFKA_BROKERS=" + b.brokers, "WEBHOOKD_DATA_DIR=" + filepath.Join(b.o.dir, "webhookd"),
		"WEBHOOKD_ADMIN_ADDR=127.0.0.1:0", "WEBHOOKD_ADMIN_TOKEN=" + token, "WEBHOOKD_LOG_FORMAT=json", "WEBHOOKD_LOG_LEVEL=info"}, b.o.set...)
	wh, err := b.start("webhookd", b.environ(env...), filepath.Join(b.o.bin, "webhookd"), "dev")
	if err != nil {
		return err
	}
	b.wh, b.last = wh, sample{}
	addr, err := wh.waitLine(func(l string) (string, bool) {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil || m["msg"] != "admin API listening" {
			return "", false
		}
		a, ok := m["addr"].(string)
		return a, ok
	}, 3*time.Minute)
	if err != nil {
		return fmt.Errorf("webhookd: %w", err)
	}
	b.admin = addr
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("webhookd never became ready")
		}
	}
}

func (b *bench) api(method, path, body string) (int, map[string]any, error) {
	req, _ := http.NewRequest(method, "http://"+b.admin+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out, nil
}

// pipeline creates the benchmark's pipeline that delivers to /r/<idx>.
func (b *bench) pipeline(idx int) (string, error) {
	code, out, err := b.api("POST", "/api/admin/webhooks/pipelines", fmt.Sprintf(`{"name":"bench-%d","trigger_type":"click","steps":[{"order":1,
	  "url":"http://%s/r/%d","signing_key":"bench-signing-key",
	  "body_template":{"seq":"{{click.seq}}","sent":"{{click.sent}}","event":"{{trigger_type}}","country":"{{click.country}}","device":"{{click.device}}"}}]}`, idx, b.rcvAddr, idx))
	if err != nil || code != 201 {
		return "", fmt.Errorf("create pipeline: %d %v %v", code, out, err)
	}
	return out["data"].(map[string]any)["id"].(string), nil
}

func (b *bench) receiverStats(window bool) (receiverStats, error) {
	u := "http://" + b.rcvAddr + "/stats"
	if window {
		u += "?window"
	}
	var st receiverStats
	resp, err := http.Get(u)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (b *bench) window(on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	resp, err := http.Post("http://"+b.rcvAddr+"/window?on="+v, "text/plain", nil)
	if err == nil {
		resp.Body.Close()
	}
	return err
}

// produce sends n events open-loop at rate per second (0: as fast as the
// producer goes), each with its send time; it returns the first sequence
// number.
func (b *bench) produce(n int, rate float64) (uint64, error) {
	first := b.seq
	errc := make(chan error, 1)
	start := time.Now()
	for i := range n {
		if rate > 0 {
			if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
				time.Sleep(d) // open-loop pacing
			}
		}
		seq := b.seq
		b.seq++
		v := fmt.Sprintf(`{"id":"b-%d","type":"click.tracked","data":{"id":"c%d","seq":%d,"sent":%d,"country":"US","device":"mobile"}}`, seq, seq, seq, time.Now().UnixNano())
		b.producer.Produce(context.Background(), &kgo.Record{Topic: "afftok.clicks", Key: []byte(strconv.FormatUint(seq, 10)), Value: []byte(v)}, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		})
	}
	if err := b.producer.Flush(context.Background()); err != nil {
		return first, err
	}
	select {
	case err := <-errc:
		return first, fmt.Errorf("produce: %w", err)
	default:
	}
	return first, nil
}

// sample is the delivered count, webhookd's CPU, the execution log's rows
// (one per delivery) and the Go heap at a moment.
type sample struct {
	at        time.Time
	delivered int64
	cpu       time.Duration
	logged    int64 // webhookd_analytics_rows_total{table="executions"}
	heap      int64 // go_memstats_heap_inuse_bytes
	deferred  int64 // webhookd_deferred_total{reason="host_saturated"}
}

// sampleNow takes a sample with delivered deliveries. A failed scrape of
// /metrics keeps the last values read.
func (b *bench) sampleNow(delivered int64) sample {
	if m, ok := b.metrics(loggedMetric, heapMetric, deferredMetric); ok {
		b.last = sample{logged: int64(m[loggedMetric]), heap: int64(m[heapMetric]), deferred: int64(m[deferredMetric])}
	}
	s := b.last
	s.at, s.delivered, s.cpu = time.Now(), delivered, b.wh.cpu()
	return s
}

// drain waits until the receiver has want more unique deliveries over
// pipelines 0..k-1 than base (or nothing arrives for a minute), sampling as
// it goes; it also calls each(sample) on every sample.
func (b *bench) drain(base int64, want int64, k int, each func(sample)) ([]sample, int64, error) {
	var samples []sample
	last, lastChange := int64(-1), time.Now()
	for {
		st, err := b.receiverStats(false)
		if err != nil {
			return samples, 0, err
		}
		var got int64
		for i := 0; i < k; i++ {
			got += st.Unique[i]
		}
		got -= base
		s := b.sampleNow(got)
		samples = append(samples, s)
		if each != nil {
			each(s)
		}
		if got >= want {
			return samples, got, nil
		}
		if got != last {
			last, lastChange = got, time.Now()
		} else if time.Since(lastChange) > time.Minute {
			return samples, got, nil // the ledger says what is missing
		}
		time.Sleep(200 * time.Millisecond) // sampling interval
	}
}

// steadyFrom is the first sample at 20 % of want: where the steady state is
// taken to start.
func steadyFrom(samples []sample, want int64) *sample {
	for i := range samples {
		if samples[i].delivered >= want/5 {
			return &samples[i]
		}
	}
	return &samples[0]
}

// steady is the rate and CPU per 1000 between 20 % and 80 % of want: the
// deliveries alone, whether or not the execution log keeps up with them.
func steady(samples []sample, want int64) (float64, float64) {
	a, z := steadyFrom(samples, want), (*sample)(nil)
	for i := range samples {
		if samples[i].delivered <= want*4/5 {
			z = &samples[i]
		}
	}
	if z == nil || z.delivered <= a.delivered {
		a, z = &samples[0], &samples[len(samples)-1]
	}
	return per(a, z, z.delivered-a.delivered)
}

// per is the rate of n deliveries between samples a and z and webhookd's
// CPU per 1000 of them.
func per(a, z *sample, n int64) (float64, float64) {
	d := float64(n)
	if d <= 0 || !z.at.After(a.at) {
		return 0, 0
	}
	return d / z.at.Sub(a.at).Seconds(), (z.cpu - a.cpu).Seconds() * 1000 / d
}

// sinkNames are the analytics sink's consumer group and the topic it logs
// from, as webhookd names them with the bench's settings.
func (b *bench) sinkNames() (group, topic string) {
	group, prefix := "webhookd-dispatcher", ""
	for _, kv := range b.o.set {
		if v, ok := strings.CutPrefix(kv, "WEBHOOKD_CONSUMER_GROUP="); ok {
			group = v
		}
		if v, ok := strings.CutPrefix(kv, "WEBHOOKD_TOPIC_PREFIX="); ok {
			prefix = v
		}
	}
	return group + "-analytics", prefix + "webhooks.executions"
}

// sinkLag is how many records of the executions topic the analytics sink
// has not committed: it commits a batch once it is in the base tables and
// fed to the aggregates, so its rest is all of its work done. Read by the
// bench's own client (the broker's work, not webhookd's); false when any
// partition's lag is unknown.
func (b *bench) sinkLag() (int64, bool) {
	group, topic := b.sinkNames()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lags, err := kadm.NewClient(b.producer).Lag(ctx, group)
	if err != nil {
		return 0, false
	}
	l, ok := lags[group]
	if !ok || l.Error() != nil {
		return 0, false
	}
	var n int64
	for _, p := range l.Lag[topic] {
		if p.Err != nil || p.Lag < 0 {
			return 0, false
		}
		n += p.Lag
	}
	return n, true
}

// lagQuiet is how long the sink's lag must stay put to be at rest: the
// sink writes a batch at least every flush interval (1 s).
const lagQuiet = 2500 * time.Millisecond

// sinkSettled waits until the sink's lag is known and has not changed for
// lagQuiet (at most three minutes) and returns it: its lag with all its
// work done (a transaction's end marker may count), so that a phase starts
// with the last phase's logging finished.
func (b *bench) sinkSettled() int64 {
	lag, known := b.sinkLag()
	since, start := time.Now(), time.Now()
	for (!known || time.Since(since) < lagQuiet) && time.Since(start) < 3*time.Minute {
		time.Sleep(200 * time.Millisecond)
		if l, k := b.sinkLag(); l != lag || k != known {
			lag, known, since = l, k, time.Now()
		}
	}
	return lag
}

// logsCaughtUp samples on after the phase's last delivery until the
// analytics sink has done all its work for the phase: the execution log
// has a row for every delivery since start (the phase's first sample, with
// the sink settled), and then the sink's lag is back at rest, or — should
// its rest differ — has stayed put for lagQuiet; the samples end where the
// later of the two happened. It gives up when nothing moves for a minute
// (or after ten), ending at the last movement. It returns samples with
// those after the last delivery appended.
func (b *bench) logsCaughtUp(samples []sample, rest int64) []sample {
	start, last := samples[0], samples[len(samples)-1]
	began := time.Now()
	lag, known := b.sinkLag()
	moved, lagMoved, logged := len(samples)-1, len(samples)-1, -1 // logged: the first sample with every row
	for {
		if logged < 0 && last.logged-start.logged >= last.delivered-start.delivered {
			logged = len(samples) - 1
		}
		switch {
		case logged >= 0 && known && lag <= rest:
			return samples
		case logged >= 0 && known && time.Since(samples[lagMoved].at) >= lagQuiet:
			return samples[:max(logged, lagMoved)+1]
		case time.Since(samples[max(moved, lagMoved)].at) >= time.Minute || time.Since(began) >= 10*time.Minute:
			fmt.Fprintf(os.Stderr, "the analytics sink did not catch up (%d rows of %d logged, lag %d, at rest %d): the figures with the log count less than its whole cost\n",
				last.logged-start.logged, last.delivered-start.delivered, lag, rest)
			return samples[:max(moved, lagMoved)+1]
		}
		time.Sleep(200 * time.Millisecond)
		l, k := b.sinkLag()
		s := b.sampleNow(last.delivered)
		samples = append(samples, s)
		if s.logged != last.logged {
			moved = len(samples) - 1
		}
		if l != lag || k != known {
			lagMoved = len(samples) - 1
		}
		last, lag, known = s, l, k
	}
}

// allIn is the rate and CPU per 1000 of a phase's deliveries from its
// start (its first sample, taken with the sink settled) to when the
// execution log had caught up with them (logsCaughtUp): what a delivery
// costs in full, its logging included, and the rate at which webhookd
// keeps up with all of it. The window holds the phase's ramp and the
// sink's flush interval once.
func allIn(samples []sample) (float64, float64) {
	a, z := &samples[0], &samples[len(samples)-1]
	return per(a, z, z.delivered-a.delivered)
}

func (b *bench) uniqueTotal(k int) (int64, error) {
	st, err := b.receiverStats(false)
	if err != nil {
		return 0, err
	}
	var n int64
	for i := 0; i < k; i++ {
		n += st.Unique[i]
	}
	return n, nil
}

// deadTotal is the DLQ's size as the API reports it.
func (b *bench) deadTotal() int64 {
	_, out, err := b.api("GET", "/api/admin/webhooks/logs/dlq?limit=1", "")
	if err != nil || out == nil {
		return 0
	}
	d, _ := out["data"].(map[string]any)
	p, _ := d["pagination"].(map[string]any)
	t, _ := p["total"].(float64)
	return int64(t)
}

// peakPhase drives n events as fast as possible through k pipelines and
// fills in r: deliveries/s and webhookd's CPU s per 1000 until the
// execution log has caught up (allIn), and the steady state of the
// deliveries alone (steady). started, if not nil, is called once the sink
// has settled, as the events start.
func (b *bench) peakPhase(name string, n, k int, res *results, r *phaseResult, started func()) error {
	rest := b.sinkSettled()
	base, err := b.uniqueTotal(k)
	if err != nil {
		return err
	}
	first := b.sampleNow(0)
	if started != nil {
		started()
	}
	if _, err := b.produce(n, 0); err != nil {
		return err
	}
	want := int64(n * k)
	samples, got, err := b.drain(base, want, k, nil)
	if err != nil {
		return err
	}
	res.ledger(name, want, got)
	samples = append([]sample{first}, samples...)
	done := samples[len(samples)-1]
	r.DeliveriesRate, r.DeliveriesCPUPer1000 = steady(samples, want)
	r.LogsBehind = max(done.delivered-(done.logged-first.logged), 0)
	samples = b.logsCaughtUp(samples, rest)
	r.Rate, r.CPUPer1000 = allIn(samples)
	r.LogsCatchUpSeconds = max(samples[len(samples)-1].at.Sub(done.at).Seconds(), 0)
	r.Deferred = done.deferred - first.deferred
	fmt.Fprintf(os.Stderr, "%s: %d deliveries, %.0f/s, %.3f CPU-s per 1000 until the execution log had caught up (%.1f s after the last delivery); the deliveries alone %.0f/s, %.3f CPU-s per 1000, the log %d rows behind at the last; %d deferrals to a full host\n",
		name, got, r.Rate, r.CPUPer1000, r.LogsCatchUpSeconds, r.DeliveriesRate, r.DeliveriesCPUPer1000, r.LogsBehind, r.Deferred)
	return nil
}

// halfPhase produces open-loop at eventsPerSecond for the configured time
// and returns the p50/p99 event-to-delivery latency in ms.
func (b *bench) halfPhase(name string, eventsPerSecond float64, k int, res *results) (float64, float64, error) {
	b.sinkSettled()
	base, err := b.uniqueTotal(k)
	if err != nil {
		return 0, 0, err
	}
	if err := b.window(true); err != nil {
		return 0, 0, err
	}
	n := int(eventsPerSecond * float64(b.o.halfSeconds))
	if _, err := b.produce(n, eventsPerSecond); err != nil {
		return 0, 0, err
	}
	want := int64(n * k)
	_, got, err := b.drain(base, want, k, nil)
	if err != nil {
		return 0, 0, err
	}
	res.ledger(name, want, got)
	st, err := b.receiverStats(true)
	if err != nil {
		return 0, 0, err
	}
	_ = b.window(false)
	p50, p99 := float64(st.P50us)/1000, float64(st.P99us)/1000
	fmt.Fprintf(os.Stderr, "%s: %d deliveries at %.0f events/s, latency p50 %.1f ms p99 %.1f ms (max %.1f ms)\n", name, got, eventsPerSecond, p50, p99, float64(st.MaxUs)/1000)
	return p50, p99, nil
}

func (b *bench) run() (*results, error) {
	res := &results{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Targets: map[string]bool{}, HalfRate: b.o.halfRate}
	var err error
	// The broker, with a data directory like dev mode's.
	if b.kafka, err = b.start("devkafka", os.Environ(), filepath.Join(b.o.bin, "devkafka"), "-addr", "127.0.0.1:0", "-data-dir", filepath.Join(b.o.dir, "kafka")); err != nil {
		return nil, err
	}
	if b.brokers, err = b.kafka.waitLine(func(l string) (string, bool) { return strings.CutPrefix(l, "listening ") }, time.Minute); err != nil {
		return nil, fmt.Errorf("devkafka: %w", err)
	}
	if b.rcv, err = b.start("receiver", os.Environ(), os.Args[0], "receiver", "-addr", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	if b.rcvAddr, err = b.rcv.waitLine(func(l string) (string, bool) { return strings.CutPrefix(l, "listening ") }, time.Minute); err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}

	// The baseline: a bare client on the same receiver.
	bare, err := b.start("bare", os.Environ(), os.Args[0], "bare", "-url", "http://"+b.rcvAddr+"/bare", "-n", strconv.Itoa(b.o.bareN), "-c", "64")
	if err != nil {
		return nil, err
	}
	<-bare.done
	var out struct {
		N       int
		Seconds float64
	}
	raw, _ := os.ReadFile(bare.log.Name())
	if err := json.Unmarshal(raw, &out); err != nil || !bare.cmd.ProcessState.Success() {
		return nil, fmt.Errorf("bare client: %v %s", err, raw)
	}
	cpu := bare.cmd.ProcessState.UserTime() + bare.cmd.ProcessState.SystemTime()
	res.Bare = bareResult{Rate: float64(out.N) / out.Seconds, CPUPer1000: cpu.Seconds() * 1000 / float64(out.N)}
	fmt.Fprintf(os.Stderr, "bare client: %.0f requests/s, %.3f CPU-s per 1000\n", res.Bare.Rate, res.Bare.CPUPer1000)

	if err := b.startWebhookd(); err != nil {
		return res, err
	}
	if b.producer, err = kgo.NewClient(kgo.SeedBrokers(b.brokers), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(1<<20)); err != nil {
		return res, err
	}
	var ids []string
	id, err := b.pipeline(0)
	if err != nil {
		return res, err
	}
	ids = append(ids, id)
	// A warm-up, so the peak is steady state.
	if err := b.peakPhase("warm-up", 20000, 1, &results{}, &phaseResult{}, nil); err != nil {
		return res, err
	}

	one := &res.One
	profiled := make(chan struct{})
	startProfile := func() { go func() { defer close(profiled); b.cpuProfile(b.o.profile, 8) }() }
	if b.o.profile == "" {
		startProfile = nil
		close(profiled)
	}
	if err = b.peakPhase("1 pipeline, peak", b.o.events, 1, res, one, startProfile); err != nil {
		return res, err
	}
	<-profiled
	if b.o.profile != "" {
		// Allocations since webhookd started: the warm-up's and this peak's.
		b.fetchProfile(b.o.profile+".allocs", "allocs")
	}
	// Half the peak of the deliveries alone: the higher of the two rates.
	one.HalfPeakRate = b.halfRate(one.DeliveriesRate)
	if one.P50Half, one.P99Half, err = b.halfPhase("1 pipeline, half peak", one.HalfPeakRate, 1, res); err != nil {
		return res, err
	}

	for i := 1; i < 10; i++ {
		id, err := b.pipeline(i)
		if err != nil {
			return res, err
		}
		ids = append(ids, id)
	}
	ten := &res.Ten
	if err = b.peakPhase("10 pipelines, peak", b.o.events10, 10, res, ten, nil); err != nil {
		return res, err
	}
	ten.HalfPeakRate = b.halfRate(ten.DeliveriesRate)
	if ten.P50Half, ten.P99Half, err = b.halfPhase("10 pipelines, half peak", ten.HalfPeakRate/10, 10, res); err != nil {
		return res, err
	}
	for _, id := range ids[1:] {
		_, _, _ = b.api("DELETE", "/api/admin/webhooks/pipelines/"+id, "")
	}

	// The backlog: stopped, a million events arrive, started cold.
	if b.o.backlog > 0 {
		b.wh.stop()
		base, err := b.uniqueTotal(1)
		if err != nil {
			return res, err
		}
		if _, err := b.produce(b.o.backlog, 0); err != nil {
			return res, err
		}
		start := time.Now()
		if err := b.startWebhookd(); err != nil {
			return res, err
		}
		var heap, rss int64
		heapProfiled := false
		samples, got, err := b.drain(base, int64(b.o.backlog), 1, func(s sample) {
			heap = max(heap, s.heap)
			rss = max(rss, b.wh.memKB("VmRSS")<<10)
			if b.o.profile != "" && !heapProfiled && s.delivered > int64(b.o.backlog)/2 {
				heapProfiled = true
				b.fetchProfile(b.o.profile+".heap", "heap")
			}
		})
		if err != nil {
			return res, err
		}
		res.ledger("backlog", int64(b.o.backlog), got)
		last := samples[len(samples)-1]
		res.Backlog = backlogResult{Events: b.o.backlog, Seconds: last.at.Sub(start).Seconds(),
			PeakRSSMB: float64(max(rss, b.wh.memKB("VmHWM")<<10)) / (1 << 20), PeakHeapMB: float64(heap) / (1 << 20), Deferred: last.deferred}
		res.Backlog.Rate = float64(got) / res.Backlog.Seconds
		fmt.Fprintf(os.Stderr, "backlog: %d events drained from cold in %.1f s (%.0f/s), peak RSS %.0f MB, peak heap %.0f MB, %d deferrals to a full host\n",
			got, res.Backlog.Seconds, res.Backlog.Rate, res.Backlog.PeakRSSMB, res.Backlog.PeakHeapMB, res.Backlog.Deferred)
	}
	res.Dead = b.deadTotal()
	res.finish()
	return res, nil
}

// halfRate is the deliveries/s of a latency phase after a peak of
// deliveries alone: half of it, or -half-rate.
func (b *bench) halfRate(peak float64) float64 {
	if b.o.halfRate > 0 {
		return b.o.halfRate
	}
	return peak / 2
}

// cpuProfile writes webhookd's CPU profile over the next seconds to path.
func (b *bench) cpuProfile(path string, seconds int) {
	b.fetchProfile(path, fmt.Sprintf("profile?seconds=%d", seconds))
}

// fetchProfile writes one of webhookd's /debug/pprof profiles to path.
func (b *bench) fetchProfile(path, which string) {
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/debug/pprof/%s", b.admin, which), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}

// The /metrics series the samples read.
const (
	loggedMetric   = `webhookd_analytics_rows_total{table="executions"}`
	heapMetric     = "go_memstats_heap_inuse_bytes"
	deferredMetric = `webhookd_deferred_total{reason="host_saturated"}`
)

// metrics reads the named series from webhookd's /metrics (absent: 0);
// false when it could not be read.
func (b *bench) metrics(names ...string) (map[string]float64, bool) {
	out := make(map[string]float64, len(names))
	req, _ := http.NewRequest("GET", "http://"+b.admin+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := scrapeClient.Do(req)
	if err != nil {
		return out, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return out, false
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if ok && slices.Contains(names, name) {
			out[name], _ = strconv.ParseFloat(v, 64)
		}
	}
	return out, sc.Err() == nil
}

var scrapeClient = &http.Client{Timeout: 5 * time.Second}
