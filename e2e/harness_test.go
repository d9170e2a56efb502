package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/admin/apispec"
)

// Bounds. Waits for something that must happen are minutes long, so the
// suite passes on a machine whose cores are busy; a failure costs the wait.
// Checks that nothing happens stay short (each test passes its own).
const (
	arriveWithin = 2 * time.Minute // a request, an execution log, a DLQ item, a record
	readyWithin  = 3 * time.Minute // process start to /readyz 200 (chDB opens in dev mode)
	stopWithin   = 2 * time.Minute // SIGTERM to exit (the grace period is seconds)
)

const (
	testToken  = "test-token-0123456789abcdef"
	secretsKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	// The spec's schedule and the tiers, scaled down 50×: 5s→100ms … 5m→6s.
	testTiers = "100ms,200ms,600ms,1200ms,6s"
)

var (
	workDir     string      // temp root: binaries, data directories
	webhookdBin string      // built from ../cmd/webhookd
	devkafkaBin string      // built from ../cmd/devkafka
	brokers     string      // the devkafka process's address
	shared      *instance   // one `webhookd dev` most tests share
	producer    *kgo.Client // produces to the broker
	// spec checks every admin API answer the suite gets against the
	// OpenAPI document.
	spec *apispec.Checker
)

// sharedEnv is the shared instance's settings (what app's in-process tests
// ran with): scaled retry schedule, no breaker trips, quick analytics.
var sharedEnv = map[string]string{
	"WEBHOOKD_ANALYTICS_FLUSH_INTERVAL": "100ms", "WEBHOOKD_SHUTDOWN_GRACE": "5s",
	"WEBHOOKD_RETRY_TIERS": testTiers, "WEBHOOKD_RETRY_DELAY_SCALE": "0.02",
	// Tests that fail receivers on purpose must not trip the breaker.
	"WEBHOOKD_BREAKER_FAILURES": "1000",
	// Statistics with every batch: tests read them once the logs show a run.
	"WEBHOOKD_ANALYTICS_FEED_INTERVAL": "0s",
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) (code int) {
	var err error
	if workDir, err = os.MkdirTemp("", "webhookd-e2e-"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(workDir)
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "e2e setup: "+format+"\n", a...)
		return 1
	}

	if spec, err = apispec.New(); err != nil {
		return fail("%v", err)
	}
	start := time.Now()
	bin := filepath.Join(workDir, "bin")
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator), "../cmd/webhookd", "../cmd/devkafka")
	if out, err := build.CombinedOutput(); err != nil {
		return fail("go build: %v\n%s", err, out)
	}
	webhookdBin, devkafkaBin = filepath.Join(bin, "webhookd"), filepath.Join(bin, "devkafka")
	built := time.Since(start)

	kafkaLog := newLogBuffer("devkafka")
	kafka, err := launch(devkafkaBin, []string{"-addr", "127.0.0.1:0"}, os.Environ(), kafkaLog)
	if err != nil {
		return fail("devkafka: %v", err)
	}
	defer func() {
		if took, err := kafka.signal(syscall.SIGTERM, stopWithin); err != nil {
			fmt.Fprintf(os.Stderr, "devkafka exit after SIGTERM (%v): %v\n", took, err)
			code = 1
		}
	}()
	brokers, err = kafkaLog.waitLine(0, func(l string) (string, bool) { return strings.CutPrefix(l, "listening ") }, kafka.done, readyWithin)
	if err != nil {
		return fail("devkafka never said `listening`: %v\n%s", err, kafkaLog.tail(20))
	}

	shared = makeInstance("shared", "dev", filepath.Join(workDir, "shared"), sharedEnv)
	if err := shared.start(); err != nil {
		return fail("shared webhookd dev: %v\n%s", err, shared.logs.tail(40))
	}
	fmt.Fprintf(os.Stderr, "e2e: binaries built in %v; devkafka on %s; shared webhookd dev ready on %s after %v\n",
		built.Round(time.Millisecond), brokers, shared.AdminAddr, time.Since(start).Round(time.Millisecond))
	producer, err = kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		return fail("producer: %v", err)
	}

	code = m.Run()

	producer.Close()
	took, err := shared.Stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "shared webhookd exit after SIGTERM (%v): %v\n%s\n", took, err, shared.logs.tail(40))
		code = 1
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "last lines of the shared webhookd's log:\n%s\n", shared.logs.tail(60))
	}
	return code
}

