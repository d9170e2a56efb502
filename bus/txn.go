package bus

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Deferred is a record a job hands on inside a Kafka transaction
// (WEBHOOKD_KAFKA_TRANSACTIONS): it is produced later, with its source
// offset, in one transaction (consumer package).
type Deferred struct {
	Rec *kgo.Record
	// Refused, if set, says what takes the record's place when Kafka
	// refuses it for good (too large, invalid): the records to produce
	// instead (none: it is dropped), or an error when nothing can (the
	// consumer stops; the work is done again after a restart). Nil: a
	// refusal is fatal.
	Refused func(err error) ([]Deferred, error)
	// Committed, if set, runs once the transaction holding the record
	// committed (metrics of what it stands for).
	Committed func()
}

// Buffer collects the records of a job running inside a transaction.
type Buffer interface {
	Add(recs ...Deferred)
}

type bufferKey struct{}

// WithBuffer returns ctx whose produces (Produce, ProduceAll, and the engine's
// sends) go to b instead of Kafka: the records become durable when the
// transaction holding them commits, together with their source offset.
// WithBuffer(ctx, nil) produces to Kafka at once again.
func WithBuffer(ctx context.Context, b Buffer) context.Context {
	return context.WithValue(ctx, bufferKey{}, b)
}

// BufferOf is ctx's Buffer, or nil when produces go to Kafka at once.
func BufferOf(ctx context.Context) Buffer {
	b, _ := ctx.Value(bufferKey{}).(Buffer)
	return b
}
