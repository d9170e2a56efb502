package admin

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/afftok/webhookd/dlq"
	"github.com/afftok/webhookd/pipeline"
	"github.com/afftok/webhookd/registry"
)

// Faults a single webhookd cannot be made to show on demand, injected at the
// registry and DLQ boundaries: each still answers in the error model.

// racingRegistry loses every write to another replica.
type racingRegistry struct {
	onePipeline
	writes int
}

func (r *racingRegistry) Put(context.Context, *pipeline.Pipeline, int64) error {
	r.writes++
	return registry.ErrConflict
}

func (r *racingRegistry) Delete(context.Context, string, int64) error {
	r.writes++
	return registry.ErrConflict
}

// downRegistry's Kafka does not take writes.
type downRegistry struct{ onePipeline }

func (downRegistry) Put(context.Context, *pipeline.Pipeline, int64) error {
	return fmt.Errorf("%w: write pipeline: %w", registry.ErrUnavailable, context.DeadlineExceeded)
}

func (downRegistry) Delete(context.Context, string, int64) error {
	return fmt.Errorf("%w: write pipeline: broker gone", registry.ErrUnavailable)
}

// loadingRegistry has not loaded the pipelines topic yet.
type loadingRegistry struct{ onePipeline }

func (loadingRegistry) Put(context.Context, *pipeline.Pipeline, int64) error {
	return registry.ErrNotReady
}

func (loadingRegistry) Delete(context.Context, string, int64) error { return registry.ErrNotReady }

type oneDeadLetter struct{}

func (oneDeadLetter) DeadLetters(context.Context, dlq.Filter) ([]dlq.Record, int64, error) {
	return nil, 0, nil
}

func (oneDeadLetter) DeadLetter(_ context.Context, id string) (*dlq.Record, error) {
	return &dlq.Record{ID: id, State: dlq.StateDead, Reason: "unknown"}, nil
}

type refusingRedriver struct{ unusedRedriver }

func (refusingRedriver) Claim(string) bool { return true }
func (refusingRedriver) Release(string)    {}
func (refusingRedriver) Retry(context.Context, *dlq.Record) (string, error) {
	return "", fmt.Errorf("%w: it holds no delivery to resume", dlq.ErrNotRetryable)
}

func TestFaultsAnswerInTheErrorModel(t *testing.T) {
	base := decodeTestServer(t).o.Registry.(onePipeline)
	racing := &racingRegistry{onePipeline: base}
	cases := []struct {
		name         string
		o            Options
		method, path string
		body         string
		status       int
		code         string
	}{
		{"PUT losing every race", Options{Registry: racing}, "PUT", "/api/admin/webhooks/pipelines/p1", `{"name":"x"}`, 409, "conflict"},
		{"DELETE losing every race", Options{Registry: racing}, "DELETE", "/api/admin/webhooks/pipelines/p1", ``, 409, "conflict"},
		{"PUT before the registry loaded", Options{Registry: loadingRegistry{base}}, "PUT", "/api/admin/webhooks/pipelines/p1", `{"name":"x"}`, 503, "unavailable"},
		{"POST before the registry loaded", Options{Registry: loadingRegistry{base}}, "POST", "/api/admin/webhooks/pipelines",
			`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io"}]}`, 503, "unavailable"},
		{"PUT when Kafka is down", Options{Registry: downRegistry{base}}, "PUT", "/api/admin/webhooks/pipelines/p1", `{"name":"x"}`, 503, "unavailable"},
		{"DELETE when Kafka is down", Options{Registry: downRegistry{base}}, "DELETE", "/api/admin/webhooks/pipelines/p1", ``, 503, "unavailable"},
		{"retrying what cannot be retried", Options{Registry: base, DLQ: oneDeadLetter{}, Redriver: refusingRedriver{}}, "POST", "/api/admin/webhooks/dlq/d1/retry", ``, 422, "not_retryable"},
		{"DLQ without a store", Options{Registry: base}, "GET", "/api/admin/webhooks/dlq", ``, 503, "unavailable"},
	}
	for _, c := range cases {
		c.o.Token = testToken
		status, body := serve(t, New(c.o), c.method, c.path, c.body)
		if status != c.status || !strings.Contains(string(body), `"code":"`+c.code+`"`) || !strings.Contains(string(body), `"details":[]`) {
			t.Errorf("%s: %d %s, want %d %s", c.name, status, body, c.status, c.code)
		}
	}
	if racing.writes != 2*maxWriteAttempts {
		t.Errorf("%d writes tried, want %d per request (bounded)", racing.writes, maxWriteAttempts)
	}
}
