package analytics

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/afftok/webhookd/delivery"
)

// Origin is where a row was read from: a Kafka record's topic, partition and
// offset. A zero Origin (no topic) means "not from Kafka": such a row is fed
// to the aggregates every time it is written.
type Origin struct {
	Topic     string
	Partition int32
	Offset    int64
}

// Batch is what the sink writes at once. Each row slice has a matching
// origins slice (same length); the *Recs slices hold records as produced to
// the executions topic, for a store that takes them so (TakesRecords).
type Batch struct {
	Attempts         []delivery.Attempt
	AttemptOrigins   []Origin
	Executions       []delivery.Execution
	ExecutionOrigins []Origin

	AttemptRecs         [][]byte
	AttemptRecOrigins   []Origin
	ExecutionRecs       [][]byte
	ExecutionRecOrigins []Origin

	Dead        []DeadLetterRow
	DeadOrigins []Origin
}

// Len is the number of rows in the batch.
func (b *Batch) Len() int {
	return len(b.Attempts) + len(b.Executions) + len(b.AttemptRecs) + len(b.ExecutionRecs) + len(b.Dead)
}

// Write inserts a batch into the base tables, then feeds the aggregates with
// the rows they have not seen: a row whose origin is at or below its feed's
// high-water mark (sink_offsets) was fed by an earlier write of the same
// records — a replay — and is left out. Writing the same batch twice, or a
// batch that overlaps one written before, leaves every aggregate as if each
// record had been written once.
//
// The base tables come first: a failure after them leaves the aggregates
// unfed and the batch uncommitted, and the retry feeds it. The feed INSERT
// carries its own high-water mark (a view of the same INSERT), so a crash
// after it cannot count the rows twice. Two writers feeding the same
// partition at the same moment could (the sink's consumer group gives a
// partition to one at a time).
func (s *Store) Write(ctx context.Context, b *Batch) error {
	if err := s.InsertAttempts(ctx, b.Attempts); err != nil {
		return fmt.Errorf("attempts: %w", err)
	}
	if len(b.AttemptRecs) > 0 {
		if err := s.InsertRecords(ctx, "attempts", b.AttemptRecs); err != nil {
			return fmt.Errorf("attempts: %w", err)
		}
	}
	if err := s.InsertExecutions(ctx, b.Executions); err != nil {
		return fmt.Errorf("executions: %w", err)
	}
	if len(b.ExecutionRecs) > 0 {
		if err := s.InsertRecords(ctx, "executions", b.ExecutionRecs); err != nil {
			return fmt.Errorf("executions: %w", err)
		}
	}
	if err := s.InsertDeadLetters(ctx, b.Dead); err != nil {
		return fmt.Errorf("dlq_items: %w", err)
	}
	return s.Feed(ctx, b)
}

// The fields of a record the feeds read (their columns less the origin's).
var (
	attemptFeedFields   = attemptFeedCols[:len(attemptFeedCols)-3]
	executionFeedFields = executionFeedCols[:len(executionFeedCols)-3]
)

var (
	attemptFeedCols   = []string{"pipeline_id", "trigger_type", "step_id", "attempt", "failover", "tier", "status", "http_status", "latency_ms", "error", "started_at", "src_topic", "src_partition", "src_offset"}
	executionFeedCols = []string{"pipeline_id", "trigger_type", "status", "started_at", "completed_at", "first_retry", "retried", "src_topic", "src_partition", "src_offset"}
	dlqFeedCols       = []string{"pipeline_id", "trigger_type", "state", "reason", "failed_at", "src_topic", "src_partition", "src_offset"}
)

type partKey struct {
	topic     string
	partition int32
}

// marks returns the high-water marks of feed for the partitions in origins.
func (s *Store) marks(ctx context.Context, feed string, origins ...[]Origin) (map[partKey]int64, error) {
	var topics []string
	var parts []int64
	seen := map[partKey]bool{}
	for _, os := range origins {
		for _, o := range os {
			k := partKey{o.Topic, o.Partition}
			if o.Topic == "" || seen[k] {
				continue
			}
			seen[k] = true
			topics, parts = append(topics, o.Topic), append(parts, int64(o.Partition))
		}
	}
	out := map[partKey]int64{}
	if len(topics) == 0 {
		return out, nil
	}
	rows, err := s.b.query(ctx, `
		SELECT topic, partition, max(offset) FROM `+s.t("sink_offsets")+`
		WHERE feed = {feed:String} AND has(arrayZip({topics:Array(String)}, {parts:Array(Int64)}), (topic, toInt64(partition)))
		GROUP BY topic, partition`, Params{"feed": feed, "topics": topics, "parts": parts})
	if err != nil {
		return nil, fmt.Errorf("sink offsets: %w", err)
	}
	for _, r := range rows {
		out[partKey{asString(r[0]), int32(asInt(r[1]))}] = asInt(r[2])
	}
	return out, nil
}

