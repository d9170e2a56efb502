package delivery

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// The executions topic's records are encoded on every delivery; these
// encoders write exactly what encoding/json writes for them (a fuzz test
// compares the two), without its reflection. false: a value they leave to
// encoding/json (a time outside years 0–9999, which it refuses).

// JSONSizeHint is about the length of a's encoding (exact when no string
// needs an escape): records wait in the producer's buffers, so their slices
// are sized to fit rather than grown by doubling.
func (a *Attempt) JSONSizeHint() int {
	return 400 + 3*20 + 35 + len(a.Kind) + len(a.AttemptID) + len(a.ExecutionID) + len(a.DeliveryID) + len(a.PipelineID) + len(a.PipelineName) +
		len(a.TriggerType) + len(a.TriggerID) + len(a.EventID) + len(a.StepID) + len(a.StepName) + len(a.Tier) + len(a.Status) +
		len(a.Error) + len(a.RequestURL) + len(a.RequestBody) + len(a.ResponseBody)
}

// JSONSizeHint is about the length of x's encoding (see Attempt's).
func (x *Execution) JSONSizeHint() int {
	return 250 + 2*20 + 2*35 + len(x.Kind) + len(x.ExecutionID) + len(x.DeliveryID) + len(x.PipelineID) + len(x.PipelineName) +
		len(x.TriggerType) + len(x.TriggerID) + len(x.EventID) + len(x.Status)
}

// AppendJSON appends a's JSON encoding to b.
func (a *Attempt) AppendJSON(b []byte) ([]byte, bool) {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(a.V), 10)
	b = appendStringField(b, "kind", a.Kind)
	b = appendStringField(b, "attempt_id", a.AttemptID)
	b = appendStringField(b, "execution_id", a.ExecutionID)
	b = appendStringField(b, "delivery_id", a.DeliveryID)
	b = appendStringField(b, "pipeline_id", a.PipelineID)
	b = appendStringField(b, "pipeline_name", a.PipelineName)
	b = appendStringField(b, "trigger_type", a.TriggerType)
	b = appendStringField(b, "trigger_id", a.TriggerID)
	b = appendStringField(b, "event_id", a.EventID)
	b = appendStringField(b, "step_id", a.StepID)
	b = appendStringField(b, "step_name", a.StepName)
	b = append(b, `,"step_order":`...)
	b = strconv.AppendInt(b, int64(a.StepOrder), 10)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(a.Attempt), 10)
	b = append(b, `,"failover":`...)
	b = strconv.AppendBool(b, a.Failover)
	b = appendStringField(b, "tier", a.Tier)
	b = appendStringField(b, "status", a.Status)
	b = append(b, `,"http_status":`...)
	b = strconv.AppendInt(b, int64(a.HTTPStatus), 10)
	b = append(b, `,"latency_ms":`...)
	b = strconv.AppendInt(b, a.LatencyMS, 10)
	b = appendStringField(b, "error", a.Error)
	b = appendStringField(b, "request_url", a.RequestURL)
	b = appendStringField(b, "request_body", a.RequestBody)
	b = appendStringField(b, "response_body", a.ResponseBody)
	b, ok := appendTimeField(b, "started_at", a.StartedAt)
	return append(b, '}'), ok
}

// AppendJSON appends x's JSON encoding to b.
func (x *Execution) AppendJSON(b []byte) ([]byte, bool) {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(x.V), 10)
	b = appendStringField(b, "kind", x.Kind)
	b = appendStringField(b, "execution_id", x.ExecutionID)
	b = appendStringField(b, "delivery_id", x.DeliveryID)
	b = appendStringField(b, "pipeline_id", x.PipelineID)
	b = appendStringField(b, "pipeline_name", x.PipelineName)
	b = appendStringField(b, "trigger_type", x.TriggerType)
	b = appendStringField(b, "trigger_id", x.TriggerID)
	b = appendStringField(b, "event_id", x.EventID)
	b = appendStringField(b, "status", x.Status)
	b, ok := appendTimeField(b, "started_at", x.StartedAt)
	if !x.CompletedAt.IsZero() {
		var ok2 bool
		b, ok2 = appendTimeField(b, "completed_at", x.CompletedAt)
		ok = ok && ok2
	}
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, x.Seq, 10)
	if x.FirstRetry {
		b = append(b, `,"first_retry":true`...)
	}
	if x.Retried {
		b = append(b, `,"retried":true`...)
	}
	return append(b, '}'), ok
}

func appendStringField(b []byte, name, s string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendJSONString(b, s)
}

// appendJSONString writes s byte for byte as encoding/json does (its HTML
// escaping of <, > and & included, invalid UTF-8 as \ufffd, U+2028 and
// U+2029 escaped; FuzzRecordJSON compares the two): a request body is JSON
// full of quotes, and encoding/json's reflection cost more than the copy.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default: // other control bytes, and <, > and & as encoding/json escapes them
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

func appendTimeField(b []byte, name string, t time.Time) ([]byte, bool) {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':', '"')
	if y := t.Year(); y < 0 || y > 9999 {
		return b, false
	}
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), true
}
