package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/afftok/webhookd/analytics"
	"github.com/afftok/webhookd/opevents"
	"github.com/afftok/webhookd/pipeline"
	"github.com/afftok/webhookd/registry"
	"github.com/afftok/webhookd/signing"
)

// pipelineInput is a create/update body. Pointers tell "absent" from "empty"
// for PUT, which changes only the fields it is given. Read-only fields of the
// GET response are accepted and ignored, so GET → edit → PUT works.
type pipelineInput struct {
	Name        *string      `json:"name"`
	Description *string      `json:"description"`
	TriggerType *string      `json:"trigger_type"`
	Status      *string      `json:"status"`
	Steps       *[]stepInput `json:"steps"`
	FailoverURL *string      `json:"failover_url"`
	// FailoverRetryPolicy: {} restores the default (3 attempts, 5 s then
	// 10 s), noted in defaultFailover: {"max_attempts":0} is a mistake to
	// report, not a reset.
	FailoverRetryPolicy *pipeline.RetryPolicy `json:"failover_retry_policy"`
	defaultFailover     bool
	// Filter: {} removes the filter.
	Filter   *json.RawMessage `json:"filter"`
	Ordering *string          `json:"ordering"`

	ID            json.RawMessage `json:"id"`
	Stats         json.RawMessage `json:"stats"`
	StepsCount    json.RawMessage `json:"steps_count"`
	LastTriggered json.RawMessage `json:"last_triggered"`
	CreatedAt     json.RawMessage `json:"created_at"`
	UpdatedAt     json.RawMessage `json:"updated_at"`
	// Revision, on PUT, is the revision the client edited (like If-Match).
	Revision *int64 `json:"revision"`

	// generated holds the signing keys apply made for standard-mode steps
	// sent without one, by step id: the answer to this request shows them,
	// and nothing ever again.
	generated               map[string]string
	AutoDisableAfterSeconds *int `json:"auto_disable_after_seconds"`
	// Read-only: set by status changes.
	DisabledReason json.RawMessage `json:"disabled_reason"`
	DisabledAt     json.RawMessage `json:"disabled_at"`
	ReenabledAt    json.RawMessage `json:"reenabled_at"`
	// RateLimitPerSecond: on PUT, 0 removes the limit.
	RateLimitPerSecond *float64 `json:"rate_limit_per_second"`
}

type stepInput struct {
	pipeline.Step
	Stats json.RawMessage `json:"stats"`
}

func (in *pipelineInput) apply(p *pipeline.Pipeline, old *pipeline.Pipeline) {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&p.Name, in.Name)
	set(&p.Description, in.Description)
	set(&p.TriggerType, in.TriggerType)
	set(&p.Status, in.Status)
	set(&p.FailoverURL, in.FailoverURL)
	if rp := in.FailoverRetryPolicy; rp != nil {
		c := *rp
		p.FailoverRetryPolicy = &c
		if in.defaultFailover {
			p.FailoverRetryPolicy = nil
		}
	}
	if in.Filter != nil {
		p.Filter = append(json.RawMessage(nil), *in.Filter...)
	}
	if in.AutoDisableAfterSeconds != nil {
		v := *in.AutoDisableAfterSeconds
		p.AutoDisableAfterSeconds = &v
	}
	set(&p.Ordering, in.Ordering)
	if r := in.RateLimitPerSecond; r != nil {
		p.RateLimitPerSecond = r
		if *r == 0 && old != nil {
			p.RateLimitPerSecond = nil // an update's 0 removes the limit
		}
	}
	if in.Steps == nil {
		return
	}
	p.Steps = make([]pipeline.Step, len(*in.Steps))
	in.generated = map[string]string{}
	for i, si := range *in.Steps {
		s := si.Step
		// Read-only: GET shows these; pipeline.RotateKeys sets the previous key.
		s.HasSigningKey, s.HasPreviousSigningKey = false, false
		s.PreviousSigningKey, s.PreviousSigningKeyExpiresAt = "", nil
		// Keys are never returned, so a client that edits what GET showed
		// sends none: keep the step's current key (matched by id, else order).
		if prev := matchStep(old, s); prev != nil {
			if s.ID == "" {
				s.ID = prev.ID
			}
			if s.SigningKey == "" && (s.SignatureMode == "" || s.SignatureMode == prev.SignatureMode) {
				s.SigningKey = prev.SigningKey
				if s.SignatureMode == "" { // neither sent: both kept (a jwt key must not turn hmac)
					s.SignatureMode = prev.SignatureMode
				}
			}
		}
		if s.ID == "" || (old != nil && matchStep(old, pipeline.Step{ID: s.ID}) == nil) {
			s.ID = pipeline.NewID("step_")
		}
		// A Standard Webhooks step without a key gets a fresh one, shown
		// once, in this request's answer.
		if s.SignatureMode == signing.ModeStandard && s.SigningKey == "" {
			s.SigningKey = signing.NewSecret()
			in.generated[s.ID] = s.SigningKey
		}
		p.Steps[i] = s
	}
}

