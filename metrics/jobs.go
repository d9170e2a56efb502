package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	// JobsRunner is 1 on the replica that runs the jobs (replays, bulk
	// redrives), 0 elsewhere.
	JobsRunner = promauto.NewGauge(prometheus.GaugeOpts{Name: "webhookd_jobs_runner", Help: "1 while this replica runs the replay and bulk-redrive jobs."})
	// JobsFinished counts jobs that reached a final state, by kind and state.
	JobsFinished = promauto.NewCounterVec(prometheus.CounterOpts{Name: "webhookd_jobs_finished_total", Help: "Replay and bulk-redrive jobs finished, by kind and final state."}, []string{"kind", "state"})
	// JobItems counts the work of jobs: a replay's events scanned and
	// deliveries queued, a redrive's items retried, skipped and failed.
	JobItems = promauto.NewCounterVec(prometheus.CounterOpts{Name: "webhookd_job_items_total", Help: "Work done by jobs, by kind and outcome (replay: scanned, queued; redrive: retried, skipped, failed)."}, []string{"kind", "outcome"})
)
