// Package strictjson decodes API request bodies strictly and reports every
// problem at once.
//
// encoding/json stops at the first problem and lets a lot through: data after
// the value, duplicate keys (the last one wins), invalid UTF-8 (replaced by
// U+FFFD), keys that match a field only case-insensitively, null for a string.
// Check walks the body once, guided by the target type's json tags, and lists
// every problem with its field path in the API's style
// ("steps[0].retry_policy.max_attempts"). Decode then lets encoding/json do
// the assignment, so an accepted body means exactly what encoding/json makes
// of it: Check only ever accepts a subset of what encoding/json accepts
// (FuzzStrictDecode holds it to that).
//
// The rules:
//   - a body is exactly one JSON value; anything but whitespace after it is a
//     *SyntaxError, as is malformed JSON (each with its byte offset);
//   - duplicate object keys, at any depth (inside json.RawMessage too), invalid
//     UTF-8 and unpaired UTF-16 surrogate escapes in strings are problems;
//   - object keys must name a field exactly (json tags, embedded structs
//     promoted as encoding/json does);
//   - a value must have its field's JSON type: "must be a string", "must be an
//     integer" (1.5, 1e3 and 1.0 are not integers), "must be a number", "must be
//     an object", "must be an array", "must be true or false"; numbers must fit
//     the Go type;
//   - null is accepted where the Go type has a null (pointers, maps, slices,
//     interfaces, json.RawMessage, types with their own UnmarshalJSON), not for
//     strings, numbers, booleans and structs, where encoding/json would
//     silently ignore it;
//   - time.Time must be an RFC 3339 string; other json.Unmarshaler and
//     encoding.TextUnmarshaler types are asked whether they accept the value.
package strictjson

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxProblems bounds the problems an *Error lists: a 1 MiB body of wrong
// values must not become a 50 MB error report.
const MaxProblems = 100

// MaxDepth bounds nesting (encoding/json allows 10000; no request body needs
// more than a few levels, and the check recurses).
const MaxDepth = 1000

// SyntaxError: the body is not exactly one well-formed JSON value.
type SyntaxError struct {
	Msg    string
	Offset int // byte offset of the problem in the body
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s (at offset %d)", e.Msg, e.Offset) }

// Problem is one invalid field. Path is "" for the body itself.
type Problem struct {
	Path    string
	Message string
}

// Error lists every problem of a well-formed body, in document order.
type Error struct {
	Problems []Problem
	// Omitted counts the problems beyond MaxProblems.
	Omitted int
}

func (e *Error) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Message
		if p.Path != "" {
			parts[i] = p.Path + ": " + p.Message
		}
	}
	s := strings.Join(parts, "; ")
	if e.Omitted > 0 {
		s += fmt.Sprintf("; and %d more", e.Omitted)
	}
	return s
}

// Decode checks b against v's type (v must be a non-nil pointer) and, when it
// passes, decodes it into v with encoding/json. It returns a *SyntaxError, an
// *Error, or nil.
func Decode(b []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return &json.InvalidUnmarshalError{Type: reflect.TypeOf(v)}
	}
	if err := Check(b, rv.Type().Elem()); err != nil {
		return err
	}
	// DisallowUnknownFields is a second net: Check is stricter still
	// (exact-case names), so this never fires for a body Check passed.
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("strictjson: encoding/json refused a body the check accepted: %w", err)
	}
	return nil
}

// Check reports every problem of b as the JSON form of a value of type t:
// a *SyntaxError, an *Error, or nil.
func Check(b []byte, t reflect.Type) error {
	c := &checker{b: b}
	c.ws()
	if err := c.value(t, ""); err != nil {
		return err
	}
	c.ws()
	if c.pos < len(c.b) {
		return c.syntax(c.pos, c.desc(c.pos)+" after the top-level value; a body holds exactly one JSON value")
	}
	if len(c.problems) > 0 || c.omitted > 0 {
		return &Error{Problems: c.problems, Omitted: c.omitted}
	}
	return nil
}

