// Package config holds webhookd's settings: one struct, filled from
// WEBHOOKD_* environment variables over mode-specific defaults, then
// validated. The README's configuration table documents every field.
package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Mode is how the binary runs.
type Mode string

const (
	// ModeDev runs embedded ClickHouse (chDB) and, unless
	// WEBHOOKD_KAFKA_BROKERS names brokers, an in-process Kafka (kfake).
	ModeDev Mode = "dev"
	// ModeServe connects to real Kafka brokers and a ClickHouse server.
	ModeServe Mode = "serve"
)

// Config is every setting. `env` names the variable; `help` feeds the README table.
type Config struct {
	Mode Mode `env:"-"`

	DataDir          string `env:"WEBHOOKD_DATA_DIR" help:"Directory for dev-mode Kafka and ClickHouse data; one dev process at a time (it holds <dir>/.lock)."`
	AdminAddr        string `env:"WEBHOOKD_ADMIN_ADDR" help:"Admin API listen address; replicas without the admin role serve /healthz, /readyz and /metrics there."`
	AdminToken       string `env:"WEBHOOKD_ADMIN_TOKEN" help:"Bearer token for the admin API (role admin). Serve mode with the admin role needs it, WEBHOOKD_ADMIN_TOKENS_FILE or JWT settings; generated and printed in dev mode when none is set."`
	AdminTokensFile  string `env:"WEBHOOKD_ADMIN_TOKENS_FILE" help:"File of admin API tokens, one per line, each optionally followed by whitespace and a role: admin (default) or read (GET/HEAD only). Blank lines and # comments are ignored. Re-read within about a second of a change, so tokens rotate without a restart; a version that cannot be read or parsed is logged and the last good one kept."`
	AdminJWTSecret   string `env:"WEBHOOKD_ADMIN_JWT_SECRET" help:"If set, HS256 JWTs signed with it (exp required) are accepted as admin tokens too."`
	AdminJWTKeyFile  string `env:"WEBHOOKD_ADMIN_JWT_PUBLIC_KEY_FILE" help:"PEM file with one RSA (2048+ bits) or EC P-256 public key, or a certificate holding one: RS256 or ES256 JWTs it verifies (exp required) are accepted as admin tokens too."`
	AdminJWTAudience string `env:"WEBHOOKD_ADMIN_JWT_AUDIENCE" help:"Audience (aud) admin JWTs must carry, if set. A JWT's role claim (admin or read) sets its role; without one it is admin."`
	Roles            string `env:"WEBHOOKD_ROLES" help:"Comma-separated roles to run: dispatcher, retry, analytics, admin (or all)."`
	LogLevel         string `env:"WEBHOOKD_LOG_LEVEL" help:"debug, info, warn or error."`
	LogFormat        string `env:"WEBHOOKD_LOG_FORMAT" help:"text or json."`

	TemplateEnvAllow   string `env:"WEBHOOKD_TEMPLATE_ENV_ALLOW" help:"Comma-separated environment variable names that {{env.NAME}} may read."`
	SecretsKey         string `env:"WEBHOOKD_SECRETS_KEY" help:"Base64 32-byte key (openssl rand -base64 32): signing keys are stored AES-256-GCM-encrypted on the pipelines topic. Every replica needs the same key. Dev mode without it generates one into the data directory (secrets.key)."`
	TemplateSecretsDir string `env:"WEBHOOKD_TEMPLATE_SECRETS_DIR" help:"Directory of files (one per NAME) that {{env.NAME}} may read, e.g. a mounted Kubernetes secret."`

	KafkaBrokers        string        `env:"WEBHOOKD_KAFKA_BROKERS" help:"Comma-separated seed brokers. Dev mode: when set, dev uses these brokers and starts no in-process Kafka."`
	KafkaSASLMechanism  string        `env:"WEBHOOKD_KAFKA_SASL_MECHANISM" help:"PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty for none."`
	KafkaUser           string        `env:"WEBHOOKD_KAFKA_USER" help:"SASL user."`
	KafkaPassword       string        `env:"WEBHOOKD_KAFKA_PASSWORD" help:"SASL password."`
	KafkaPasswordFile   string        `env:"WEBHOOKD_KAFKA_PASSWORD_FILE" help:"File holding the SASL password (a mounted Secret), instead of WEBHOOKD_KAFKA_PASSWORD; read at start, trailing newline ignored."`
	KafkaTLS            bool          `env:"WEBHOOKD_KAFKA_TLS" help:"Connect to brokers over TLS."`
	KafkaTLSCAFile      string        `env:"WEBHOOKD_KAFKA_TLS_CA_FILE" help:"PEM CA bundle for broker TLS (system roots when empty)."`
	KafkaTLSCertFile    string        `env:"WEBHOOKD_KAFKA_TLS_CERT_FILE" help:"PEM client certificate for brokers that require one (mutual TLS), with WEBHOOKD_KAFKA_TLS_KEY_FILE."`
	KafkaTLSKeyFile     string        `env:"WEBHOOKD_KAFKA_TLS_KEY_FILE" help:"PEM private key of WEBHOOKD_KAFKA_TLS_CERT_FILE."`
	DevKafkaAddr        string        `env:"WEBHOOKD_DEV_KAFKA_ADDR" help:"Dev mode without WEBHOOKD_KAFKA_BROKERS: where the in-process Kafka listens (port 0 picks a free port)."`
	KafkaSessionTimeout time.Duration `env:"WEBHOOKD_KAFKA_SESSION_TIMEOUT" help:"Consumer-group session timeout: how long a crashed replica's partitions wait before another replica takes them. 6s to 30m (the brokers' default limits)."`
	KafkaTransactions   bool          `env:"WEBHOOKD_KAFKA_TRANSACTIONS" help:"Hand work between topics in Kafka transactions: the records a delivery produces (retry and failover tasks, DLQ items, execution log) and its source offset commit in one, so after a crash a delivery is not redone both by its re-read event and by the task it left. Needs brokers with transactions (Kafka 2.5+, KIP-447); off: produce acknowledged, then offsets committed every 100 ms."`

	TopicPrefix       string  `env:"WEBHOOKD_TOPIC_PREFIX" help:"Prefix for webhookd's internal topics (webhooks.*)."`
	EventTopics       string  `env:"WEBHOOKD_EVENT_TOPICS" help:"Comma-separated event topics to consume."`
	CreateEventTopics bool    `env:"WEBHOOKD_CREATE_EVENT_TOPICS" help:"Create missing event topics at start-up (dev: true)."`
	TopicPartitions   int     `env:"WEBHOOKD_TOPIC_PARTITIONS" help:"Partitions for topics webhookd creates."`
	TopicReplication  int     `env:"WEBHOOKD_TOPIC_REPLICATION" help:"Replication factor for topics webhookd creates (-1: broker default)."`
	ConsumerGroup     string  `env:"WEBHOOKD_CONSUMER_GROUP" help:"Consumer group of the event dispatcher."`
	RetryTiers        string  `env:"WEBHOOKD_RETRY_TIERS" help:"Comma-separated retry tier delays, ascending; one topic and consumer group each. The finest tier bounds how late a retry can be."`
	RetryDelayScale   float64 `env:"WEBHOOKD_RETRY_DELAY_SCALE" help:"Multiplies every retry delay (1 in production; tests and staging shrink schedules with it)."`

	MaxInFlight          int           `env:"WEBHOOKD_MAX_IN_FLIGHT" help:"Deliveries running at once per consumer (events fan out to one delivery per pipeline), all partitions together; fetching pauses beyond it."`
	PartitionMaxInFlight int           `env:"WEBHOOKD_PARTITION_MAX_IN_FLIGHT" help:"Deliveries running at once per partition."`
	MaxInFlightPerHost   int           `env:"WEBHOOKD_MAX_IN_FLIGHT_PER_HOST" help:"Requests in flight to one receiver host (requests, not connections: HTTP/2 included). A delivery to a host at its limit waits in place if a place is expected within 250 ms (the host's pace times the queue ahead) and the host keeps answering, then up to four of its request latencies (at most 2 s) as the latency is learnt; otherwise it is deferred to the retry path, without spending an attempt, to when the host's pace says a place will be free."`
	BreakerFailures      int           `env:"WEBHOOKD_BREAKER_FAILURES" help:"Consecutive failures (network error, timeout, 5xx) that open a receiver host's circuit; 0 disables the breaker."`
	BreakerCooldown      time.Duration `env:"WEBHOOKD_BREAKER_COOLDOWN" help:"How long an open circuit defers that host's work to the retry path (without spending attempts) before one probe. A delivery deferred longer than its retry policy's total wait (at least two cooldowns) goes to the DLQ as circuit_open."`
	ResponseBodyLimit    int           `env:"WEBHOOKD_RESPONSE_BODY_LIMIT" help:"Bytes of a response body read and kept for step chaining."`
	LogBodyLimit         int           `env:"WEBHOOKD_LOG_BODY_LIMIT" help:"Bytes of request/response bodies stored in execution logs."`
	AutoDisableAfter     time.Duration `env:"WEBHOOKD_AUTO_DISABLE_AFTER" help:"A pipeline whose every attempt has failed this long, with at least 10 failed attempts, is set to disabled with an operator event (0: never). A pipeline's auto_disable_after_seconds overrides it. Judged on the execution log in ClickHouse by replicas with the analytics role."`

	AllowPrivateTargets bool   `env:"WEBHOOKD_ALLOW_PRIVATE_TARGETS" help:"Allow webhook calls to loopback/private/link-local addresses, and URLs naming them when pipelines are saved (dev: true). Keep false in production."`
	AllowedTargetCIDRs  string `env:"WEBHOOKD_ALLOWED_TARGET_CIDRS" help:"Comma-separated CIDRs allowed even though private (e.g. an internal partner gateway), when dialled and when saved."`

	ClickHouseAddr     string `env:"WEBHOOKD_CLICKHOUSE_ADDR" help:"ClickHouse native address host:9000 (serve mode)."`
	ClickHouseDatabase string `env:"WEBHOOKD_CLICKHOUSE_DATABASE" help:"ClickHouse database."`
	ClickHouseUser     string `env:"WEBHOOKD_CLICKHOUSE_USER" help:"ClickHouse user."`
	ClickHousePassword string `env:"WEBHOOKD_CLICKHOUSE_PASSWORD" help:"ClickHouse password."`
	ClickHouseTLS      bool   `env:"WEBHOOKD_CLICKHOUSE_TLS" help:"Connect to ClickHouse over TLS."`
	ClickHouseCluster  string `env:"WEBHOOKD_CLICKHOUSE_CLUSTER" help:"If set, DDL runs ON CLUSTER with Replicated engines."`
	ClickHouseTTLDays  int    `env:"WEBHOOKD_CLICKHOUSE_TTL_DAYS" help:"Default retention in days: execution logs and aggregates are kept this long, DLQ items 60 days more, unless a setting below says otherwise."`
	ChDBLibrary        string `env:"WEBHOOKD_CHDB_LIBRARY" help:"Dev mode: path to libchdb.so (default: the repo's .cache, then the system)."`
	ChDBPurgeAboveMB   int    `env:"WEBHOOKD_CHDB_PURGE_ABOVE_MB" help:"Dev mode: the process's anonymous resident memory (MiB: Go's and the embedded ClickHouse's heaps, not the pages of libchdb.so) above which the memory the embedded ClickHouse has freed goes back to the system after each query or insert (checked at most 4 times a second). Below it, freed memory is kept 200 ms for reuse, which makes queries and inserts cheaper (page faults were 42 % of a log query's CPU when it was returned at once). 0: return it after every call. (JE_MALLOC_CONF in the environment replaces the 200 ms.)"`
	ChDBNice           int    `env:"WEBHOOKD_CHDB_NICE" help:"Dev mode (Linux): the nice value the embedded ClickHouse's threads run at, 0–19. Every call into it is made on one OS thread at this priority, and the threads it starts for inserts, merges and queries inherit it, so deliveries go first when both want the same core; with idle cores it changes nothing. 0: the process's priority; a process started at a higher nice value keeps chDB at its own (the setting never raises a priority). Linux only."`

	// Retention per kind of table (0: from WEBHOOKD_CLICKHOUSE_TTL_DAYS).
	ClickHouseLogTTLDays       int           `env:"WEBHOOKD_CLICKHOUSE_LOG_TTL_DAYS" help:"Days execution logs (attempts, executions) are kept; 0: WEBHOOKD_CLICKHOUSE_TTL_DAYS. A changed retention is applied to the existing tables at the next start (ALTER TABLE … MODIFY TTL)."`
	ClickHouseAggregateTTLDays int           `env:"WEBHOOKD_CLICKHOUSE_AGGREGATE_TTL_DAYS" help:"Days the per-minute and per-hour aggregates (stats, time series, dashboards) are kept; 0: WEBHOOKD_CLICKHOUSE_TTL_DAYS."`
	ClickHouseDLQTTLDays       int           `env:"WEBHOOKD_CLICKHOUSE_DLQ_TTL_DAYS" help:"Days DLQ items are kept after they failed; 0: WEBHOOKD_CLICKHOUSE_TTL_DAYS + 60."`
	ClickHouseMigrateWait      time.Duration `env:"WEBHOOKD_CLICKHOUSE_MIGRATE_WAIT" help:"How long a starting replica waits for another replica's schema migration (one migrates at a time, under a lease on the webhooks.leases topic) before it gives up and exits."`

	AnalyticsBatchSize     int           `env:"WEBHOOKD_ANALYTICS_BATCH_SIZE" help:"Records per ClickHouse insert (at most; a batch also ends after the flush interval). Larger batches make fewer parts for ClickHouse to merge."`
	AnalyticsFlushInterval time.Duration `env:"WEBHOOKD_ANALYTICS_FLUSH_INTERVAL" help:"Longest a row waits before its batch is inserted."`
	AnalyticsFeedInterval  time.Duration `env:"WEBHOOKD_ANALYTICS_FEED_INTERVAL" help:"How often the statistics' aggregates are fed under load: batches reach the execution logs at the flush interval, and are fed to the aggregates together (then committed) once this passes, once 4 batches are waiting, or as soon as the sink has caught up. Each feed writes a part per aggregate table, the sink's largest fixed cost. 0s (the default): with every batch; 5s cut the sink's CPU per delivery by about a third in its benchmark but raised the half-peak p99 latency in most bench runs."`
	AnalyticsDedupWindow   time.Duration `env:"WEBHOOKD_ANALYTICS_DEDUP_WINDOW" help:"How long the analytics sink remembers the keys of the rows it fed (attempt ids, execution ids with their final or first retry state, dead DLQ items), so that an execution delivered again after a crash or a rebalance counts once in the statistics. A redelivery comes within moments of its first delivery; memory is 8 bytes a key (about 100 MB for 10 minutes at 10,000 deliveries a second). At most 12h."`
	QueueMetricsInterval   time.Duration `env:"WEBHOOKD_QUEUE_METRICS_INTERVAL" help:"How often replicas with the admin or analytics role compute the lag, retry-tier depth and DLQ size gauges (one set of Kafka admin requests and one ClickHouse count each time, whatever the number of scrapes)."`

	ShutdownGrace time.Duration `env:"WEBHOOKD_SHUTDOWN_GRACE" help:"How long shutdown (SIGTERM) or a partition revoke may take: in-flight deliveries get most of it, then they are cancelled (and run again later) and offsets are committed."`

	MemoryBudgetMB int `env:"WEBHOOKD_MEMORY_BUDGET_MB" help:"The resident memory (MiB) the whole process is kept within: every 250 ms Go's soft memory limit is set to this budget less what is resident outside Go (the embedded ClickHouse's heap, the pages of libchdb.so), at least 64 MiB and 1.5 times the live heap, and at most 256 MiB whatever the live heap. The embedded ClickHouse's merges take 50–150 MB for seconds: Go's collector works harder only while they last. A budget below what the rest of the process holds keeps Go at its floor, the collector working hard. 0: 90 % of the lowest memory limit along the process's cgroup and its parents (a container's limit, a systemd unit's MemoryMax=; cgroup v2 or v1 under /sys/fs/cgroup) if there is one, else Go's limit stays at 256 MiB. From 128. GOMEMLIMIT in the environment replaces all of this."`

	file string            // the configuration file applied, if any
	src  map[string]origin // where each setting not left at its default came from
}