// instance is one webhookd process, restartable with the same data
// directory and settings.
type instance struct {
	Name    string
	Mode    string            // "dev" or "serve"
	Bin     string            // binary to run; webhookdBin unless a test built its own
	DataDir string            // WEBHOOKD_DATA_DIR, kept across restarts
	Env     map[string]string // WEBHOOKD_* settings over the harness's common ones

	// AdminAddr is where the admin API (or, without the admin role, the
	// health endpoints) listens, as the process logged it; a restart
	// picks a new port.
	AdminAddr string

	logs    *logBuffer // every line of every run
	runFrom int        // index in logs of the current run's first line
	proc    *process   // the current run
}

var instanceCount atomic.Int32

// startInstance starts webhookd in mode ("dev" or "serve") with env over the
// common settings (external broker, port-0 admin address, JSON debug logs,
// token, secrets key, template env allow-list), waits until /readyz answers
// 200, and stops it when the test ends. The admin address is read from the
// log, so WEBHOOKD_LOG_LEVEL must stay info or debug.
func startInstance(t testing.TB, mode string, env map[string]string) *instance {
	t.Helper()
	in := newInstance(t, mode, env)
	in.Start(t)
	return in
}

// newInstance is startInstance without the start, for a test that changes
// Bin first.
func newInstance(t testing.TB, mode string, env map[string]string) *instance {
	t.Helper()
	in := makeInstance(fmt.Sprintf("%s-%d", mode, instanceCount.Add(1)), mode, t.TempDir(), env)
	t.Cleanup(func() {
		if in.proc != nil && !in.proc.exited() {
			if took, err := in.Stop(); err != nil {
				t.Errorf("%s: exit after SIGTERM (%v): %v\n%s", in.Name, took, err, in.logs.tail(40))
			}
		}
		if t.Failed() {
			t.Logf("last lines of %s's log:\n%s", in.Name, in.logs.tail(40))
		}
	})
	return in
}

func makeInstance(name, mode, dataDir string, env map[string]string) *instance {
	return &instance{Name: name, Mode: mode, Bin: webhookdBin, DataDir: dataDir, Env: maps.Clone(env), logs: newLogBuffer(name)}
}

// ownTopics gives an instance its own internal topics, event topic
// (<prefix>events) and consumer groups, so it shares the broker with the
// others without sharing their work.
func ownTopics(prefix string) map[string]string {
	return map[string]string{"WEBHOOKD_TOPIC_PREFIX": prefix, "WEBHOOKD_EVENT_TOPICS": prefix + "events", "WEBHOOKD_CONSUMER_GROUP": prefix + "group"}
}

// merge is the maps' union, later ones winning.
func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		maps.Copy(out, m)
	}
	return out
}

