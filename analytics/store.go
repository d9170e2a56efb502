// Package analytics is webhookd's ClickHouse side: the schema, the store the
// admin API reads execution logs and stats from, and the sink that writes the
// executions and DLQ topics into it (DESIGN.md §6).
//
// The store runs one set of SQL statements on either backend: a ClickHouse
// server through clickhouse-go (production) or embedded chDB (dev, tests).
package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/dlq"
)

// Store reads and writes webhookd's ClickHouse tables.
type Store struct {
	b         backend
	db        string
	cluster   string
	retention Retention
	kind      string

	lease       Lease
	migrateWait time.Duration
	replica     string
	log         *slog.Logger

	recent *recentKeys // the keys fed lately (fedKeysSchema)
	settle *feedSettle // the feed inserts that failed (settleFeeds)
}

// Options for a store's schema.
type Options struct {
	Database string
	Cluster  string // DDL ON CLUSTER with Replicated engines when set
	// TTLDays is the default retention (30): execution logs and aggregates
	// keep it, DLQ items 60 days more. Retention's non-zero fields override.
	TTLDays   int
	Retention Retention

	// Lease serialises Migrate among replicas (nil: this process is the
	// only one migrating, as with chDB). MigrateWait bounds the wait for
	// it (default 5 min). Replica names this process in schema_migrations.
	Lease       Lease
	MigrateWait time.Duration
	Replica     string
	Log         *slog.Logger
	// DedupWindow is how long the keys of fed rows are remembered, so that
	// an execution delivered again after a crash counts once
	// (fedKeysSchema; default DefaultDedupWindow, at most MaxDedupWindow).
	DedupWindow time.Duration
	// PurgeAboveAnon (chDB only) is the process's anonymous resident
	// memory in bytes (its heaps, not the library's pages) above which the
	// memory chDB has freed goes back to the system after each call
	// (checked at most 4 times a second); below it chDB reuses freed
	// memory for 200 ms, which makes its queries and inserts cheaper.
	// 0: DefaultPurgeAboveAnon; negative: after every call.
	PurgeAboveAnon int64
	// Nice (chDB only, Linux) is the nice value the embedded engine's
	// threads run at, 0–19 (0: the process's priority): with it raised,
	// deliveries go first when they and chDB's inserts and merges want the
	// same core. The first store opened in a process decides.
	Nice int
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// normalize fills defaults and checks names before any connection is opened
// (names go into DDL text, so they must be plain identifiers).
func (o *Options) normalize() error {
	if o.Database == "" {
		o.Database = "webhookd"
	}
	if !identRE.MatchString(o.Database) {
		return fmt.Errorf("database name %q: use letters, digits and _", o.Database)
	}
	if o.Cluster != "" && !identRE.MatchString(o.Cluster) {
		return fmt.Errorf("cluster name %q: use letters, digits and _", o.Cluster)
	}
	if o.TTLDays <= 0 {
		o.TTLDays = 30
	}
	r := &o.Retention
	if r.Logs < 0 || r.Aggregates < 0 || r.DLQ < 0 {
		return fmt.Errorf("retention days must not be negative: %+v", *r)
	}
	if r.Logs == 0 {
		r.Logs = o.TTLDays
	}
	if r.Aggregates == 0 {
		r.Aggregates = o.TTLDays
	}
	if r.DLQ == 0 {
		r.DLQ = o.TTLDays + 60
	}
	if o.MigrateWait <= 0 {
		o.MigrateWait = 5 * time.Minute
	}
	if o.Replica == "" {
		o.Replica, _ = os.Hostname()
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.DedupWindow <= 0 {
		o.DedupWindow = DefaultDedupWindow
	}
	if o.DedupWindow > MaxDedupWindow {
		return fmt.Errorf("dedup window %v: at most %v", o.DedupWindow, MaxDedupWindow)
	}
	return nil
}

func newStore(b backend, kind string, o Options) *Store {
	return &Store{b: b, db: o.Database, cluster: o.Cluster, retention: o.Retention, kind: kind, recent: newRecentKeys(o.DedupWindow), settle: newFeedSettle(),
		lease: o.Lease, migrateWait: o.MigrateWait, replica: o.Replica, log: o.Log}
}

// OpenChDB opens the embedded engine with its data under dataPath.
func OpenChDB(lib, dataPath string, o Options) (*Store, error) {
	if err := o.normalize(); err != nil {
		return nil, err
	}
	purge := o.PurgeAboveAnon
	switch {
	case purge == 0:
		purge = DefaultPurgeAboveAnon
	case purge < 0:
		purge = 0
	}
	if o.Nice < 0 || o.Nice > 19 {
		return nil, fmt.Errorf("analytics: nice %d: must be 0–19 (a thread's priority can be lowered, never raised)", o.Nice)
	}
	b, err := openChDB(lib, dataPath, purge, o.Nice, o.Log)
	if err != nil {
		return nil, err
	}
	return newStore(b, "chdb", o), nil
}

// OpenServer connects to a ClickHouse server.
func OpenServer(ctx context.Context, so ServerOptions, o Options) (*Store, error) {
	if err := o.normalize(); err != nil {
		return nil, err
	}
	b, err := openServer(ctx, so)
	if err != nil {
		return nil, err
	}
	return newStore(b, "clickhouse", o), nil
}

// Kind is "chdb" or "clickhouse".
func (s *Store) Kind() string { return s.kind }

// Ping checks the connection.
func (s *Store) Ping(ctx context.Context) error { return s.b.ping(ctx) }

// Rows returns every row of one of webhookd's tables, each column as text:
// for operators' tooling and tests that inspect what was stored.
func (s *Store) Rows(ctx context.Context, table string) ([][]string, error) {
	if !identRE.MatchString(table) {
		return nil, fmt.Errorf("table name %q: use letters, digits and _", table)
	}
	rows, err := s.b.query(ctx, "SELECT * FROM "+s.t(table), nil)
	if err != nil {
		return nil, err
	}
	out := make([][]string, len(rows))
	for i, r := range rows {
		out[i] = make([]string, len(r))
		for j, v := range r {
			out[i][j] = fmt.Sprint(v)
		}
	}
	return out, nil
}

// Close releases the connection.
func (s *Store) Close() error { return s.b.close() }

func (s *Store) t(name string) string { return s.db + "." + name }

var attemptCols = []string{"attempt_id", "execution_id", "delivery_id", "pipeline_id", "pipeline_name", "trigger_type", "trigger_id", "event_id",
	"step_id", "step_name", "step_order", "attempt", "failover", "tier", "status", "http_status", "latency_ms", "error",
	"request_url", "request_body", "response_body", "started_at"}

var executionCols = []string{"execution_id", "delivery_id", "pipeline_id", "pipeline_name", "trigger_type", "trigger_id", "event_id", "status", "started_at", "completed_at", "seq"}

var deadLetterCols = []string{"id", "state", "reason", "error", "delivery_id", "execution_id", "pipeline_id", "trigger_type", "trigger_id", "step_order", "attempts", "failed_at", "payload", "source", "task", "payload_truncated", "version"}

// InsertAttempts writes attempt rows in one insert.
func (s *Store) InsertAttempts(ctx context.Context, as []delivery.Attempt) error {
	rows := make([][]any, len(as))
	for i, a := range as {
		rows[i] = []any{a.AttemptID, a.ExecutionID, a.DeliveryID, a.PipelineID, a.PipelineName, a.TriggerType, a.TriggerID, a.EventID,
			a.StepID, a.StepName, int64(a.StepOrder), int64(a.Attempt), a.Failover, a.Tier, a.Status, int64(a.HTTPStatus), a.LatencyMS, a.Error,
			a.RequestURL, a.RequestBody, a.ResponseBody, a.StartedAt.UTC()}
	}
	return s.b.insert(ctx, s.t("attempts"), attemptCols, rows)
}

// jsonInserter is a backend that takes rows as JSON objects (chDB).
type jsonInserter interface {
	insertJSON(ctx context.Context, table string, rows [][]byte) error
}

// TakesRecords reports whether InsertRecords is available: the backend
// reads the executions topic's records as they are.
func (s *Store) TakesRecords() bool {
	_, ok := s.b.(jsonInserter)
	return ok
}

// InsertRecords writes attempt or execution records (JSON, as produced to
// the executions topic) into table "attempts" or "executions" in one insert.
func (s *Store) InsertRecords(ctx context.Context, table string, recs [][]byte) error {
	ji, ok := s.b.(jsonInserter)
	if !ok {
		return fmt.Errorf("the %s backend takes typed rows only", s.kind)
	}
	return ji.insertJSON(ctx, s.t(table), recs)
}

// InsertExecutions writes execution state rows in one insert.
func (s *Store) InsertExecutions(ctx context.Context, es []delivery.Execution) error {
	rows := make([][]any, len(es))
	for i, e := range es {
		rows[i] = []any{e.ExecutionID, e.DeliveryID, e.PipelineID, e.PipelineName, e.TriggerType, e.TriggerID, e.EventID, e.Status, e.StartedAt.UTC(), e.CompletedAt.UTC(), e.Seq}
	}
	return s.b.insert(ctx, s.t("executions"), executionCols, rows)
}

// InsertDeadLetters writes DLQ item states in one insert.
func (s *Store) InsertDeadLetters(ctx context.Context, ds []DeadLetterRow) error {
	rows := make([][]any, len(ds))
	for i, d := range ds {
		rows[i] = []any{d.ID, d.State, d.Reason, d.Error, d.DeliveryID, d.ExecutionID, d.PipelineID, d.TriggerType, d.TriggerID,
			int64(d.StepOrder), int64(d.Attempts), d.FailedAt.UTC(), string(d.PayloadView()), jsonOrEmpty(d.Source), jsonOrEmpty(d.Task), d.PayloadTruncated, d.Version}
	}
	return s.b.insert(ctx, s.t("dlq_items"), deadLetterCols, rows)
}

func jsonOrEmpty[T any](v *T) string {
	if v == nil {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

// DeadLetterRow is one DLQ item state as stored.
type DeadLetterRow struct {
	dlq.Record
	Version int64 // higher wins (later state changes)
}

// ExecutionLog is one execution with its steps (spec: logs/recent).
type ExecutionLog struct {
	ID           string     `json:"id"`
	DeliveryID   string     `json:"delivery_id"`
	PipelineID   string     `json:"pipeline_id"`
	PipelineName string     `json:"pipeline_name"`
	TriggerType  string     `json:"trigger_type"`
	TriggerID    string     `json:"trigger_id"`
	EventID      string     `json:"event_id"`
	Status       string     `json:"status"`
	StartedAt    time.Time  `json:"started_at"`
	CompletedAt  *time.Time `json:"completed_at"`
	DurationMS   int64      `json:"duration_ms"`
	Steps        []StepLog  `json:"steps"`
}

// StepLog is a step's latest attempt within an execution.
type StepLog struct {
	StepID       string `json:"step_id"`
	StepName     string `json:"step_name"`
	StepOrder    int64  `json:"step_order"`
	Status       string `json:"status"`
	HTTPStatus   int64  `json:"http_status"`
	LatencyMS    int64  `json:"latency_ms"`
	Attempts     int64  `json:"attempts"`
	Failover     bool   `json:"failover"`
	Error        string `json:"error,omitempty"`
	ResponseBody string `json:"response_body"`
}

// ExecutionFilter selects executions.
type ExecutionFilter struct {
	PipelineID  string
	TriggerType string
	Statuses    []string // empty: any
	Limit       int
	Offset      int
}

// RecentExecutions returns executions newest first, each with its steps,
// and the number of executions matching.
//
// It reads executions_by_time (ordered by start) from the hour where the
// executions counted per hour and status (executions_status_1h) make the
// page complete, so it merges (FINAL) only the newest rows; a page that the
// counts promised but that comes out short (rows not fed to the counts) is
// read again without a bound. The total is those counts, or exact when the
// page shows the end of the list.
func (s *Store) RecentExecutions(ctx context.Context, f ExecutionFilter) ([]ExecutionLog, int64, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	p := Params{"pipeline_id": f.PipelineID, "trigger_type": f.TriggerType, "statuses": append([]string{}, f.Statuses...), "limit": f.Limit, "offset": f.Offset}
	// The counts are kept as long as the aggregates, the rows they count
	// as long as the logs: the hours whose rows have expired count none.
	hp := Params{"kept_from": s.logsKeptFrom(time.Now())}
	for k, v := range p {
		hp[k] = v
	}
	hours, err := s.b.query(ctx, `
		SELECT toUnixTimestamp(hour) AS h, sum(executions) FROM `+s.t("executions_status_1h")+`
		WHERE hour >= toDateTime({kept_from:Int64}, 'UTC')`+f.conds(true)+`
		GROUP BY h ORDER BY h DESC`, hp)
	if err != nil {
		return nil, 0, fmt.Errorf("count executions: %w", err)
	}
	var total, from int64 // from: the first hour to read, 0 for all
	for _, h := range hours {
		n := asInt(h[1])
		total += n
		if from == 0 && total >= int64(f.Offset+f.Limit) {
			from = asInt(h[0])
		}
	}
	starts := []int64{0}
	if from != 0 {
		starts = append(starts, from)
		if m, err := s.newestMinutes(ctx, f, p, from, int64(f.Offset+f.Limit)); err != nil {
			return nil, 0, err
		} else if m > from {
			starts = append(starts, m)
		}
	}
	where := `started_at >= fromUnixTimestamp64Milli({from:Int64}, 'UTC')` + f.conds(true)
	var rows [][]any
	for {
		from, starts = starts[len(starts)-1], starts[:len(starts)-1]
		p["from"] = from * 1000
		rows, err = s.b.query(ctx, `
		SELECT execution_id, delivery_id, pipeline_id, pipeline_name, trigger_type, trigger_id, event_id, status,
		       toUnixTimestamp64Milli(started_at), toUnixTimestamp64Milli(completed_at)
		FROM `+s.t("executions_by_time")+` FINAL
		WHERE `+where+`
		ORDER BY started_at DESC, execution_id
		LIMIT {limit:Int64} OFFSET {offset:Int64}`, p)
		if err != nil {
			return nil, 0, fmt.Errorf("recent executions: %w", err)
		}
		if len(rows) == f.Limit || len(starts) == 0 {
			break
		}
	}
	switch {
	case len(rows) > 0 && len(rows) < f.Limit, len(rows) == 0 && f.Offset == 0:
		total = int64(f.Offset + len(rows)) // the end of the list: exact
	case len(rows) == 0:
		total = min(total, int64(f.Offset)) // past the end
	default:
		total = max(total, int64(f.Offset+len(rows)))
	}
	logs := make([]ExecutionLog, 0, len(rows))
	ids := make([]string, 0, len(rows))
	var pids []string
	var since time.Time
	for _, r := range rows {
		l := ExecutionLog{ID: asString(r[0]), DeliveryID: asString(r[1]), PipelineID: asString(r[2]), PipelineName: asString(r[3]),
			TriggerType: asString(r[4]), TriggerID: asString(r[5]), EventID: asString(r[6]), Status: asString(r[7]),
			StartedAt: msTime(asInt(r[8])), Steps: []StepLog{}}
		if c := msTime(asInt(r[9])); !c.IsZero() && c.Year() > 1970 {
			l.CompletedAt = &c
			l.DurationMS = c.Sub(l.StartedAt).Milliseconds()
		}
		logs = append(logs, l)
		ids = append(ids, l.ID)
		if !slices.Contains(pids, l.PipelineID) {
			pids = append(pids, l.PipelineID)
		}
		if since.IsZero() || l.StartedAt.Before(since) {
			since = l.StartedAt
		}
	}
	if len(ids) == 0 {
		return logs, total, nil
	}
	// Attempts are ordered by pipeline and start, and none starts before
	// its execution (a minute of leeway for replicas' clocks). A replayed
	// row is dropped as FINAL would (the last inserted of a sorting key
	// wins), among these few rows only.
	steps, err := s.b.query(ctx, `
		SELECT execution_id, step_id, step_name, step_order, status, http_status, latency_ms, error, response_body, attempt, failover
		FROM `+s.t("attempts")+`
		WHERE pipeline_id IN {pids:Array(String)} AND started_at >= fromUnixTimestamp64Milli({since:Int64}, 'UTC')
		  AND execution_id IN {ids:Array(String)}
		ORDER BY execution_id, step_order, started_at, attempt, inserted_at DESC
		LIMIT 1 BY pipeline_id, started_at, attempt_id`, Params{"ids": ids, "pids": pids, "since": since.Add(-time.Minute).UnixMilli()})
	if err != nil {
		return nil, 0, fmt.Errorf("execution steps: %w", err)
	}
	byExec := map[string]map[int64]*StepLog{}
	for _, r := range steps {
		eid, order := asString(r[0]), asInt(r[3])
		m := byExec[eid]
		if m == nil {
			m = map[int64]*StepLog{}
			byExec[eid] = m
		}
		st := m[order]
		if st == nil {
			st = &StepLog{}
			m[order] = st
		}
		// Rows come in attempt order: the last one is the step's current state.
		n := st.Attempts + 1
		*st = StepLog{StepID: asString(r[1]), StepName: asString(r[2]), StepOrder: order, Status: asString(r[4]),
			HTTPStatus: asInt(r[5]), LatencyMS: asInt(r[6]), Error: asString(r[7]), ResponseBody: asString(r[8]),
			Attempts: n, Failover: asBool(r[10])}
	}
	for i := range logs {
		m := byExec[logs[i].ID]
		orders := make([]int64, 0, len(m))
		for o := range m {
			orders = append(orders, o)
		}
		sort.Slice(orders, func(a, b int) bool { return orders[a] < orders[b] })
		for _, o := range orders {
			logs[i].Steps = append(logs[i].Steps, *m[o])
		}
	}
	return logs, total, nil
}

// AttemptLog is one HTTP attempt of an execution as it was logged (the
// URL and bodies redacted and truncated when they were recorded).
type AttemptLog struct {
	StepID       string    `json:"step_id"`
	StepName     string    `json:"step_name"`
	StepOrder    int64     `json:"step_order"`
	Attempt      int64     `json:"attempt"` // 0-based, = X-Afftok-Retry-Count
	Failover     bool      `json:"failover"`
	Tier         string    `json:"tier"`
	Status       string    `json:"status"`
	HTTPStatus   int64     `json:"http_status"`
	LatencyMS    int64     `json:"latency_ms"`
	Error        string    `json:"error,omitempty"`
	RequestURL   string    `json:"request_url"`
	RequestBody  string    `json:"request_body"`
	ResponseBody string    `json:"response_body"`
	StartedAt    time.Time `json:"started_at"`
}

// Execution returns one execution with its steps (each step's latest
// attempt, as RecentExecutions shows them) and every attempt, oldest
// first; nil when it is unknown.
func (s *Store) Execution(ctx context.Context, id string) (*ExecutionLog, []AttemptLog, error) {
	p := Params{"id": id}
	rows, err := s.b.query(ctx, `
		SELECT execution_id, delivery_id, pipeline_id, pipeline_name, trigger_type, trigger_id, event_id, status,
		       toUnixTimestamp64Milli(started_at), toUnixTimestamp64Milli(completed_at)
		FROM `+s.t("executions")+` FINAL
		WHERE execution_id = {id:String}
		LIMIT 1`, p)
	if err != nil {
		return nil, nil, fmt.Errorf("execution: %w", err)
	}
	if len(rows) == 0 {
		return nil, nil, nil
	}
	r := rows[0]
	l := &ExecutionLog{ID: asString(r[0]), DeliveryID: asString(r[1]), PipelineID: asString(r[2]), PipelineName: asString(r[3]),
		TriggerType: asString(r[4]), TriggerID: asString(r[5]), EventID: asString(r[6]), Status: asString(r[7]),
		StartedAt: msTime(asInt(r[8])), Steps: []StepLog{}}
	if c := msTime(asInt(r[9])); !c.IsZero() && c.Year() > 1970 {
		l.CompletedAt = &c
		l.DurationMS = c.Sub(l.StartedAt).Milliseconds()
	}
	// Attempts are ordered by pipeline and start: read by the execution's
	// pipeline and from its start (a minute of leeway for replicas'
	// clocks, as the lists), not by a scan of every attempt.
	arows, err := s.b.query(ctx, `
		SELECT step_id, step_name, step_order, attempt, failover, tier, status, http_status, latency_ms, error,
		       request_url, request_body, response_body, toUnixTimestamp64Milli(started_at)
		FROM `+s.t("attempts")+` FINAL
		WHERE pipeline_id = {pipeline_id:String} AND started_at >= fromUnixTimestamp64Milli({since:Int64}, 'UTC')
		  AND execution_id = {id:String}
		ORDER BY started_at, step_order, attempt, failover`, Params{"id": id, "pipeline_id": l.PipelineID, "since": l.StartedAt.Add(-time.Minute).UnixMilli()})
	if err != nil {
		return nil, nil, fmt.Errorf("execution attempts: %w", err)
	}
	atts := make([]AttemptLog, 0, len(arows))
	steps := map[int64]*StepLog{}
	for _, r := range arows {
		a := AttemptLog{StepID: asString(r[0]), StepName: asString(r[1]), StepOrder: asInt(r[2]), Attempt: asInt(r[3]),
			Failover: asBool(r[4]), Tier: asString(r[5]), Status: asString(r[6]), HTTPStatus: asInt(r[7]), LatencyMS: asInt(r[8]),
			Error: asString(r[9]), RequestURL: asString(r[10]), RequestBody: asString(r[11]), ResponseBody: asString(r[12]), StartedAt: msTime(asInt(r[13]))}
		atts = append(atts, a)
		// The last attempt of a step is its current state.
		n := int64(1)
		if st := steps[a.StepOrder]; st != nil {
			n = st.Attempts + 1
		}
		steps[a.StepOrder] = &StepLog{StepID: a.StepID, StepName: a.StepName, StepOrder: a.StepOrder, Status: a.Status, HTTPStatus: a.HTTPStatus,
			LatencyMS: a.LatencyMS, Error: a.Error, ResponseBody: a.ResponseBody, Attempts: n, Failover: a.Failover}
	}
	orders := make([]int64, 0, len(steps))
	for o := range steps {
		orders = append(orders, o)
	}
	sort.Slice(orders, func(a, b int) bool { return orders[a] < orders[b] })
	for _, o := range orders {
		l.Steps = append(l.Steps, *steps[o])
	}
	return l, atts, nil
}

// logsKeptFrom is the start (Unix seconds, an hour) of the execution rows
// the logs' retention keeps at now, when the aggregates are kept longer (0:
// every hour of the counts has its rows).
func (s *Store) logsKeptFrom(now time.Time) int64 {
	if s.retention.Aggregates <= s.retention.Logs || s.retention.Logs <= 0 {
		return 0
	}
	return now.Add(-time.Duration(s.retention.Logs) * 24 * time.Hour).Truncate(time.Hour).Unix()
}

// newestMinutes narrows the first hour to read (from, Unix seconds) to the
// minute from which the per-minute execution aggregates count need
// executions matching p; from itself when they cannot tell (a status
// filter that separates failed from partial, which they count together).
func (s *Store) newestMinutes(ctx context.Context, f ExecutionFilter, p Params, from, need int64) (int64, error) {
	st := f.Statuses
	if slices.Contains(st, delivery.ExecFailed) != slices.Contains(st, delivery.ExecPartial) {
		return from, nil
	}
	q := Params{"from": from}
	for k, v := range p {
		if k != "from" {
			q[k] = v
		}
	}
	rows, err := s.b.query(ctx, `
		SELECT toUnixTimestamp(minute) AS m, sum(`+statusCountSQL(st)+`) AS n FROM `+s.t("executions_1m")+`
		WHERE minute >= `+sqlTime("from")+f.conds(false)+`
		GROUP BY m ORDER BY m DESC`, q)
	if err != nil {
		return 0, fmt.Errorf("recent minutes: %w", err)
	}
	var n int64
	for _, r := range rows {
		if n += asInt(r[1]); n >= need {
			return asInt(r[0]), nil
		}
	}
	return from, nil
}

// conds are the conditions (each starting with AND) narrowing executions
// to f's pipeline, trigger type and, with status (a table with a status
// column), statuses: only those f sets, as a condition that is always true
// still costs its analysis (measured: logs/recent ~8 ms of 85; issue 10).
func (f ExecutionFilter) conds(status bool) string {
	var c string
	if f.PipelineID != "" {
		c += " AND pipeline_id = {pipeline_id:String}"
	}
	if f.TriggerType != "" {
		c += " AND trigger_type = {trigger_type:String}"
	}
	if status && len(f.Statuses) > 0 {
		c += " AND has({statuses:Array(String)}, status)"
	}
	return c
}

// statusCountSQL is the count of executions_1m's executions in the
// statuses st (any when empty): failed counts partial executions too.
func statusCountSQL(st []string) string {
	terms := []string{}
	for _, t := range []struct{ status, sum string }{
		{delivery.ExecCompleted, "toInt64(successful)"},
		{delivery.ExecCancelled, "toInt64(cancelled)"},
		{delivery.ExecFailed, "toInt64(failed)"},
		{delivery.ExecRetrying, "toInt64(retries_opened) - toInt64(retried_closed)"},
	} {
		if len(st) == 0 || slices.Contains(st, t.status) {
			terms = append(terms, t.sum)
		}
	}
	if len(terms) == 0 {
		return "toInt64(0)"
	}
	return strings.Join(terms, " + ")
}

func asBool(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		return x == "true" || x == "1"
	}
	return asInt(v) != 0
}

func roundRate(ok, total int64) float64 {
	r := float64(ok) * 10000 / float64(total)
	return float64(int64(r+0.5)) / 100
}

func joinCols(cols []string) string { return strings.Join(cols, ", ") }

const dlqSelect = `SELECT id, state, reason, error, delivery_id, execution_id, pipeline_id, trigger_type, trigger_id,
	step_order, attempts, toUnixTimestamp64Milli(failed_at), payload, source, task, payload_truncated FROM `

// dlqItem reads one row back into the record it was written from.
func dlqItem(r []any) (dlq.Record, error) {
	it := dlq.Record{V: delivery.Version, ID: asString(r[0]), State: asString(r[1]), Reason: asString(r[2]), Error: asString(r[3]), DeliveryID: asString(r[4]),
		ExecutionID: asString(r[5]), PipelineID: asString(r[6]), TriggerType: asString(r[7]), TriggerID: asString(r[8]),
		StepOrder: int(asInt(r[9])), Attempts: int(asInt(r[10])), FailedAt: msTime(asInt(r[11])), PayloadTruncated: asBool(r[15])}
	if p := asString(r[12]); p != "" && json.Valid([]byte(p)) {
		it.Payload = json.RawMessage(p)
	}
	if src := asString(r[13]); src != "" {
		it.Source = &delivery.Source{}
		if err := json.Unmarshal([]byte(src), it.Source); err != nil {
			return it, fmt.Errorf("dlq item %s source: %w", it.ID, err)
		}
	}
	if t := asString(r[14]); t != "" {
		var err error
		if it.Task, err = delivery.DecodeTask([]byte(t)); err != nil {
			return it, fmt.Errorf("dlq item %s task: %w", it.ID, err)
		}
	}
	return it, nil
}

// DeadLetters lists DLQ items newest first, with the total matching.
func (s *Store) DeadLetters(ctx context.Context, f dlq.Filter) ([]dlq.Record, int64, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	if f.State == "" {
		f.State = "dead"
	}
	from, to := int64(0), int64(0)
	if !f.FailedFrom.IsZero() {
		from = f.FailedFrom.UnixMilli()
	}
	if !f.FailedTo.IsZero() {
		to = f.FailedTo.UnixMilli()
	}
	where := ` WHERE state = {state:String}
		AND ({pipeline_id:String} = '' OR pipeline_id = {pipeline_id:String})
		AND ({trigger_type:String} = '' OR trigger_type = {trigger_type:String})
		AND ({err:String} = '' OR positionCaseInsensitiveUTF8(error, {err:String}) > 0)
		AND ({from:Int64} = 0 OR toUnixTimestamp64Milli(failed_at) >= {from:Int64})
		AND ({to:Int64} = 0 OR toUnixTimestamp64Milli(failed_at) <= {to:Int64})`
	p := Params{"state": f.State, "pipeline_id": f.PipelineID, "trigger_type": f.TriggerType, "err": f.ErrorContains,
		"from": from, "to": to, "limit": f.Limit, "offset": f.Offset}
	rows, err := s.b.query(ctx, dlqSelect+s.t("dlq_items")+` FINAL`+where+` ORDER BY failed_at DESC, id LIMIT {limit:Int64} OFFSET {offset:Int64}`, p)
	if err != nil {
		return nil, 0, fmt.Errorf("dlq items: %w", err)
	}
	cnt, err := s.b.query(ctx, `SELECT count() FROM `+s.t("dlq_items")+` FINAL`+where, p)
	if err != nil {
		return nil, 0, fmt.Errorf("count dlq items: %w", err)
	}
	items := make([]dlq.Record, 0, len(rows))
	for _, r := range rows {
		it, err := dlqItem(r)
		if err != nil {
			// One unreadable row (written by hand?) must not hide the rest:
			// it is listed with what could be read.
			it.Error = it.Error + " [stored item unreadable: " + err.Error() + "]"
			it.Task, it.Source = nil, nil
		}
		items = append(items, it)
	}
	var total int64
	if len(cnt) == 1 {
		total = asInt(cnt[0][0])
	}
	return items, total, nil
}

// DeadLetter returns one DLQ item in its latest state; nil if unknown.
func (s *Store) DeadLetter(ctx context.Context, id string) (*dlq.Record, error) {
	rows, err := s.b.query(ctx, dlqSelect+s.t("dlq_items")+` FINAL WHERE id = {id:String}`, Params{"id": id})
	if err != nil {
		return nil, fmt.Errorf("dlq item: %w", err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	it, err := dlqItem(rows[0])
	if err != nil {
		return nil, err
	}
	return &it, nil
}
