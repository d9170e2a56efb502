// Package bus is webhookd's use of Kafka: topic names and their creation,
// client options from settings, and produces that are acknowledged before
// anything depending on them is committed.
package bus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/afftok/webhookd/config"
)

// Topics names every topic webhookd uses: the one place topic names are made.
type Topics struct {
	Events     []string
	Pipelines  string
	Executions string
	Failover   string
	DLQ        string
	Tiers      []Tier // shortest first

	// OperatorEvents holds operator events (opevents/): retention-limited.
	OperatorEvents string
	// Jobs holds replay and bulk-redrive jobs and their checkpoints.
	Jobs string
	// Order holds the key locks and releases of pipelines ordered by key
	// (compacted); Parked the events parked behind a locked key.
	Order  string
	Parked string
	// Leases holds lease claims (package lease): one partition, whose
	// log order decides who holds, e.g., the ClickHouse schema lease.
	Leases string
}

// Tier is one retry topic and the delay it stands for.
type Tier struct {
	Name  string // as configured: "5s", "1m", …
	Delay time.Duration
	Topic string // webhooks.retry.<name>, with the prefix
}

// NewTopics derives topic names from settings.
func NewTopics(cfg *config.Config) (Topics, error) {
	p := cfg.TopicPrefix
	tiers, err := ParseTiers(cfg.RetryTiers)
	if err != nil {
		return Topics{}, fmt.Errorf("WEBHOOKD_RETRY_TIERS: %w", err)
	}
	for i := range tiers {
		tiers[i].Topic = p + "webhooks.retry." + tiers[i].Name
	}
	return Topics{
		Events:     cfg.EventTopicList(),
		Pipelines:  p + "webhooks.pipelines",
		Executions: p + "webhooks.executions",
		Failover:   p + "webhooks.failover",
		DLQ:        p + "webhooks.dlq",
		Jobs:       p + "webhooks.jobs",
		Order:      p + "webhooks.order",
		Parked:     p + "webhooks.parked",
		Leases:     p + "webhooks.leases",
		Tiers:      tiers,

		OperatorEvents: p + "webhooks.operator-events",
	}, nil
}

// ParseTiers parses "5s,10s,30s,1m" into tiers sorted by delay (topics unset).
func ParseTiers(s string) ([]Tier, error) {
	var tiers []Tier
	seen := map[time.Duration]bool{}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		d, err := time.ParseDuration(p)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("retry tier %q is not a positive duration such as 5s or 1m", p)
		}
		if seen[d] {
			return nil, fmt.Errorf("retry tier %q is listed twice", p)
		}
		seen[d] = true
		tiers = append(tiers, Tier{Name: p, Delay: d})
	}
	if len(tiers) == 0 {
		return nil, fmt.Errorf("at least one retry tier is required")
	}
	sort.Slice(tiers, func(i, j int) bool { return tiers[i].Delay < tiers[j].Delay })
	return tiers, nil
}

// TierFor returns the tier a task waiting d goes to: the largest not longer
// than d, or the shortest if d is shorter than every tier (its consumer then
// holds the task until it is due).
func (t Topics) TierFor(d time.Duration) Tier {
	tier := t.Tiers[0]
	for _, x := range t.Tiers {
		if x.Delay <= d {
			tier = x
		}
	}
	return tier
}

// Spec is a topic to create when missing.
type Spec struct {
	Name       string
	Partitions int32
	Configs    map[string]*string
}

func ptr(s string) *string { return &s }

const day = 24 * time.Hour

func ms(d time.Duration) *string { return ptr(strconv.FormatInt(d.Milliseconds(), 10)) }