// environ is the child's environment: this process's, without WEBHOOKD_*
// settings a developer may have exported (except where libchdb.so is), plus
// the common settings and the instance's own (where an empty value unsets
// a common one, e.g. WEBHOOKD_KAFKA_BROKERS for dev mode's own broker).
func (in *instance) environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "WEBHOOKD_") && !strings.HasPrefix(kv, "WEBHOOKD_CHDB_LIBRARY=") {
			continue
		}
		env = append(env, kv)
	}
	common := map[string]string{
		"WEBHOOKD_KAFKA_BROKERS": brokers, "WEBHOOKD_ADMIN_ADDR": "127.0.0.1:0", "WEBHOOKD_DATA_DIR": in.DataDir,
		"WEBHOOKD_LOG_FORMAT": "json", "WEBHOOKD_LOG_LEVEL": "debug",
		"WEBHOOKD_ADMIN_TOKEN": testToken, "WEBHOOKD_SECRETS_KEY": secretsKey,
		"WEBHOOKD_TEMPLATE_ENV_ALLOW": "CRM_API_KEY,WEBHOOK_SECRET",
		"CRM_API_KEY":                 "crm-key-123", "WEBHOOK_SECRET": "whsec-from-env", "NOT_ALLOWED_SECRET": "must-not-leak",
	}
	for k, v := range merge(common, in.Env) {
		if v != "" { // an empty value removes a common setting
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Start runs the process (again, after Stop or Kill: same data directory
// and settings) and waits until it is ready.
func (in *instance) Start(t testing.TB) {
	t.Helper()
	if err := in.start(); err != nil {
		t.Fatalf("%s: %v\n%s", in.Name, err, in.logs.tail(40))
	}
}

func (in *instance) start() error {
	if in.proc != nil && !in.proc.exited() {
		return errors.New("already running")
	}
	from := in.logs.count() // a restart must not read the last run's address
	p, err := launch(in.Bin, []string{in.Mode}, in.environ(), in.logs)
	if err != nil {
		return err
	}
	in.proc, in.runFrom = p, from
	begin := time.Now()
	addr, err := in.logs.waitLine(from, func(l string) (string, bool) {
		m, ok := jsonLine(l)
		if !ok || (m["msg"] != "admin API listening" && m["msg"] != "health endpoints listening") {
			return "", false
		}
		a, ok := m["addr"].(string)
		return a, ok
	}, p.done, readyWithin)
	if err != nil {
		return fmt.Errorf("no `listening` log line with its address: %v (exit: %v)", err, in.exitErr())
	}
	in.AdminAddr = addr
	for {
		resp, err := apiClient.Get("http://" + addr + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Since(begin) > readyWithin {
			return fmt.Errorf("/readyz not 200 within %v (last: %v)", readyWithin, err)
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited before it was ready: %v", p.err)
		case <-time.After(100 * time.Millisecond): // polling /readyz is what an orchestrator does
		}
	}
}

func (in *instance) exitErr() error {
	if in.proc != nil && in.proc.exited() {
		return in.proc.err
	}
	return nil
}

// Stop sends SIGTERM and waits for the exit: how long it took, and the exit
// error (nil for a clean exit 0).
func (in *instance) Stop() (time.Duration, error) {
	return in.proc.signal(syscall.SIGTERM, stopWithin)
}

// Restart stops the process with SIGTERM (a clean exit is required) and
// starts it again on the same data directory; it returns how long the stop took.
func (in *instance) Restart(t testing.TB) time.Duration {
	t.Helper()
	took, err := in.Stop()
	if err != nil {
		t.Fatalf("%s: exit after SIGTERM (%v): %v\n%s", in.Name, took, err, in.logs.tail(40))
	}
	in.Start(t)
	return took
}

// Kill sends SIGKILL and waits until the process is gone.
func (in *instance) Kill() {
	_, _ = in.proc.signal(syscall.SIGKILL, stopWithin)
}

// RSS is the current run's resident memory (Linux /proc), 0 if unknown.
func (in *instance) RSS() int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", in.proc.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}

// Logs is every line the instance printed, over all its runs.
func (in *instance) Logs() []string { return in.logs.Lines() }

// WaitLog waits until a line of the current run contains every one of
// parts, and returns it.
func (in *instance) WaitLog(t testing.TB, parts ...string) string {
	t.Helper()
	line, err := in.logs.waitLine(in.runFrom, func(l string) (string, bool) {
		for _, p := range parts {
			if !strings.Contains(l, p) {
				return "", false
			}
		}
		return l, true
	}, in.proc.done, arriveWithin)
	if err != nil {
		t.Fatalf("%s: no log line with %q: %v", in.Name, parts, err)
	}
	return line
}

var apiClient = &http.Client{Timeout: time.Minute}

// API calls the instance's admin API with the test token and decodes the
// JSON answer. body is nil, a string (sent as is) or a value to marshal.
func (in *instance) API(t testing.TB, method, path string, body any) (int, map[string]any) {
	t.Helper()
	code, _, out := in.Call(t, method, path, body)
	return code, out
}

// Call is API with extra request headers (name, value pairs) that also
// returns the response's headers.
func (in *instance) Call(t testing.TB, method, path string, body any, headers ...string) (int, http.Header, map[string]any) {
	t.Helper()
	code, header, out, err := in.do(method, path, body, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return code, header, out
}

// do is Call for any goroutine: it reports a failed call, an answer that
// is not JSON or one the OpenAPI document does not describe as an error.
func (in *instance) do(method, path string, body any, headers ...string) (int, http.Header, map[string]any, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, "http://"+in.AdminAddr+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if err := spec.Check(req, resp.StatusCode, resp.Header, raw); err != nil {
		return 0, nil, nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: status %d, body not JSON: %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, out, nil
}

// CreatePipeline posts a pipeline (201 expected), returns the response's
// data, and deletes the pipeline when the test ends.
func (in *instance) CreatePipeline(t testing.TB, body string) map[string]any {
	t.Helper()
	code, out := in.API(t, "POST", "/api/admin/webhooks/pipelines", body)
	if code != 201 {
		t.Fatalf("create pipeline: %d %v", code, out)
	}
	data := out["data"].(map[string]any)
	id := data["id"].(string)
	t.Cleanup(func() {
		if in.proc != nil && !in.proc.exited() {
			in.API(t, "DELETE", "/api/admin/webhooks/pipelines/"+id, nil)
		}
	})
	return data
}

// WaitExecution polls logs/recent (the user's view) until the pipeline's
// execution for a trigger id appears with a final status.
func (in *instance) WaitExecution(t testing.TB, pipelineID, triggerID string) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(arriveWithin); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		code, out := in.API(t, "GET", "/api/admin/webhooks/logs/recent?pipeline_id="+pipelineID+"&limit=50", nil)
		if code != 200 {
			continue
		}
		for _, l := range out["data"].(map[string]any)["logs"].([]any) {
			lm := l.(map[string]any)
			if lm["trigger_id"] == triggerID && lm["status"] != "retrying" {
				return lm
			}
		}
	}
	t.Fatalf("no final execution for pipeline %s trigger %s in logs/recent within %v", pipelineID, triggerID, arriveWithin)
	return nil
}

// DLQItems polls a DLQ list path (/api/admin/webhooks/logs/dlq or its
// /dlq alias) until it has exactly n items for the pipeline.
func (in *instance) DLQItems(t testing.TB, path, pipelineID string, n int) []map[string]any {
	t.Helper()
	var items []any
	for deadline := time.Now().Add(arriveWithin); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		code, out := in.API(t, "GET", path+"?pipeline_id="+pipelineID, nil)
		if code != 200 {
			t.Fatalf("dlq list: %d %v", code, out)
		}
		items = out["data"].(map[string]any)["items"].([]any)
		if len(items) == n {
			res := make([]map[string]any, n)
			for i, it := range items {
				res[i] = it.(map[string]any)
			}
			return res
		}
	}
	t.Fatalf("dlq for %s has %d items after %v, want %d", pipelineID, len(items), arriveWithin, n)
	return nil
}

// WaitCaughtUp waits until every consumer group of the instance (event
// dispatcher, retry tiers, failover; not the analytics sink) has committed
// everything on its topics: nothing is pending or waiting anywhere. Consumer
// lag is Kafka's own account of unfinished work, so this is the signal that
// no more requests can come.
func (in *instance) WaitCaughtUp(t testing.TB) {
	t.Helper()
	group := in.Env["WEBHOOKD_CONSUMER_GROUP"]
	if group == "" {
		group = "webhookd-dispatcher"
	}
	waitCaughtUp(t, in.Name, producer, group)
}

// WaitAnalyticsCaughtUp waits until the instance's analytics sink has
// committed everything on the executions and DLQ topics: every record is
// in ClickHouse and fed to the aggregates (the sink commits only then).
func (in *instance) WaitAnalyticsCaughtUp(t testing.TB) {
	t.Helper()
	group := in.Env["WEBHOOKD_CONSUMER_GROUP"]
	if group == "" {
		group = "webhookd-dispatcher"
	}
	waitCaughtUp(t, in.Name, producer, group+"-analytics")
}

// waitCaughtUp is WaitCaughtUp on the broker cl talks to.
func waitCaughtUp(t testing.TB, name string, cl *kgo.Client, group string) {
	t.Helper()
	adm := kadm.NewClient(cl)
	for deadline := time.Now().Add(arriveWithin); ; time.Sleep(50 * time.Millisecond) { // lag has no push signal
		groups, err := adm.ListGroups(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var mine []string
		for _, g := range groups.Groups() {
			// The jobs group only elects the replica that runs jobs: it
			// commits nothing, so it has no lag to wait for.
			if (g == group || strings.HasPrefix(g, group+"-")) && g != group+"-analytics" && g != group+"-jobs" {
				mine = append(mine, g)
			}
		}
		lags, err := adm.Lag(context.Background(), mine...)
		pending := int64(0)
		if err == nil {
			lags.Each(func(l kadm.DescribedGroupLag) {
				if l.Error() != nil {
					pending++
					return
				}
				pending += l.Lag.Total()
			})
		}
		if err == nil && pending == 0 && len(mine) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: consumer groups %v still have %d records pending after %v (%v)", name, mine, pending, arriveWithin, err)
		}
	}
}

// The shared instance's helpers, as most tests use them.

func api(t testing.TB, method, path string, body any) (int, map[string]any) {
	t.Helper()
	return shared.API(t, method, path, body)
}

func createPipeline(t testing.TB, body string) map[string]any {
	t.Helper()
	return shared.CreatePipeline(t, body)
}

func waitExecution(t testing.TB, pipelineID, triggerID string) map[string]any {
	t.Helper()
	return shared.WaitExecution(t, pipelineID, triggerID)
}

func dlqItems(t testing.TB, path, pipelineID string, n int) []map[string]any {
	t.Helper()
	return shared.DLQItems(t, path, pipelineID, n)
}

// produce writes one record and waits for the broker's ack.
func produce(t testing.TB, topic, key, value string) {
	t.Helper()
	if err := producer.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(value)}).FirstErr(); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
}

// readTopic reads topics from their start until done returns true for a
// record (done sees every record, in order per partition), failing after
// arriveWithin.
func readTopic(t testing.TB, topic string, done func(*kgo.Record) bool, more ...string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(append([]string{topic}, more...)...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), arriveWithin)
	defer cancel()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		found := false
		fs.EachRecord(func(r *kgo.Record) { found = found || done(r) })
		if found {
			return
		}
	}
	t.Fatalf("reading %s: the record looked for did not come within %v", topic, arriveWithin)
}

