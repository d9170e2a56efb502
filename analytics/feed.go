package analytics

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/dlq"
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
//
// A fresh row that counts something once per id (fedKeysSchema) is left out
// when its key was fed before — by another record: a redelivery after a
// crash — or earlier in this batch.
func (s *Store) Feed(ctx context.Context, b *Batch) error {
	if err := s.settleFeeds(ctx); err != nil {
		return err
	}
	at, ex, dead := feedRows{retriedCol: -1}, feedRows{retriedCol: executionRetriedCol}, feedRows{retriedCol: -1}
	if len(b.Attempts)+len(b.AttemptRecs) > 0 {
		m, err := s.marks(ctx, "attempts", b.AttemptOrigins, b.AttemptRecOrigins)
		if err != nil {
			return err
		}
		for i, a := range b.Attempts {
			if o := originAt(b.AttemptOrigins, i); fresh(m, o) {
				at.row(o, attemptKey(a.AttemptID), a.PipelineID, a.TriggerType, a.StepID, int64(a.Attempt), a.Failover, a.Tier, a.Status, int64(a.HTTPStatus), a.LatencyMS, a.Error, a.StartedAt.UTC(), o.Topic, o.Partition, o.Offset)
			}
		}
		at.records(m, b.AttemptRecs, b.AttemptRecOrigins, attemptFeedFields, attemptKeyFields, func(v []string) (feedKey, bool) { return attemptKey(v[0]), false })
	}
	if len(b.Executions)+len(b.ExecutionRecs) > 0 {
		m, err := s.marks(ctx, "executions", b.ExecutionOrigins, b.ExecutionRecOrigins)
		if err != nil {
			return err
		}
		for i, e := range b.Executions {
			if o := originAt(b.ExecutionOrigins, i); fresh(m, o) {
				ex.row(o, executionKey(e.ExecutionID, e.Status, e.FirstRetry), e.PipelineID, e.TriggerType, e.Status, e.StartedAt.UTC(), e.CompletedAt.UTC(), e.FirstRetry, e.Retried, o.Topic, o.Partition, o.Offset)
			}
		}
		ex.records(m, b.ExecutionRecs, b.ExecutionRecOrigins, executionRecFields, executionKeyFields, func(v []string) (feedKey, bool) {
			return executionKey(v[0], v[1], v[2] == "true"), v[3] == "true"
		})
	}
	if len(b.Dead) > 0 {
		m, err := s.marks(ctx, "dlq", b.DeadOrigins)
		if err != nil {
			return err
		}
		for i, d := range b.Dead {
			if o := originAt(b.DeadOrigins, i); fresh(m, o) {
				dead.row(o, deadKey(d.ID, d.State), d.PipelineID, d.TriggerType, d.State, d.Reason, d.FailedAt.UTC(), o.Topic, o.Partition, o.Offset)
			}
		}
	}
	// The keys each partition held when the feed began: a forget
	// (revoke, assign) meanwhile does not make them unknown to it.
	held := map[partKey]*partKeys{}
	for _, f := range []*feedRows{&at, &ex, &dead} {
		for pk := range f.partitions() {
			if _, ok := held[pk]; ok || pk.topic == "" {
				continue
			}
			p, err := s.loadFedKeys(ctx, pk)
			if err != nil {
				return err
			}
			held[pk] = p
		}
	}
	seen := map[pkHash]bool{}
	for _, f := range []struct {
		rows        *feedRows
		table, what string
		cols        []string
	}{{&at, "attempts_feed", "attempts feed", attemptFeedCols}, {&ex, "executions_feed", "executions feed", executionFeedCols}, {&dead, "dlq_feed", "dlq feed", dlqFeedCols}} {
		fctx := s.feedContext(ctx)
		if err := f.rows.insert(fctx, s, f.table, f.cols, seen, held); err != nil {
			s.feedFailed(fctx)
			// An insert reported failed may have been written (a
			// timeout after the server took it), its keys with it: the
			// batch's partitions are read back when fed again.
			for _, g := range []*feedRows{&at, &ex, &dead} {
				s.recent.forgetKeys(g.partitions())
			}
			return fmt.Errorf("%s: %w", f.what, err)
		}
	}
	return nil
}

// pkHash is a key's hash in its partition.
type pkHash struct {
	pk partKey
	h  int64
}

