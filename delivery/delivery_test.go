package delivery

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Task records come from Kafka: anything can be in them. Decoding never
// panics and accepts only tasks that name their delivery.
func FuzzDecodeTask(f *testing.F) {
	good := (&Task{DeliveryID: "wh_del_1", ExecutionID: "exec_1", PipelineID: "pipe_1", Event: []byte(`{"type":"click.tracked","data":{"id":"c"}}`),
		StepOrder: 1, Attempt: 2, NotBefore: time.Unix(1700000000, 0), Tiers: []string{"5s"}}).Record("t").Value
	ticket := (&Task{DeliveryID: "wh_del_2", ExecutionID: "exec_2", PipelineID: "pipe_1", NotBefore: time.Unix(1700000000, 0),
		RateAt: time.Unix(1700000001, 0), RateLimit: 20}).Record("t").Value
	for _, s := range []string{string(good), string(ticket), `{"delivery_id":"x","execution_id":"e","pipeline_id":"p","rate_limit":-1}`, `{}`, `{"delivery_id":"x","pipeline_id":"p"}`, `null`, `[]`, `{"event":5}`, "\x00\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tk, err := DecodeTask(b)
		if err != nil {
			return
		}
		if tk.DeliveryID == "" || tk.PipelineID == "" || tk.ExecutionID == "" {
			t.Fatalf("accepted a task without ids: %q", b)
		}
		_, _ = tk.Decoded() // may fail; must not panic
		c := tk.Clone()
		c.AddTier("1s")
		if len(c.Tiers) > maxTiers {
			t.Fatalf("%d tiers", len(c.Tiers))
		}
		if again, err := DecodeTask(tk.Record("t").Value); err != nil || again.DeliveryID != tk.DeliveryID {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func TestAddTierKeepsTheLastFew(t *testing.T) {
	var tk Task
	for i := range 40 {
		tk.AddTier(time.Duration(i).String())
	}
	if len(tk.Tiers) != maxTiers || tk.Tiers[maxTiers-1] != time.Duration(39).String() {
		t.Fatalf("%v", tk.Tiers)
	}
}

func TestResumableStartsTheStepAfresh(t *testing.T) {
	tk := &Task{Attempt: 4, Failover: true, Tiers: []string{"5s"}, Dead: 2, DeferredSince: time.Now(), Steps: map[string]any{"1": 1}}
	r := tk.Resumable("HTTP 500")
	if r.Attempt != 0 || r.Failover || r.Tiers != nil || r.Dead != 0 || !r.DeferredSince.IsZero() || r.LastError != "HTTP 500" || r.Steps["1"] != 1 {
		t.Fatalf("%+v", r)
	}
	if tk.Attempt != 4 || !tk.Failover {
		t.Fatal("Resumable changed its task")
	}
}

// A task's records are keyed by its delivery id (one partition for all of a
// delivery's tasks), except while it waits with a rate-limit ticket: each
// look is keyed apart, so the looks meet every replica's partitions.
func TestTaskRecordKeys(t *testing.T) {
	tk := &Task{DeliveryID: "wh_del_1", ExecutionID: "exec_1", PipelineID: "pipe_1", NotBefore: time.Unix(1700000000, 0)}
	if k := string(tk.Record("t").Key); k != "wh_del_1" {
		t.Fatalf("key %q", k)
	}
	tk.RateAt, tk.RateLimit = time.Unix(1700000100, 0), 5
	first := string(tk.Record("t").Key)
	tk.NotBefore = tk.NotBefore.Add(time.Second)
	second := string(tk.Record("t").Key)
	if first == second || !strings.HasPrefix(first, "wh_del_1@") || !strings.HasPrefix(second, "wh_del_1@") {
		t.Fatalf("keys of two looks: %q, %q", first, second)
	}
	if k := string(tk.Resumable("x").Record("t").Key); k != "wh_del_1" {
		t.Fatalf("a resumable task keeps its ticket: key %q", k)
	}
}

// The hand-written encoders of the executions topic's records write what
// encoding/json writes.
func FuzzRecordJSON(f *testing.F) {
	f.Add("attempt", "at-1", "p1", "<a&b>", "é\u2028\x00\xff", int64(1732708800123456789), int64(-1), 3, true)
	f.Add("", "", "", "", "", int64(0), int64(0), 0, false)
	f.Fuzz(func(t *testing.T, kind, id, name, body, errText string, ns, seq int64, n int, flag bool) {
		at := time.Unix(0, ns).In(time.FixedZone("x", n%50000))
		a := Attempt{V: n, Kind: kind, AttemptID: id, ExecutionID: id, DeliveryID: name, PipelineID: id, PipelineName: name, TriggerType: kind,
			TriggerID: id, EventID: body, StepID: id, StepName: name, StepOrder: n, Attempt: -n, Failover: flag, Tier: kind, Status: kind,
			HTTPStatus: n, LatencyMS: seq, Error: errText, RequestURL: name, RequestBody: body, ResponseBody: errText, StartedAt: at}
		x := Execution{V: n, Kind: kind, ExecutionID: id, DeliveryID: name, PipelineID: id, PipelineName: name, TriggerType: kind, TriggerID: id,
			EventID: body, Status: errText, StartedAt: at, Seq: seq, FirstRetry: flag, Retried: !flag}
		if n%3 == 0 {
			x.CompletedAt = at.Add(time.Duration(seq))
		}
		for _, v := range []interface {
			AppendJSON([]byte) ([]byte, bool)
		}{&a, &x} {
			want, err := json.Marshal(v)
			got, ok := v.AppendJSON(nil)
			if !ok {
				if err == nil {
					t.Fatalf("%T: refused what encoding/json writes: %s", v, want)
				}
				continue
			}
			if err != nil || string(got) != string(want) {
				t.Fatalf("%T:\n got %s\nwant %s (%v)", v, got, want, err)
			}
		}
	})
}

// A record without escapes fits the size hint: its slice is not grown.
func TestRecordJSONFitsItsSizeHint(t *testing.T) {
	at := time.Date(2026, 11, 27, 18, 16, 12, 123456789, time.UTC)
	a := &Attempt{V: Version, Kind: KindAttempt, AttemptID: "wh_att_0123456789abcdef01234567", ExecutionID: "wh_exec_0123456789abcdef01234567",
		DeliveryID: "wh_del_0123456789abcdef01234567", PipelineID: "wh_pipe_0123456789abcdef", PipelineName: "bench-0", TriggerType: "click",
		TriggerID: "c123456", EventID: "b-123456", StepID: "wh_step_0123456789abcdef", StepName: "step 1", StepOrder: 1, Attempt: 12, Tier: "primary",
		Status: AttemptFailed, HTTPStatus: 503, LatencyMS: 30000, Error: "HTTP 503", RequestURL: "http://127.0.0.1:40000/r/0",
		RequestBody: `{"seq":123456,"event":"click"}`, ResponseBody: `{"received":true}`, StartedAt: at}
	x := &Execution{V: Version, Kind: KindExecution, ExecutionID: a.ExecutionID, DeliveryID: a.DeliveryID, PipelineID: a.PipelineID,
		PipelineName: a.PipelineName, TriggerType: "click", TriggerID: "c123456", EventID: "b-123456", Status: ExecRetrying,
		StartedAt: at, CompletedAt: at, Seq: at.UnixNano(), FirstRetry: true, Retried: true}
	for _, v := range []interface {
		AppendJSON([]byte) ([]byte, bool)
		JSONSizeHint() int
	}{a, x} {
		b, _ := v.AppendJSON(make([]byte, 0, v.JSONSizeHint()))
		if cap(b) != v.JSONSizeHint() || len(b) < v.JSONSizeHint()*3/4 {
			t.Errorf("%T: %d bytes, hint %d, grown to %d", v, len(b), v.JSONSizeHint(), cap(b))
		}
	}
}

// Ids are stored and compared across versions (a replay after an upgrade
// must carry the delivery's id): the form is the first 24 hex digits of
// SHA-256 over the parts, each followed by a zero byte.
func TestHashIDIsStable(t *testing.T) {
	for _, c := range []struct {
		prefix string
		parts  []string
		want   string
	}{
		{"wh_del_", []string{"id:evt_1", "pipe_1"}, "wh_del_"},
		{"att_", []string{"exec_x", "1", "0", "false"}, "att_"},
		{"dlq_", nil, "dlq_"},
		{"exec_", []string{strings.Repeat("long part ", 60), "1"}, "exec_"}, // past the stack buffer
	} {
		h := sha256.New()
		for _, p := range c.parts {
			h.Write([]byte(p))
			h.Write([]byte{0})
		}
		want := c.want + hex.EncodeToString(h.Sum(nil))[:24]
		if got := hashID(c.prefix, c.parts...); got != want {
			t.Errorf("hashID(%q, %q) = %q, want %q", c.prefix, c.parts, got, want)
		}
	}
	// A known value, so the reference above cannot drift with the code.
	if got, want := ID("id:evt_1", "pipe_1"), "wh_del_1cb523753353f05c0c7e07cb"; got != want {
		t.Errorf("ID(id:evt_1, pipe_1) = %s, want %s", got, want)
	}
}
