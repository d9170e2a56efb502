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
	// Deliveries counts finished executions, by status.
	Deliveries = promauto.NewCounterVec(prometheus.CounterOpts{Name: "webhookd_deliveries_total", Help: "Pipeline executions by final status."}, []string{"status"})
	// DeliveriesSkipped counts (event, pipeline) pairs not delivered because of the pipeline's status.
	DeliveriesSkipped = promauto.NewCounterVec(prometheus.CounterOpts{Name: "webhookd_deliveries_skipped_total", Help: "Events not delivered to a pipeline because of its status."}, []string{"status"})
	// Attempts counts HTTP attempts, by outcome.
	Attempts = promauto.NewCounterVec(prometheus.CounterOpts{Name: "webhookd_attempts_total", Help: "Webhook HTTP attempts by status (success, failed)."}, []string{"status"})
	// AttemptLatency is the HTTP attempt latency.
	AttemptLatency = promauto.NewHistogram(prometheus.HistogramOpts{Name: "webhookd_attempt_duration_seconds", Help: "Webhook HTTP attempt latency.", Buckets: prometheus.DefBuckets})
	// Deferred counts attempts not made and not spent, by reason (circuit_open, host_saturated, pipeline_paused).
	Deferred = promauto.NewCounterVec(prometheus.CounterOpts{Name: "webhookd_deferred_total", Help: "Attempts deferred to the retry path without spending an attempt, by reason."}, []string{"reason"})
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
)