// DefaultEventTopics are the tracking platform's topics.
const DefaultEventTopics = "afftok.clicks,afftok.conversions,afftok.postbacks,afftok.fraud,afftok.events"

// Defaults returns the defaults for a mode.
func Defaults(mode Mode) Config {
	c := Config{
		Mode:                   mode,
		DataDir:                "./data",
		AdminAddr:              ":8080",
		Roles:                  "all",
		LogLevel:               "info",
		LogFormat:              "json",
		EventTopics:            DefaultEventTopics,
		TopicPartitions:        6,
		TopicReplication:       -1,
		ConsumerGroup:          "webhookd-dispatcher",
		KafkaSessionTimeout:    10 * time.Second,
		RetryTiers:             "1s,5s,10s,30s,1m,5m,15m,1h",
		RetryDelayScale:        1,
		MaxInFlight:            1024,
		PartitionMaxInFlight:   128,
		MaxInFlightPerHost:     64,
		BreakerFailures:        10,
		BreakerCooldown:        30 * time.Second,
		ResponseBodyLimit:      64 << 10,
		LogBodyLimit:           4 << 10,
		AutoDisableAfter:       72 * time.Hour,
		ClickHouseDatabase:     "webhookd",
		ClickHouseTTLDays:      30,
		ClickHouseMigrateWait:  5 * time.Minute,
		AnalyticsBatchSize:     10000,
		AnalyticsFlushInterval: time.Second,
		AnalyticsFeedInterval:  0,
		AnalyticsDedupWindow:   10 * time.Minute,
		ChDBPurgeAboveMB:       256,
		ChDBNice:               10,
		QueueMetricsInterval:   10 * time.Second,
		ShutdownGrace:          30 * time.Second,
	}
	if mode == ModeDev {
		c.AdminAddr = "127.0.0.1:8080"
		c.LogFormat = "text"
		// KafkaBrokers stays empty: dev mode then starts the in-process
		// broker on DevKafkaAddr (and points KafkaBrokers at it).
		c.DevKafkaAddr = "127.0.0.1:9092"
		c.CreateEventTopics = true
		c.TopicPartitions = 3
		c.AllowPrivateTargets = true
		// The embedded ClickHouse shares the process: 440 MiB keeps a
		// backlog's peak under 512 MB (make bench).
		c.MemoryBudgetMB = 440
	}
	return c
}

