package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every setting is in the README's configuration table.
func TestReadmeDocumentsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "| `WEBHOOKD_") {
			for _, name := range strings.Split(strings.Split(line, "|")[1], "/") {
				rows[strings.Trim(strings.TrimSpace(name), "`")] = line
			}
		}
	}
	for _, d := range Docs() {
		row, ok := rows[d.Env]
		if !ok {
			t.Errorf("%s is not in README.md's configuration table", d.Env)
			continue
		}
		cells := strings.Split(row, "|")
		serve, dev := strings.Trim(strings.TrimSpace(cells[2]), "`"), strings.Trim(strings.TrimSpace(cells[3]), "`")
		if dev == "same" {
			dev = serve
		}
		if d.Default != "" && serve != d.Default || d.Default == "" && serve != "" {
			t.Errorf("%s: README says serve default %q, code has %q", d.Env, serve, d.Default)
		}
		if d.DevDefault != "" && dev != d.DevDefault || d.DevDefault == "" && dev != "" {
			t.Errorf("%s: README says dev default %q, code has %q", d.Env, dev, d.DevDefault)
		}
	}
}

func TestLoadValidatesWithVariableNames(t *testing.T) {
	env := map[string]string{"WEBHOOKD_MAX_IN_FLIGHT": "lots", "WEBHOOKD_ROLES": "all,cook"}
	_, err := Load(ModeServe, func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "WEBHOOKD_MAX_IN_FLIGHT") {
		t.Fatalf("err = %v", err)
	}
	delete(env, "WEBHOOKD_MAX_IN_FLIGHT")
	_, err = Load(ModeServe, func(k string) string { return env[k] })
	for _, want := range []string{"WEBHOOKD_KAFKA_BROKERS", "WEBHOOKD_ADMIN_TOKEN", "WEBHOOKD_CLICKHOUSE_ADDR", `unknown role "cook"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to name %s", err, want)
		}
	}
	c, err := Load(ModeDev, func(string) string { return "" })
	if err != nil || !c.StartsDevKafka() || c.DevKafkaAddr != "127.0.0.1:9092" || !c.AllowPrivateTargets || c.AdminAddr != "127.0.0.1:8080" {
		t.Fatalf("dev defaults: %+v %v", c, err)
	}
}

// Dev mode with WEBHOOKD_KAFKA_BROKERS set uses those brokers and starts no
// in-process one; the rest of dev mode stays as it is.
func TestDevModeWithExplicitBrokersStartsNoBroker(t *testing.T) {
	env := map[string]string{"WEBHOOKD_KAFKA_BROKERS": "127.0.0.1:19092,127.0.0.1:19093"}
	c, err := Load(ModeDev, func(k string) string { return env[k] })
	if err != nil || c.StartsDevKafka() || c.KafkaBrokers != env["WEBHOOKD_KAFKA_BROKERS"] || !c.AllowPrivateTargets || !c.CreateEventTopics {
		t.Fatalf("dev with brokers: %+v %v", c, err)
	}
	if c, _ := Load(ModeServe, func(k string) string { return env[k] }); c.StartsDevKafka() {
		t.Fatal("serve mode starts a dev broker")
	}
}

// Serve mode's admin role takes any one credential source: the token, the
// tokens file, the JWT secret or the JWT public key.
func TestServeAdminNeedsOneCredentialSource(t *testing.T) {
	base := map[string]string{"WEBHOOKD_KAFKA_BROKERS": "k:9092", "WEBHOOKD_CLICKHOUSE_ADDR": "ch:9000"}
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, extra := range map[string]map[string]string{
		"none":           {},
		"token":          {"WEBHOOKD_ADMIN_TOKEN": "serve-token-0123456789"},
		"tokens file":    {"WEBHOOKD_ADMIN_TOKENS_FILE": file},
		"JWT secret":     {"WEBHOOKD_ADMIN_JWT_SECRET": strings.Repeat("s", 32)},
		"JWT public key": {"WEBHOOKD_ADMIN_JWT_PUBLIC_KEY_FILE": file},
	} {
		_, err := Load(ModeServe, func(k string) string {
			if v, ok := extra[k]; ok {
				return v
			}
			return base[k]
		})
		if failed := err != nil; failed != (name == "none") || failed && !strings.Contains(err.Error(), "WEBHOOKD_ADMIN_TOKEN:") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	// A replica without the admin role needs none.
	base["WEBHOOKD_ROLES"] = "dispatcher"
	if _, err := Load(ModeServe, func(k string) string { return base[k] }); err != nil {
		t.Errorf("dispatcher-only: %v", err)
	}
}

// testKey is a valid WEBHOOKD_SECRETS_KEY (32 bytes, base64).
const testKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

func TestUsesDataDir(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		mode Mode
		want bool
	}{
		{"dev, own broker", map[string]string{"WEBHOOKD_SECRETS_KEY": testKey}, ModeDev, true},
		{"dev, external broker, chDB", map[string]string{"WEBHOOKD_KAFKA_BROKERS": "b:9092", "WEBHOOKD_SECRETS_KEY": testKey}, ModeDev, true},
		{"dev, generated secrets key", map[string]string{"WEBHOOKD_KAFKA_BROKERS": "b:9092", "WEBHOOKD_ROLES": "dispatcher"}, ModeDev, true},
		{"dev, nothing kept", map[string]string{"WEBHOOKD_KAFKA_BROKERS": "b:9092", "WEBHOOKD_ROLES": "dispatcher", "WEBHOOKD_SECRETS_KEY": testKey}, ModeDev, false},
		{"dev, ClickHouse server", map[string]string{"WEBHOOKD_KAFKA_BROKERS": "b:9092", "WEBHOOKD_CLICKHOUSE_ADDR": "ch:9000", "WEBHOOKD_SECRETS_KEY": testKey}, ModeDev, false},
		{"serve", map[string]string{"WEBHOOKD_KAFKA_BROKERS": "b:9092", "WEBHOOKD_CLICKHOUSE_ADDR": "ch:9000", "WEBHOOKD_ADMIN_TOKEN": "0123456789abcdef"}, ModeServe, false},
	} {
		cfg, err := Load(c.mode, func(k string) string { return c.env[k] })
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := cfg.UsesDataDir(); got != c.want {
			t.Errorf("%s: UsesDataDir = %v, want %v", c.name, got, c.want)
		}
	}
}

// Kafka security settings that cannot work together are refused at start,
// naming the variable.
func TestKafkaSecuritySettingsAreChecked(t *testing.T) {
	dir := t.TempDir()
	file := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pw, ca, cert, key := file("pw"), file("ca"), file("c"), file("k")
	base := map[string]string{"WEBHOOKD_KAFKA_BROKERS": "k:9093", "WEBHOOKD_CLICKHOUSE_ADDR": "ch:9000", "WEBHOOKD_ADMIN_TOKEN": "0123456789abcdefg"}
	for _, tc := range []struct {
		env  map[string]string
		want string // "" = valid
	}{
		{map[string]string{"WEBHOOKD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "WEBHOOKD_KAFKA_USER": "u", "WEBHOOKD_KAFKA_PASSWORD": "p"}, ""},
		{map[string]string{"WEBHOOKD_KAFKA_SASL_MECHANISM": "PLAIN", "WEBHOOKD_KAFKA_USER": "u", "WEBHOOKD_KAFKA_PASSWORD_FILE": pw}, ""},
		{map[string]string{"WEBHOOKD_KAFKA_TLS": "true", "WEBHOOKD_KAFKA_TLS_CA_FILE": ca, "WEBHOOKD_KAFKA_TLS_CERT_FILE": cert, "WEBHOOKD_KAFKA_TLS_KEY_FILE": key}, ""},
		{map[string]string{"WEBHOOKD_KAFKA_SASL_MECHANISM": "GSSAPI"}, "WEBHOOKD_KAFKA_SASL_MECHANISM (environment): must be PLAIN"},
		{map[string]string{"WEBHOOKD_KAFKA_SASL_MECHANISM": "PLAIN", "WEBHOOKD_KAFKA_USER": "u"}, "PLAIN needs WEBHOOKD_KAFKA_USER and WEBHOOKD_KAFKA_PASSWORD"},
		{map[string]string{"WEBHOOKD_KAFKA_USER": "u", "WEBHOOKD_KAFKA_PASSWORD": "p"}, "WEBHOOKD_KAFKA_SASL_MECHANISM: is required when Kafka credentials are set"},
		{map[string]string{"WEBHOOKD_KAFKA_SASL_MECHANISM": "PLAIN", "WEBHOOKD_KAFKA_USER": "u", "WEBHOOKD_KAFKA_PASSWORD": "p", "WEBHOOKD_KAFKA_PASSWORD_FILE": pw}, "WEBHOOKD_KAFKA_PASSWORD_FILE (environment): set it or WEBHOOKD_KAFKA_PASSWORD, not both"},
		{map[string]string{"WEBHOOKD_KAFKA_TLS": "true", "WEBHOOKD_KAFKA_TLS_CERT_FILE": cert}, "WEBHOOKD_KAFKA_TLS_CERT_FILE (environment): and WEBHOOKD_KAFKA_TLS_KEY_FILE go together"},
		{map[string]string{"WEBHOOKD_KAFKA_TLS_CA_FILE": ca}, "WEBHOOKD_KAFKA_TLS: must be true"},
	} {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range tc.env {
			env[k] = v
		}
		_, err := Load(ModeServe, func(k string) string { return env[k] })
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: err = %v, want %q", tc.env, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "p\"") {
			t.Errorf("a password in the error: %v", err)
		}
	}
}