// Specs lists the topics to ensure: the internal ones always, the event
// topics only when the deployment owns them (dev mode).
func (t Topics) Specs(partitions int, withEvents bool) []Spec {
	n := int32(partitions)
	del := func(retention time.Duration) map[string]*string {
		return map[string]*string{"cleanup.policy": ptr("delete"), "retention.ms": ms(retention)}
	}
	specs := []Spec{
		// One partition: the registry reads the whole topic anyway, and a
		// single partition keeps per-pipeline writes totally ordered.
		{Name: t.Pipelines, Partitions: 1, Configs: map[string]*string{"cleanup.policy": ptr("compact"), "min.compaction.lag.ms": ms(time.Hour)}},
		{Name: t.Executions, Partitions: n, Configs: del(7 * day)},
		{Name: t.Failover, Partitions: n, Configs: del(7 * day)},
		{Name: t.DLQ, Partitions: n, Configs: del(90 * day)},
		// One partition: operator events are rare, and listing them reads
		// the whole topic.
		{Name: t.OperatorEvents, Partitions: 1, Configs: del(90 * day)},
		// One partition: its owner in the jobs consumer group is the one
		// replica that runs jobs; compacted, so a job's last checkpoint stays.
		{Name: t.Jobs, Partitions: 1, Configs: map[string]*string{"cleanup.policy": ptr("compact"), "min.compaction.lag.ms": ms(time.Hour)}},
		// A key's lock and release records: compaction keeps the last of
		// each, a cleared key leaves tombstones.
		{Name: t.Order, Partitions: n, Configs: map[string]*string{"cleanup.policy": ptr("compact")}},
		// Parked events wait as long as a retry may (the tiers' retention).
		{Name: t.Parked, Partitions: n, Configs: del(7 * day)},
		// One partition: the log order of claims decides a lease. Read
		// from its start, so kept days, far longer than a lease is held.
		{Name: t.Leases, Partitions: 1, Configs: del(7 * day)},
	}
	for _, r := range t.Tiers {
		specs = append(specs, Spec{Name: r.Topic, Partitions: n, Configs: del(7 * day)})
	}
	if withEvents {
		for _, e := range t.Events {
			specs = append(specs, Spec{Name: e, Partitions: n, Configs: del(7 * day)})
		}
	}
	return specs
}

// Ensure creates missing topics. Existing topics are left as they are: a
// partition-count mismatch is logged, never "fixed" by deleting data.
func Ensure(ctx context.Context, adm *kadm.Client, specs []Spec, replication int, log *slog.Logger) error {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	existing, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	var errs []error
	for _, s := range specs {
		if d, ok := existing[s.Name]; ok && d.Err == nil {
			if got := int32(len(d.Partitions)); got != s.Partitions {
				log.Warn("topic exists with a different partition count; leaving it as is", "topic", s.Name, "partitions", got, "configured", s.Partitions)
			}
			continue
		}
		resp, err := adm.CreateTopic(ctx, s.Partitions, int16(replication), s.Configs, s.Name)
		if err == nil {
			err = resp.Err
		}
		if errors.Is(err, kerr.TopicAlreadyExists) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("create topic %s: %w", s.Name, err))
			continue
		}
		log.Info("created topic", "topic", s.Name, "partitions", s.Partitions)
	}
	return errors.Join(errs...)
}

// ClientOpts turns settings into franz-go options shared by every client:
// brokers, TLS (CA, client certificate) and SASL. Every Kafka client of the
// process is built from them (a test in this package checks that no other
// package names brokers, TLS or SASL itself). access, when not nil, is told of
// every connection attempt, so readiness can say when the brokers refuse
// this process's credentials.
func ClientOpts(cfg *config.Config, access *Access) ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(config.SplitList(cfg.KafkaBrokers)...),
		kgo.RecordDeliveryTimeout(ProduceTimeout),
		// A millisecond's linger gathers the records concurrent deliveries
		// produce into fewer, larger batches (fewer requests for the broker
		// to handle) for a millisecond of latency.
		kgo.ProducerLinger(time.Millisecond),
		// Bounded fetch buffers: a backlog is read as fast as it is worked
		// off, not held in memory (each consumer group has a client).
		kgo.FetchMaxBytes(8 << 20),
	}
	if cfg.KafkaSASLMechanism != "" {
		pass := cfg.KafkaPassword
		if cfg.KafkaPasswordFile != "" {
			b, err := os.ReadFile(cfg.KafkaPasswordFile)
			if err != nil {
				return nil, fmt.Errorf("WEBHOOKD_KAFKA_PASSWORD_FILE: %w", err)
			}
			// A mounted Secret or `echo pw > file` ends in a newline that
			// is not part of the password.
			pass = strings.TrimRight(string(b), "\r\n")
			if pass == "" {
				return nil, fmt.Errorf("WEBHOOKD_KAFKA_PASSWORD_FILE: %s is empty", cfg.KafkaPasswordFile)
			}
		}
		switch cfg.KafkaSASLMechanism {
		case "PLAIN":
			opts = append(opts, kgo.SASL(plain.Auth{User: cfg.KafkaUser, Pass: pass}.AsMechanism()))
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(scram.Auth{User: cfg.KafkaUser, Pass: pass}.AsSha256Mechanism()))
		case "SCRAM-SHA-512":
			opts = append(opts, kgo.SASL(scram.Auth{User: cfg.KafkaUser, Pass: pass}.AsSha512Mechanism()))
		default:
			return nil, fmt.Errorf("WEBHOOKD_KAFKA_SASL_MECHANISM: %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", cfg.KafkaSASLMechanism)
		}
	}
	if cfg.KafkaTLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.KafkaTLSCAFile != "" {
			pem, err := os.ReadFile(cfg.KafkaTLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("WEBHOOKD_KAFKA_TLS_CA_FILE: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("WEBHOOKD_KAFKA_TLS_CA_FILE: no certificates in %s", cfg.KafkaTLSCAFile)
			}
		}
		if cfg.KafkaTLSCertFile != "" || cfg.KafkaTLSKeyFile != "" {
			cert, err := tls.LoadX509KeyPair(cfg.KafkaTLSCertFile, cfg.KafkaTLSKeyFile)
			if err != nil {
				return nil, fmt.Errorf("WEBHOOKD_KAFKA_TLS_CERT_FILE / WEBHOOKD_KAFKA_TLS_KEY_FILE: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if access != nil {
		access.mechanism, access.user, access.tls = cfg.KafkaSASLMechanism, cfg.KafkaUser, cfg.KafkaTLS
		opts = append(opts, kgo.WithHooks(access))
	}
	return opts, nil
}

// GroupOpts are the options of consumer-group clients: a crashed member's
// partitions move after the session timeout (kgo's default, 45 s, would stall
// those partitions' webhooks that long).
func GroupOpts(cfg *config.Config) []kgo.Opt {
	return []kgo.Opt{kgo.SessionTimeout(cfg.KafkaSessionTimeout), kgo.HeartbeatInterval(max(cfg.KafkaSessionTimeout/10, 100*time.Millisecond))}
}

// ProduceTimeout bounds how long the client retries one record (broker
// unavailable, leader moving) before failing it; the caller then decides what
// the failure means. Nothing waits on Kafka forever.
const ProduceTimeout = 30 * time.Second

// Produce produces recs and waits until each is acknowledged or failed. It
// returns one error per record, in order (nil: acknowledged). Records take
// ctx: when it ends, records not yet sent fail with its error.
//
// Inside a transaction (ctx from WithBuffer) the records are buffered
// instead, and every error is nil: they are produced with their source
// offset's commit, and a refusal then is fatal to the consumer.
func Produce(ctx context.Context, cl *kgo.Client, recs ...*kgo.Record) []error {
	errs := make([]error, len(recs))
	if b := BufferOf(ctx); b != nil {
		for _, r := range recs {
			b.Add(Deferred{Rec: r})
		}
		return errs
	}
	var wg sync.WaitGroup
	wg.Add(len(recs))
	for i, r := range recs {
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			errs[i] = err
			wg.Done()
		})
	}
	wg.Wait()
	return errs
}

