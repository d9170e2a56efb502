package template

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// The variable namespaces of the template language (spec: "Template
// Variables", "Available Placeholders"; DESIGN.md §5).
var (
	// scalarVars are system values; they take no sub-path.
	scalarVars = map[string]bool{
		"trigger_type": true, "trigger_id": true, "event_id": true, "event_type": true,
		"event_timestamp": true, "pipeline_id": true, "pipeline_name": true,
		"delivery_id": true, "execution_id": true, "timestamp": true,
		"timestamp_unix": true, "uuid": true, "nonce": true, "retry_count": true,
	}
	// objectVars are event objects; they take a sub-path or embed the whole object.
	objectVars = map[string]bool{
		"click": true, "conversion": true, "offer": true, "postback": true,
		"fraud": true, "user": true, "api_key": true, "data": true,
	}
)

// Scope is the set of values one rendering sees. It implements Vars.
type Scope struct {
	// System holds scalarVars values.
	System System
	// Objects holds the event's objects by namespace (click, conversion, …).
	Objects map[string]any
	// Data is the event's data exactly as produced.
	Data any
	// Env resolves {{env.NAME}}; it is only ever given operator-allowed names.
	Env func(name string) (string, bool)
	// Steps holds earlier steps' results by order ("1", "2", …) and by name.
	Steps map[string]any
}

// Lookup implements Vars.
func (s *Scope) Lookup(path []string) (any, bool) {
	root, rest := path[0], path[1:]
	switch {
	case root == "env":
		if len(rest) != 1 || s.Env == nil {
			return nil, false
		}
		v, ok := s.Env(rest[0])
		return v, ok
	case root == "data":
		return Walk(s.Data, rest)
	case root == "steps":
		return Walk(s.Steps, rest)
	case scalarVars[root]:
		if len(rest) != 0 {
			return nil, false
		}
		return s.System.Lookup(root)
	case objectVars[root]:
		obj, ok := s.Objects[root]
		if !ok {
			return nil, false
		}
		return Walk(obj, rest)
	}
	return nil, false
}

// System is one rendering's system variables (scalarVars), kept as fields
// and made into values only when a template reads them: a delivery's scope
// is built for every attempt. The event's are always there ("" when the
// event lacks them); the delivery's (pipeline, delivery and execution ids,
// timestamp, timestamp_unix, retry_count, uuid, nonce) only with Delivery
// set — a pipeline filter sees the event's alone. UUID and Nonce are ""
// for a pipeline whose templates read neither, and then absent.
type System struct {
	TriggerType, TriggerID, EventID, EventType, EventTimestamp string

	Delivery                                          bool
	PipelineID, PipelineName, DeliveryID, ExecutionID string
	Now                                               time.Time // timestamp, timestamp_unix
	RetryCount                                        int
	UUID, Nonce                                       string
}

// Lookup is the value of the system variable name.
func (s *System) Lookup(name string) (any, bool) {
	switch name {
	case "trigger_type":
		return s.TriggerType, true
	case "trigger_id":
		return s.TriggerID, true
	case "event_id":
		return s.EventID, true
	case "event_type":
		return s.EventType, true
	case "event_timestamp":
		return s.EventTimestamp, true
	}
	if !s.Delivery {
		return nil, false
	}
	switch name {
	case "pipeline_id":
		return s.PipelineID, true
	case "pipeline_name":
		return s.PipelineName, true
	case "delivery_id":
		return s.DeliveryID, true
	case "execution_id":
		return s.ExecutionID, true
	case "timestamp":
		return s.Now.UTC().Format(time.RFC3339), true
	case "timestamp_unix":
		return json.Number(strconv.FormatInt(s.Now.Unix(), 10)), true
	case "retry_count":
		return json.Number(strconv.Itoa(s.RetryCount)), true
	case "uuid":
		return s.UUID, s.UUID != ""
	case "nonce":
		return s.Nonce, s.Nonce != ""
	}
	return nil, false
}

// Walk follows path through nested maps and slices (numeric segments index arrays).
func Walk(v any, path []string) (any, bool) {
	for _, seg := range path {
		switch x := v.(type) {
		case map[string]any:
			nv, ok := x[seg]
			if !ok {
				return nil, false
			}
			v = nv
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// ParsePath parses a dotted variable path the way a placeholder holds one
// ("conversion.amount", "data.items.0.sku"): pipeline filters read the same
// paths templates do, through the same Lookup.
func ParsePath(s string) ([]string, error) { return parsePath(s) }

// CheckNamespace reports whether a placeholder names a known variable. It is
// the save-time check for "unknown template namespaces"; env names and step
// references are checked by the caller, which knows the allow-list and the
// pipeline's steps.
func CheckNamespace(p Placeholder) error {
	root := p.Root()
	switch {
	case root == "env":
		if len(p.Path) != 2 {
			return fmt.Errorf("{{%s}}: env takes exactly one name, as in {{env.NAME}}", p)
		}
	case root == "steps":
		if len(p.Path) < 3 {
			return fmt.Errorf("{{%s}}: use {{steps.<order>.status}} or {{steps.<order>.response.body…}}", p)
		}
	case scalarVars[root]:
		if len(p.Path) != 1 {
			return fmt.Errorf("{{%s}}: %s has no fields", p, root)
		}
	case objectVars[root]:
	default:
		return fmt.Errorf("{{%s}}: unknown variable %q (known: trigger_type, trigger_id, event_id, timestamp, timestamp_unix, uuid, nonce, delivery_id, pipeline_id, click.*, conversion.*, offer.*, postback.*, fraud.*, user.*, api_key.*, data, env.NAME, steps.N.*)", p, root)
	}
	return nil
}