type checker struct {
	b        []byte
	pos      int
	depth    int
	problems []Problem
	omitted  int
}

func (c *checker) add(path, msg string) {
	if len(c.problems) >= MaxProblems {
		c.omitted++
		return
	}
	c.problems = append(c.problems, Problem{Path: path, Message: msg})
}

func (c *checker) syntax(at int, msg string) error { return &SyntaxError{Msg: msg, Offset: at} }

func (c *checker) eof() error { return c.syntax(len(c.b), "unexpected end of JSON input") }

// desc names the byte at i for a syntax error: a character, or a byte that
// is not UTF-8.
func (c *checker) desc(i int) string {
	r, size := utf8.DecodeRune(c.b[i:])
	if r == utf8.RuneError && size <= 1 {
		return fmt.Sprintf("invalid byte 0x%02X (not UTF-8)", c.b[i])
	}
	q := strconv.QuoteRune(r)
	return "invalid character " + q
}

func (c *checker) ws() {
	for c.pos < len(c.b) {
		switch c.b[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

var (
	rawMessageType      = reflect.TypeFor[json.RawMessage]()
	numberType          = reflect.TypeFor[json.Number]()
	timeType            = reflect.TypeFor[time.Time]()
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	anyType             = reflect.TypeFor[any]()
)

func field(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// value checks the value at c.pos against t; t == nil takes any JSON value
// (json.RawMessage, or a value already reported), still checking its keys
// and strings. Only a syntax error stops the walk.
func (c *checker) value(t reflect.Type, path string) error {
	c.ws()
	if c.pos >= len(c.b) {
		return c.eof()
	}
	if t == nil || t == rawMessageType {
		return c.any(path, false)
	}
	for t.Kind() == reflect.Pointer {
		if c.b[c.pos] == 'n' {
			return c.literal("null")
		}
		t = t.Elem()
	}
	if t == rawMessageType {
		return c.any(path, false)
	}
	pt := reflect.PointerTo(t)
	if pt.Implements(unmarshalerType) {
		start, before := c.pos, len(c.problems)+c.omitted
		if err := c.any(path, false); err != nil {
			return err
		}
		if len(c.problems)+c.omitted > before {
			return nil // already reported; don't pile on
		}
		if err := reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(c.b[start:c.pos]); err != nil {
			if t == timeType {
				c.add(path, `must be an RFC 3339 time string (such as "2024-12-01T12:00:00Z")`)
			} else {
				c.add(path, "is invalid: "+err.Error())
			}
		}
		return nil
	}
	if pt.Implements(textUnmarshalerType) {
		switch c.b[c.pos] {
		case 'n':
			return c.literal("null") // encoding/json leaves the value as it is
		case '"':
			s, ok, err := c.str(path, true)
			if err != nil || !ok {
				return err
			}
			if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
				c.add(path, "is invalid: "+err.Error())
			}
			return nil
		}
		return c.mismatch(path, "must be a string")
	}
	ch := c.b[c.pos]
	switch t.Kind() {
	case reflect.Bool:
		if ch == 't' {
			return c.literal("true")
		}
		if ch == 'f' {
			return c.literal("false")
		}
		return c.mismatch(path, "must be true or false")
	case reflect.String:
		if t == numberType {
			return c.jsonNumber(path)
		}
		if ch != '"' {
			return c.mismatch(path, "must be a string")
		}
		_, _, err := c.str(path, false)
		return err
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		if ch != '-' && (ch < '0' || ch > '9') {
			return c.mismatch(path, kindNeeds(t))
		}
		lit, err := c.number()
		if err != nil {
			return err
		}
		if msg := numberFits(lit, t); msg != "" {
			c.add(path, msg)
		}
		return nil
	case reflect.Struct:
		if ch != '{' {
			return c.mismatch(path, "must be an object")
		}
		fs := cachedFields(t)
		return c.object(path, func(key, kp string) error {
			f, ok := fs[key]
			switch {
			case !ok:
				c.add(kp, "is not a known field")
				return c.value(nil, kp)
			case f.blocked:
				c.add(kp, "cannot be set (it is promoted through an embedded pointer to an unexported struct)")
				return c.value(nil, kp)
			case f.quoted:
				return c.quoted(f.typ, kp)
			}
			return c.value(f.typ, kp)
		})
	case reflect.Map:
		if ch == 'n' {
			return c.literal("null")
		}
		if ch != '{' {
			return c.mismatch(path, "must be an object")
		}
		keyOK, ok := mapKey(t.Key())
		if !ok {
			c.add(path, "cannot be decoded (map key type "+t.Key().String()+")")
			return c.any(path, false)
		}
		return c.object(path, func(key, kp string) error {
			if msg := keyOK(key); msg != "" {
				c.add(kp, msg)
				return c.value(nil, kp)
			}
			return c.value(t.Elem(), kp)
		})
	case reflect.Slice:
		if ch == 'n' {
			return c.literal("null")
		}
		if t.Elem().Kind() == reflect.Uint8 {
			// encoding/json's []byte is a base64 string.
			if ch != '"' {
				return c.mismatch(path, "must be a base64 string")
			}
			s, ok, err := c.str(path, true)
			if err == nil && ok {
				if _, derr := base64.StdEncoding.DecodeString(s); derr != nil {
					c.add(path, "must be a base64 string")
				}
			}
			return err
		}
		if ch != '[' {
			return c.mismatch(path, "must be an array")
		}
		return c.array(path, func(i int, ip string) error { return c.value(t.Elem(), ip) })
	case reflect.Array:
		if ch != '[' {
			return c.mismatch(path, "must be an array")
		}
		n := t.Len()
		return c.array(path, func(i int, ip string) error {
			if i == n {
				c.add(path, fmt.Sprintf("must have at most %d elements", n))
			}
			if i >= n {
				return c.value(nil, ip)
			}
			return c.value(t.Elem(), ip)
		})
	case reflect.Interface:
		if ch == 'n' {
			return c.literal("null")
		}
		if t.NumMethod() == 0 {
			return c.any(path, true)
		}
		return c.mismatch(path, "cannot be decoded (Go interface type "+t.String()+")")
	}
	return c.mismatch(path, "cannot be decoded (Go type "+t.String()+")")
}

// mismatch reports a value of the wrong JSON type and skips it.
func (c *checker) mismatch(path, msg string) error {
	c.add(path, msg)
	return c.any(path, false)
}

func kindNeeds(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "must be true or false"
	case reflect.String:
		return "must be a string"
	case reflect.Float32, reflect.Float64:
		return "must be a number"
	}
	return "must be an integer"
}

// numberFits checks a number literal against a numeric Go type the way
// encoding/json converts it.
func numberFits(lit []byte, t reflect.Type) string {
	s := string(lit)
	switch t.Kind() {
	case reflect.Float32, reflect.Float64:
		if _, err := strconv.ParseFloat(s, t.Bits()); err != nil {
			return fmt.Sprintf("is out of range for a %d-bit number", t.Bits())
		}
		return ""
	}
	if strings.ContainsAny(s, ".eE") {
		return "must be an integer"
	}
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if _, err := strconv.ParseUint(s, 10, t.Bits()); err != nil {
			return fmt.Sprintf("must be an integer between 0 and %d", uint64(math.MaxUint64)>>(64-t.Bits()))
		}
	default:
		if _, err := strconv.ParseInt(s, 10, t.Bits()); err != nil {
			return fmt.Sprintf("must be an integer between %d and %d", int64(-1)<<(t.Bits()-1), int64(math.MaxInt64)>>(64-t.Bits()))
		}
	}
	return ""
}

// jsonNumber: json.Number takes a number, or a string holding one.
func (c *checker) jsonNumber(path string) error {
	switch ch := c.b[c.pos]; {
	case ch == '-' || ch >= '0' && ch <= '9':
		_, err := c.number()
		return err
	case ch == '"':
		s, ok, err := c.str(path, true)
		if err == nil && ok && !validNumber(s) {
			c.add(path, "must be a number")
		}
		return err
	}
	return c.mismatch(path, "must be a number")
}

func validNumber(s string) bool {
	sub := &checker{b: []byte(s)}
	if s == "" || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) {
		return false
	}
	_, err := sub.number()
	return err == nil && sub.pos == len(s)
}

