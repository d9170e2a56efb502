package analytics

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/dlq"
)

// flakyStore fails inserts on demand: refused outright, or written and
// then reported failed (a timeout after the server took the rows).
type flakyStore struct {
	SinkStore
	mu        sync.Mutex
	downUntil time.Time
	failAfter int // inserts left to write and then fail
	calls     []time.Time
}

func (f *flakyStore) do(write func() error) error {
	f.mu.Lock()
	f.calls = append(f.calls, time.Now())
	down := time.Now().Before(f.downUntil)
	fail := f.failAfter > 0
	if fail {
		f.failAfter--
	}
	f.mu.Unlock()
	if down {
		return errors.New("connection refused")
	}
	if f.SinkStore != nil {
		if err := write(); err != nil {
			return err
		}
	}
	if fail {
		return errors.New("i/o timeout")
	}
	return nil
}

func (f *flakyStore) TakesRecords() bool { return f.SinkStore != nil && f.SinkStore.TakesRecords() }
func (f *flakyStore) InsertAttempts(ctx context.Context, as []delivery.Attempt) error {
	return f.do(func() error { return f.SinkStore.InsertAttempts(ctx, as) })
}
func (f *flakyStore) InsertRecords(ctx context.Context, t string, rs [][]byte) error {
	return f.do(func() error { return f.SinkStore.InsertRecords(ctx, t, rs) })
}
func (f *flakyStore) InsertExecutions(ctx context.Context, es []delivery.Execution) error {
	return f.do(func() error { return f.SinkStore.InsertExecutions(ctx, es) })
}
func (f *flakyStore) InsertDeadLetters(ctx context.Context, ds []DeadLetterRow) error {
	return f.do(func() error { return f.SinkStore.InsertDeadLetters(ctx, ds) })
}

// Feed passes through, not counted as a call nor failed: the tests of the
// base tables' inserts count those only (see TestSinkFeedRetry for the feed).
func (f *flakyStore) Feed(ctx context.Context, b *Batch) error {
	if f.SinkStore == nil {
		return nil
	}
	return f.SinkStore.Feed(ctx, b)
}
func (f *flakyStore) StoredKeys(ctx context.Context, t string, ids []string) (map[string]bool, error) {
	if f.SinkStore == nil {
		return map[string]bool{}, nil
	}
	return f.SinkStore.StoredKeys(ctx, t, ids)
}

func sinkRecords(t *testing.T, n int) []*kgo.Record {
	t.Helper()
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	var recs []*kgo.Record
	add := func(topic string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: topic, Partition: 0, Offset: int64(len(recs)), Value: b, Timestamp: t0})
	}
	for i := range n {
		id := "exec_" + string(rune('a'+i))
		add("execs", delivery.Attempt{V: 1, Kind: delivery.KindAttempt, AttemptID: "att_" + id, ExecutionID: id, PipelineID: "pipe_s", TriggerType: "click",
			StepID: "step_1", StepOrder: 1, Attempt: 1, Status: "success", HTTPStatus: 200, StartedAt: t0})
		add("execs", delivery.Execution{V: 1, Kind: delivery.KindExecution, ExecutionID: id, PipelineID: "pipe_s", TriggerType: "click",
			Status: "completed", StartedAt: t0, CompletedAt: t0.Add(time.Second), Seq: 2})
	}
	add("dlq", dlq.Record{ID: "dlq_1", State: "dead", Reason: "max_retries_exceeded", PipelineID: "pipe_s", FailedAt: t0})
	return recs
}

