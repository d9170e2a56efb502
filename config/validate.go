package config

import (
	"encoding/base64"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// The brokers' default group.min.session.timeout.ms and
// group.max.session.timeout.ms: a consumer asking for a session timeout
// outside them is refused (INVALID_SESSION_TIMEOUT) and never joins.
const (
	MinSessionTimeout = 6 * time.Second
	MaxSessionTimeout = 30 * time.Minute
)

// validateMore checks the shape of settings beyond Validate's required and
// range checks: addresses, names, lists, keys, and files that must exist.
func (c *Config) validateMore(bad func(name, format string, a ...any)) {
	if msg := checkAddr(c.AdminAddr, true); msg != "" {
		bad("WEBHOOKD_ADMIN_ADDR", "%s", msg)
	}
	if c.StartsDevKafka() && c.DevKafkaAddr != "" {
		if msg := checkAddr(c.DevKafkaAddr, true); msg != "" {
			bad("WEBHOOKD_DEV_KAFKA_ADDR", "%s", msg)
		}
	}
	for _, b := range SplitList(c.KafkaBrokers) {
		if msg := checkAddr(b, false); msg != "" {
			bad("WEBHOOKD_KAFKA_BROKERS", "%s", msg)
		}
	}
	if c.ClickHouseAddr != "" {
		if msg := checkAddr(c.ClickHouseAddr, false); msg != "" {
			bad("WEBHOOKD_CLICKHOUSE_ADDR", "%s", msg)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("WEBHOOKD_LOG_LEVEL", "%q is not debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("WEBHOOKD_LOG_FORMAT", "%q is not text or json", c.LogFormat)
	}
	if c.TopicReplication != -1 && (c.TopicReplication < 1 || c.TopicReplication > 32767) {
		bad("WEBHOOKD_TOPIC_REPLICATION", "must be -1 (the brokers' default) or from 1 to 32767")
	}
	if c.TopicPartitions > 1<<20 {
		bad("WEBHOOKD_TOPIC_PARTITIONS", "must be at most 1048576")
	}
	if c.TopicPrefix != "" && !topicChars(c.TopicPrefix) {
		bad("WEBHOOKD_TOPIC_PREFIX", "%q may hold only letters, digits, '.', '_' and '-'", c.TopicPrefix)
	}
	for _, t := range c.EventTopicList() {
		if !topicChars(t) || len(t) > 249 || t == "." || t == ".." {
			bad("WEBHOOKD_EVENT_TOPICS", "%q is not a topic name (letters, digits, '.', '_', '-'; at most 249)", t)
		}
	}
	if strings.TrimSpace(c.ConsumerGroup) == "" {
		bad("WEBHOOKD_CONSUMER_GROUP", "must not be empty")
	}
	c.validateTiers(bad)
	if c.ResponseBodyLimit < 0 {
		bad("WEBHOOKD_RESPONSE_BODY_LIMIT", "must be 0 or more bytes")
	}
	if c.LogBodyLimit < 0 {
		bad("WEBHOOKD_LOG_BODY_LIMIT", "must be 0 or more bytes")
	}
	if c.SecretsKey != "" {
		if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(c.SecretsKey)); err != nil || len(k) != 32 {
			bad("WEBHOOKD_SECRETS_KEY", "must be 32 bytes, base64-encoded (openssl rand -base64 32)")
		}
	}
	for _, s := range SplitList(c.AllowedTargetCIDRs) {
		if _, err := netip.ParsePrefix(s); err != nil {
			bad("WEBHOOKD_ALLOWED_TARGET_CIDRS", "%q is not a CIDR such as 10.1.0.0/16", s)
		}
	}
	for _, f := range []struct {
		env, path string
		dir       bool
	}{
		{"WEBHOOKD_ADMIN_TOKENS_FILE", c.AdminTokensFile, false},
		{"WEBHOOKD_ADMIN_JWT_PUBLIC_KEY_FILE", c.AdminJWTKeyFile, false},
		{"WEBHOOKD_KAFKA_TLS_CA_FILE", c.KafkaTLSCAFile, false},
		{"WEBHOOKD_KAFKA_TLS_CERT_FILE", c.KafkaTLSCertFile, false},
		{"WEBHOOKD_KAFKA_TLS_KEY_FILE", c.KafkaTLSKeyFile, false},
		{"WEBHOOKD_KAFKA_PASSWORD_FILE", c.KafkaPasswordFile, false},
		{"WEBHOOKD_TEMPLATE_SECRETS_DIR", c.TemplateSecretsDir, true},
		{"WEBHOOKD_CHDB_LIBRARY", c.usedChDBLibrary(), false},
	} {
		if f.path == "" {
			continue
		}
		st, err := os.Stat(f.path)
		switch {
		case err != nil:
			bad(f.env, "%s", strings.TrimPrefix(err.Error(), "stat "))
		case f.dir && !st.IsDir():
			bad(f.env, "%s is not a directory", f.path)
		case !f.dir && st.IsDir():
			bad(f.env, "%s is a directory, not a file", f.path)
		}
	}
}

// validateTiers checks WEBHOOKD_RETRY_TIERS: positive durations, strictly
// ascending (each tier is a topic and a consumer group; the order is the
// order they are tried in), each usable in a topic name.
func (c *Config) validateTiers(bad func(name, format string, a ...any)) {
	const name = "WEBHOOKD_RETRY_TIERS"
	tiers := SplitList(c.RetryTiers)
	if len(tiers) == 0 {
		bad(name, "needs at least one tier such as 1s")
		return
	}
	var prev time.Duration
	for i, t := range tiers {
		d, err := time.ParseDuration(t)
		switch {
		case err != nil || d <= 0:
			bad(name, "%q is not a positive duration such as 5s or 1m", t)
			return
		case !topicChars(t):
			bad(name, "%q cannot be part of a topic name; write it with s, m or h", t)
			return
		case i > 0 && d <= prev:
			bad(name, "tiers must be in ascending order: %s comes after %s", t, tiers[i-1])
			return
		}
		prev = d
	}
}

// checkAddr checks a host:port address (the port may be left out unless
// needPort; a listen address may leave the host out).
func checkAddr(addr string, needPort bool) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if needPort || strings.Contains(addr, ":") && !strings.HasPrefix(addr, "[") {
			return strconv.Quote(addr) + " is not a host:port address"
		}
		host = addr
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return strconv.Quote(addr) + ": port " + strconv.Quote(port) + " is not a number from 0 to 65535"
	}
	if !needPort && host == "" {
		return strconv.Quote(addr) + " names no host"
	}
	if strings.ContainsAny(host, " /\t") {
		return strconv.Quote(addr) + " is not a host:port address"
	}
	return ""
}

// topicChars reports whether s uses only the characters Kafka allows in
// topic names.
func topicChars(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// usedChDBLibrary is WEBHOOKD_CHDB_LIBRARY if this process loads chDB: dev
// mode's embedded ClickHouse. Serve mode never reads it.
func (c *Config) usedChDBLibrary() string {
	if c.EmbedsChDB() {
		return c.ChDBLibrary
	}
	return ""
}