// readOnlyKeys lists steps that try to write previous_signing_key, which
// only a change of signing_key sets (its value is not quoted).
func readOnlyKeys(in *pipelineInput) error {
	if in.Steps == nil {
		return nil
	}
	ve := &pipeline.ValidationError{}
	for i, si := range *in.Steps {
		if si.PreviousSigningKey != "" {
			ve.Fields = append(ve.Fields, pipeline.FieldError{Field: fmt.Sprintf("steps[%d].previous_signing_key", i),
				Message: "is set by webhookd when signing_key changes and cannot be written"})
		}
	}
	if len(ve.Fields) == 0 {
		return nil
	}
	return ve
}

// reveal puts the keys this request generated into its answer.
func reveal(d *pipelineDetail, generated map[string]string) *pipelineDetail {
	for i := range d.Steps {
		if k, ok := generated[d.Steps[i].ID]; ok {
			d.Steps[i].SigningKey = k
		}
	}
	return d
}

func matchStep(old *pipeline.Pipeline, s pipeline.Step) *pipeline.Step {
	if old == nil {
		return nil
	}
	for i := range old.Steps {
		if s.ID != "" && old.Steps[i].ID == s.ID {
			return &old.Steps[i]
		}
	}
	if s.ID != "" {
		return nil
	}
	for i := range old.Steps {
		if s.Order != 0 && old.Steps[i].Order == s.Order {
			return &old.Steps[i]
		}
	}
	return nil
}

// decodePipeline decodes a create/update body in one pass, so that bad
// top-level fields and bad fields of every step are reported together, each
// with its path ("steps[1].order"). Field problems come back as decoded, with
// the rest of the body decoded as far as it goes, so that what it says can be
// checked too and one answer lists every problem (pipeline.Merge).
func (s *Server) decodePipeline(c *fiber.Ctx) (in *pipelineInput, decoded, err error) {
	in = &pipelineInput{}
	if len(c.Body()) == 0 {
		return nil, nil, apiError(fiber.StatusBadRequest, "bad_request", "request body is required")
	}
	if err := pipeline.Decode(c.Body(), in); err != nil {
		var ve *pipeline.ValidationError
		if !errors.As(err, &ve) {
			return nil, nil, decodeError(err)
		}
		// encoding/json skips what does not fit and decodes the rest.
		*in = pipelineInput{}
		_ = json.Unmarshal(c.Body(), in)
		decoded = ve
	}
	if rp := in.FailoverRetryPolicy; rp != nil && *rp == (pipeline.RetryPolicy{}) {
		var raw struct {
			P json.RawMessage `json:"failover_retry_policy"`
		}
		_ = json.Unmarshal(c.Body(), &raw)
		in.defaultFailover = bytes.Equal(bytes.Join(bytes.Fields(raw.P), nil), []byte("{}"))
	}
	if rev := in.Revision; rev != nil && *rev < 1 {
		decoded = pipeline.Merge(decoded, &pipeline.ValidationError{Fields: []pipeline.FieldError{{Field: "revision", Message: "must be a whole number ≥ 1 (the revision you are changing)"}}})
	}
	if err := readOnlyKeys(in); err != nil {
		decoded = pipeline.Merge(decoded, err)
	}
	return in, decoded, nil
}

// check normalizes p and lists every problem of the body it came from:
// decoded's and what Validate finds.
func (s *Server) check(p *pipeline.Pipeline, decoded error) error {
	p.Normalize()
	return pipeline.Merge(decoded, p.Validate(s.o.Env, s.o.Limits, s.o.Targets))
}

func (s *Server) put(c *fiber.Ctx, p *pipeline.Pipeline, base int64) error {
	return registryError(s.o.Registry.Put(c.UserContext(), p, base))
}