// quoted checks a field tagged ",string": a JSON string holding the value's
// own JSON form, with nothing around it.
func (c *checker) quoted(t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		if c.b[c.pos] == 'n' {
			return c.literal("null")
		}
		t = t.Elem()
	}
	what := strings.TrimPrefix(kindNeeds(t), "must be ")
	if t.Kind() == reflect.String {
		what = "a JSON string"
	}
	msg := "must be a string holding " + what
	if c.b[c.pos] != '"' {
		return c.mismatch(path, msg)
	}
	s, ok, err := c.str(path, true)
	if err != nil || !ok {
		return err
	}
	if s == "" || s == "null" || isSpace(s[0]) || isSpace(s[len(s)-1]) {
		c.add(path, msg)
		return nil
	}
	sub := &checker{b: []byte(s), depth: c.depth}
	if err := sub.value(t, path); err != nil || sub.pos != len(sub.b) {
		c.add(path, msg)
		return nil
	}
	for _, p := range sub.problems {
		c.add(p.Path, p.Message)
	}
	return nil
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

// mapKey says how encoding/json turns an object key into a key of type kt.
func mapKey(kt reflect.Type) (check func(string) string, ok bool) {
	if reflect.PointerTo(kt).Implements(textUnmarshalerType) {
		return func(k string) string {
			if err := reflect.New(kt).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(k)); err != nil {
				return "is not a valid key: " + err.Error()
			}
			return ""
		}, true
	}
	switch kt.Kind() {
	case reflect.String:
		return func(string) string { return "" }, true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return func(k string) string {
			if _, err := strconv.ParseInt(k, 10, kt.Bits()); err != nil {
				return fmt.Sprintf("is not a valid key: keys must be integers between %d and %d", int64(-1)<<(kt.Bits()-1), int64(math.MaxInt64)>>(64-kt.Bits()))
			}
			return ""
		}, true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return func(k string) string {
			if _, err := strconv.ParseUint(k, 10, kt.Bits()); err != nil {
				return fmt.Sprintf("is not a valid key: keys must be integers between 0 and %d", uint64(math.MaxUint64)>>(64-kt.Bits()))
			}
			return ""
		}, true
	}
	return nil, false
}

