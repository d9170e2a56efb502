package analytics

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// decodeCompactRows reads chDB's JSONCompactEachRow output, a JSON array a
// line, into rows of the values encoding/json would give with UseNumber:
// string, json.Number, bool, nil, []any and map[string]any. It is
// encoding/json's answer without its reflection: decoding each line with
// json.Decoder was a quarter of the 1-minute time series' time (5,760
// rows). A string with an escape or a byte outside ASCII that is not valid
// UTF-8 is read by encoding/json, so strings come out exactly as before
// (FuzzDecodeCompactRows holds the two equal).
//
// An error names the row by its number, not by its text: rows hold logged
// request and response bodies.
func decodeCompactRows(b []byte) ([][]any, error) {
	var rows [][]any
	for n := 1; len(b) > 0; n++ {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		// Blank as encoding/json's reader took it (bytes.TrimSpace).
		if line = bytes.TrimSpace(line); len(line) == 0 {
			continue
		}
		d := rowDecoder{b: line}
		if d.b[d.i] != '[' {
			return nil, fmt.Errorf("decode chDB row %d: not an array", n)
		}
		v, err := d.value(0)
		if err == nil {
			if d.space(); d.i != len(d.b) {
				err = errors.New("data after the row")
			}
		}
		if err != nil {
			return nil, fmt.Errorf("decode chDB row %d: %w", n, err)
		}
		rows = append(rows, v.([]any))
	}
	return rows, nil
}

// maxDepth bounds the nesting of a value (encoding/json's limit).
const maxDepth = 10000

type rowDecoder struct {
	b []byte
	i int
}

func (d *rowDecoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\r', '\n':
			d.i++
		default:
			return
		}
	}
}

var errEnd = errors.New("unexpected end of the row")

// value reads the value at d.i (no space before it).
func (d *rowDecoder) value(depth int) (any, error) {
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
func (d *rowDecoder) closes(closing byte) bool {
	d.space()
	if d.i < len(d.b) && d.b[d.i] == closing {
		d.i++
		return true
	}
	return false
}

// next reads the ',' or the closing byte after an element; closed tells
// which.
func (d *rowDecoder) next(closing byte) (closed bool, err error) {
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
func (d *rowDecoder) str() (string, error) {
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
func (d *rowDecoder) number() (json.Number, error) {
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