func registryError(err error) error {
	switch {
	case errors.Is(err, registry.ErrNotReady):
		return apiError(fiber.StatusServiceUnavailable, "unavailable", err.Error())
	case errors.Is(err, registry.ErrUnavailable):
		return apiError(fiber.StatusServiceUnavailable, "unavailable", "Kafka did not take the write in time; it may or may not have been applied: GET the pipeline and retry")
	}
	return err
}

func (s *Server) createPipeline(c *fiber.Ctx) error {
	in, decoded, err := s.decodePipeline(c)
	if err != nil {
		return err
	}
	now := s.o.Now().UTC().Truncate(time.Second)
	p := &pipeline.Pipeline{ID: pipeline.NewID("pipe_"), CreatedAt: now, UpdatedAt: now, Revision: 1}
	in.apply(p, nil)
	statusChange(p, "", now)
	if err := s.check(p, decoded); err != nil {
		return err
	}
	if err := s.put(c, p, 0); err != nil {
		return err
	}
	setETag(c, p.Revision)
	return ok(c, fiber.StatusCreated, reveal(s.detail(c, p, false), in.generated))
}

// maxWriteAttempts bounds how often a write without a precondition is
// re-applied after losing a race with another replica (this replica's own
// writes to one pipeline are serialised and never race each other).
const maxWriteAttempts = 8

// writePipeline runs a read-modify-write of one pipeline under its lock:
// change gets the current state and writes the next one. A stale If-Match (or
// body revision) is 412; a write that loses a race with another replica is
// re-applied on the winner's state, unless the client named the revision it
// meant to change (then 412), or the pipeline is gone (404).
func (s *Server) writePipeline(c *fiber.Ctx, bodyRevision *int64, change func(cur *pipeline.Compiled) error) error {
	id := c.Params("id")
	defer s.pipeLocks.lock(id)()
	s.syncRegistry(c)
	for attempt := 1; ; attempt++ {
		cur, found := s.o.Registry.Get(id)
		if !found {
			return apiError(fiber.StatusNotFound, "not_found", "pipeline "+id+" not found")
		}
		if err := checkPreconditions(c, bodyRevision, cur.Revision); err != nil {
			return err
		}
		err := change(cur)
		if !errors.Is(err, registry.ErrConflict) {
			return err
		}
		if attempt == maxWriteAttempts {
			return apiError(fiber.StatusConflict, "conflict", "pipeline "+id+" is being changed concurrently; retry")
		}
	}
}

func (s *Server) updatePipeline(c *fiber.Ctx) error {
	if _, found := s.lookup(c, c.Params("id")); !found {
		return apiError(fiber.StatusNotFound, "not_found", "pipeline "+c.Params("id")+" not found")
	}
	in, decoded, err := s.decodePipeline(c)
	if err != nil {
		return err
	}
	rev := in.Revision
	if rev != nil && *rev < 1 {
		rev = nil // a 400 (decoded), not a 412
	}
	return s.writePipeline(c, rev, func(cur *pipeline.Compiled) error {
		p := *cur.Pipeline
		p.Steps = append([]pipeline.Step(nil), cur.Pipeline.Steps...)
		in.apply(&p, cur.Pipeline)
		statusChange(&p, cur.Status, s.o.Now().UTC().Truncate(time.Millisecond))
		if err := s.check(&p, decoded); err != nil {
			return err
		}
		now := s.o.Now().UTC().Truncate(time.Second)
		pipeline.RotateKeys(&p, cur.Pipeline, now)
		if sameContent(&p, cur.Pipeline) {
			// Nothing changes: no new revision, so the client's ETag stays good.
			setETag(c, cur.Revision)
			return ok(c, fiber.StatusOK, s.detail(c, cur.Pipeline, false))
		}
		p.UpdatedAt = now
		p.Revision = cur.Revision + 1
		if err := s.put(c, &p, cur.Revision); err != nil {
			return err
		}
		if cur.Status == pipeline.StatusDisabled && p.Status == pipeline.StatusActive {
			s.emitEnabled(c, &p)
		}
		setETag(c, p.Revision)
		return ok(c, fiber.StatusOK, reveal(s.detail(c, &p, false), in.generated))
	})
}

// statusChange gives p, whose status the body may have changed from from,
// the fields that go with the change (pipeline.SetStatus).
func statusChange(p *pipeline.Pipeline, from string, now time.Time) {
	to := p.Status
	if to == "" && from == "" {
		to = pipeline.StatusActive // create's default (Normalize)
	}
	p.Status = from
	p.SetStatus(to, now)
}

