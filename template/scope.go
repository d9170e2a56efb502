package template

import (
	"fmt"
	"strconv"
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
	System map[string]any
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
		v, ok := s.System[root]
		return v, ok
	case objectVars[root]:
		obj, ok := s.Objects[root]
		if !ok {
			return nil, false
		}
		return Walk(obj, rest)
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