// feedKey is a feed row's key (fedKeysSchema): h, its hash (feedKeyHash;
// 0: none, fed every time). An execution counts once as finished (its
// final state) and once as gone into retry (its first "retrying" state);
// other, the hash of the other one, keeps the two consistent when a
// redelivered execution takes another path than the first delivery did:
//   - a first retry after the execution's final state was fed is left out
//     (it would stay "in retry" forever: nothing closes it);
//   - a final state fed after the execution's first retry was closes it
//     (retried), even when this delivery of it did not retry.
type feedKey struct {
	h, other int64
	final    bool
	pk       partKey // the row's partition: where its twin is
}

func attemptKey(id string) feedKey { return feedKey{h: feedKeyHash(prefixed("a:", id))} }

func executionKey(id, status string, firstRetry bool) feedKey {
	if id == "" || status == "" {
		return feedKey{}
	}
	f, r := feedKeyHash("e:"+id+":f"), feedKeyHash("e:"+id+":r")
	switch {
	case status != delivery.ExecRetrying:
		return feedKey{h: f, other: r, final: true}
	case firstRetry:
		return feedKey{h: r, other: f}
	}
	return feedKey{} // a retry scheduled: each one counts
}

// deadKey: a DLQ item goes dead once (a retried item's execution that dies
// again is another item).
func deadKey(id, state string) feedKey {
	if state != dlq.StateDead {
		return feedKey{}
	}
	return feedKey{h: feedKeyHash(prefixed("d:", id))}
}

func prefixed(prefix, id string) string {
	if id == "" {
		return ""
	}
	return prefix + id
}

// The record fields a feed key is made of (attemptKey, executionKey, and
// the execution's retried, which the feed may set: see feedKey).
var (
	attemptKeyFields   = []string{"attempt_id"}
	executionKeyFields = []string{"execution_id", "status", "first_retry", "retried"}
	executionRecFields = without(executionFeedFields, "retried")
)

// executionRetriedCol is retried's column in executionFeedCols.
var executionRetriedCol = slices.Index(executionFeedCols, "retried")

func without(fields []string, name string) []string {
	return slices.DeleteFunc(slices.Clone(fields), func(f string) bool { return f == name })
}

// feedRows is one feed's fresh rows (typed, or records) with their keys,
// before the keys fed earlier are left out.
type feedRows struct {
	rows       [][]any
	rowKeys    []feedKey
	recs       [][]byte
	recKeys    []feedKey
	recRetried []bool
	retriedCol int // the rows' retried column (executions; -1: none)
}

func (f *feedRows) row(o Origin, key feedKey, cols ...any) {
	key.pk = partKey{o.Topic, o.Partition}
	f.rows, f.rowKeys = append(f.rows, cols), append(f.rowKeys, key)
}

// records adds the fresh ones of recs, each with its origin's fields in
// front and only the fields the feed has (fields names the feed's columns
// a record can carry): ClickHouse's cost of reading a record grows with its
// size, and most of an attempt record (URLs, bodies, names) is not fed.
// key makes the record's key and retried (executions) from the values of
// its keyFields (strings, or JSON text for other values).
func (f *feedRows) records(m map[partKey]int64, recs [][]byte, origins []Origin, fields, keyFields []string, key func([]string) (feedKey, bool)) {
	for i, r := range recs {
		o := originAt(origins, i)
		if !fresh(m, o) {
			continue
		}
		if rec, vals, ok := feedRowKeyed(r, o, fields, keyFields); ok {
			k, retried := key(vals)
			k.pk = partKey{o.Topic, o.Partition}
			f.recs, f.recKeys, f.recRetried = append(f.recs, rec), append(f.recKeys, k), append(f.recRetried, retried)
		} else if rec, ok := withOrigin(r, o); ok {
			// A record feedRow does not read: as it is, fed every time.
			f.recs, f.recKeys, f.recRetried = append(f.recs, rec), append(f.recKeys, feedKey{}), append(f.recRetried, false)
		}
	}
}

// partitions are those of the rows with a key.
func (f *feedRows) partitions() map[partKey]bool {
	out := map[partKey]bool{}
	for _, ks := range [][]feedKey{f.rowKeys, f.recKeys} {
		for _, k := range ks {
			if k.h != 0 {
				out[k.pk] = true
			}
		}
	}
	return out
}

