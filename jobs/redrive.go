package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/afftok/webhookd/dlq"
	"github.com/afftok/webhookd/metrics"
)

// DeadLetters is what a redrive reads items from (the analytics store).
type DeadLetters interface {
	DeadLetter(ctx context.Context, id string) (*dlq.Record, error)
}

// Retrier retries one DLQ item (*dlq.Redriver).
type Retrier interface {
	Retry(ctx context.Context, it *dlq.Record) (string, error)
}

// Redriver runs bulk redrive jobs: it retries the job's items in order at
// its rate, each read again first, so an item retried or deleted meanwhile
// (or before a takeover) is skipped. An item retried twice — its retry was
// queued, then the runner died before its checkpoint and before the DLQ
// projection showed it retried — makes the same execution (its id derives
// from the item), with the same delivery id.
type Redriver struct {
	DLQ     DeadLetters
	Retrier Retrier
	Now     func() time.Time
	// Attempts bounds how often an item is tried when ClickHouse or Kafka
	// does not answer, before the job fails (the rest stay in the DLQ).
	Attempts int
	Backoff  time.Duration
}

// Execute implements Executor.
func (rd *Redriver) Execute(ctx context.Context, j *Job, cp *Checkpointer) error {
	spec := j.Redrive
	now := rd.Now
	if now == nil {
		now = time.Now
	}
	attempts := max(rd.Attempts, 1)
	pace := newPacer(spec.RatePerSecond, now)
	for j.Progress.Position < len(spec.Items) {
		if err := cp.Cancelled(); err != nil {
			return err
		}
		if err := pace.wait(ctx); err != nil {
			return err
		}
		id := spec.Items[j.Progress.Position]
		var outcome *int64
		var err error
		for try := range attempts {
			if try > 0 {
				if werr := sleep(ctx, rd.Backoff<<(try-1)); werr != nil {
					return werr
				}
			}
			if outcome, err = rd.one(ctx, j, id); err == nil || ctx.Err() != nil {
				break
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("DLQ item %s: %w (the items from it on stay in the DLQ)", id, err)
		}
		*outcome++
		j.Progress.Position++
		if err := cp.Advance(ctx, 1); err != nil {
			return err
		}
	}
	return nil
}

// one retries item id, or skips it when it is no longer dead: the counter
// its outcome adds to.
func (rd *Redriver) one(ctx context.Context, j *Job, id string) (*int64, error) {
	ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	it, err := rd.DLQ.DeadLetter(ictx, id)
	if err != nil {
		return nil, fmt.Errorf("read from the DLQ: %w", err)
	}
	if it == nil || it.State != dlq.StateDead {
		metrics.JobItems.WithLabelValues(KindRedrive, "skipped").Inc()
		return &j.Progress.Skipped, nil
	}
	if _, err := rd.Retrier.Retry(ictx, it); err != nil {
		if errors.Is(err, dlq.ErrNotRetryable) {
			metrics.JobItems.WithLabelValues(KindRedrive, "failed").Inc()
			return &j.Progress.Failed, nil
		}
		return nil, err
	}
	metrics.JobItems.WithLabelValues(KindRedrive, "retried").Inc()
	return &j.Progress.Retried, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