// any checks a value of any JSON type. asAny: it becomes a Go any, where
// encoding/json makes every number a float64, so a number must fit one.
func (c *checker) any(path string, asAny bool) error {
	c.ws()
	if c.pos >= len(c.b) {
		return c.eof()
	}
	var elem reflect.Type
	if asAny {
		elem = anyType
	}
	switch ch := c.b[c.pos]; {
	case ch == '{':
		return c.object(path, func(_, kp string) error { return c.value(elem, kp) })
	case ch == '[':
		return c.array(path, func(_ int, ip string) error { return c.value(elem, ip) })
	case ch == '"':
		_, _, err := c.str(path, false)
		return err
	case ch == 't':
		return c.literal("true")
	case ch == 'f':
		return c.literal("false")
	case ch == 'n':
		return c.literal("null")
	case ch == '-' || ch >= '0' && ch <= '9':
		lit, err := c.number()
		if err == nil && asAny {
			if _, perr := strconv.ParseFloat(string(lit), 64); perr != nil {
				c.add(path, "is out of range for a 64-bit number")
			}
		}
		return err
	}
	return c.syntax(c.pos, c.desc(c.pos)+" looking for the beginning of a value")
}

func (c *checker) literal(word string) error {
	for i := 0; i < len(word); i++ {
		if c.pos+i >= len(c.b) {
			return c.eof()
		}
		if c.b[c.pos+i] != word[i] {
			return c.syntax(c.pos+i, c.desc(c.pos+i)+" in literal "+word)
		}
	}
	c.pos += len(word)
	return nil
}