// captured is one request a receiver got.
type captured struct {
	Path   string
	Header http.Header
	Body   []byte
	At     time.Time
}

// receiver is a real HTTP server in the test process that records every
// request on reqs; respondWith decides the answers (default 200
// {"received": true}).
type receiver struct {
	*httptest.Server
	reqs    chan captured
	ended   chan struct{} // closed when the test ends: nobody reads reqs any more
	mu      sync.Mutex
	respond func(c captured, w http.ResponseWriter)
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{reqs: make(chan captured, 100), ended: make(chan struct{})}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		c := captured{Path: req.URL.RequestURI(), Header: req.Header.Clone(), Body: b, At: time.Now()}
		r.mu.Lock()
		respond := r.respond
		r.mu.Unlock()
		if respond != nil {
			respond(c, w)
		} else {
			w.WriteHeader(200)
			_, _ = w.Write([]byte(`{"received": true}`))
		}
		select {
		case r.reqs <- c:
		case <-r.ended: // a handler blocked here would hold Close up
		}
	}))
	t.Cleanup(func() { close(r.ended); r.Close() })
	return r
}

// respondWith sets how the receiver answers (nil: 200 {"received": true}).
func (r *receiver) respondWith(f func(c captured, w http.ResponseWriter)) {
	r.mu.Lock()
	r.respond = f
	r.mu.Unlock()
}

// next waits for the receiver's next request.
func (r *receiver) next(t testing.TB) captured {
	t.Helper()
	select {
	case c := <-r.reqs:
		return c
	case <-time.After(arriveWithin):
		t.Fatalf("receiver got no request within %v", arriveWithin)
	}
	return captured{}
}

// noneSoFar checks that the receiver got no request it was not asked about.
// Call it after a signal that proves nothing more can come (an execution's
// final state, a DLQ item, the consumer groups caught up): a request a
// receiver answers is on reqs before its sender sees the answer.
func (r *receiver) noneSoFar(t testing.TB) {
	t.Helper()
	select {
	case c := <-r.reqs:
		t.Fatalf("unexpected request %s %s", c.Path, c.Body)
	default:
	}
}
