package template

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Body is a compiled body_template. The spec allows two forms: a JSON object
// (API reference) and a JSON text string (guide). Both render to valid JSON.
type Body struct {
	text *jsonText // string form
	tree *jsonNode // object form
	phs  []Placeholder
}

// ParseBody compiles a raw body_template as stored in a pipeline step: either a
// JSON string holding JSON text with placeholders, or any other JSON value
// (normally an object) whose strings may hold placeholders.
func ParseBody(raw json.RawMessage) (*Body, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, errors.New("body template is empty")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("invalid JSON string: %w", err)
		}
		jt, err := parseJSONText(s)
		if err != nil {
			return nil, err
		}
		return &Body{text: jt, phs: jt.t.Placeholders()}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	n, err := parseNode(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("unexpected data after the JSON value")
	}
	b := &Body{tree: n}
	n.walk(func(t *Text) { b.phs = append(b.phs, t.Placeholders()...) })
	return b, nil
}

// Placeholders lists every placeholder in the body.
func (b *Body) Placeholders() []Placeholder { return b.phs }

// Render produces the request body bytes.
func (b *Body) Render(v Vars) []byte {
	if b.text != nil {
		return b.text.render(v)
	}
	var buf bytes.Buffer
	b.tree.render(&buf, v)
	return buf.Bytes()
}

// jsonText is a JSON text template: each placeholder knows whether it sits
// inside a JSON string literal.
type jsonText struct {
	t        *Text
	inString []bool // per part
}

func parseJSONText(s string) (*jsonText, error) {
	t, err := Parse(s)
	if err != nil {
		return nil, err
	}
	jt := &jsonText{t: t, inString: make([]bool, len(t.parts))}
	in, esc := false, false
	for i, p := range t.parts {
		if p.ph != nil {
			jt.inString[i] = in
			continue
		}
		for j := 0; j < len(p.lit); j++ {
			c := p.lit[j]
			switch {
			case esc:
				esc = false
			case in && c == '\\':
				esc = true
			case c == '"':
				in = !in
			}
		}
	}
	// The template must be valid JSON for every possible value. Substituting
	// the most restrictive stand-ins (a number for a bare placeholder, nothing
	// inside a string) and checking once is enough: bare placeholders always
	// render to one complete JSON value and in-string ones to escaped text.
	probe := jt.renderProbe()
	if !json.Valid(probe) {
		var syn *json.SyntaxError
		if err := json.Unmarshal(probe, new(any)); errors.As(err, &syn) {
			return nil, fmt.Errorf("not valid JSON once placeholders are filled in (near byte %d of the rendered text): %v", syn.Offset, err)
		}
		return nil, errors.New("not valid JSON once placeholders are filled in")
	}
	return jt, nil
}

// renderProbe fills bare placeholders with 0 and in-string ones with nothing.
func (jt *jsonText) renderProbe() []byte {
	var buf bytes.Buffer
	for i, p := range jt.t.parts {
		switch {
		case p.ph == nil:
			buf.WriteString(p.lit)
		case !jt.inString[i]:
			buf.WriteByte('0')
		}
	}
	return buf.Bytes()
}

func (jt *jsonText) render(v Vars) []byte {
	var buf bytes.Buffer
	for i, p := range jt.t.parts {
		switch {
		case p.ph == nil:
			buf.WriteString(p.lit)
		case jt.inString[i]:
			buf.WriteString(escapeInJSONString(Stringify(lookup(v, p.ph.Path))))
		default:
			buf.Write(JSONLiteral(lookup(v, p.ph.Path)))
		}
	}
	return buf.Bytes()
}

// jsonNode is an object-form body template, with object key order kept as
// written so the output reads like the template.
type jsonNode struct {
	kind   byte // 'o' object, 'a' array, 's' string template, 'l' literal
	keys   []*Text
	vals   []*jsonNode
	str    *Text
	single *Placeholder // string that is exactly one placeholder
	lit    []byte
}

func parseNode(dec *json.Decoder) (*jsonNode, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &jsonNode{kind: 'o'}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, fmt.Errorf("invalid JSON: %w", err)
				}
				k, err := Parse(kt.(string))
				if err != nil {
					return nil, fmt.Errorf("key %q: %w", kt, err)
				}
				v, err := parseNode(dec)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", kt, err)
				}
				n.keys, n.vals = append(n.keys, k), append(n.vals, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, fmt.Errorf("invalid JSON: %w", err)
			}
			return n, nil
		case '[':
			n := &jsonNode{kind: 'a'}
			for i := 0; dec.More(); i++ {
				v, err := parseNode(dec)
				if err != nil {
					return nil, fmt.Errorf("[%d]: %w", i, err)
				}
				n.vals = append(n.vals, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, fmt.Errorf("invalid JSON: %w", err)
			}
			return n, nil
		}
		return nil, fmt.Errorf("invalid JSON: unexpected %v", t)
	case string:
		txt, err := Parse(t)
		if err != nil {
			return nil, err
		}
		n := &jsonNode{kind: 's', str: txt}
		if ph, ok := txt.IsSinglePlaceholder(); ok {
			n.single = &ph
		}
		return n, nil
	default:
		lit, _ := marshalJSON(t)
		return &jsonNode{kind: 'l', lit: lit}, nil
	}
}

func (n *jsonNode) walk(f func(*Text)) {
	for _, k := range n.keys {
		f(k)
	}
	if n.str != nil {
		f(n.str)
	}
	for _, v := range n.vals {
		v.walk(f)
	}
}

func (n *jsonNode) render(buf *bytes.Buffer, v Vars) {
	switch n.kind {
	case 'o':
		buf.WriteByte('{')
		for i, k := range n.keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.Write(quoteJSON(k.Interpolate(v, nil)))
			buf.WriteByte(':')
			n.vals[i].render(buf, v)
		}
		buf.WriteByte('}')
	case 'a':
		buf.WriteByte('[')
		for i, e := range n.vals {
			if i > 0 {
				buf.WriteByte(',')
			}
			e.render(buf, v)
		}
		buf.WriteByte(']')
	case 's':
		if n.single != nil {
			buf.Write(JSONLiteral(lookup(v, n.single.Path)))
			return
		}
		buf.Write(quoteJSON(n.str.Interpolate(v, nil)))
	default:
		buf.Write(n.lit)
	}
}