// fresh reports whether a row from o has not been fed yet.
func fresh(m map[partKey]int64, o Origin) bool {
	if o.Topic == "" {
		return true
	}
	mark, ok := m[partKey{o.Topic, o.Partition}]
	return !ok || o.Offset > mark
}

func originAt(os []Origin, i int) Origin {
	if i < len(os) {
		return os[i]
	}
	return Origin{}
}

// Feed feeds the aggregates with the rows of b whose origin is above its
// feed's high-water mark (the second half of Write). The sink calls it for
// each group of a batch's parts once they are in the base tables; calling it
// again with the same rows, after a feed insert that failed or was written
// and reported failed, feeds none of them twice.
func (s *Store) Feed(ctx context.Context, b *Batch) error {
	if len(b.Attempts)+len(b.AttemptRecs) > 0 {
		m, err := s.marks(ctx, "attempts", b.AttemptOrigins, b.AttemptRecOrigins)
		if err != nil {
			return err
		}
		var rows [][]any
		for i, a := range b.Attempts {
			if o := originAt(b.AttemptOrigins, i); fresh(m, o) {
				rows = append(rows, []any{a.PipelineID, a.TriggerType, a.StepID, int64(a.Attempt), a.Failover, a.Tier, a.Status, int64(a.HTTPStatus), a.LatencyMS, a.Error, a.StartedAt.UTC(), o.Topic, o.Partition, o.Offset})
			}
		}
		if err := s.b.insert(ctx, s.t("attempts_feed"), attemptFeedCols, rows); err != nil {
			return fmt.Errorf("attempts feed: %w", err)
		}
		if err := s.feedRecords(ctx, "attempts_feed", attemptFeedFields, m, b.AttemptRecs, b.AttemptRecOrigins); err != nil {
			return fmt.Errorf("attempts feed: %w", err)
		}
	}
	if len(b.Executions)+len(b.ExecutionRecs) > 0 {
		m, err := s.marks(ctx, "executions", b.ExecutionOrigins, b.ExecutionRecOrigins)
		if err != nil {
			return err
		}
		var rows [][]any
		for i, e := range b.Executions {
			if o := originAt(b.ExecutionOrigins, i); fresh(m, o) {
				rows = append(rows, []any{e.PipelineID, e.TriggerType, e.Status, e.StartedAt.UTC(), e.CompletedAt.UTC(), e.FirstRetry, e.Retried, o.Topic, o.Partition, o.Offset})
			}
		}
		if err := s.b.insert(ctx, s.t("executions_feed"), executionFeedCols, rows); err != nil {
			return fmt.Errorf("executions feed: %w", err)
		}
		if err := s.feedRecords(ctx, "executions_feed", executionFeedFields, m, b.ExecutionRecs, b.ExecutionRecOrigins); err != nil {
			return fmt.Errorf("executions feed: %w", err)
		}
	}
	if len(b.Dead) > 0 {
		m, err := s.marks(ctx, "dlq", b.DeadOrigins)
		if err != nil {
			return err
		}
		var rows [][]any
		for i, d := range b.Dead {
			if o := originAt(b.DeadOrigins, i); fresh(m, o) {
				rows = append(rows, []any{d.PipelineID, d.TriggerType, d.State, d.Reason, d.FailedAt.UTC(), o.Topic, o.Partition, o.Offset})
			}
		}
		if err := s.b.insert(ctx, s.t("dlq_feed"), dlqFeedCols, rows); err != nil {
			return fmt.Errorf("dlq feed: %w", err)
		}
	}
	return nil
}

// feedRecords feeds JSON records, each with its origin's fields put in
// front and only the fields the feed has (fields names the feed's columns
// a record can carry): ClickHouse's cost of reading a record grows with its
// size, and most of an attempt record (URLs, bodies, names) is not fed.
func (s *Store) feedRecords(ctx context.Context, table string, fields []string, m map[partKey]int64, recs [][]byte, origins []Origin) error {
	if len(recs) == 0 {
		return nil
	}
	out := make([][]byte, 0, len(recs))
	for i, r := range recs {
		o := originAt(origins, i)
		if !fresh(m, o) {
			continue
		}
		if rec, ok := feedRow(r, o, fields); ok {
			out = append(out, rec)
		} else if rec, ok := withOrigin(r, o); ok {
			out = append(out, rec) // a record feedRow does not read: as it is
		}
	}
	if len(out) == 0 {
		return nil
	}
	return s.InsertRecords(ctx, table, out)
}

