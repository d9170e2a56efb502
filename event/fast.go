package event

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// fastEnvelope decodes the envelope of an ordinary event in one pass over
// its bytes, without reflection: encoding/json's Decoder took 8 µs of a
// delivery's CPU for a 150-byte event, three times the rest of the
// decoding. It gives the same envelope encoding/json would (numbers as
// json.Number, a repeated key's last value in data, invalid UTF-8 never
// passed on), and declines — ok false — whatever it does not handle the
// same way, which Decode then hands to encoding/json: a malformed or
// trailing byte, a top level that is not an object, an envelope key
// given twice or matched only case-insensitively (as encoding/json
// matches struct fields), a type or trigger_type that is not a string,
// a string without escapes holding invalid UTF-8, or nesting deeper than
// maxFastDepth. A string with escapes is read by encoding/json itself,
// that string alone (invalid UTF-8 in it becomes U+FFFD, as there).
// FuzzFastEnvelopeMatchesEncodingJSON holds it to that.
func fastEnvelope(b []byte) (env envelope, ok bool) {
	p := &fastParser{b: b}
	p.space()
	if !p.byte('{') {
		return env, false
	}
	var seen [6]bool
	p.space()
	if p.byte('}') {
		return env, p.end()
	}
	for {
		p.space()
		key, ok := p.str()
		if !ok {
			return env, false
		}
		p.space()
		if !p.byte(':') {
			return env, false
		}
		p.space()
		field := envelopeField(key)
		if field < 0 {
			if !utf8.ValidString(key) || mayFold(key) {
				return env, false // encoding/json may match it to a field
			}
			if _, ok := p.value(0); !ok {
				return env, false
			}
		} else {
			if seen[field] {
				return env, false
			}
			seen[field] = true
			vs := p.i
			v, ok := p.value(0)
			if !ok {
				return env, false
			}
			raw := json.RawMessage(b[vs:p.i])
			switch field {
			case 0:
				env.ID = raw
			case 1, 2:
				s, isStr := v.(string)
				if !isStr && v != nil {
					return env, false // encoding/json's error, not ours
				}
				if field == 1 {
					env.Type = s
				} else {
					env.TriggerType = s
				}
			case 3:
				env.TriggerID = raw
			case 4:
				env.Timestamp = raw
			case 5:
				env.Data = v
			}
		}
		p.space()
		if p.byte('}') {
			return env, p.end()
		}
		if !p.byte(',') {
			return env, false
		}
	}
}

// envelopeFields are the envelope's keys, as envelope's tags spell them.
var envelopeFields = [...]string{"id", "type", "trigger_type", "trigger_id", "timestamp", "data"}

func envelopeField(key string) int {
	for i, f := range envelopeFields {
		if key == f {
			return i
		}
	}
	return -1
}

// mayFold: encoding/json would take key for one of the envelope's fields
// without an exact match (its match ignores case, with Unicode's folds:
// "ſ" is an "s" and "K" a "k" to it). Any non-ASCII key is declined.
func mayFold(key string) bool {
	for i := 0; i < len(key); i++ {
		if key[i] >= utf8.RuneSelf {
			return true
		}
	}
	for _, f := range envelopeFields {
		if strings.EqualFold(key, f) {
			return true
		}
	}
	return false
}

// maxFastDepth bounds the nesting fastEnvelope decodes itself (deeper
// events go to encoding/json, which has its own bound).
const maxFastDepth = 512

type fastParser struct {
	b []byte
	i int
}

func (p *fastParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *fastParser) byte(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end: nothing but white space is left.
func (p *fastParser) end() bool {
	p.space()
	return p.i == len(p.b)
}

func (p *fastParser) value(depth int) (any, bool) {
	if p.i >= len(p.b) || depth > maxFastDepth {
		return nil, false
	}
	switch c := p.b[p.i]; {
	case c == '{':
		p.i++
		m := map[string]any{}
		p.space()
		if p.byte('}') {
			return m, true
		}
		for {
			p.space()
			k, ok := p.str()
			if !ok {
				return nil, false
			}
			p.space()
			if !p.byte(':') {
				return nil, false
			}
			p.space()
			v, ok := p.value(depth + 1)
			if !ok {
				return nil, false
			}
			m[k] = v
			p.space()
			if p.byte('}') {
				return m, true
			}
			if !p.byte(',') {
				return nil, false
			}
		}
	case c == '[':
		p.i++
		a := []any{}
		p.space()
		if p.byte(']') {
			return a, true
		}
		for {
			p.space()
			v, ok := p.value(depth + 1)
			if !ok {
				return nil, false
			}
			a = append(a, v)
			p.space()
			if p.byte(']') {
				return a, true
			}
			if !p.byte(',') {
				return nil, false
			}
		}
	case c == '"':
		return p.str()
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't':
		return true, p.word("true")
	case c == 'f':
		return false, p.word("false")
	case c == 'n':
		return nil, p.word("null")
	}
	return nil, false
}

func (p *fastParser) word(w string) bool {
	if bytes.HasPrefix(p.b[p.i:], []byte(w)) {
		p.i += len(w)
		return true
	}
	return false
}

// str reads a string at p.i. One without escapes is taken as it is (it
// must be valid UTF-8 with no control characters); one with escapes is
// read by encoding/json.
func (p *fastParser) str() (string, bool) {
	if !p.byte('"') {
		return "", false
	}
	start, escaped := p.i, false
	for p.i < len(p.b) {
		switch c := p.b[p.i]; {
		case c == '"':
			p.i++
			raw := p.b[start : p.i-1]
			if !escaped {
				if !utf8.Valid(raw) {
					return "", false
				}
				return string(raw), true
			}
			var s string
			if json.Unmarshal(p.b[start-1:p.i], &s) != nil {
				return "", false
			}
			return s, true
		case c == '\\':
			escaped = true
			p.i += 2 // the escaped byte cannot end the string
		case c < 0x20:
			return "", false
		default:
			p.i++
		}
	}
	return "", false
}

// number reads a JSON number at p.i as encoding/json's UseNumber does.
func (p *fastParser) number() (any, bool) {
	start := p.i
	p.byte('-')
	switch {
	case p.byte('0'):
	case p.i < len(p.b) && p.b[p.i] >= '1' && p.b[p.i] <= '9':
		p.digits()
	default:
		return nil, false
	}
	if p.byte('.') {
		if p.digits() == 0 {
			return nil, false
		}
	}
	if p.byte('e') || p.byte('E') {
		if !p.byte('+') {
			p.byte('-')
		}
		if p.digits() == 0 {
			return nil, false
		}
	}
	return json.Number(p.b[start:p.i]), true
}

func (p *fastParser) digits() int {
	n := 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
		n++
	}
	return n
}

// plainString is a JSON string token without escapes, as encoding/json
// reads it: the bytes between its quotes, when they are valid UTF-8 with
// no control characters.
func plainString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	in := raw[1 : len(raw)-1]
	for _, c := range in {
		if c == '\\' || c == '"' || c < 0x20 {
			return "", false
		}
	}
	if !utf8.Valid(in) {
		return "", false
	}
	return string(in), true
}