// Load returns the mode's defaults overridden by the environment, validated
// (LoadFile with no file).
func Load(mode Mode, getenv func(string) string) (Config, error) {
	return LoadFile(mode, "", getenv)
}

func (c *Config) apply(getenv func(string) string) error {
	var ps Problems
	for _, f := range c.fields() {
		raw, ok := lookup(getenv, f.env)
		if !ok {
			continue
		}
		if msg := set(f.v, raw); msg != "" {
			ps = append(ps, Problem{Env: f.env, Where: f.env + " (environment)", Msg: msg})
			continue
		}
		c.setOrigin(f.env, origin{env: true})
	}
	return ps.err()
}

func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

// Validate rejects settings the service cannot run with, naming each
// setting and where its value came from. Its error is Problems.
func (c *Config) Validate() error {
	var ps Problems
	bad := func(name, format string, a ...any) {
		ps = append(ps, Problem{Env: name, Where: c.where(name), Msg: fmt.Sprintf(format, a...)})
	}
	if c.Mode == ModeDev && c.KafkaBrokers == "" && c.DevKafkaAddr == "" {
		bad("WEBHOOKD_DEV_KAFKA_ADDR", "is required in dev mode unless WEBHOOKD_KAFKA_BROKERS is set")
	}
	if c.Mode == ModeServe {
		if c.KafkaBrokers == "" {
			bad("WEBHOOKD_KAFKA_BROKERS", "is required in serve mode")
		}
		if c.HasRole(RoleAdmin) && !c.AdminAuthConfigured() {
			bad("WEBHOOKD_ADMIN_TOKEN", "is required in serve mode (or WEBHOOKD_ADMIN_TOKENS_FILE, WEBHOOKD_ADMIN_JWT_SECRET or WEBHOOKD_ADMIN_JWT_PUBLIC_KEY_FILE)")
		}
		if (c.HasRole(RoleAnalytics) || c.HasRole(RoleAdmin)) && c.ClickHouseAddr == "" {
			bad("WEBHOOKD_CLICKHOUSE_ADDR", "is required in serve mode for the analytics and admin roles")
		}
	}
	if c.AdminJWTSecret != "" && len(c.AdminJWTSecret) < 32 {
		bad("WEBHOOKD_ADMIN_JWT_SECRET", "must be at least 32 characters")
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		bad("WEBHOOKD_ADMIN_TOKEN", "must be at least 16 characters")
	}
	for _, r := range c.RoleList() {
		if !knownRoles[r] {
			bad("WEBHOOKD_ROLES", "unknown role %q (known: dispatcher, retry, analytics, admin, all)", r)
		}
	}
	switch c.KafkaSASLMechanism {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		bad("WEBHOOKD_KAFKA_SASL_MECHANISM", "must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	}
	if c.KafkaPassword != "" && c.KafkaPasswordFile != "" {
		bad("WEBHOOKD_KAFKA_PASSWORD_FILE", "set it or WEBHOOKD_KAFKA_PASSWORD, not both")
	}
	if saslKnown := c.KafkaSASLMechanism == "PLAIN" || strings.HasPrefix(c.KafkaSASLMechanism, "SCRAM-SHA-"); saslKnown && (c.KafkaUser == "" || c.KafkaPassword == "" && c.KafkaPasswordFile == "") {
		bad("WEBHOOKD_KAFKA_SASL_MECHANISM", "%s needs WEBHOOKD_KAFKA_USER and WEBHOOKD_KAFKA_PASSWORD (or WEBHOOKD_KAFKA_PASSWORD_FILE)", c.KafkaSASLMechanism)
	}
	if c.KafkaSASLMechanism == "" && (c.KafkaUser != "" || c.KafkaPassword != "" || c.KafkaPasswordFile != "") {
		bad("WEBHOOKD_KAFKA_SASL_MECHANISM", "is required when Kafka credentials are set (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
	}
	if (c.KafkaTLSCertFile == "") != (c.KafkaTLSKeyFile == "") {
		bad("WEBHOOKD_KAFKA_TLS_CERT_FILE", "and WEBHOOKD_KAFKA_TLS_KEY_FILE go together")
	}
	if !c.KafkaTLS && (c.KafkaTLSCAFile != "" || c.KafkaTLSCertFile != "") {
		bad("WEBHOOKD_KAFKA_TLS", "must be true when WEBHOOKD_KAFKA_TLS_CA_FILE or WEBHOOKD_KAFKA_TLS_CERT_FILE is set")
	}
	if len(c.EventTopicList()) == 0 {
		bad("WEBHOOKD_EVENT_TOPICS", "needs at least one topic")
	}
	if c.RetryDelayScale <= 0 || c.RetryDelayScale > 1 {
		bad("WEBHOOKD_RETRY_DELAY_SCALE", "must be in (0, 1]")
	}
	if c.KafkaSessionTimeout < MinSessionTimeout || c.KafkaSessionTimeout > MaxSessionTimeout {
		bad("WEBHOOKD_KAFKA_SESSION_TIMEOUT", "%v is outside the brokers' allowed range, 6s to 30m (group.min/max.session.timeout.ms)", c.KafkaSessionTimeout)
	}
	if c.TopicPartitions < 1 {
		bad("WEBHOOKD_TOPIC_PARTITIONS", "must be at least 1")
	}
	if c.MaxInFlight < 1 {
		bad("WEBHOOKD_MAX_IN_FLIGHT", "must be at least 1")
	}
	if c.PartitionMaxInFlight < 1 {
		bad("WEBHOOKD_PARTITION_MAX_IN_FLIGHT", "must be at least 1")
	}
	if c.MaxInFlightPerHost < 1 {
		bad("WEBHOOKD_MAX_IN_FLIGHT_PER_HOST", "must be at least 1")
	}
	if c.BreakerFailures < 0 {
		bad("WEBHOOKD_BREAKER_FAILURES", "must be 0 (no breaker) or more")
	}
	if c.BreakerCooldown <= 0 {
		bad("WEBHOOKD_BREAKER_COOLDOWN", "must be a positive duration such as 30s")
	}
	if c.AnalyticsBatchSize < 1 {
		bad("WEBHOOKD_ANALYTICS_BATCH_SIZE", "must be at least 1")
	}
	if c.AnalyticsFlushInterval <= 0 {
		bad("WEBHOOKD_ANALYTICS_FLUSH_INTERVAL", "must be a positive duration such as 1s")
	}
	if c.AnalyticsFeedInterval < 0 {
		bad("WEBHOOKD_ANALYTICS_FEED_INTERVAL", "must be 0s (with every batch) or a positive duration such as 5s")
	}
	if c.AnalyticsDedupWindow < time.Minute || c.AnalyticsDedupWindow > 12*time.Hour {
		bad("WEBHOOKD_ANALYTICS_DEDUP_WINDOW", "must be between 1m and 12h")
	}
	if c.ChDBPurgeAboveMB < 0 || c.ChDBPurgeAboveMB > 1<<20 {
		bad("WEBHOOKD_CHDB_PURGE_ABOVE_MB", "must be 0 (after every call) or a size in MiB such as 256, at most 1048576")
	}
	if c.ChDBNice < 0 || c.ChDBNice > 19 {
		bad("WEBHOOKD_CHDB_NICE", "must be 0 (the process's priority) to 19 (the lowest)")
	}
	if c.MemoryBudgetMB != 0 && (c.MemoryBudgetMB < 128 || c.MemoryBudgetMB > 1<<20) {
		bad("WEBHOOKD_MEMORY_BUDGET_MB", "must be 0 (from the container's memory limit) or a size in MiB from 128 to 1048576, such as 1024")
	}
	if c.QueueMetricsInterval < 100*time.Millisecond {
		bad("WEBHOOKD_QUEUE_METRICS_INTERVAL", "must be at least 100ms")
	}
	if c.AutoDisableAfter < 0 {
		bad("WEBHOOKD_AUTO_DISABLE_AFTER", "must be 0 (never) or a positive duration such as 72h")
	}
	if c.ShutdownGrace < time.Second {
		bad("WEBHOOKD_SHUTDOWN_GRACE", "must be at least 1s")
	}
	if c.ClickHouseTTLDays < 1 {
		bad("WEBHOOKD_CLICKHOUSE_TTL_DAYS", "must be at least 1")
	}
	for _, r := range []struct {
		name string
		days int
	}{{"WEBHOOKD_CLICKHOUSE_LOG_TTL_DAYS", c.ClickHouseLogTTLDays}, {"WEBHOOKD_CLICKHOUSE_AGGREGATE_TTL_DAYS", c.ClickHouseAggregateTTLDays},
		{"WEBHOOKD_CLICKHOUSE_DLQ_TTL_DAYS", c.ClickHouseDLQTTLDays}} {
		if r.days < 0 {
			bad(r.name, "must be 0 (from WEBHOOKD_CLICKHOUSE_TTL_DAYS) or a number of days")
		}
	}
	if c.ClickHouseMigrateWait < time.Second {
		bad("WEBHOOKD_CLICKHOUSE_MIGRATE_WAIT", "must be at least 1s")
	}
	c.validateMore(bad)
	return ps.err()
}

// AdminAuthConfigured reports whether any admin API credential is set: the
// token, the tokens file or a JWT key.
func (c *Config) AdminAuthConfigured() bool {
	return c.AdminToken != "" || c.AdminTokensFile != "" || c.AdminJWTSecret != "" || c.AdminJWTKeyFile != ""
}

// StartsDevKafka reports whether this process runs the in-process broker:
// dev mode without explicit WEBHOOKD_KAFKA_BROKERS.
func (c *Config) StartsDevKafka() bool { return c.Mode == ModeDev && c.KafkaBrokers == "" }

// UsesDataDir reports whether this process keeps files in DataDir: dev
// mode's in-process broker, its embedded ClickHouse (analytics or admin
// role without WEBHOOKD_CLICKHOUSE_ADDR) or its generated secrets key. Such
// a process locks the directory for itself.
func (c *Config) UsesDataDir() bool {
	if c.Mode != ModeDev {
		return false
	}
	return c.StartsDevKafka() || c.EmbedsChDB() || c.SecretsKey == ""
}

// EmbedsChDB reports whether this process runs the embedded ClickHouse
// (chDB): dev mode with the analytics or admin role and no
// WEBHOOKD_CLICKHOUSE_ADDR. Its memory is then the process's too.
func (c *Config) EmbedsChDB() bool {
	return c.Mode == ModeDev && c.ClickHouseAddr == "" && (c.HasRole(RoleAnalytics) || c.HasRole(RoleAdmin))
}

// Roles.
const (
	RoleDispatcher = "dispatcher"
	// RoleRetry runs the retry-tier consumers and the failover consumer.
	RoleRetry     = "retry"
	RoleAnalytics = "analytics"
	RoleAdmin     = "admin"
)

var knownRoles = map[string]bool{RoleDispatcher: true, RoleRetry: true, RoleAnalytics: true, RoleAdmin: true, "all": true}

// RoleList is the configured roles.
func (c *Config) RoleList() []string { return SplitList(c.Roles) }

// HasRole reports whether a role runs in this process.
func (c *Config) HasRole(r string) bool {
	for _, x := range c.RoleList() {
		if x == r || x == "all" {
			return true
		}
	}
	return false
}

// EventTopicList is the event topics to consume.
func (c *Config) EventTopicList() []string { return SplitList(c.EventTopics) }

// SplitList splits a comma-separated setting, trimming blanks.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Doc is one row of the README's configuration table.
type Doc struct{ Env, Default, DevDefault, Help string }

// Docs lists every setting with its defaults.
func Docs() []Doc {
	serve, dev := Defaults(ModeServe), Defaults(ModeDev)
	t := reflect.TypeOf(serve)
	var out []Doc
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("env")
		if name == "" || name == "-" {
			continue
		}
		out = append(out, Doc{Env: name, Default: fmt.Sprint(reflect.ValueOf(serve).Field(i).Interface()), DevDefault: fmt.Sprint(reflect.ValueOf(dev).Field(i).Interface()), Help: f.Tag.Get("help")})
	}
	return out
}