// insert feeds the rows feedKey lets through given the keys the store
// holds (fed before; their partitions loaded) and those fed earlier in
// this batch (seen, which gains the keys fed), each with its key's hash in
// the feed's fed_key column; the store then holds those keys too.
func (f *feedRows) insert(ctx context.Context, s *Store, table string, cols []string, seen map[pkHash]bool, held map[partKey]*partKeys) error {
	known := func(pk partKey, h int64) bool {
		switch p, ok := held[pk]; {
		case h == 0:
			return false
		case seen[pkHash{pk, h}]:
			return true
		case ok:
			return s.recent.hasIn(p, h)
		}
		return s.recent.has(pk, h) // rows without an origin: not pinned
	}
	fed := map[partKey][]int64{}
	// keep says whether a row goes in, and whether it closes its
	// execution's retry.
	keep := func(k feedKey) (ok, closes bool) {
		switch {
		case k.h == 0:
			return true, false
		case known(k.pk, k.h), !k.final && known(k.pk, k.other):
			return false, false
		}
		seen[pkHash{k.pk, k.h}] = true
		fed[k.pk] = append(fed[k.pk], k.h)
		return true, k.final && known(k.pk, k.other)
	}
	var rows [][]any
	for i, r := range f.rows {
		k := f.rowKeys[i]
		if ok, closes := keep(k); ok {
			if closes && f.retriedCol >= 0 {
				r[f.retriedCol] = true
			}
			rows = append(rows, append(r, k.h))
		}
	}
	var recs [][]byte
	for i, r := range f.recs {
		k := f.recKeys[i]
		if ok, closes := keep(k); ok {
			if retried := f.retriedCol >= 0 && (closes || f.recRetried[i]); k.h != 0 || retried {
				r = withFedKey(r, k.h, retried)
			}
			recs = append(recs, r)
		}
	}
	if len(rows) > 0 {
		if err := s.b.insert(ctx, s.t(table), append(cols[:len(cols):len(cols)], "fed_key"), rows); err != nil {
			return err
		}
	}
	if len(recs) > 0 {
		if err := s.InsertRecords(ctx, table, recs); err != nil {
			return err
		}
	}
	for pk, hs := range fed {
		s.recent.add(pk, 0, hs...)
	}
	return nil
}

// feedKeyHash is what fed_keys keeps of a key: 63 bits of its SHA-256
// (63: it reads back as an Int64 from every backend; never 0, which means
// "no key", the hash of "").
func feedKeyHash(key string) int64 {
	if key == "" {
		return 0
	}
	sum := sha256.Sum256([]byte(key))
	return max(1, int64(binary.BigEndian.Uint64(sum[:8])>>1))
}

// withFedKey puts "fed_key": h (unless 0) and "retried": true (when
// retried) last in rec, a JSON object feedRowKeyed made.
func withFedKey(rec []byte, h int64, retried bool) []byte {
	out := make([]byte, 0, len(rec)+48)
	out = append(out, rec[:len(rec)-1]...)
	sep := len(rec) > 2
	add := func(field string) {
		if sep {
			out = append(out, ',')
		}
		sep = true
		out = append(out, field...)
	}
	if h != 0 {
		add(`"fed_key":` + strconv.FormatInt(h, 10))
	}
	if retried {
		add(`"retried":true`)
	}
	return append(out, '}')
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
	out, _, ok := feedRowKeyed(rec, o, fields, nil)
	return out, ok
}

// feedRowKeyed is feedRow that also returns the values of the record's
// fields named in keyFields, in that order ("" for one absent): a string's
// text, other values as their JSON.
func feedRowKeyed(rec []byte, o Origin, fields, keyFields []string) ([]byte, []string, bool) {
	vals := make([]string, len(keyFields))
	out, ok := feedRowInto(rec, o, fields, keyFields, vals)
	return out, vals, ok
}

func feedRowInto(rec []byte, o Origin, fields, keyFields, vals []string) ([]byte, bool) {
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
		for k, f := range keyFields {
			if string(key) == f {
				v, ok := jsonText(rec[vs:ve])
				if !ok {
					return nil, false
				}
				vals[k] = v
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

// jsonText is a JSON value's text: a string's, unescaped; any other value's
// JSON as it is.
func jsonText(v []byte) (string, bool) {
	if len(v) == 0 || v[0] != '"' {
		return string(v), true
	}
	if bytes.IndexByte(v, '\\') < 0 && len(v) >= 2 {
		return string(v[1 : len(v)-1]), true
	}
	var t string
	if err := json.Unmarshal(v, &t); err != nil {
		return "", false
	}
	return t, true
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
