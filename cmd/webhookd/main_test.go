package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/afftok/webhookd/config"
	"github.com/afftok/webhookd/memlimit"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// bin is the webhookd binary the tests run, built once.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "webhookd-cmd")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "webhookd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// webhookd runs the binary with only env as its WEBHOOKD_* settings; it
// must end within a minute.
func webhookd(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("webhookd %v: %v", args, err)
	}
	return r
}

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A configuration with mistakes in the file and the environment stops
// serve at once, exit status 1, with every problem on its own line naming
// its key and where it was set, and no stack trace.
func TestServeRefusesABadConfigurationListingEveryProblem(t *testing.T) {
	file := write(t, "webhookd.yaml", `kafka_brokers: broker:9092
kafka_session_timeout: 3s
retry_tiers: [10s, 1s]
max_in_flight: 0
admin_tokens_file: /nonexistent/tokens
clickhouse_addr: ch:9000
shutdown_grace: 30
admin_adrr: ":8080"
`)
	start := time.Now()
	r := webhookd(t, map[string]string{"WEBHOOKD_LOG_LEVEL": "verbose"}, "serve", "--config", file)
	if r.code != 1 {
		t.Fatalf("exit status %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	for _, want := range []string{
		"webhookd: configuration: 7 problems:\n",
		"  " + file + ` line 8: unknown key "admin_adrr" (did you mean admin_addr?)` + "\n",
		"  shutdown_grace (" + file + ` line 7): "30" is not a duration such as 30s or 5m` + "\n",
		"  WEBHOOKD_LOG_LEVEL (environment): \"verbose\" is not debug, info, warn or error\n",
		"  kafka_session_timeout (" + file + " line 2): 3s is outside the brokers' allowed range, 6s to 30m",
		"  retry_tiers (" + file + " line 3): tiers must be in ascending order: 1s comes after 10s\n",
		"  max_in_flight (" + file + " line 4): must be at least 1\n",
		"  admin_tokens_file (" + file + " line 5): /nonexistent/tokens: no such file or directory\n",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "goroutine") || strings.Contains(r.stderr, "panic") || r.stdout != "" {
		t.Errorf("output:\n%s\n%s", r.stdout, r.stderr)
	}
	t.Logf("refused in %v:\n%s", time.Since(start), r.stderr)

	// The environment wins over the file: fixed there, the file's mistake is gone.
	r = webhookd(t, map[string]string{"WEBHOOKD_KAFKA_SESSION_TIMEOUT": "45s"}, "serve", "--config", file)
	if r.code != 1 || strings.Contains(r.stderr, "session_timeout") || !strings.Contains(r.stderr, "max_in_flight") {
		t.Errorf("exit %d:\n%s", r.code, r.stderr)
	}
	// An unreadable file is one problem, named.
	r = webhookd(t, map[string]string{"WEBHOOKD_CONFIG": "/nonexistent/webhookd.yaml"}, "dev")
	if r.code != 1 || !strings.Contains(r.stderr, "configuration file: open /nonexistent/webhookd.yaml: no such file or directory") {
		t.Errorf("exit %d:\n%s", r.code, r.stderr)
	}
}

// webhookd config prints defaults, file and environment merged, secrets
// redacted, as YAML that works as a configuration file.
func TestConfigPrintsTheEffectiveConfigurationRedacted(t *testing.T) {
	tokens := write(t, "tokens", "")
	file := write(t, "webhookd.yaml", `kafka_brokers: [file:9092]
kafka_user: svc
kafka_password: file-kafka-password
kafka_sasl_mechanism: SCRAM-SHA-256
clickhouse_addr: ch:9000
admin_tokens_file: `+tokens+`
topic_partitions: 12
`)
	env := map[string]string{
		"WEBHOOKD_KAFKA_BROKERS": "env-a:9092,env-b:9092", "WEBHOOKD_CLICKHOUSE_PASSWORD": "env-ch-password",
		"WEBHOOKD_SECRETS_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "WEBHOOKD_KAFKA_BROKER": "typo:9092",
	}
	r := webhookd(t, env, "config", "--config", file)
	if r.code != 0 {
		t.Fatalf("exit status %d:\n%s", r.code, r.stderr)
	}
	for _, want := range []string{
		"kafka_brokers: ['env-a:9092', 'env-b:9092'] # from WEBHOOKD_KAFKA_BROKERS\n",
		"topic_partitions: 12 # from " + file + " line 7\n",
		"kafka_password: ~ # redacted: set, give it in the environment; from " + file + " line 3\n",
		"clickhouse_password: ~ # redacted: set, give it in the environment; from WEBHOOKD_CLICKHOUSE_PASSWORD\n",
		"secrets_key: ~ # redacted",
		"consumer_group: webhookd-dispatcher\n",
		"kafka_session_timeout: 10s\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, secret := range []string{"file-kafka-password", "env-ch-password", env["WEBHOOKD_SECRETS_KEY"]} {
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("secret %q printed", secret)
		}
	}
	if !strings.Contains(r.stderr, "WEBHOOKD_KAFKA_BROKER is no setting") {
		t.Errorf("misspelt variable not reported:\n%s", r.stderr)
	}
	// The output is a configuration file: with the secrets from the
	// environment it gives the same configuration.
	printed := write(t, "printed.yaml", r.stdout)
	again := webhookd(t, map[string]string{"WEBHOOKD_KAFKA_PASSWORD": "file-kafka-password", "WEBHOOKD_CLICKHOUSE_PASSWORD": "env-ch-password",
		"WEBHOOKD_SECRETS_KEY": env["WEBHOOKD_SECRETS_KEY"]}, "config", "--config", printed)
	if again.code != 0 {
		t.Fatalf("printed configuration refused:\n%s", again.stderr)
	}
	if stripComments(again.stdout) != stripComments(r.stdout) {
		t.Errorf("printed configuration reads back differently:\n%s\n---\n%s", r.stdout, again.stdout)
	}
	// Dev mode's defaults with --mode dev.
	dev := webhookd(t, nil, "config", "--mode", "dev")
	if dev.code != 0 || !strings.Contains(dev.stdout, "dev_kafka_addr: 127.0.0.1:9092\n") {
		t.Errorf("dev: exit %d\n%s%s", dev.code, dev.stdout, dev.stderr)
	}
	// Problems are reported after the configuration, and the command fails.
	bad := webhookd(t, map[string]string{"WEBHOOKD_KAFKA_SESSION_TIMEOUT": "3s"}, "config", "--mode", "dev")
	if bad.code != 1 || !strings.Contains(bad.stdout, "kafka_session_timeout: 3s # from WEBHOOKD_KAFKA_SESSION_TIMEOUT") ||
		!strings.Contains(bad.stderr, "WEBHOOKD_KAFKA_SESSION_TIMEOUT (environment): 3s is outside") {
		t.Errorf("exit %d\n%s%s", bad.code, bad.stdout, bad.stderr)
	}
}

