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
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/afftok/webhookd/config"
)

// Topics names every topic webhookd uses.
type Topics struct {
	Events     []string
	Pipelines  string
	Executions string
	Failover   string
	DLQ        string
	Retry      []string // one per tier, shortest first
}

// NewTopics derives topic names from settings; retry lists the tier topics.
func NewTopics(cfg *config.Config, retry []string) Topics {
	p := cfg.TopicPrefix
	t := Topics{
		Events:     cfg.EventTopicList(),
		Pipelines:  p + "webhooks.pipelines",
		Executions: p + "webhooks.executions",
		Failover:   p + "webhooks.failover",
		DLQ:        p + "webhooks.dlq",
	}
	t.Retry = retry
	return t
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
	}
	for _, r := range t.Retry {
		specs = append(specs, Spec{Name: r, Partitions: n, Configs: del(7 * day)})
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

// ClientOpts turns settings into franz-go options shared by every client.
func ClientOpts(cfg *config.Config) ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(config.SplitList(cfg.KafkaBrokers)...)}
	switch cfg.KafkaSASLMechanism {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: cfg.KafkaUser, Pass: cfg.KafkaPassword}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: cfg.KafkaUser, Pass: cfg.KafkaPassword}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: cfg.KafkaUser, Pass: cfg.KafkaPassword}.AsSha512Mechanism()))
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
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	return opts, nil
}

// GroupOpts are the options of consumer-group clients: a crashed member's
// partitions move after the session timeout (kgo's default, 45 s, would stall
// those partitions' webhooks that long).
func GroupOpts(cfg *config.Config) []kgo.Opt {
	return []kgo.Opt{kgo.SessionTimeout(cfg.KafkaSessionTimeout), kgo.HeartbeatInterval(max(cfg.KafkaSessionTimeout/10, 100*time.Millisecond))}
}

// Send produces records and returns once every one is acknowledged. A record
// whose produce failed is produced again, with backoff, until ctx ends: a
// caller marks its source offset only after Send returned nil, so giving up
// early would be the only way to lose work.
func Send(ctx context.Context, cl *kgo.Client, recs ...*kgo.Record) error {
	backoff := 100 * time.Millisecond
	for len(recs) > 0 {
		results := cl.ProduceSync(ctx, recs...)
		var failed []*kgo.Record
		var last error
		for _, r := range results {
			if r.Err != nil {
				failed = append(failed, r.Record)
				last = r.Err
			}
		}
		if len(failed) == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("produce %d records: %w", len(failed), errors.Join(last, ctx.Err()))
		}
		slog.Default().Warn("produce failed; retrying", "records", len(failed), "topic", failed[0].Topic, "err", last)
		select {
		case <-ctx.Done():
			return fmt.Errorf("produce %d records: %w", len(failed), errors.Join(last, ctx.Err()))
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
		recs = failed
	}
	return nil
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