// emitEnabled produces the operator event of a re-enable. The write stands
// whether or not the event is produced (Emit logs and counts a failure).
func (s *Server) emitEnabled(c *fiber.Ctx, p *pipeline.Pipeline) {
	if s.o.Emitter == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.UserContext()), 10*time.Second)
	defer cancel()
	_ = s.o.Emitter.Emit(ctx, opevents.Event{ID: opevents.ID(opevents.TypeEnabled, p.ID, p.Revision), Type: opevents.TypeEnabled,
		PipelineID: p.ID, PipelineName: p.Name, At: *p.ReenabledAt, Revision: p.Revision,
		Message: "set active again by an operator; the auto-disable failure streak restarts now"})
}

// sameContent reports whether a and b differ only in what a save stamps.
func sameContent(a, b *pipeline.Pipeline) bool {
	x, y := *a, *b
	x.UpdatedAt, x.Revision = y.UpdatedAt, y.Revision
	ax, err1 := json.Marshal(&x)
	by, err2 := json.Marshal(&y)
	return err1 == nil && err2 == nil && bytes.Equal(ax, by)
}

// deleteInput is DELETE's optional body: the revision being deleted.
type deleteInput struct {
	Revision *int64 `json:"revision"`
}

func (s *Server) deletePipeline(c *fiber.Ctx) error {
	id := c.Params("id")
	var in deleteInput
	if len(c.Body()) > 0 {
		if err := pipeline.Decode(c.Body(), &in); err != nil {
			return decodeError(err)
		}
		if in.Revision != nil && *in.Revision < 1 {
			return &pipeline.ValidationError{Fields: []pipeline.FieldError{{Field: "revision", Message: "must be a whole number ≥ 1 (the revision you are deleting)"}}}
		}
	}
	return s.writePipeline(c, in.Revision, func(cur *pipeline.Compiled) error {
		if err := registryError(s.o.Registry.Delete(c.UserContext(), id, cur.Revision)); err != nil {
			return err
		}
		return ok(c, fiber.StatusOK, fiber.Map{"id": id, "deleted": true})
	})
}

func (s *Server) getPipeline(c *fiber.Ctx) error {
	q := query{c: c}
	r := s.pipelineRange(&q)
	if r.PipelineID != "" && r.PipelineID != c.Params("id") {
		q.fail("pipeline_id", "must be absent or the path's pipeline id")
	}
	if err := q.err(); err != nil {
		return err
	}
	cur, found := s.lookup(c, c.Params("id"))
	if !found {
		return apiError(fiber.StatusNotFound, "not_found", "pipeline "+c.Params("id")+" not found")
	}
	setETag(c, cur.Revision)
	return ok(c, fiber.StatusOK, s.detailOver(c, cur.Pipeline, true, r))
}

// lookup returns a pipeline as it stands on every replica: the registry
// first applies whatever any replica wrote before this request.
func (s *Server) lookup(c *fiber.Ctx, id string) (*pipeline.Compiled, bool) {
	s.syncRegistry(c)
	return s.o.Registry.Get(id)
}

// syncRegistry catches the registry up with the topic (bounded: when Kafka
// is slow the request goes on with this replica's view).
func (s *Server) syncRegistry(c *fiber.Ctx) {
	ctx, cancel := context.WithTimeout(c.UserContext(), 5*time.Second)
	defer cancel()
	if err := s.o.Registry.Sync(ctx); err != nil {
		s.o.Log.Warn("pipeline registry not caught up; answering from this replica's view", "err", err)
	}
}

func setETag(c *fiber.Ctx, revision int64) {
	c.Set(fiber.HeaderETag, etag(revision))
}

func etag(revision int64) string { return `"` + strconv.FormatInt(revision, 10) + `"` }

// checkPreconditions answers 412 when If-Match or the body's revision names
// another revision than the current one (RFC 9110 §13.1.1: "*" matches any
// existing pipeline; weak tags never match).
func checkPreconditions(c *fiber.Ctx, bodyRevision *int64, current int64) error {
	stale := func(what string) error {
		c.Set(fiber.HeaderETag, etag(current))
		return &Error{Status: fiber.StatusPreconditionFailed, Code: "precondition_failed",
			Message: what + " does not match the pipeline's current revision " + strconv.FormatInt(current, 10) + "; GET it again and reapply your change"}
	}
	if h := ifMatchHeader(c); h != "" && !ifMatch(h, current) {
		return stale("If-Match")
	}
	if bodyRevision != nil && *bodyRevision != current {
		return stale("revision " + strconv.FormatInt(*bodyRevision, 10))
	}
	return nil
}

