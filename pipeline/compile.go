package pipeline

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/afftok/webhookd/filter"
	"github.com/afftok/webhookd/template"
)

// DefaultBody is sent when a step has no body_template: the whole event.
var DefaultBody = json.RawMessage(`{"event_id":"{{event_id}}","event":"{{event_type}}","trigger_type":"{{trigger_type}}","trigger_id":"{{trigger_id}}","timestamp":"{{event_timestamp}}","data":"{{data}}"}`)

// Compiled is a validated pipeline with its templates parsed once.
type Compiled struct {
	*Pipeline
	Steps    []CompiledStep
	Failover *template.URL // nil without failover_url
	// Filter decides which events of the trigger type the pipeline takes
	// (nil: all of them); the event consumer runs it at fan-out.
	Filter *filter.Filter
	// UsesSteps: some template reads earlier steps' results, so they must
	// be kept (and carried by retry tasks); otherwise that work is skipped.
	UsesSteps bool
	// UsesRandom: some template reads {{uuid}} or {{nonce}}, made fresh for
	// every attempt only then.
	UsesRandom bool
}

// CompiledStep is one step ready to render.
type CompiledStep struct {
	*Step
	URL        *template.URL
	Headers    map[string]*template.Header
	Body       *template.Body
	SigningKey *template.Text
	// PreviousSigningKey signs too while Step.PreviousKeyAt says it may.
	PreviousSigningKey *template.Text
	Timeout            time.Duration
}

// Compile parses a pipeline's templates. The pipeline must have passed
// Validate; an error here means stored data was changed behind the API.
func Compile(p *Pipeline) (*Compiled, error) {
	c := &Compiled{Pipeline: p}
	var err error
	if c.Filter, err = filter.Parse(p.Filter); err != nil {
		return nil, fmt.Errorf("filter: %w", err)
	}
	if p.FailoverURL != "" {
		u, err := template.ParseURL(p.FailoverURL)
		if err != nil {
			return nil, fmt.Errorf("failover_url: %w", err)
		}
		c.Failover = u
	}
	for i := range p.Steps {
		s := &p.Steps[i]
		cs := CompiledStep{Step: s, Headers: map[string]*template.Header{}, Timeout: time.Duration(s.TimeoutSeconds) * time.Second}
		var err error
		if cs.URL, err = template.ParseURL(s.URL); err != nil {
			return nil, fmt.Errorf("steps[%d].url: %w", i, err)
		}
		for k, v := range s.Headers {
			if cs.Headers[k], err = template.ParseHeader(v); err != nil {
				return nil, fmt.Errorf("steps[%d].headers.%s: %w", i, k, err)
			}
		}
		body := s.BodyTemplate
		if len(body) == 0 || string(body) == "null" {
			body = DefaultBody
		}
		if cs.Body, err = template.ParseBody(body); err != nil {
			return nil, fmt.Errorf("steps[%d].body_template: %w", i, err)
		}
		if cs.SigningKey, err = template.Parse(s.SigningKey); err != nil {
			return nil, fmt.Errorf("steps[%d].signing_key: %w", i, err)
		}
		if cs.PreviousSigningKey, err = template.Parse(s.PreviousSigningKey); err != nil {
			return nil, fmt.Errorf("steps[%d].previous_signing_key: %w", i, err)
		}
		phs := append(cs.URL.Placeholders(), cs.Body.Placeholders()...)
		for _, h := range cs.Headers {
			phs = append(phs, h.Placeholders()...)
		}
		phs = append(phs, cs.SigningKey.Placeholders()...)
		if c.Failover != nil {
			phs = append(phs, c.Failover.Placeholders()...)
		}
		for _, ph := range phs {
			c.UsesSteps = c.UsesSteps || ph.Root() == "steps"
			c.UsesRandom = c.UsesRandom || ph.Root() == "uuid" || ph.Root() == "nonce"
		}
		c.Steps = append(c.Steps, cs)
	}
	return c, nil
}