// number reads a number per RFC 8259:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (c *checker) number() ([]byte, error) {
	start := c.pos
	digits := func() error {
		if c.pos >= len(c.b) {
			return c.eof()
		}
		if c.b[c.pos] < '0' || c.b[c.pos] > '9' {
			return c.syntax(c.pos, c.desc(c.pos)+" in numeric literal")
		}
		for c.pos < len(c.b) && c.b[c.pos] >= '0' && c.b[c.pos] <= '9' {
			c.pos++
		}
		return nil
	}
	if c.b[c.pos] == '-' {
		c.pos++
	}
	if c.pos < len(c.b) && c.b[c.pos] == '0' {
		c.pos++
	} else if err := digits(); err != nil {
		return nil, err
	}
	if c.pos < len(c.b) && c.b[c.pos] == '.' {
		c.pos++
		if err := digits(); err != nil {
			return nil, err
		}
	}
	if c.pos < len(c.b) && (c.b[c.pos] == 'e' || c.b[c.pos] == 'E') {
		c.pos++
		if c.pos < len(c.b) && (c.b[c.pos] == '+' || c.b[c.pos] == '-') {
			c.pos++
		}
		if err := digits(); err != nil {
			return nil, err
		}
	}
	return c.b[start:c.pos], nil
}

// str reads a string at c.pos. ok is false when it is not valid Unicode
// (already reported at path). The value is built only when want is set.
func (c *checker) str(path string, want bool) (s string, ok bool, err error) {
	s, bad, err := c.lexString(want)
	if err != nil {
		return "", false, err
	}
	if bad != "" {
		c.add(path, bad)
		return s, false, nil
	}
	return s, true, nil
}

// lexString reads the string token at c.pos ('"'). bad says what makes it
// invalid Unicode: bytes that are not UTF-8 or an unpaired surrogate
// escape, both of which encoding/json would silently turn into U+FFFD.
// The unescaped value is built only when want is set.
func (c *checker) lexString(want bool) (s string, bad string, err error) {
	c.pos++        // opening quote
	var buf []byte // the value so far, once an escape was seen
	seg := c.pos   // start of the run of bytes not yet copied to buf
	escaped := false
	for {
		if c.pos >= len(c.b) {
			return "", "", c.eof()
		}
		switch ch := c.b[c.pos]; {
		case ch == '"':
			if want {
				if escaped {
					s = string(append(buf, c.b[seg:c.pos]...))
				} else {
					s = string(c.b[seg:c.pos])
				}
			}
			c.pos++
			return s, bad, nil
		case ch == '\\':
			escaped = true
			if want {
				buf = append(buf, c.b[seg:c.pos]...)
			}
			if c.pos+1 >= len(c.b) {
				return "", "", c.eof()
			}
			r := rune(-1)
			switch e := c.b[c.pos+1]; e {
			case '"', '\\', '/':
				r = rune(e)
			case 'b':
				r = '\b'
			case 'f':
				r = '\f'
			case 'n':
				r = '\n'
			case 'r':
				r = '\r'
			case 't':
				r = '\t'
			case 'u':
				if r, err = c.hex4(c.pos + 2); err != nil {
					return "", "", err
				}
				c.pos += 4
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if r < 0xDC00 && c.pos+3 < len(c.b) && c.b[c.pos+2] == '\\' && c.b[c.pos+3] == 'u' {
						if r2, err = c.hex4(c.pos + 4); err != nil {
							return "", "", err
						}
					}
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						c.pos += 6
						r = d
					} else {
						if bad == "" {
							bad = fmt.Sprintf(`contains an unpaired surrogate escape \u%04x`, r)
						}
						r = utf8.RuneError
					}
				}
			default:
				return "", "", c.syntax(c.pos+1, c.desc(c.pos+1)+" in string escape code")
			}
			c.pos += 2
			if want {
				buf = utf8.AppendRune(buf, r)
			}
			seg = c.pos
		case ch < 0x20:
			return "", "", c.syntax(c.pos, fmt.Sprintf("control character U+%04X in string literal (escape it)", ch))
		case ch < utf8.RuneSelf:
			c.pos++
		default:
			r, size := utf8.DecodeRune(c.b[c.pos:])
			if r == utf8.RuneError && size == 1 && bad == "" {
				bad = "is not valid UTF-8"
			}
			c.pos += size
		}
	}
}

