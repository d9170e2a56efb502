// Package metrics declares webhookd's Prometheus metrics, served at /metrics.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	// EventsConsumed counts event records read, by topic.
	EventsConsumed = promauto.NewCounterVec(prometheus.CounterOpts{Name: "webhookd_events_consumed_total", Help: "Event records read from the event topics."}, []string{"topic"})
	// EventsInvalid counts undecodable events sent to the DLQ, by topic.
	EventsInvalid = promauto.NewCounterVec(prometheus.CounterOpts{Name: "webhookd_events_invalid_total", Help: "Event records that could not be decoded (sent to the DLQ as invalid_event)."}, []string{"topic"})
	// Deliveries counts execution state records (final states, and
	// retrying), by status and trigger type.
	Deliveries = promauto.NewCounterVec(prometheus.CounterOpts{Name: "webhookd_deliveries_total", Help: "Pipeline execution states written (completed, failed, partial, cancelled, retrying), by status and trigger type."}, []string{"status", "trigger_type"})
	// DeliveriesSkipped counts (event, pipeline) pairs not delivered because of the pipeline's status.
	DeliveriesSkipped = promauto.NewCounterVec(prometheus.CounterOpts{Name: "webhookd_deliveries_skipped_total", Help: "Events not delivered to a pipeline because of its status."}, []string{"status"})
	// DeliveriesFiltered counts (event, pipeline) pairs the pipeline's filter rejected, by pipeline.
	DeliveriesFiltered = promauto.NewCounterVec(prometheus.CounterOpts{Name: "webhookd_deliveries_filtered_total", Help: "Events of a pipeline's trigger type its filter rejected: no delivery, no execution log."}, []string{"pipeline_id"})
	// Attempts counts HTTP attempts, by outcome and trigger type.
	Attempts = promauto.NewCounterVec(prometheus.CounterOpts{Name: "webhookd_attempts_total", Help: "Webhook HTTP attempts by status (success, failed) and trigger type."}, []string{"status", "trigger_type"})
	// AttemptLatency is the HTTP attempt latency. The buckets reach the
	// largest step timeout (300 s), so a slow receiver's attempts are not
	// all lumped into +Inf.
	AttemptLatency = promauto.NewHistogram(prometheus.HistogramOpts{Name: "webhookd_attempt_duration_seconds", Help: "Webhook HTTP attempt latency.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 180, 300}})
	// Deferred counts attempts not made and not spent, by reason (circuit_open, host_saturated, pipeline_paused).
	Deferred = promauto.NewCounterVec(prometheus.CounterOpts{Name: "webhookd_deferred_total", Help: "Attempts deferred to the retry path without spending an attempt, by reason."}, []string{"reason"})
	// Parked counts deliveries of key-ordered pipelines parked behind their key's blocker; Unparked those run from the park topic.
	Parked   = promauto.NewCounter(prometheus.CounterOpts{Name: "webhookd_ordered_parked_total", Help: "Deliveries of key-ordered pipelines parked behind a delivery waiting for a retry."})
	Unparked = promauto.NewCounter(prometheus.CounterOpts{Name: "webhookd_ordered_unparked_total", Help: "Parked deliveries of key-ordered pipelines run after their key was released."})
	// RateLimitShare is the fraction of every pipeline's rate_limit_per_second this replica holds.
	RateLimitShare = promauto.NewGauge(prometheus.GaugeOpts{Name: "webhookd_rate_limit_share", Help: "Fraction (0..1) of every pipeline's rate_limit_per_second this replica holds: the partitions that carry deliveries it owns."})
	// DeadLetters counts DLQ items written, by reason.
	DeadLetters = promauto.NewCounterVec(prometheus.CounterOpts{Name: "webhookd_dead_letters_total", Help: "Deliveries (steps) and unreadable records sent to the DLQ, by reason."}, []string{"reason"})
	// ProduceFailures counts records Kafka refused, by what they were (task, dlq, log) and why (too_large, other).
	ProduceFailures = promauto.NewCounterVec(prometheus.CounterOpts{Name: "webhookd_produce_failures_total", Help: "Records Kafka refused after the client's retries, by record role and cause."}, []string{"role", "cause"})
	// AnalyticsRows counts rows written to ClickHouse, by table.
	AnalyticsRows = promauto.NewCounterVec(prometheus.CounterOpts{Name: "webhookd_analytics_rows_total", Help: "Rows inserted into ClickHouse."}, []string{"table"})
	// AnalyticsErrors counts failed ClickHouse inserts.
	AnalyticsErrors = promauto.NewCounter(prometheus.CounterOpts{Name: "webhookd_analytics_insert_errors_total", Help: "ClickHouse insert batches that failed (retried)."})
	// AnalyticsBatchRows is the size of the sink's batches.
	AnalyticsBatchRows = promauto.NewHistogram(prometheus.HistogramOpts{Name: "webhookd_analytics_batch_rows", Help: "Records per analytics sink batch.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 9)})
	// AnalyticsInsertLatency is the duration of one ClickHouse insert, by table.
	AnalyticsInsertLatency = promauto.NewHistogramVec(prometheus.HistogramOpts{Name: "webhookd_analytics_insert_duration_seconds", Help: "ClickHouse insert latency (successful or not), by table.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"table"})
	// AnalyticsFailing is 1 while the sink's inserts fail and it backs off.
	AnalyticsFailing = promauto.NewGauge(prometheus.GaugeOpts{Name: "webhookd_analytics_sink_failing", Help: "1 while ClickHouse inserts fail and the analytics sink backs off, else 0."})
	// AnalyticsBackoff is the sink's current wait before retrying a batch.
	AnalyticsBackoff = promauto.NewGauge(prometheus.GaugeOpts{Name: "webhookd_analytics_sink_backoff_seconds", Help: "The analytics sink's current wait before it retries a failed batch (0 when inserts succeed)."})
)

var (
	// OperatorEvents counts operator events produced, by type.
	OperatorEvents = promauto.NewCounterVec(prometheus.CounterOpts{Name: "webhookd_operator_events_total", Help: "Operator events produced to the operator-events topic, by type."}, []string{"type"})
	// OperatorEventFailures counts operator events Kafka did not take.
	OperatorEventFailures = promauto.NewCounter(prometheus.CounterOpts{Name: "webhookd_operator_event_failures_total", Help: "Operator events that could not be produced (the change they report stands)."})
	// PipelinesAutoDisabled counts pipelines this replica auto-disabled.
	PipelinesAutoDisabled = promauto.NewCounter(prometheus.CounterOpts{Name: "webhookd_pipelines_auto_disabled_total", Help: "Pipelines set to disabled because every attempt failed for their auto-disable window (counted by the replica whose write won)."})
)

// Queues, computed every few seconds from Kafka (package lagwatch) on
// replicas with the admin or analytics role.
var (
	// ConsumerLag is each consumer group's lag (records not yet committed) per topic.
	ConsumerLag = promauto.NewGaugeVec(prometheus.GaugeOpts{Name: "webhookd_consumer_lag", Help: "Records of a topic not yet processed (committed) by a webhookd consumer group."}, []string{"group", "topic"})
	// RetryTierDepth is the tasks waiting in each retry tier.
	RetryTierDepth = promauto.NewGaugeVec(prometheus.GaugeOpts{Name: "webhookd_retry_tier_depth", Help: "Delivery tasks waiting in a retry tier (its consumer group's lag)."}, []string{"tier"})
	// FailoverDepth is the tasks waiting in the failover topic.
	FailoverDepth = promauto.NewGauge(prometheus.GaugeOpts{Name: "webhookd_failover_depth", Help: "Delivery tasks waiting in the failover topic."})
	// DLQItems is the DLQ items in state dead (not retried, not deleted).
	DLQItems = promauto.NewGauge(prometheus.GaugeOpts{Name: "webhookd_dlq_items", Help: "DLQ items waiting for an operator (state dead), as ClickHouse knows them."})
	// LagRefreshErrors counts failed refreshes of the queue gauges.
	LagRefreshErrors = promauto.NewCounterVec(prometheus.CounterOpts{Name: "webhookd_queue_refresh_errors_total", Help: "Refreshes of the lag, depth and DLQ gauges that failed, by source (kafka, clickhouse)."}, []string{"source"})
)