func stripComments(yaml string) string {
	var out []string
	for _, l := range strings.Split(yaml, "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		if i := strings.Index(l, " # "); i >= 0 {
			l = l[:i]
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// webhookd topics shows the plan against the broker and changes nothing;
// --apply creates what is missing and leaves an existing topic that differs
// as it is.
func TestTopicsPlansThenCreatesMissing(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "t.webhooks.dlq"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 4, 1, nil, "ev.present"); err != nil {
		t.Fatal(err)
	}
	file := write(t, "webhookd.yaml", "topic_prefix: t.\nretry_tiers: [1s, 1m]\nevent_topics: [ev.present, ev.absent]\ntopic_partitions: 4\n")
	env := map[string]string{"WEBHOOKD_KAFKA_BROKERS": strings.Join(c.ListenAddrs(), ",")}
	topicCount := func() int {
		t.Helper()
		ts, err := kadm.NewClient(cl).ListTopics(kadm.WithAuthorizedOps(ctx))
		if err != nil {
			t.Fatal(err)
		}
		return len(ts)
	}

	// Serve-mode problems outside Kafka (no admin token, no ClickHouse) do
	// not stop the plan.
	r := webhookd(t, env, "topics", "--config", file)
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("plan:\n%s", r.stdout)
	lines := map[string]string{}
	for _, l := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = l
		}
	}
	for topic, want := range map[string][]string{
		"t.webhooks.pipelines": {" 1 ", "broker default", "cleanup.policy=compact,min.compaction.lag.ms=3600000", "missing"},
		"t.webhooks.retry.1m":  {" 4 ", "cleanup.policy=delete,retention.ms=604800000", "missing"},
		"t.webhooks.dlq":       {"exists, differs: partitions: 2, planned 4; retention.ms: 604800000, planned 7776000000 (replication 1)"},
		"ev.present":           {" 4 ", "exists (replication 1)"},
		"ev.absent":            {"missing (an event topic: not created by webhookd)"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[topic], w) {
				t.Errorf("%s: %q lacks %q", topic, lines[topic], w)
			}
		}
	}
	if !strings.Contains(r.stdout, "13 topics: 0 created, 10 missing, 1 differ from the plan") || !strings.Contains(r.stdout, "Run with --apply") {
		t.Errorf("summary:\n%s", r.stdout)
	}
	if n := topicCount(); n != 2 {
		t.Fatalf("the plan changed the broker: %d topics", n)
	}

	r = webhookd(t, env, "topics", "--config", file, "--apply")
	if r.code != 0 || !strings.Contains(r.stdout, "13 topics: 10 created, 0 missing, 1 differ") {
		t.Fatalf("apply: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := topicCount(); n != 12 { // ev.absent is not webhookd's to create
		t.Errorf("%d topics after --apply, want 12", n)
	}
	ts, err := adm.ListTopics(kadm.WithAuthorizedOps(ctx), "t.webhooks.dlq", "t.webhooks.retry.1s")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ts["t.webhooks.dlq"].Partitions); n != 2 {
		t.Errorf("the existing DLQ was altered: %d partitions", n)
	}
	if n := len(ts["t.webhooks.retry.1s"].Partitions); n != 4 {
		t.Errorf("retry topic created with %d partitions, want 4", n)
	}
	r = webhookd(t, env, "topics", "--config", file)
	if r.code != 0 || !strings.Contains(r.stdout, "13 topics: 0 created, 0 missing, 1 differ") || strings.Contains(r.stdout, "--apply") {
		t.Errorf("after apply: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A Kafka setting's problem stops it; no brokers at all too.
	r = webhookd(t, map[string]string{"WEBHOOKD_KAFKA_BROKERS": env["WEBHOOKD_KAFKA_BROKERS"], "WEBHOOKD_RETRY_TIERS": "1m,1s"}, "topics")
	if r.code != 1 || !strings.Contains(r.stderr, "WEBHOOKD_RETRY_TIERS (environment): tiers must be in ascending order") {
		t.Errorf("exit %d:\n%s", r.code, r.stderr)
	}
	r = webhookd(t, nil, "topics", "--mode", "dev")
	if r.code != 1 || !strings.Contains(r.stderr, "no brokers") {
		t.Errorf("exit %d:\n%s", r.code, r.stderr)
	}
}

// The memory budget is the setting when set, else 90 % of the container's
// limit where there is one, else none.
func TestMemoryBudget(t *testing.T) {
	cfg := config.Defaults(config.ModeServe)
	cfg.MemoryBudgetMB = 700
	if got, _ := memoryBudget(cfg); got != 700<<20 {
		t.Errorf("WEBHOOKD_MEMORY_BUDGET_MB=700: budget %d", got)
	}
	cfg.MemoryBudgetMB = 0
	want := int64(0)
	if n, ok := memlimit.CgroupLimit(); ok {
		want = n / 10 * 9
	}
	if got, _ := memoryBudget(cfg); got != want {
		t.Errorf("no setting: budget %d, want %d (90 %% of this machine's cgroup limit, if any)", got, want)
	}
	if got, _ := memoryBudget(config.Defaults(config.ModeDev)); got != 440<<20 {
		t.Errorf("dev mode's budget is %d MiB", got>>20)
	}
}