// ifMatchHeader is every If-Match line of the request, as one list.
func ifMatchHeader(c *fiber.Ctx) string {
	var lines []string
	for _, v := range c.Request().Header.PeekAll(fiber.HeaderIfMatch) {
		lines = append(lines, string(v))
	}
	return strings.Join(lines, ",")
}

func ifMatch(header string, current int64) bool {
	want := etag(current)
	for tag := range strings.SplitSeq(header, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" || tag == want {
			return true
		}
	}
	return false
}

// keyedLocks serialises work per key with a fixed set of mutexes.
type keyedLocks [64]sync.Mutex

// lock locks key's mutex and returns its unlock.
func (l *keyedLocks) lock(key string) func() {
	h := fnv.New32a()
	h.Write([]byte(key))
	m := &l[h.Sum32()%uint32(len(l))]
	m.Lock()
	return m.Unlock
}

type stepView struct {
	pipeline.Step
	Stats *analytics.StepStats `json:"stats,omitempty"`
}

type pipelineDetail struct {
	ID            string                   `json:"id"`
	Name          string                   `json:"name"`
	Description   string                   `json:"description"`
	TriggerType   string                   `json:"trigger_type"`
	Status        string                   `json:"status"`
	Steps         []stepView               `json:"steps"`
	FailoverURL   string                   `json:"failover_url,omitempty"`
	Ordering      string                   `json:"ordering"`
	Stats         *analytics.PipelineStats `json:"stats,omitempty"`
	LastTriggered *time.Time               `json:"last_triggered"`
	CreatedAt     time.Time                `json:"created_at"`
	UpdatedAt     time.Time                `json:"updated_at"`
	Revision      int64                    `json:"revision"`

	// As saved; absent when not set.
	FailoverRetryPolicy     *pipeline.RetryPolicy `json:"failover_retry_policy,omitempty"`
	Filter                  json.RawMessage       `json:"filter,omitempty"`
	AutoDisableAfterSeconds *int                  `json:"auto_disable_after_seconds,omitempty"`
	DisabledReason          string                `json:"disabled_reason,omitempty"`
	DisabledAt              *time.Time            `json:"disabled_at,omitempty"`
	ReenabledAt             *time.Time            `json:"reenabled_at,omitempty"`
	RateLimitPerSecond      *float64              `json:"rate_limit_per_second,omitempty"`
}

// orderingOf is a pipeline's ordering as GET shows it ("none" for one
// stored before the field existed).
func orderingOf(p *pipeline.Pipeline) string {
	if p.Ordering == "" {
		return pipeline.OrderingNone
	}
	return p.Ordering
}

// detail is the spec's "Get Webhook Details" shape; stats are read from
// ClickHouse when withStats (a store outage degrades to no stats, not an error).
func (s *Server) detail(c *fiber.Ctx, p *pipeline.Pipeline, withStats bool) *pipelineDetail {
	return s.detailOver(c, p, withStats, analytics.Range{})
}

// pipelineRange reads the stats range of the pipeline list and detail: from
// and to (default: the last 24 hours) and pipeline_id.
func (s *Server) pipelineRange(q *query) analytics.Range {
	now := s.o.Now().UTC()
	from, to := q.timeRange(now.Add(-24*time.Hour), now)
	return analytics.Range{From: from, To: to, PipelineID: q.text("pipeline_id")}
}

