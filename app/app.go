// Package app wires webhookd together from its settings, by hand and in one
// place: dependencies first (dev Kafka, ClickHouse), then topics, then the
// roles as supervised workers. Close releases everything in reverse order.
package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/afftok/webhookd/admin"
	"github.com/afftok/webhookd/analytics"
	"github.com/afftok/webhookd/autodisable"
	"github.com/afftok/webhookd/bus"
	"github.com/afftok/webhookd/config"
	"github.com/afftok/webhookd/consumer"
	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/devstack"
	"github.com/afftok/webhookd/dispatcher"
	"github.com/afftok/webhookd/dlq"
	"github.com/afftok/webhookd/engine"
	"github.com/afftok/webhookd/jobs"
	"github.com/afftok/webhookd/lagwatch"
	"github.com/afftok/webhookd/lease"
	"github.com/afftok/webhookd/opevents"
	"github.com/afftok/webhookd/ordering"
	"github.com/afftok/webhookd/pipeline"
	"github.com/afftok/webhookd/ratelimit"
	"github.com/afftok/webhookd/registry"
	"github.com/afftok/webhookd/retrytopics"
	"github.com/afftok/webhookd/template"
	"github.com/afftok/webhookd/worker"
)

// App is a wired webhookd process.
type App struct {
	Config   config.Config
	Topics   bus.Topics
	Registry *registry.Registry
	Store    *analytics.Store
	Admin    *admin.Server
	Consumer *consumer.Consumer
	Sink     *analytics.Sink

	log     *slog.Logger
	sup     *worker.Supervisor
	checks  []admin.Check
	kafka   *devstack.Kafka
	clients []*kgo.Client
	dirLock *devstack.DirLock
}

// Option changes how New builds the app.
type Option func(*options)

type options struct {
	wrapSinkStore func(analytics.SinkStore) analytics.SinkStore
}

// WithSinkStore makes the analytics sink write through wrap(store): for
// tests that inject ClickHouse faults at the sink/store boundary.
func WithSinkStore(wrap func(analytics.SinkStore) analytics.SinkStore) Option {
	return func(o *options) { o.wrapSinkStore = wrap }
}

