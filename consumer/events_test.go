package consumer

import (
	"context"
	"log/slog"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/delivery"
	"github.com/afftok/webhookd/metrics"
	"github.com/afftok/webhookd/pipeline"
)

type pipes []*pipeline.Compiled

func (p pipes) ForTrigger(string) []*pipeline.Compiled { return p }

// nopRunner is an engine that is never asked: Prepare only builds jobs.
type nopRunner struct{}

func (nopRunner) Run(context.Context, *kgo.Client, *delivery.Task) error { return nil }
func (nopRunner) Unreadable(context.Context, *kgo.Client, *kgo.Record, string, error) error {
	return nil
}

func compiled(t testing.TB, id, filter string) *pipeline.Compiled {
	t.Helper()
	p := &pipeline.Pipeline{ID: id, Name: id, TriggerType: "conversion", Steps: []pipeline.Step{{Order: 1, URL: "https://rcv.example/" + id}}}
	if filter != "" {
		p.Filter = []byte(filter)
	}
	p.Normalize()
	if err := p.Validate(nil, pipeline.DefaultRetryLimits, nil); err != nil {
		t.Fatal(err)
	}
	c, err := pipeline.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const conversion = `{"id":"evt_f1","trigger_type":"conversion","trigger_id":"conv_f1","data":{"conversion":{"id":"conv_f1","amount":49.99,"status":"approved"},"click":{"country":"US"}}}`

func testLog(testing.TB) *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestFilterDecidesWhichPipelinesGetADelivery: a pipeline whose filter
// rejects the event gets no job (so no delivery and no execution log) and
// is counted as filtered; the others get theirs.
func TestFilterDecidesWhichPipelinesGetADelivery(t *testing.T) {
	h := &EventHandler{Engine: nopRunner{}, Log: testLog(t), Pipes: pipes{
		compiled(t, "pipe_all", ""),
		compiled(t, "pipe_big", `{"conversion.amount": {"$gte": 10}}`),
		compiled(t, "pipe_small", `{"conversion.amount": {"$lt": 10}}`),
		compiled(t, "pipe_ca", `{"$or": [{"click.country": "CA"}, {"conversion.status": "rejected"}]}`),
	}}
	before := func(id string) float64 {
		var m dto.Metric
		if err := metrics.DeliveriesFiltered.WithLabelValues(id).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	small, ca, big := before("pipe_small"), before("pipe_ca"), before("pipe_big")
	w := h.Prepare(&kgo.Record{Topic: "afftok.conversions", Value: []byte(conversion)})
	if len(w.Jobs) != 2 {
		t.Fatalf("%d jobs, want 2 (pipe_all, pipe_big)", len(w.Jobs))
	}
	if before("pipe_small") != small+1 || before("pipe_ca") != ca+1 || before("pipe_big") != big {
		t.Fatalf("filtered counts: small %v→%v, ca %v→%v, big %v→%v", small, before("pipe_small"), ca, before("pipe_ca"), big, before("pipe_big"))
	}
}

// BenchmarkFanOut is one event's fan-out (decode, then a task per
// pipeline) to one pipeline, without a filter and with a typical
// three-clause one that passes: the filter's cost beside the rest.
func BenchmarkFanOut(b *testing.B) {
	rec := &kgo.Record{Topic: "afftok.conversions", Value: []byte(conversion)}
	for _, c := range []struct{ name, filter string }{
		{"no_filter", ""},
		{"filter_3_clauses", `{"conversion.amount": {"$gte": 10}, "click.country": {"$in": ["US", "CA"]}, "conversion.status": {"$neq": "rejected"}}`},
	} {
		h := &EventHandler{Engine: nopRunner{}, Log: testLog(b), Pipes: pipes{compiled(b, "pipe_b", c.filter)}}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if w := h.Prepare(rec); len(w.Jobs) != 1 {
					b.Fatal("filtered")
				}
			}
		})
	}
}
