package dispatcher

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/pipeline"
)

// Trace is one step of a test run, as the admin API shows it.
type Trace struct {
	StepName   string        `json:"step_name"`
	StepOrder  int           `json:"step_order"`
	Status     string        `json:"status"`
	HTTPStatus int           `json:"http_status"`
	LatencyMS  int64         `json:"latency_ms"`
	Error      string        `json:"error,omitempty"`
	Request    TraceRequest  `json:"request"`
	Response   TraceResponse `json:"response"`
}

// TraceRequest is the request as sent, with secrets redacted.
type TraceRequest struct {
	URL     string            `json:"url"`
	Method  string            `json:"method"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body"`
}

// TraceResponse is the receiver's answer (body bounded, secrets redacted).
type TraceResponse struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

// Trial runs a pipeline's steps once each, for real (same SSRF guard, same
// rendering, signing and redaction as deliveries), without retries, without
// the per-host limit and without writing anything to Kafka: the admin API's
// test endpoints. It honours stop_on_failure and step chaining.
func (d *Dispatcher) Trial(ctx context.Context, p *pipeline.Compiled, t *delivery.Task) (string, []Trace) {
	status := delivery.ExecCompleted
	traces := []Trace{}
	ev, err := t.Decoded()
	if err != nil {
		return delivery.ExecFailed, traces
	}
	if t.Steps == nil {
		t.Steps = map[string]any{}
	}
	for i := range p.Steps {
		s := &p.Steps[i]
		tr := Trace{StepName: s.Name, StepOrder: s.Order, Status: delivery.AttemptFailed, Request: TraceRequest{Body: json.RawMessage("null")}}
		req, err := d.Build(p, s, t, ev, 0, false)
		var resp *Response
		var body []byte
		if err != nil {
			resp = &Response{Class: Permanent, Err: err.Error()}
		} else {
			tr.Request = TraceRequest{URL: req.Secrets.Redact(req.URL), Method: req.Method, Headers: req.RedactedHeader(), Body: json.RawMessage("null")}
			if b := req.Secrets.RedactBytes(req.Body); len(b) > 0 {
				if !json.Valid(b) {
					b, _ = json.Marshal(string(b))
				}
				tr.Request.Body = b
			}
			resp = d.do(ctx, req)
			body = req.Secrets.RedactBytes(resp.Body)
		}
		tr.HTTPStatus, tr.LatencyMS, tr.Error = resp.Status, resp.Latency.Milliseconds(), resp.Err
		tr.Response = TraceResponse{Status: resp.Status, Body: truncate(body, d.o.LogBodyLimit)}
		if resp.Class == Success {
			tr.Status = delivery.AttemptSuccess
		}
		traces = append(traces, tr)
		var secrets *Secrets
		if req != nil {
			secrets = req.Secrets
		}
		// A failed step is chained too, as in a delivery (deadReply): status
		// 0 when there was no HTTP response.
		t.Steps[strconv.Itoa(s.Order)] = stepResult(resp.Status, body, resp.Header, secrets)
		if resp.Class == Success {
			continue
		}
		status = delivery.ExecFailed
		if s.StopOnFailure {
			break
		}
	}
	return status, traces
}