func (c *checker) hex4(at int) (rune, error) {
	var r rune
	for i := at; i < at+4; i++ {
		if i >= len(c.b) {
			return 0, c.eof()
		}
		h := c.b[i]
		switch {
		case h >= '0' && h <= '9':
			h -= '0'
		case h >= 'a' && h <= 'f':
			h = h - 'a' + 10
		case h >= 'A' && h <= 'F':
			h = h - 'A' + 10
		default:
			return 0, c.syntax(i, c.desc(i)+` in \u hexadecimal character escape`)
		}
		r = r<<4 | rune(h)
	}
	return r, nil
}

func (c *checker) enter() error {
	c.depth++
	if c.depth > MaxDepth {
		return c.syntax(c.pos, fmt.Sprintf("nesting deeper than %d levels", MaxDepth))
	}
	c.pos++
	c.ws()
	return nil
}

// object reads an object at c.pos ('{'); member checks each first
// occurrence of a key. Keys that repeat, or that are not valid Unicode, are
// reported here.
func (c *checker) object(path string, member func(key, path string) error) error {
	if err := c.enter(); err != nil {
		return err
	}
	defer func() { c.depth-- }()
	if c.pos < len(c.b) && c.b[c.pos] == '}' {
		c.pos++
		return nil
	}
	seen := map[string]bool{}
	for {
		if c.pos >= len(c.b) {
			return c.eof()
		}
		if c.b[c.pos] != '"' {
			return c.syntax(c.pos, c.desc(c.pos)+" looking for the beginning of an object key string")
		}
		key, bad, err := c.lexString(true)
		if err != nil {
			return err
		}
		c.ws()
		if c.pos >= len(c.b) {
			return c.eof()
		}
		if c.b[c.pos] != ':' {
			return c.syntax(c.pos, c.desc(c.pos)+" after object key")
		}
		c.pos++
		c.ws()
		if c.pos >= len(c.b) {
			return c.eof()
		}
		kp := field(path, key)
		switch {
		case bad != "":
			kp = field(path, strings.ToValidUTF8(key, "\uFFFD"))
			c.add(kp, "key "+bad)
			err = c.value(nil, kp)
		case seen[key]:
			c.add(kp, "duplicate key")
			err = c.value(nil, kp)
		default:
			seen[key] = true
			err = member(key, kp)
		}
		if err != nil {
			return err
		}
		if done, err := c.next('}', "object key:value pair"); done || err != nil {
			return err
		}
		c.ws()
	}
}

// next reads what follows a member or an element: ',' (more follow) or
// end, which closes the object or array.
func (c *checker) next(end byte, after string) (done bool, err error) {
	c.ws()
	if c.pos >= len(c.b) {
		return false, c.eof()
	}
	switch c.b[c.pos] {
	case ',':
		c.pos++
		return false, nil
	case end:
		c.pos++
		return true, nil
	}
	return false, c.syntax(c.pos, c.desc(c.pos)+" after "+after)
}

// array reads an array at c.pos ('[').
func (c *checker) array(path string, elem func(i int, path string) error) error {
	if err := c.enter(); err != nil {
		return err
	}
	defer func() { c.depth-- }()
	if c.pos < len(c.b) && c.b[c.pos] == ']' {
		c.pos++
		return nil
	}
	for i := 0; ; i++ {
		if err := elem(i, index(path, i)); err != nil {
			return err
		}
		if done, err := c.next(']', "array element"); done || err != nil {
			return err
		}
	}
}