// detailOver is detail with stats over r.
func (s *Server) detailOver(c *fiber.Ctx, p *pipeline.Pipeline, withStats bool, rng analytics.Range) *pipelineDetail {
	r := p.Redacted()
	d := &pipelineDetail{ID: r.ID, Name: r.Name, Description: r.Description, TriggerType: r.TriggerType, Status: r.Status,
		FailoverURL: r.FailoverURL, FailoverRetryPolicy: r.FailoverRetryPolicy, Filter: r.Filter, Ordering: orderingOf(r), CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, Revision: r.Revision}
	d.AutoDisableAfterSeconds, d.DisabledReason, d.DisabledAt, d.ReenabledAt = r.AutoDisableAfterSeconds, r.DisabledReason, r.DisabledAt, r.ReenabledAt
	d.RateLimitPerSecond = r.RateLimitPerSecond
	var steps map[string]*analytics.StepStats
	if withStats && s.o.Logs != nil {
		if st, ss, err := s.o.Logs.PipelineDetailStats(c.UserContext(), p.ID, rng); err == nil {
			d.Stats, steps = st, ss
			d.LastTriggered = d.Stats.LastTriggered
		} else {
			s.o.Log.Warn("pipeline stats unavailable", "err", err)
		}
	}
	now := s.o.Now()
	for _, st := range r.Steps {
		if st.HasPreviousSigningKey && (st.PreviousSigningKeyExpiresAt == nil || !now.Before(*st.PreviousSigningKeyExpiresAt)) {
			// Expired: it signs no more (the next write drops it).
			st.HasPreviousSigningKey, st.PreviousSigningKeyExpiresAt = false, nil
		}
		v := stepView{Step: st}
		if withStats {
			v.Stats = steps[st.ID]
			if v.Stats == nil {
				v.Stats = &analytics.StepStats{}
			}
		}
		d.Steps = append(d.Steps, v)
	}
	return d
}

type pipelineSummary struct {
	ID            string       `json:"id"`
	Name          string       `json:"name"`
	Description   string       `json:"description"`
	TriggerType   string       `json:"trigger_type"`
	Status        string       `json:"status"`
	StepsCount    int          `json:"steps_count"`
	LastTriggered *time.Time   `json:"last_triggered"`
	Stats         summaryStats `json:"stats"`
	CreatedAt     time.Time    `json:"created_at"`
	UpdatedAt     time.Time    `json:"updated_at"`
}

type summaryStats struct {
	TotalExecutions int64               `json:"total_executions"`
	Successful      int64               `json:"successful"`
	Failed          int64               `json:"failed"`
	SuccessRate     float64             `json:"success_rate"`
	LatencyMS       analytics.Quantiles `json:"latency_ms"`
	TimeToSuccessMS analytics.Quantiles `json:"time_to_success_ms"`
}

type pagination struct {
	Page  int   `json:"page"`
	Limit int   `json:"limit"`
	Total int64 `json:"total"`
}

func (s *Server) listPipelines(c *fiber.Ctx) error {
	q := query{c: c}
	page, limit := q.page()
	status := q.oneOf("status", pipeline.StatusActive, pipeline.StatusPaused, pipeline.StatusDisabled)
	tt := q.triggerType()
	r := s.pipelineRange(&q)
	if err := q.err(); err != nil {
		return err
	}
	s.syncRegistry(c)
	var matched []*pipeline.Compiled
	for _, p := range s.o.Registry.List() {
		if (status == "" || p.Status == status) && (tt == "" || p.TriggerType == tt) && (r.PipelineID == "" || p.ID == r.PipelineID) {
			matched = append(matched, p)
		}
	}
	total := len(matched)
	from := min((page-1)*limit, total)
	to := min(from+limit, total)
	pageItems := matched[from:to]
	ids := make([]string, len(pageItems))
	for i, p := range pageItems {
		ids[i] = p.ID
	}
	stats := map[string]*analytics.PipelineStats{}
	if s.o.Logs != nil && len(ids) > 0 {
		if st, err := s.o.Logs.PipelineStats(c.UserContext(), ids, r); err == nil {
			stats = st
		} else {
			s.o.Log.Warn("pipeline stats unavailable", "err", err)
		}
	}
	out := make([]pipelineSummary, 0, len(pageItems))
	for _, p := range pageItems {
		sum := pipelineSummary{ID: p.ID, Name: p.Name, Description: p.Description, TriggerType: p.TriggerType, Status: p.Status,
			StepsCount: len(p.Steps), CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
		if st := stats[p.ID]; st != nil {
			sum.Stats = summaryStats{TotalExecutions: st.TotalExecutions, Successful: st.Successful, Failed: st.Failed, SuccessRate: st.SuccessRate,
				LatencyMS: st.LatencyMS, TimeToSuccessMS: st.TimeToSuccessMS}
			sum.LastTriggered = st.LastTriggered
		}
		out = append(out, sum)
	}
	return ok(c, fiber.StatusOK, fiber.Map{"pipelines": out, "pagination": pagination{Page: page, Limit: limit, Total: int64(total)}})
}
