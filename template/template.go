// Package template renders webhookd's {{path}} placeholders into the URL,
// headers and body of a webhook request.
//
// A template is parsed once, when a pipeline is saved, into literal text and
// placeholders. Rendering is context-aware so that event data can never change
// the shape of what is sent (DESIGN.md §5):
//
//   - body templates written as a JSON object: a string that is exactly one
//     placeholder takes the value's JSON type; mixed strings interpolate;
//   - body templates written as JSON text: a placeholder inside a JSON string
//     literal is JSON-escaped, a bare one is emitted as a JSON literal, so the
//     output is always valid JSON;
//   - URLs: values are percent-escaped for the part of the URL they land in;
//   - header values: control characters (CR, LF, …) are replaced by spaces.
package template

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Placeholder is one {{path}} occurrence.
type Placeholder struct {
	// Path is the dotted path split into segments, e.g. ["conversion","amount"].
	Path []string
	// Offset is the byte offset of "{{" in the template source.
	Offset int
}

// Root is the first path segment (the namespace or the system variable).
func (p Placeholder) Root() string { return p.Path[0] }

// String returns the placeholder's canonical dotted path.
func (p Placeholder) String() string { return strings.Join(p.Path, ".") }

type part struct {
	lit string
	ph  *Placeholder
}

// Text is a parsed template: literal text interleaved with placeholders.
type Text struct {
	src   string
	parts []part
}

// SyntaxError reports a malformed template with the byte offset it was found at.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("at offset %d: %s", e.Offset, e.Msg) }

// maxPathSegments bounds placeholder depth; real event data is shallow.
const maxPathSegments = 16

// Parse splits s into literals and placeholders. A placeholder is "{{", an
// optional space, a dotted path of segments made of letters, digits, '_' and
// '-', an optional space and "}}". Anything else between braces is an error:
// silently sending a half-rendered payload is worse than refusing to save it.
func Parse(s string) (*Text, error) {
	t := &Text{src: s}
	rest, base := s, 0
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, part{lit: rest})
			}
			return t, nil
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: rest[:i]})
		}
		end := strings.Index(rest[i+2:], "}}")
		if end < 0 {
			return nil, &SyntaxError{Offset: base + i, Msg: "unclosed placeholder: missing }}"}
		}
		inner := strings.TrimSpace(rest[i+2 : i+2+end])
		path, err := parsePath(inner)
		if err != nil {
			return nil, &SyntaxError{Offset: base + i, Msg: err.Error()}
		}
		t.parts = append(t.parts, part{ph: &Placeholder{Path: path, Offset: base + i}})
		consumed := i + 2 + end + 2
		rest, base = rest[consumed:], base+consumed
	}
}

func parsePath(s string) ([]string, error) {
	if s == "" {
		return nil, fmt.Errorf("empty placeholder {{}}")
	}
	segs := strings.Split(s, ".")
	if len(segs) > maxPathSegments {
		return nil, fmt.Errorf("placeholder %q is deeper than %d segments", s, maxPathSegments)
	}
	for _, seg := range segs {
		if seg == "" {
			return nil, fmt.Errorf("placeholder %q has an empty path segment", s)
		}
		for _, r := range seg {
			if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				return nil, fmt.Errorf("placeholder %q has invalid character %q (allowed: letters, digits, '_', '-', '.')", s, r)
			}
		}
	}
	return segs, nil
}

// Placeholders lists the template's placeholders in source order.
func (t *Text) Placeholders() []Placeholder {
	var out []Placeholder
	for _, p := range t.parts {
		if p.ph != nil {
			out = append(out, *p.ph)
		}
	}
	return out
}

// Source returns the template as written.
func (t *Text) Source() string { return t.src }

// IsSinglePlaceholder reports whether the template is exactly one placeholder
// and nothing else, and returns it.
func (t *Text) IsSinglePlaceholder() (Placeholder, bool) {
	if len(t.parts) == 1 && t.parts[0].ph != nil {
		return *t.parts[0].ph, true
	}
	return Placeholder{}, false
}

// Vars resolves placeholder paths to values. Values are what encoding/json
// produces with UseNumber: string, json.Number, bool, nil, map[string]any,
// []any. The second result is false when the path does not exist.
type Vars interface {
	Lookup(path []string) (any, bool)
}

// Interpolate renders the template as plain text: every value is stringified
// and passed through escape (nil escape leaves it unchanged).
func (t *Text) Interpolate(v Vars, escape func(string) string) string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.ph == nil {
			b.WriteString(p.lit)
			continue
		}
		s := Stringify(lookup(v, p.ph.Path))
		if escape != nil {
			s = escape(s)
		}
		b.WriteString(s)
	}
	return b.String()
}

func lookup(v Vars, path []string) any {
	val, ok := v.Lookup(path)
	if !ok {
		return nil
	}
	return val
}

// Stringify is the text form of a value: strings as they are, numbers in
// their original JSON spelling, nil as "", objects and arrays as compact JSON.
func Stringify(val any) string {
	switch x := val.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	default:
		b, err := marshalJSON(x)
		if err != nil {
			return ""
		}
		return string(b)
	}
}

// JSONLiteral is the JSON encoding of a value (nil is null).
func JSONLiteral(val any) []byte {
	switch x := val.(type) {
	case string:
		return quoteJSON(x)
	case nil:
		return []byte("null")
	case json.Number:
		if _, err := strconv.ParseFloat(x.String(), 64); err == nil && json.Valid([]byte(x)) {
			return []byte(x)
		}
		return quoteJSON(x.String())
	}
	b, err := marshalJSON(val)
	if err != nil {
		return []byte("null")
	}
	return b
}

// marshalJSON encodes without HTML escaping, so "<" stays "<" as the sender wrote it.
func marshalJSON(v any) ([]byte, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return []byte(strings.TrimSuffix(b.String(), "\n")), nil
}

func quoteJSON(s string) []byte {
	// The common case without an encoder: printable ASCII with nothing to
	// escape is the string in quotes, as marshalJSON writes it.
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b, _ := marshalJSON(s)
			return b
		}
	}
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// escapeInJSONString returns s escaped for use inside a JSON string literal
// (without the surrounding quotes).
func escapeInJSONString(s string) string {
	q := quoteJSON(s)
	return string(q[1 : len(q)-1])
}
