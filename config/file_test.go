package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite deploy/webhookd.example.yaml from config.Config")

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "webhookd.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// The file overrides the defaults, the environment overrides the file, and
// comma-separated settings may be YAML lists.
func TestFileUnderEnvironmentOverDefaults(t *testing.T) {
	path := writeFile(t, `
kafka_brokers: [file-a:9092, file-b:9092]
kafka_session_timeout: 20s
clickhouse_addr: ch:9000
admin_token: file-token-0123456789
roles: dispatcher, admin
max_in_flight: 200
retry_delay_scale: 0.5
allow_private_targets: true
log_level:        # null: as if absent
`)
	c, err := LoadFile(ModeServe, path, envOf(map[string]string{
		"WEBHOOKD_KAFKA_BROKERS": "env:9092", "WEBHOOKD_MAX_IN_FLIGHT": "300",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults(ModeServe)
	want.KafkaBrokers, want.MaxInFlight = "env:9092", 300 // environment
	want.KafkaSessionTimeout, want.ClickHouseAddr, want.AdminToken = 20*time.Second, "ch:9000", "file-token-0123456789"
	want.Roles, want.RetryDelayScale, want.AllowPrivateTargets = "dispatcher, admin", 0.5, true
	c.file, c.src, want.file, want.src = "", nil, "", nil
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
}

// Every problem is reported, each naming its setting the way the user wrote
// it and where: the file's key and line, or the variable.
func TestEveryProblemNamesItsKeyAndSource(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, `# a configuration with every kind of mistake
kafka_brokers: broker:9092
kafka_sesion_timeout: 10s
kafka_session_timeout: 3s
retry_tiers: [5s, 1s, 1m]
analytics_flush_interval: soon
max_in_flight: 0
admin_addr: ":99999"
admin_tokens_file: `+filepath.Join(dir, "missing")+`
template_secrets_dir: `+dir+`
log_level: loud
topic_replication: 0
event_topics: [ok.topic, "bad topic"]
allowed_target_cidrs: 10.0.0.0/33
kafka_tls: yes please
roles: [all]
roles: [admin]
`)
	_, err := LoadFile(ModeServe, path, envOf(map[string]string{
		"WEBHOOKD_SHUTDOWN_GRACE": "forever", "WEBHOOKD_PARTITION_MAX_IN_FLIGHT": "-1",
		"WEBHOOKD_SECRETS_KEY": "short",
	}))
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err = %v, want Problems", err)
	}
	for _, want := range []string{
		path + ` line 3: unknown key "kafka_sesion_timeout" (did you mean kafka_session_timeout?)`,
		"kafka_session_timeout (" + path + " line 4): 3s is outside the brokers' allowed range, 6s to 30m",
		"retry_tiers (" + path + " line 5): tiers must be in ascending order: 1s comes after 5s",
		"analytics_flush_interval (" + path + ` line 6): "soon" is not a duration`,
		"max_in_flight (" + path + " line 7): must be at least 1",
		"admin_addr (" + path + ` line 8): ":99999": port "99999" is not a number from 0 to 65535`,
		"admin_tokens_file (" + path + " line 9): " + filepath.Join(dir, "missing") + ": no such file or directory",
		"log_level (" + path + ` line 11): "loud" is not debug, info, warn or error`,
		"topic_replication (" + path + " line 12): must be -1",
		"event_topics (" + path + ` line 13): "bad topic" is not a topic name`,
		"allowed_target_cidrs (" + path + ` line 14): "10.0.0.0/33" is not a CIDR`,
		"kafka_tls (" + path + ` line 15): "yes please" is not true or false`,
		path + ` line 17: key "roles" is set twice (first on line 16)`,
		`WEBHOOKD_SHUTDOWN_GRACE (environment): "forever" is not a duration`,
		"WEBHOOKD_PARTITION_MAX_IN_FLIGHT (environment): must be at least 1",
		"WEBHOOKD_SECRETS_KEY (environment): must be 32 bytes",
		"WEBHOOKD_CLICKHOUSE_ADDR / clickhouse_addr: is required in serve mode",
	} {
		found := false
		for _, p := range ps {
			found = found || strings.HasPrefix(p.Error(), want)
		}
		if !found {
			t.Errorf("no problem %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "short") {
		t.Errorf("a secret's value is in the error: %v", err)
	}
	if ps.Has("WEBHOOKD_TEMPLATE_SECRETS_DIR") {
		t.Errorf("an existing directory is refused: %v", err)
	}
}

// Each check names its own setting, from the environment alone.
func TestEachCheckNamesItsSetting(t *testing.T) {
	ok := map[string]string{"WEBHOOKD_KAFKA_BROKERS": "k:9092", "WEBHOOKD_CLICKHOUSE_ADDR": "ch:9000", "WEBHOOKD_ADMIN_TOKEN": "serve-token-0123456789"}
	if _, err := Load(ModeServe, envOf(ok)); err != nil {
		t.Fatalf("valid configuration refused: %v", err)
	}
	for _, c := range []struct{ env, value string }{
		{"WEBHOOKD_KAFKA_BROKERS", ""},
		{"WEBHOOKD_KAFKA_BROKERS", "k:port"},
		{"WEBHOOKD_KAFKA_SESSION_TIMEOUT", "3s"},
		{"WEBHOOKD_KAFKA_SESSION_TIMEOUT", "31m"},
		{"WEBHOOKD_KAFKA_SESSION_TIMEOUT", "10"},
		{"WEBHOOKD_KAFKA_SASL_MECHANISM", "PLAIN"}, // without user and password
		{"WEBHOOKD_KAFKA_SASL_MECHANISM", "GSSAPI"},
		{"WEBHOOKD_KAFKA_TLS_CA_FILE", "/nonexistent/ca.pem"},
		{"WEBHOOKD_RETRY_TIERS", "1s,1s"},
		{"WEBHOOKD_RETRY_TIERS", "5s,1s"},
		{"WEBHOOKD_RETRY_TIERS", "1s,-5s"},
		{"WEBHOOKD_RETRY_TIERS", "500µs"},
		{"WEBHOOKD_TOPIC_PARTITIONS", "0"},
		{"WEBHOOKD_TOPIC_PREFIX", "a/b."},
		{"WEBHOOKD_ADMIN_ADDR", "localhost"},
		{"WEBHOOKD_CLICKHOUSE_ADDR", "ch:70000"},
		{"WEBHOOKD_LOG_FORMAT", "xml"},
		{"WEBHOOKD_BREAKER_FAILURES", "-1"},
		{"WEBHOOKD_BREAKER_COOLDOWN", "0s"},
		{"WEBHOOKD_ANALYTICS_BATCH_SIZE", "0"},
		{"WEBHOOKD_ANALYTICS_FLUSH_INTERVAL", "0s"},
		{"WEBHOOKD_RESPONSE_BODY_LIMIT", "-1"},
		{"WEBHOOKD_LOG_BODY_LIMIT", "-1"},
		{"WEBHOOKD_CONSUMER_GROUP", " "},
		{"WEBHOOKD_TEMPLATE_SECRETS_DIR", "/nonexistent"},
		{"WEBHOOKD_ADMIN_JWT_PUBLIC_KEY_FILE", "/nonexistent.pem"},
		{"WEBHOOKD_CLICKHOUSE_TTL_DAYS", "0"},
		{"WEBHOOKD_RETRY_DELAY_SCALE", "2"},
		{"WEBHOOKD_TOPIC_REPLICATION", "-2"},
		{"WEBHOOKD_AUTO_DISABLE_AFTER", "-1h"},
		{"WEBHOOKD_MEMORY_BUDGET_MB", "-1"},
		{"WEBHOOKD_MEMORY_BUDGET_MB", "64"},
		{"WEBHOOKD_MEMORY_BUDGET_MB", "2000000"},
		{"WEBHOOKD_CHDB_NICE", "-1"},
		{"WEBHOOKD_CHDB_NICE", "20"},
	} {
		env := map[string]string{}
		for k, v := range ok {
			env[k] = v
		}
		env[c.env] = c.value
		_, err := Load(ModeServe, envOf(env))
		var ps Problems
		if !errors.As(err, &ps) || !ps.Has(c.env) {
			t.Errorf("%s=%q: err = %v, want a problem naming it", c.env, c.value, err)
		}
	}
}

// The effective configuration reads back as a file to the same settings,
// without secrets.
func TestYAMLReadsBackWithoutSecrets(t *testing.T) {
	env := map[string]string{
		"WEBHOOKD_KAFKA_BROKERS": "a:9092,b:9093", "WEBHOOKD_CLICKHOUSE_ADDR": "ch:9000",
		"WEBHOOKD_ADMIN_TOKEN": "serve-token-0123456789", "WEBHOOKD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
		"WEBHOOKD_KAFKA_USER": "svc", "WEBHOOKD_KAFKA_PASSWORD": "kafka-pass-xyz", "WEBHOOKD_CLICKHOUSE_PASSWORD": "ch-pass-xyz",
		"WEBHOOKD_SECRETS_KEY": testKey, "WEBHOOKD_ADMIN_JWT_SECRET": strings.Repeat("j", 32),
		"WEBHOOKD_TEMPLATE_ENV_ALLOW": "https://user:url-pass-xyz@example.com/x",
		"WEBHOOKD_EVENT_TOPICS":       "one", "WEBHOOKD_RETRY_DELAY_SCALE": "0.25", "WEBHOOKD_AUTO_DISABLE_AFTER": "90m",
	}
	c, err := Load(ModeServe, envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	out := c.YAML()
	for _, secret := range []string{"serve-token-0123456789", "kafka-pass-xyz", "ch-pass-xyz", testKey, strings.Repeat("j", 32), "url-pass-xyz"} {
		if bytes.Contains(out, []byte(secret)) {
			t.Errorf("secret %q printed:\n%s", secret, out)
		}
	}
	for _, line := range []string{
		"kafka_brokers: ['a:9092', 'b:9093'] # from WEBHOOKD_KAFKA_BROKERS\n",
		"admin_token: ~ # redacted: set, give it in the environment; from WEBHOOKD_ADMIN_TOKEN\n",
		"retry_delay_scale: 0.25 # from WEBHOOKD_RETRY_DELAY_SCALE\n",
		"consumer_group: webhookd-dispatcher\n",
	} {
		if !bytes.Contains(out, []byte(line)) {
			t.Errorf("no line %q in:\n%s", line, out)
		}
	}
	// Read back with the secrets from the environment: the same settings.
	back, err := LoadFile(ModeServe, writeFile(t, string(out)), envOf(map[string]string{
		"WEBHOOKD_ADMIN_TOKEN": env["WEBHOOKD_ADMIN_TOKEN"], "WEBHOOKD_KAFKA_PASSWORD": env["WEBHOOKD_KAFKA_PASSWORD"],
		"WEBHOOKD_CLICKHOUSE_PASSWORD": env["WEBHOOKD_CLICKHOUSE_PASSWORD"], "WEBHOOKD_SECRETS_KEY": testKey,
		"WEBHOOKD_ADMIN_JWT_SECRET": env["WEBHOOKD_ADMIN_JWT_SECRET"], "WEBHOOKD_TEMPLATE_ENV_ALLOW": env["WEBHOOKD_TEMPLATE_ENV_ALLOW"],
	}))
	if err != nil {
		t.Fatal(err)
	}
	c.file, c.src, back.file, back.src = "", nil, "", nil
	if !reflect.DeepEqual(c, back) {
		t.Fatalf("read back:\n%+v\nwant\n%+v", back, c)
	}
}

// deploy/webhookd.example.yaml is generated from Config: every setting, and
// uncommented it is a valid file giving the serve defaults.
func TestExampleFile(t *testing.T) {
	const path = "../deploy/webhookd.example.yaml"
	if *update {
		if err := os.WriteFile(path, Example(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, Example()) {
		t.Fatalf("%s is out of date: go test ./config -run TestExampleFile -update", path)
	}
	var active []string
	for _, l := range strings.Split(string(got), "\n") {
		if k, ok := strings.CutPrefix(l, "#"); ok && len(k) > 0 && k[0] != ' ' {
			active = append(active, k)
		}
	}
	c := Defaults(ModeServe)
	if err := c.ParseYAML("example", []byte(strings.Join(active, "\n"))); err != nil {
		t.Fatal(err)
	}
	if len(c.src) != len(Docs()) {
		t.Errorf("the example sets %d settings of %d", len(c.src), len(Docs()))
	}
	want := Defaults(ModeServe)
	c.file, c.src = "", nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("the example's values:\n%+v\nwant the serve defaults\n%+v", c, want)
	}
}

func TestSecretSettings(t *testing.T) {
	var got []string
	for _, d := range Docs() {
		if Secret(d.Env) {
			got = append(got, d.Env)
		}
	}
	want := []string{"WEBHOOKD_ADMIN_TOKEN", "WEBHOOKD_ADMIN_JWT_SECRET", "WEBHOOKD_SECRETS_KEY", "WEBHOOKD_KAFKA_PASSWORD", "WEBHOOKD_CLICKHOUSE_PASSWORD"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("secret settings %v, want %v", got, want)
	}
}

func TestUnknownEnv(t *testing.T) {
	got := UnknownEnv([]string{"WEBHOOKD_KAFKA_BROKER=x", "WEBHOOKD_KAFKA_BROKERS=x", "WEBHOOKD_CONFIG=f", "WEBHOOKD_TEST_LOG=1", "HOME=/"})
	if !reflect.DeepEqual(got, []string{"WEBHOOKD_KAFKA_BROKER"}) {
		t.Errorf("UnknownEnv = %v", got)
	}
}

// FuzzParseYAML: any file is accepted or refused with problems, never a
// panic; an accepted one prints as YAML that reads back to the same.
func FuzzParseYAML(f *testing.F) {
	f.Add(Example())
	f.Add([]byte("kafka_brokers: [a:1, b]\nmax_in_flight: 3\nretry_tiers: 1s,5s\n"))
	f.Add([]byte("roles: [all]\nroles: x\n- a\n"))
	f.Add([]byte("kafka_tls: !!binary aGk=\nlog_level: &a x\nlog_format: *a\n"))
	f.Add([]byte("---\na: 1\n---\nb: 2\n"))
	f.Add([]byte("template_env_allow: \"a\\nb\"\nretry_delay_scale: .5e1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Defaults(ModeServe)
		if err := c.ParseYAML("f.yaml", data); err != nil {
			var ps Problems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("error %v is not Problems", err)
			}
			return
		}
		for _, fl := range c.fields() {
			if Secret(fl.env) {
				fl.v.SetString("")
			}
		}
		c.src = nil
		once := c.YAML()
		d := Defaults(ModeServe)
		if err := d.ParseYAML("g.yaml", once); err != nil {
			t.Fatalf("printed configuration refused: %v\n%s", err, once)
		}
		d.src = nil
		if twice := d.YAML(); !bytes.Equal(once, twice) {
			t.Fatalf("printed configuration reads back differently:\n%s\n%s", once, twice)
		}
	})
}

// WEBHOOKD_CHDB_LIBRARY must exist only where it is loaded: dev mode's
// embedded ClickHouse. Serve mode never reads it.
func TestChDBLibraryCheckedOnlyWhereLoaded(t *testing.T) {
	env := map[string]string{"WEBHOOKD_CHDB_LIBRARY": "/nonexistent/libchdb.so", "WEBHOOKD_KAFKA_BROKERS": "k:9092",
		"WEBHOOKD_CLICKHOUSE_ADDR": "ch:9000", "WEBHOOKD_ADMIN_TOKEN": "serve-token-0123456789"}
	if _, err := Load(ModeServe, envOf(env)); err != nil {
		t.Errorf("serve: %v", err)
	}
	delete(env, "WEBHOOKD_CLICKHOUSE_ADDR")
	_, err := Load(ModeDev, envOf(env))
	var ps Problems
	if !errors.As(err, &ps) || !ps.Has("WEBHOOKD_CHDB_LIBRARY") {
		t.Errorf("dev with chDB: %v", err)
	}
}

// The README's example file is a valid file.
func TestReadmeExampleFileParses(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(readme), "```yaml\n# webhookd serve --config")
	if i < 0 {
		t.Fatal("no example file in README.md")
	}
	block, _, _ := strings.Cut(string(readme[i+len("```yaml\n"):]), "```")
	c := Defaults(ModeServe)
	if err := c.ParseYAML("README.md", []byte(block)); err != nil || len(c.src) < 5 {
		t.Fatalf("README's example: %v (%d settings)", err, len(c.src))
	}
}