// New builds the app. Nothing is consumed or served until Run.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, opt ...Option) (_ *App, err error) {
	var o options
	for _, f := range opt {
		f(&o)
	}
	a := &App{Config: cfg, log: log, sup: worker.NewSupervisor(log)}
	defer func() {
		if err != nil {
			a.Close() // release what was built before the failure
		}
	}()
	if cfg.UsesDataDir() {
		// Before the broker or chDB touch a file: a second dev process on
		// the same directory stops here, not after its broker has started
		// (and, stopping, rewritten the first one's state).
		if a.dirLock, err = devstack.LockDataDir(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	if cfg.StartsDevKafka() {
		if a.kafka, err = devstack.StartKafka(cfg.DevKafkaAddr, filepath.Join(cfg.DataDir, "kafka")); err != nil {
			return nil, err
		}
		cfg.KafkaBrokers = strings.Join(a.kafka.Addrs(), ",")
		log.Info("dev Kafka (kfake) listening", "addr", cfg.KafkaBrokers, "data", filepath.Join(cfg.DataDir, "kafka"))
	} else if cfg.Mode == config.ModeDev {
		// WEBHOOKD_KAFKA_BROKERS was set: a broker of the user's own (or a
		// test's devkafka process); everything else stays zero-setup.
		log.Info("dev mode on external Kafka", "brokers", cfg.KafkaBrokers)
	}
	if cfg.Mode == config.ModeDev {
		if !cfg.AdminAuthConfigured() && cfg.HasRole(config.RoleAdmin) {
			cfg.AdminToken = randomToken()
			log.Warn("WEBHOOKD_ADMIN_TOKEN is not set; generated one for this run", "admin_token", cfg.AdminToken)
		}
	}
	a.Config = cfg
	// Credentials are loaded before anything connects: a tokens or key file
	// that can't be read stops the start (the admin API and the health
	// server's /metrics share them).
	auth, err := admin.NewAuth(admin.AuthOptions{Token: cfg.AdminToken, TokensFile: cfg.AdminTokensFile,
		JWTSecret: []byte(cfg.AdminJWTSecret), JWTPublicKeyFile: cfg.AdminJWTKeyFile, JWTAudience: cfg.AdminJWTAudience,
		Log: log.With("worker", "admin-auth")})
	if err != nil {
		return nil, err
	}

	if a.Topics, err = bus.NewTopics(&cfg); err != nil {
		return nil, err
	}
	// Every client is made from base: TLS and SASL everywhere, and access
	// hears of every connection the brokers refuse.
	access := &bus.Access{}
	base, err := bus.ClientOpts(&cfg, access)
	if err != nil {
		return nil, err
	}
	group := append(append([]kgo.Opt{}, base...), bus.GroupOpts(&cfg)...)
	adminClient, err := a.client(base)
	if err != nil {
		return nil, err
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := bus.Ensure(tctx, kadm.NewClient(adminClient), a.Topics.Specs(cfg.TopicPartitions, cfg.CreateEventTopics), cfg.TopicReplication, log); err != nil {
		// The first Kafka call: refused credentials or TLS stop the start
		// here, at once and said plainly (kgo does not retry a refusal).
		return nil, fmt.Errorf("kafka topics: %w", access.Explain(err))
	}

	regClient, err := a.client(append(append([]kgo.Opt{}, base...), registry.ConsumeOpts(a.Topics.Pipelines)...))
	if err != nil {
		return nil, err
	}
	var sealer *pipeline.Sealer
	if cfg.SecretsKey == "" && cfg.Mode == config.ModeDev {
		// Dev mode seals signing keys too, with a key of its own kept in the
		// data directory: no secret is ever in clear on a topic.
		if cfg.SecretsKey, err = devSecretsKey(filepath.Join(cfg.DataDir, "secrets.key")); err != nil {
			return nil, err
		}
	}
	if cfg.SecretsKey != "" {
		if sealer, err = pipeline.NewSealer(cfg.SecretsKey); err != nil {
			return nil, fmt.Errorf("WEBHOOKD_SECRETS_KEY: %w", err)
		}
	} else if cfg.Mode == config.ModeServe {
		log.Warn("WEBHOOKD_SECRETS_KEY is not set: signing keys are stored unencrypted on the pipelines topic")
	}
	a.Registry = registry.New(regClient, a.Topics.Pipelines, sealer, log.With("worker", "registry"))
	// Support workers stop after the delivery consumers drained (package
	// worker, stages): the drain still matches pipelines, orders keys, and
	// its execution records make the sink's last batch.
	a.sup.AddStage(worker.StageSupport, a.Registry)
	checks := []admin.Check{{Name: "registry", Ready: a.Registry.Ready},
		// Brokers refusing this process's credentials or certificate
		// (rotated, revoked) while it runs: /readyz names the refusal.
		{Name: "kafka", Ready: access.Ready, Reason: access.Reason},
		// SIGTERM (or a failed role) takes the replica out of service
		// first; the endpoints keep answering 503 until the drain is over.
		{Name: "shutdown", Ready: func() bool { return !a.sup.Stopping() }, Reason: func() string {
			if a.sup.Stopping() {
				return "shutting down: finishing deliveries in flight, then committing offsets"
			}
			return ""
		}}}

	if cfg.HasRole(config.RoleAnalytics) || cfg.HasRole(config.RoleAdmin) {
		// Replicas starting together migrate the schema one at a time,
		// under a lease on the leases topic (package lease).
		replica := replicaID()
		schemaLease := lease.New(lease.Options{ClientOpts: base, Topic: a.Topics.Leases, Name: "analytics-schema/" + cfg.ClickHouseDatabase,
			Owner: replica, Log: log.With("worker", "schema-lease")})
		if a.Store, err = openStore(ctx, &cfg, schemaLease, replica, log.With("worker", "schema")); err != nil {
			return nil, err
		}
		if err := a.Store.Migrate(ctx); err != nil {
			return nil, err
		}
	}
	env := template.NewEnvSource(config.SplitList(cfg.TemplateEnvAllow), cfg.TemplateSecretsDir)
	var eng *engine.Engine
	var owned *ratelimit.Ownership
	if cfg.HasRole(config.RoleDispatcher) || cfg.HasRole(config.RoleRetry) {
		owned = a.ownership(ctx, adminClient)
		guard, err := newGuard(&cfg)
		if err != nil {
			return nil, err
		}
		hosts := &dispatcher.Hosts{Limit: cfg.MaxInFlightPerHost, Failures: cfg.BreakerFailures, Cooldown: cfg.BreakerCooldown}
		dispatcher.ExportHostMetrics(hosts) // in-flight and breaker gauges, read at scrape time
		disp := dispatcher.New(dispatcher.Options{
			Client: dispatcher.NewHTTPClient(guard, cfg.MaxInFlightPerHost), Env: env, DelayScale: cfg.RetryDelayScale,
			Hosts:             hosts,
			ResponseBodyLimit: cfg.ResponseBodyLimit, LogBodyLimit: cfg.LogBodyLimit, Log: log.With("worker", "dispatcher"),
			Rates: &ratelimit.Limiter{Share: owned.Share},
		})
		eng = &engine.Engine{Pipes: a.Registry, Steps: disp, Topics: a.Topics, Log: log.With("worker", "engine")}
	}
	opts := func(name, groupName string, topics ...string) consumer.Options {
		return consumer.Options{Name: name, ClientOpts: group, Group: groupName, Topics: topics,
			MaxInFlight: cfg.MaxInFlight, PartitionMaxInFlight: cfg.PartitionMaxInFlight, Grace: cfg.ShutdownGrace, Log: log.With("worker", name),
			OnOwned:      func(n int) { owned.Set(name, n) },
			Transactions: cfg.KafkaTransactions, TransactionalID: transactionalID(&cfg, a.dirLock != nil, groupName)}
	}
	// A tier or failover partition waits at its head record until it is
	// due (up to its tier's delay) with its queue full: a small fetch keeps
	// what every waiting partition holds small (their pace is the due
	// times', not the fetch size's).
	tierOpts := func(name, groupName string, topics ...string) consumer.Options {
		o := opts(name, groupName, topics...)
		o.ClientOpts = append(append([]kgo.Opt{}, o.ClientOpts...), kgo.FetchMaxPartitionBytes(64<<10))
		return o
	}
	if cfg.HasRole(config.RoleRetry) {
		for _, tier := range a.Topics.Tiers {
			name := "retry-" + tier.Name
			c := consumer.New(tierOpts(name, cfg.ConsumerGroup+"-"+name, tier.Topic),
				&retrytopics.TierHandler{Tier: tier, Engine: eng, Log: log.With("worker", name)})
			a.sup.Add(registryGated{a.Registry, c})
			checks = append(checks, admin.Check{Name: name, Ready: c.Ready})
		}
		fc := consumer.New(tierOpts("failover", cfg.ConsumerGroup+"-failover", a.Topics.Failover), &retrytopics.FailoverHandler{Engine: eng, Log: log.With("worker", "failover")})
		a.sup.Add(registryGated{a.Registry, fc})
		checks = append(checks, admin.Check{Name: "failover", Ready: fc.Ready})
	}
	if cfg.HasRole(config.RoleDispatcher) {
		// Pipelines ordered by key: the locks of this replica's source
		// partitions, read from the order topic (package ordering).
		orderClient, err := a.client(append(append([]kgo.Opt{}, base...), ordering.ConsumeOpts(a.Topics.Order)...))
		if err != nil {
			return nil, err
		}
		orderer := ordering.New(orderClient, ordering.Options{ClientOpts: base, OrderTopic: a.Topics.Order, ParkTopic: a.Topics.Parked,
			Engine: eng, Log: log.With("worker", "ordering")})
		a.sup.AddStage(worker.StageSupport, orderer)
		o := opts("dispatcher", cfg.ConsumerGroup, a.Topics.Events...)
		o.Hooks = orderer
		a.Consumer = consumer.New(o,
			&consumer.EventHandler{Pipes: a.Registry, Engine: eng, Order: orderer, Log: log.With("worker", "dispatcher")})
		a.sup.Add(registryGated{a.Registry, a.Consumer})
		checks = append(checks, admin.Check{Name: "dispatcher", Ready: a.Consumer.Ready})
	}
	if cfg.HasRole(config.RoleAnalytics) {
		var sinkStore analytics.SinkStore = a.Store
		if o.wrapSinkStore != nil {
			sinkStore = o.wrapSinkStore(a.Store)
		}
		a.Sink = analytics.NewSink(analytics.SinkOptions{
			ClientOpts: group, Group: cfg.ConsumerGroup + "-analytics", ExecutionsTopic: a.Topics.Executions, DLQTopic: a.Topics.DLQ,
			BatchSize: cfg.AnalyticsBatchSize, FlushInterval: cfg.AnalyticsFlushInterval, FeedInterval: cfg.AnalyticsFeedInterval, Grace: cfg.ShutdownGrace, Log: log.With("worker", "analytics"),
		}, sinkStore)
		a.sup.AddStage(worker.StageSupport, a.Sink)
		checks = append(checks, admin.Check{Name: "analytics", Ready: a.Sink.Ready})
	}
	// Operator events: produced by the auto-disable checker and the API.
	eventsClient, err := a.client(base)
	if err != nil {
		return nil, err
	}
	emitter := &opevents.Emitter{Client: eventsClient, Topic: a.Topics.OperatorEvents, Log: log.With("worker", "operator-events")}
	if cfg.HasRole(config.RoleAnalytics) {
		// Streaks are judged where the execution log is written: every
		// replica with the analytics role judges (one wins each disable).
		a.sup.Add(registryGated{a.Registry, &autodisable.Checker{Pipes: a.Registry, Health: a.Store, Events: emitter,
			Default: cfg.AutoDisableAfter, Log: log.With("worker", "auto-disable")}})
	}
	a.checks = checks
	if cfg.HasRole(config.RoleAdmin) || cfg.HasRole(config.RoleAnalytics) {
		// Queue gauges (lag, tier depth, DLQ size): computed every 10 s
		// on the replicas that have ClickHouse, not on every dispatcher.
		a.sup.Add(a.queueMetrics(adminClient))
	}
	if cfg.HasRole(config.RoleAdmin) {
		var logs admin.Logs
		var dlqStore admin.DLQ
		var stats admin.StatsSource
		if a.Store != nil {
			logs, dlqStore, stats = a.Store, a.Store, a.Store
		}
		// Queue depths are consumer-group lags: events not yet dispatched,
		// tasks waiting in the tiers, failover tasks.
		queues := map[string][]string{"primary": {cfg.ConsumerGroup}, "failover": {cfg.ConsumerGroup + "-failover"}}
		for _, tier := range a.Topics.Tiers {
			queues["retry"] = append(queues["retry"], cfg.ConsumerGroup+"-retry-"+tier.Name)
		}
		opClient, err := a.client(append(append([]kgo.Opt{}, base...), opevents.ConsumeOpts(a.Topics.OperatorEvents)...))
		if err != nil {
			return nil, err
		}
		opLog := opevents.NewLog(opClient, a.Topics.OperatorEvents, log.With("worker", "operator-events"))
		a.sup.AddStage(worker.StageSupport, opLog)
		lagAdmin := kadm.NewClient(adminClient)
		depths := func(ctx context.Context) (map[string]int64, error) { return bus.QueueDepths(ctx, lagAdmin, queues) }
		// Retries re-produce events as large as the platform's topics take.
		redriveClient, err := a.client(append(append([]kgo.Opt{}, base...), kgo.ProducerBatchMaxBytes(16<<20)))
		if err != nil {
			return nil, err
		}
		guard, err := newGuard(&cfg)
		if err != nil {
			return nil, err
		}
		// Test calls reach out like deliveries do: same SSRF guard, no Kafka.
		tester := dispatcher.New(dispatcher.Options{Client: dispatcher.NewHTTPClient(guard, 4), Env: env,
			ResponseBodyLimit: cfg.ResponseBodyLimit, LogBodyLimit: cfg.LogBodyLimit, Log: log.With("worker", "admin")})
		redriver := &dlq.Redriver{Client: redriveClient, Topics: a.Topics, Log: log.With("worker", "admin"),
			ReadSource: func(ctx context.Context, src *delivery.Source) ([]byte, error) {
				return bus.ReadRecord(ctx, base, src.Topic, src.Partition, src.Offset)
			}}
		// Replays and bulk redrives: jobs on the jobs topic, read by every
		// admin replica, run by the one that owns the topic's partition in
		// the jobs group.
		jobsClient, err := a.client(append(append([]kgo.Opt{}, base...), jobs.ConsumeOpts(a.Topics.Jobs)...))
		if err != nil {
			return nil, err
		}
		jobStore := jobs.NewStore(jobsClient, a.Topics.Jobs, log.With("worker", "jobs-store"))
		a.sup.AddStage(worker.StageSupport, jobStore)
		checks = append(checks, admin.Check{Name: "jobs", Ready: jobStore.Ready})
		a.checks = checks
		a.sup.Add(registryGated{a.Registry, &jobs.Runner{
			Store: jobStore, GroupOpts: group, Group: cfg.ConsumerGroup + "-jobs", Topic: a.Topics.Jobs, Grace: cfg.ShutdownGrace,
			Executors: map[string]jobs.Executor{
				jobs.KindReplay:  &jobs.Replayer{ReaderOpts: base, Producer: redriveClient, Topics: a.Topics, Pipes: a.Registry},
				jobs.KindRedrive: &jobs.Redriver{DLQ: a.Store, Retrier: redriver, Attempts: 3, Backoff: time.Second},
			},
			Log: log.With("worker", "jobs"),
		}})
		jobService := &jobs.Service{Store: jobStore, Offsets: kadm.NewClient(adminClient), EventTopics: a.Topics.Events}
		a.Admin = admin.New(admin.Options{
			Addr: cfg.AdminAddr, Auth: auth,
			Registry: a.Registry, Logs: logs, Env: env,
			DLQ: dlqStore, Redriver: redriver, Jobs: jobService, ReplayOutcomes: a.Store, Tester: tester,
			Stats: stats, Queues: depths, Grace: cfg.ShutdownGrace,
			Limits: pipeline.DefaultRetryLimits, Targets: guard,
			Checks: checks, Log: log.With("worker", "admin"),
			OperatorEvents: opLog, Emitter: emitter,
		})
		a.sup.AddServer(a.Admin)
	} else {
		// Replicas without the admin API still answer their orchestrator's probes.
		a.sup.AddServer(&admin.Health{Addr: cfg.AdminAddr, Auth: auth, Checks: checks, Log: log.With("worker", "health")})
	}
	return a, nil
}

// ownership is this replica's part of the partitions that carry deliveries
// (event topics, retry tiers, failover topic), which sets its share of every
// pipeline's rate limit (package ratelimit). A topic that does not exist
// (yet) counts no partitions, as nobody owns any of it; the count is taken
// again after every rebalance (a new topic or partition causes one) and
// every 30 s.
func (a *App) ownership(ctx context.Context, cl *kgo.Client) *ratelimit.Ownership {
	topics := append(append([]string{}, a.Topics.Events...), a.Topics.Failover)
	for _, t := range a.Topics.Tiers {
		topics = append(topics, t.Topic)
	}
	o := &ratelimit.Ownership{Log: a.log.With("worker", "ratelimit"), Count: func(ctx context.Context) (int, error) {
		// A direct request: the client's metadata cache may still say
		// "unknown" about topics Ensure has just created.
		req := kmsg.NewPtrMetadataRequest()
		for _, t := range topics {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(t)
			req.Topics = append(req.Topics, rt)
		}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return 0, err
		}
		n := 0
		for _, t := range resp.Topics {
			if t.ErrorCode == 0 {
				n += len(t.Partitions)
			}
		}
		return n, nil
	}}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = o.Refresh(cctx) // logged; counted again after every rebalance and every 30 s
	a.sup.AddStage(worker.StageSupport, o)
	return o
}

// queueMetrics is the worker that keeps the lag, depth and DLQ gauges.
func (a *App) queueMetrics(cl *kgo.Client) *lagwatch.Watcher {
	g := a.Config.ConsumerGroup
	w := &lagwatch.Watcher{Admin: kadm.NewClient(cl), Groups: []string{g, g + "-failover", g + "-analytics"},
		Tiers: map[string]string{}, FailoverGroup: g + "-failover",
		Interval: a.Config.QueueMetricsInterval, Log: a.log.With("worker", "queue-metrics")}
	for _, tier := range a.Topics.Tiers {
		tg := g + "-retry-" + tier.Name
		w.Groups = append(w.Groups, tg)
		w.Tiers[tg] = tier.Name
	}
	if st := a.Store; st != nil {
		w.DeadLetters = func(ctx context.Context) (int64, error) {
			_, n, err := st.DeadLetters(ctx, dlq.Filter{State: "dead", Limit: 1})
			return n, err
		}
	}
	return w
}

// transactionalID names the transactional producer of a consumer of group
// (WEBHOOKD_KAFKA_TRANSACTIONS): unique to this process, as the group
// generation in each offset commit fences a member that lost its partitions.
// A process that holds its data directory (one at a time) is named by it, so
// after a crash its restart fences and aborts the transaction it left open
// at once; any other is named by host and pid (a container restarted in the
// same pod keeps both), and a transaction it left open ends at the brokers'
// transaction timeout (consumer.TxnTimeout).
func transactionalID(cfg *config.Config, ownsDataDir bool, group string) string {
	host, _ := os.Hostname()
	who := fmt.Sprintf("%s:%d", host, os.Getpid())
	if ownsDataDir {
		dir, err := filepath.Abs(cfg.DataDir)
		if err != nil {
			dir = cfg.DataDir
		}
		who = host + ":" + dir
	}
	return "webhookd:" + group + ":" + who
}

// registryGated starts a worker only once the registry has loaded, so no
// event is matched against a partial set of pipelines.
type registryGated struct {
	reg *registry.Registry
	w   worker.Worker
}

func (g registryGated) Name() string { return g.w.Name() }
func (g registryGated) Run(ctx context.Context) error {
	if err := g.reg.WaitReady(ctx); err != nil {
		return nil
	}
	return g.w.Run(ctx)
}

func (a *App) client(opts []kgo.Opt) (*kgo.Client, error) {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	a.clients = append(a.clients, cl)
	return cl, nil
}

func openStore(ctx context.Context, cfg *config.Config, l analytics.Lease, replica string, log *slog.Logger) (*analytics.Store, error) {
	o := analytics.Options{Database: cfg.ClickHouseDatabase, Cluster: cfg.ClickHouseCluster, TTLDays: cfg.ClickHouseTTLDays,
		Retention: analytics.Retention{Logs: cfg.ClickHouseLogTTLDays, Aggregates: cfg.ClickHouseAggregateTTLDays, DLQ: cfg.ClickHouseDLQTTLDays},
		Lease:     l, MigrateWait: cfg.ClickHouseMigrateWait, Replica: replica, Log: log, DedupWindow: cfg.AnalyticsDedupWindow}
	if cfg.EmbedsChDB() { // openStore runs for the analytics and admin roles only
		lib := cfg.ChDBLibrary
		if lib == "" {
			lib = analytics.FindChDB()
		}
		o.PurgeAboveAnon = int64(cfg.ChDBPurgeAboveMB) << 20
		if o.PurgeAboveAnon == 0 {
			o.PurgeAboveAnon = -1 // after every call
		}
		o.Nice = cfg.ChDBNice
		return analytics.OpenChDB(lib, filepath.Join(cfg.DataDir, "clickhouse"), o)
	}
	return analytics.OpenServer(ctx, analytics.ServerOptions{
		Addr: cfg.ClickHouseAddr, Database: cfg.ClickHouseDatabase, User: cfg.ClickHouseUser,
		Password: cfg.ClickHousePassword, TLS: cfg.ClickHouseTLS,
	}, o)
}

var _ analytics.Lease = (*lease.Lease)(nil)

// replicaID names this process in schema_migrations and to the other
// replicas waiting for its lease: the host name (a pod's name).
func replicaID() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "webhookd"
}

