// Package jsonvalue reads JSON values into exactly what encoding/json gives
// with UseNumber — string, json.Number, bool, nil, []any and map[string]any
// (a repeated key's last value) — without its reflection, for the paths
// where encoding/json's Decoder was a measurable share of the work: the rows
// chDB returns (analytics) and the events webhookd consumes (event). A
// string with an escape, or with bytes outside ASCII that are not valid
// UTF-8, is read by encoding/json itself, so strings come out as it makes
// them. Its users' fuzz tests (FuzzDecodeCompactRows,
// FuzzFastEnvelopeMatchesEncodingJSON) hold the two equal.
package jsonvalue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Reader reads JSON from b, at i.
type Reader struct {
	b []byte
	i int
}

// NewReader reads b from its start.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Pos is the offset of the next byte to read.
func (d *Reader) Pos() int { return d.i }

// Peek is the next byte; false at the end.
func (d *Reader) Peek() (byte, bool) {
	if d.i < len(d.b) {
		return d.b[d.i], true
	}
	return 0, false
}

// Skip reads c if it comes next (no space before it).
func (d *Reader) Skip(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// AtEnd reads the white space left and reports whether nothing else is.
func (d *Reader) AtEnd() bool {
	d.space()
	return d.i == len(d.b)
}

// Space reads white space.
func (d *Reader) Space() { d.space() }

// Value reads the value at the reader's position (no space before it).
func (d *Reader) Value() (any, error) { return d.value(0) }

// ValueIn reads the value at the reader's position inside the given number
// of containers the caller has read itself: encoding/json's nesting limit
// counts them.
func (d *Reader) ValueIn(containers int) (any, error) { return d.value(containers) }

// String reads the string at the reader's position (its opening quote).
func (d *Reader) String() (string, error) { return d.str() }

// Next reads the ',' or the closing byte after an element of a container;
// closed tells which.
func (d *Reader) Next(closing byte) (closed bool, err error) { return d.next(closing) }

// Closes reads, after a container's opening byte, its closing byte if it
// comes next (an empty container).
func (d *Reader) Closes(closing byte) bool { return d.closes(closing) }

// maxDepth bounds the nesting of a value (encoding/json's limit).
const maxDepth = 10000

func (d *Reader) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\r', '\n':
			d.i++
		default:
			return
		}
	}
}

var errEnd = errors.New("unexpected end of the JSON")

// value reads the value at d.i (no space before it).
func (d *Reader) value(depth int) (any, error) {
	if d.i >= len(d.b) {
		return nil, errEnd
	}
	if depth >= maxDepth {
		return nil, errors.New("nested too deep")
	}
	switch c := d.b[d.i]; {
	case c == '[':
		d.i++
		out := []any{}
		if d.closes(']') {
			return out, nil
		}
		for {
			d.space()
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			if closed, err := d.next(']'); err != nil || closed {
				return out, err
			}
		}
	case c == '{':
		d.i++
		out := map[string]any{}
		if d.closes('}') {
			return out, nil
		}
		for {
			d.space()
			if d.i >= len(d.b) || d.b[d.i] != '"' {
				return nil, errors.New("an object key is not a string")
			}
			k, err := d.str()
			if err != nil {
				return nil, err
			}
			d.space()
			if d.i >= len(d.b) || d.b[d.i] != ':' {
				return nil, errors.New("no ':' after an object key")
			}
			d.i++
			d.space()
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			out[k] = v // the last of a repeated key wins, as in encoding/json
			if closed, err := d.next('}'); err != nil || closed {
				return out, err
			}
		}
	case c == '"':
		return d.str()
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	}
	for _, lit := range []struct {
		text string
		v    any
	}{{"null", nil}, {"true", true}, {"false", false}} {
		if bytes.HasPrefix(d.b[d.i:], []byte(lit.text)) {
			d.i += len(lit.text)
			return lit.v, nil
		}
	}
	return nil, fmt.Errorf("unexpected %q", d.b[d.i])
}

// closes reads the closing byte of a container just opened, if it comes
// next (an empty container).
func (d *Reader) closes(closing byte) bool {
	d.space()
	if d.i < len(d.b) && d.b[d.i] == closing {
		d.i++
		return true
	}
	return false
}

// next reads the ',' or the closing byte after an element; closed tells
// which.
func (d *Reader) next(closing byte) (closed bool, err error) {
	d.space()
	if d.i >= len(d.b) {
		return false, errEnd
	}
	if c := d.b[d.i]; c == ',' || c == closing {
		d.i++
		return c == closing, nil
	}
	return false, fmt.Errorf("unexpected %q after an element", d.b[d.i])
}

// str reads a string at d.i (its opening quote).
func (d *Reader) str() (string, error) {
	start := d.i
	plain := true // no escape, and valid UTF-8
	ascii := true
	for j := start + 1; j < len(d.b); j++ {
		switch c := d.b[j]; {
		case c == '"':
			d.i = j + 1
			if plain && (ascii || utf8.Valid(d.b[start+1:j])) {
				return string(d.b[start+1 : j]), nil
			}
			var s string
			if err := json.Unmarshal(d.b[start:j+1], &s); err != nil {
				return "", err
			}
			return s, nil
		case c == '\\':
			plain = false
			j++ // the escaped byte cannot end the string
		case c < 0x20:
			return "", errors.New("a control character in a string")
		case c >= 0x80:
			ascii = false
		}
	}
	return "", errEnd
}

// number reads a JSON number at d.i, kept as its text.
func (d *Reader) number() (json.Number, error) {
	start, j := d.i, d.i
	digits := func() int {
		n := 0
		for j < len(d.b) && d.b[j] >= '0' && d.b[j] <= '9' {
			j, n = j+1, n+1
		}
		return n
	}
	if d.b[j] == '-' {
		j++
	}
	switch {
	case j < len(d.b) && d.b[j] == '0':
		j++
	case digits() == 0:
		return "", errors.New("a number without digits")
	}
	if j < len(d.b) && d.b[j] == '.' {
		j++
		if digits() == 0 {
			return "", errors.New("a number without digits after its point")
		}
	}
	if j < len(d.b) && (d.b[j] == 'e' || d.b[j] == 'E') {
		j++
		if j < len(d.b) && (d.b[j] == '+' || d.b[j] == '-') {
			j++
		}
		if digits() == 0 {
			return "", errors.New("a number without digits in its exponent")
		}
	}
	d.i = j
	return json.Number(d.b[start:j]), nil
}