// ProduceAll produces recs and returns the first failure, if any.
func ProduceAll(ctx context.Context, cl *kgo.Client, recs ...*kgo.Record) error {
	for i, err := range Produce(ctx, cl, recs...) {
		if err != nil {
			return fmt.Errorf("produce to %s: %w", recs[i].Topic, err)
		}
	}
	return nil
}

// TooLarge reports a produce refused because the record is larger than the
// client or the broker accepts (MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE).
// Producing it again cannot succeed: the record must be made smaller.
func TooLarge(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge)
}

// ReadRecord reads the value of the record at src's topic, partition and
// offset, with a client of its own (opts: brokers, TLS, SASL). It fails if the
// topic no longer retains that offset.
func ReadRecord(ctx context.Context, opts []kgo.Opt, topic string, partition int32, offset int64) ([]byte, error) {
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, opts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(offset)}}),
		// An offset before the log start must fail, not silently jump.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
	)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %s/%d@%d: %w", topic, partition, offset, err)
		}
		var out []byte
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, fmt.Errorf("read %s/%d@%d: %w", topic, partition, offset, ferr)
		}
		found := false
		fs.EachRecord(func(r *kgo.Record) {
			if !found && r.Offset >= offset {
				found = true
				if r.Offset == offset {
					out = r.Value
				}
			}
		})
		if found {
			if out == nil {
				return nil, fmt.Errorf("read %s/%d@%d: the topic no longer holds that offset", topic, partition, offset)
			}
			return out, nil
		}
	}
}

// QueueDepths sums each queue's consumer-group lag: records written to its
// topics that its group has not committed yet. queues maps a queue name to
// the groups that drain it.
func QueueDepths(ctx context.Context, adm *kadm.Client, queues map[string][]string) (map[string]int64, error) {
	var groups []string
	for _, gs := range queues {
		groups = append(groups, gs...)
	}
	lags, err := adm.Lag(ctx, groups...)
	if err != nil {
		return nil, fmt.Errorf("consumer lag: %w", err)
	}
	byGroup := map[string]int64{}
	lags.Each(func(l kadm.DescribedGroupLag) {
		if l.Error() == nil {
			byGroup[l.Group] = l.Lag.Total()
		}
	})
	out := map[string]int64{}
	for q, gs := range queues {
		for _, g := range gs {
			out[q] += byGroup[g]
		}
	}
	return out, nil
}