// TestSinkRetriedBatchIsNotDoubled: inserts the store wrote but reported
// failed are retried without doubling a row (raw counts, no FINAL), on the
// record path (chDB) and the typed-row path (a ClickHouse server).
func TestSinkRetriedBatchIsNotDoubled(t *testing.T) {
	for _, typed := range []bool{false, true} {
		t.Run(map[bool]string{false: "records", true: "typed"}[typed], func(t *testing.T) {
			st := openTestStore(t, "sinkretry")
			ctx := context.Background()
			var inner SinkStore = st
			if typed {
				inner = typedOnly{st}
			}
			f := &flakyStore{SinkStore: inner, failAfter: 3} // three inserts are written, then reported failed
			s := NewSink(SinkOptions{ExecutionsTopic: "execs", DLQTopic: "dlq", MinBackoff: time.Millisecond, Log: slog.New(slog.DiscardHandler)}, f)
			b := newBatch()
			for _, r := range sinkRecords(t, 5) {
				s.add(b, r)
			}
			if err := s.write(ctx, b); err != nil {
				t.Fatal(err)
			}
			if f.failAfter != 0 || len(f.calls) != 3 {
				t.Fatalf("%d insert calls, %d faults left: want each part's one insert written and reported failed", len(f.calls), f.failAfter)
			}
			for table, want := range map[string]int{"attempts": 5, "executions": 5, "dlq_items": 1} {
				rows, err := st.Rows(ctx, table)
				if err != nil {
					t.Fatal(err)
				}
				if len(rows) != want {
					t.Errorf("%s: %d raw rows, want %d", table, len(rows), want)
				}
			}
		})
	}
}

// TestSinkBacksOffBoundedAndLogsStateChanges: through a 10-minute outage
// the sink's tries are spaced by doubling waits capped at MaxBackoff (no
// hot loop), and it logs twice: when inserts start failing and when they
// recover.
func TestSinkBacksOffBoundedAndLogsStateChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		f := &flakyStore{downUntil: time.Now().Add(10 * time.Minute)}
		s := NewSink(SinkOptions{ExecutionsTopic: "execs", DLQTopic: "dlq", MinBackoff: 200 * time.Millisecond, MaxBackoff: 30 * time.Second,
			Log: slog.New(slog.NewTextHandler(&logs, nil))}, f)
		b := newBatch()
		for _, r := range sinkRecords(t, 2) {
			s.add(b, r)
		}
		if err := s.write(t.Context(), b); err != nil {
			t.Fatal(err)
		}
		// Each try that fails stops at its first insert; the last try
		// makes one call per part (attempts, executions, DLQ).
		tries := f.calls[:len(f.calls)-2]
		for i := 1; i < len(tries); i++ {
			gap := tries[i].Sub(tries[i-1])
			want := min(200*time.Millisecond<<(i-1), 30*time.Second)
			if gap < want || gap > want*6/5+time.Millisecond {
				t.Fatalf("wait %d was %v, want %v (+20%% jitter)", i, gap, want)
			}
		}
		// 200ms·2^k reaches the 30 s cap after 8 tries; 10 min at ≤ 30 s each.
		if n := len(tries); n < 20 || n > 30 {
			t.Fatalf("%d tries in a 10-minute outage", n)
		}
		lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
		if len(lines) != 2 || !strings.Contains(lines[0], "inserts failing") || !strings.Contains(lines[1], "recovered") {
			t.Fatalf("logs:\n%s", logs.String())
		}
	})
}

// typedOnly hides the record path: the sink decodes rows in Go, as it does
// for a ClickHouse server.
type typedOnly struct{ SinkStore }

func (typedOnly) TakesRecords() bool { return false }