func newGuard(cfg *config.Config) (dispatcher.Guard, error) {
	g := dispatcher.Guard{AllowPrivate: cfg.AllowPrivateTargets}
	for _, s := range config.SplitList(cfg.AllowedTargetCIDRs) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return g, fmt.Errorf("WEBHOOKD_ALLOWED_TARGET_CIDRS: %q: %w", s, err)
		}
		g.Allowed = append(g.Allowed, p)
	}
	return g, nil
}

// devSecretsKey reads the dev mode's sealing key, creating it (mode 0600)
// on first use.
func devSecretsKey(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("dev secrets key: %w", err)
	}
	var k [32]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("dev secrets key: %w", err)
	}
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("dev secrets key: %w", err)
	}
	return key, nil
}

func randomToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "whd_" + hex.EncodeToString(b[:])
}

// Run runs every role until ctx ends or one fails.
func (a *App) Run(ctx context.Context) error { return a.sup.Run(ctx) }

// Ready reports whether every role consumes and serves (what /readyz says).
func (a *App) Ready() bool {
	for _, c := range a.checks {
		if !c.Ready() {
			return false
		}
	}
	return true
}

// Status reports each worker's state.
func (a *App) Status() map[string]string { return a.sup.Status() }

// Close flushes and releases clients, the store, the dev broker and the data
// directory, in reverse order of creation.
func (a *App) Close() {
	// Deliveries wait for their produces' acks before marking, so nothing
	// they need is buffered here; a flush still sends whatever else was
	// produced (operator events, API writes) before the clients close.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := len(a.clients) - 1; i >= 0; i-- {
		if err := a.clients[i].Flush(ctx); err != nil {
			a.log.Warn("kafka flush at close", "err", err)
		}
		a.clients[i].Close()
	}
	if a.Store != nil {
		_ = a.Store.Close()
	}
	if a.kafka != nil {
		a.kafka.Close()
	}
	_ = a.dirLock.Close() // last: the broker has saved its state
}