// withOrigin returns a JSON object record with the origin's fields put in
// front (src_topic, src_partition, src_offset); false when rec is not an
// object.
func withOrigin(rec []byte, o Origin) ([]byte, bool) {
	rec = bytes.TrimSpace(rec)
	if len(rec) < 2 || rec[0] != '{' || rec[len(rec)-1] != '}' {
		return nil, false
	}
	topic, err := json.Marshal(o.Topic)
	if err != nil {
		return nil, false
	}
	var bb bytes.Buffer
	bb.Grow(len(rec) + 80)
	bb.WriteString(`{"src_topic":`)
	bb.Write(topic)
	bb.WriteString(`,"src_partition":`)
	bb.WriteString(strconv.FormatInt(int64(o.Partition), 10))
	bb.WriteString(`,"src_offset":`)
	bb.WriteString(strconv.FormatInt(o.Offset, 10))
	if len(bytes.TrimSpace(rec[1:len(rec)-1])) > 0 {
		bb.WriteByte(',')
	}
	bb.Write(rec[1:])
	return bb.Bytes(), true
}

// feedRow is withOrigin keeping only the record's top-level fields named in
// fields (in the record's order, values as they are). It reads plain JSON
// objects as webhookd writes them; false for anything it does not (a key
// with an escape, a malformed record), which is then fed whole.
func feedRow(rec []byte, o Origin, fields []string) ([]byte, bool) {
	i := skipSpace(rec, 0)
	if i >= len(rec) || rec[i] != '{' {
		return nil, false
	}
	topic, err := json.Marshal(o.Topic)
	if err != nil {
		return nil, false
	}
	out := make([]byte, 0, 256)
	out = append(out, `{"src_topic":`...)
	out = append(out, topic...)
	out = append(out, `,"src_partition":`...)
	out = strconv.AppendInt(out, int64(o.Partition), 10)
	out = append(out, `,"src_offset":`...)
	out = strconv.AppendInt(out, o.Offset, 10)
	i = skipSpace(rec, i+1)
	if i < len(rec) && rec[i] == '}' {
		return append(out, '}'), skipSpace(rec, i+1) == len(rec)
	}
	for {
		// "key"
		if i >= len(rec) || rec[i] != '"' {
			return nil, false
		}
		end := bytes.IndexByte(rec[i+1:], '"')
		if end < 0 {
			return nil, false
		}
		key := rec[i+1 : i+1+end]
		if bytes.IndexByte(key, '\\') >= 0 {
			return nil, false
		}
		i = skipSpace(rec, i+end+2)
		if i >= len(rec) || rec[i] != ':' {
			return nil, false
		}
		vs := skipSpace(rec, i+1)
		ve, ok := skipValue(rec, vs)
		if !ok {
			return nil, false
		}
		for _, f := range fields {
			if string(key) == f {
				out = append(out, ',', '"')
				out = append(out, key...)
				out = append(out, '"', ':')
				out = append(out, rec[vs:ve]...)
				break
			}
		}
		i = skipSpace(rec, ve)
		if i >= len(rec) {
			return nil, false
		}
		switch rec[i] {
		case ',':
			i = skipSpace(rec, i+1)
		case '}':
			if skipSpace(rec, i+1) != len(rec) {
				return nil, false
			}
			return append(out, '}'), true
		default:
			return nil, false
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the JSON value starting at b[i]; it checks
// the value's shape only as far as finding its end needs (ClickHouse reads
// the values that are kept, and refuses a bad one).
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				e, ok := skipString(b, i)
				if !ok {
					return 0, false
				}
				i = e
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
			i++
		}
		return 0, false
	default: // number, true, false, null
		s := i
		for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
			i++
		}
		return i, i > s
	}
}

// skipString returns the end of the JSON string starting at b[i] (a quote).
func skipString(b []byte, i int) (int, bool) {
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return 0, false
		}
		i += j
		// The quote is escaped if an odd number of backslashes precede it.
		n := 0
		for k := i - 1; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		i++
		if n%2 == 0 {
			return i, true
		}
	}
}