// TestDedupTokenReachesTheInsert: on a table that deduplicates inserts, a
// repeat with the same token is dropped and one with another token is
// not, on both insert paths: the token really goes with the insert.
func TestDedupTokenReachesTheInsert(t *testing.T) {
	st, err := OpenChDB(FindChDB(), filepath.Join(t.TempDir(), "ch"), Options{Database: "dedup"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	for _, q := range []string{"CREATE DATABASE IF NOT EXISTS dedup",
		"CREATE TABLE dedup.t (attempt_id String) ENGINE = MergeTree ORDER BY attempt_id SETTINGS non_replicated_deduplication_window = 100"} {
		if err := st.b.exec(ctx, q, nil); err != nil {
			t.Fatal(err)
		}
	}
	ji := st.b.(jsonInserter)
	insert := []func(ctx context.Context) error{
		func(ctx context.Context) error {
			return st.b.insert(ctx, "dedup.t", []string{"attempt_id"}, [][]any{{"a"}})
		},
		func(ctx context.Context) error {
			return ji.insertJSON(ctx, "dedup.t", [][]byte{[]byte(`{"attempt_id":"a"}`)})
		},
	}
	for i, ins := range insert {
		for _, tok := range []string{"tok-1", "tok-1", "tok-2"} {
			if err := ins(WithDedupToken(ctx, fmt.Sprintf("%s-%d", tok, i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	rows, err := st.Rows(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 { // per path: tok-1 once, tok-2 once
		t.Fatalf("%d rows, want 4", len(rows))
	}
}

// TestPartTokenIsStable: an insert's deduplication token is the same as
// earlier versions made it (sha256 of the table and each row's
// "topic/partition/offset"), so a batch a replica of another version
// inserted before a crash is recognised when it is inserted again.
func TestPartTokenIsStable(t *testing.T) {
	p := part{table: "attempts", origins: []Origin{{"webhookd.executions", 0, 41}, {"webhookd.executions", 3, 1234567890123}, {"other", 12, 0}}}
	if got, want := p.token(), "webhookd-855a5644bd8af1b125b1735c7c5d377c"; got != want {
		t.Fatalf("token %s, want %s", got, want)
	}
}

// TestSinkSkipsUnreadableRecord: a record of the executions topic that is
// not JSON, or JSON that is not a row (a time that is not one, a number
// that is text), is left out (and logged) and the rest of its batch is
// stored at once, without waiting for a backoff.
func TestSinkSkipsUnreadableRecord(t *testing.T) {
	st := openTestStore(t, "sinkbad")
	var logs bytes.Buffer
	writeAmid(t, st, &logs, 3, []*kgo.Record{
		{Topic: "execs", Partition: 1, Offset: 7, Value: []byte(`{"v":1,"kind":"attempt","attempt_id":"att_cut","execution_id":"x`)},
		{Topic: "execs", Partition: 1, Offset: 8, Value: []byte(`{"v":1,"kind":"execution","execution_id":"x"}}`)},
		{Topic: "execs", Partition: 1, Offset: 9, Value: []byte(`{"v":1,"kind":"attempt","attempt_id":"att_x","started_at":"not a time","http_status":"abc"}`)},
		{Topic: "execs", Partition: 1, Offset: 10, Value: []byte(`{"v":1,"kind":"execution","execution_id":"x2","started_at":"yesterday"}`)},
	})
	for table, want := range map[string]int{"attempts": 3, "executions": 3, "dlq_items": 1} {
		rows, err := st.Rows(context.Background(), table)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != want {
			t.Errorf("%s: %d rows, want %d", table, len(rows), want)
		}
	}
	if n := strings.Count(logs.String(), "skipping unreadable executions record"); n != 4 {
		t.Fatalf("%d records logged as skipped, want 4:\n%s", n, logs.String())
	}
	for _, want := range []string{"offset=7", "offset=8", "offset=9", "offset=10"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log does not name %s:\n%s", want, logs.String())
		}
	}
}

// TestSinkStoresRecordsClickHouseRefusesInTheirForm: a record that decodes
// as a row but whose form ClickHouse refuses (a key given twice, a lone
// UTF-16 surrogate escape, a column the store fills) no longer holds its batch — and its partition —
// in the sink's backoff forever: after the failed insert the part is
// rewritten as webhookd writes it, and every row is stored and counted in
// the aggregates at once.
func TestSinkStoresRecordsClickHouseRefusesInTheirForm(t *testing.T) {
	st := openTestStore(t, "sinkform")
	var logs bytes.Buffer
	const at = `"pipeline_id":"pipe_s","trigger_type":"click","step_id":"step_1","step_order":1,"attempt":1,"status":"success","http_status":200,"started_at":"2026-11-27T10:00:00Z"`
	writeAmid(t, st, &logs, 2, []*kgo.Record{
		{Topic: "execs", Partition: 1, Offset: 7, Value: []byte(`{"v":1,"kind":"attempt","attempt_id":"att_twice","attempt_id":"att_dup",` + at + `}`)},
		{Topic: "execs", Partition: 1, Offset: 8, Value: []byte(`{"v":1,"kind":"attempt","attempt_id":"att_sur\ud800",` + at + `}`)},
		// A column the store fills itself, which webhookd's row has not.
		{Topic: "execs", Partition: 1, Offset: 9, Value: []byte(`{"v":1,"kind":"attempt","attempt_id":"att_ins","inserted_at":"then",` + at + `}`)},
	})
	ctx := context.Background()
	rows, err := st.b.query(ctx, "SELECT attempt_id FROM "+st.t("attempts")+" ORDER BY attempt_id", nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rows {
		ids = append(ids, asString(r[0]))
	}
	if want := []string{"att_dup", "att_exec_a", "att_exec_b", "att_ins", "att_sur\uFFFD"}; !slices.Equal(ids, want) {
		t.Fatalf("attempts stored %q, want %q", ids, want)
	}
	ps, err := st.PipelineStats(ctx, []string{"pipe_s"}, Range{From: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if got := ps["pipe_s"]; got == nil || got.TotalExecutions != 2 {
		t.Fatalf("pipeline stats %+v, want 2 executions", got)
	}
	wantStepSuccesses(t, st, 5)
	if strings.Contains(logs.String(), "skipping") {
		t.Fatalf("a readable record was skipped:\n%s", logs.String())
	}
}

// formStrictFeed refuses a feed holding a record with a key given twice, as
// a feed stricter than its base table would.
type formStrictFeed struct{ SinkStore }

func (f formStrictFeed) Feed(ctx context.Context, b *Batch) error {
	for _, r := range b.AttemptRecs {
		if bytes.Count(r, []byte(`"attempt_id"`)) > 1 {
			return errors.New("Code: 117. DB::Exception: Duplicate field found while parsing JSONEachRow format: attempt_id")
		}
	}
	return f.SinkStore.Feed(ctx, b)
}

// TestSinkFeedRefusingARecordsFormFeedsItRewritten: when the base table
// took a record but the aggregates' feed refuses its form, the group's
// records are rewritten as webhookd writes them and fed at once (not
// retried in the sink's backoff forever), each once.
func TestSinkFeedRefusingARecordsFormFeedsItRewritten(t *testing.T) {
	st := openTestStore(t, "sinkfeedform")
	writeAmid(t, formStrictFeed{st}, nil, 2, []*kgo.Record{
		{Topic: "execs", Partition: 1, Offset: 7, Value: []byte(`{"v":1,"kind":"attempt","attempt_id":"att_twice","attempt_id":"att_dup","pipeline_id":"pipe_s","trigger_type":"click","step_id":"step_1","step_order":1,"attempt":1,"status":"success","http_status":200,"started_at":"2026-11-27T10:00:00Z"}`)},
	})
	wantStepSuccesses(t, st, 3)
}

// writeAmid writes, as one sink batch into store, sinkRecords(t, n) with
// odd put after its first n records; the write must not wait for a backoff
// (the sink's MinBackoff is an hour). logs, when given, takes the sink's log.
func writeAmid(t *testing.T, store SinkStore, logs *bytes.Buffer, n int, odd []*kgo.Record) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	if logs != nil {
		log = slog.New(slog.NewTextHandler(logs, nil))
	}
	s := NewSink(SinkOptions{ExecutionsTopic: "execs", DLQTopic: "dlq", MinBackoff: time.Hour, Log: log}, store)
	b := newBatch()
	recs := sinkRecords(t, n)
	for _, r := range append(recs[:n:n], append(odd, recs[n:]...)...) {
		s.add(b, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.write(ctx, b); err != nil {
		t.Fatalf("write: %v (the batch waited for a backoff)", err)
	}
}

// wantStepSuccesses checks the successful attempts the aggregates counted
// for sinkRecords' pipeline step on their day.
func wantStepSuccesses(t *testing.T, st *Store, want int64) {
	t.Helper()
	day := Range{From: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)}
	sts, err := st.StepStats(context.Background(), "pipe_s", day)
	if err != nil {
		t.Fatal(err)
	}
	if got := sts["step_1"]; got == nil || got.Successful != want {
		t.Fatalf("step stats %+v, want %d successful attempts fed, each once", got, want)
	}
}
