package strictjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/afftok/webhookd/pipeline"
	"github.com/afftok/webhookd/strictjson"
)

// FuzzStrictDecode holds the decoder to its contract, for the kitchen-sink
// type of the unit tests and for the pipeline model:
//   - it never panics and returns only a *SyntaxError, an *Error or nil;
//   - whatever it accepts, encoding/json (with DisallowUnknownFields) accepts
//     too, into an equal value;
//   - it rejects what encoding/json's validator rejects, invalid UTF-8, and
//     any body in which a token-stream scan finds a repeated key;
//   - an accepted body with data after it, or with its first key repeated,
//     is rejected (a syntax error; a "duplicate key" problem at that key).
func FuzzStrictDecode(f *testing.F) {
	for _, s := range []string{
		`{"id":"i","x":1,"name":"n","count":3,"ratio":0.25,"ptr":7,"inner_p":{"n":2},"list":[{"n":3}],"headers":{"A":"b"},"by_id":{"1":true},"data":{"k":[1,"x",null]},"any":[1],"raw":{"a":1},"at":"2024-12-01T12:00:00Z","bytes":"aGk=","num":12,"quoted":"42","addr":"::1","Untagged":9}`,
		`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io/{{click.id}}","headers":{"A":"{{env.K}}"},"body_template":{"a":"{{click.id}}"},"retry_policy":{"max_attempts":3,"jitter_factor":0.5}}],"created_at":"2024-12-01T12:00:00Z","revision":3}`,
		`{"name":5,"trigger_type":7,"steps":"nope"}`,
		`{"steps":[{"order":1.5,"url":"x","url":"y"}]} garbage`,
		`{"name":"a","n\u0061me":"b"}`,
		"{\"name\":\"\xff\",\"headers\":{\"\xfe\":\"\\ud800\"}}",
		`{"quoted":"1e3","pair":[1,2,3],"h":1,"NAME":"x","by_id":{"x":true}}`,
		`[{"a":1}] `,
		`{"raw":[[[[{}]]]],"any":{"a":{"a":1e999}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzOne[target](t, b)
		fuzzOne[pipeline.Pipeline](t, b)
	})
}

func fuzzOne[T any](t *testing.T, b []byte) {
	var got T
	err := strictjson.Decode(b, &got)
	var se *strictjson.SyntaxError
	var pe *strictjson.Error
	if err != nil && !errors.As(err, &se) && !errors.As(err, &pe) {
		t.Fatalf("%T: unexpected error %v\nbody %q", got, err, b)
	}
	if err != nil {
		return
	}
	// Accepted: encoding/json agrees, with the same result.
	var want T
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if jerr := dec.Decode(&want); jerr != nil {
		t.Fatalf("%T: accepted a body encoding/json refuses: %v\nbody %q", got, jerr, b)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%T: decoded %+v, encoding/json %+v\nbody %q", got, got, want, b)
	}
	// Accepted: it passes the independent checks.
	if !json.Valid(b) {
		t.Fatalf("%T: accepted what json.Valid refuses: %q", got, b)
	}
	if !utf8.Valid(b) {
		t.Fatalf("%T: accepted invalid UTF-8: %q", got, b)
	}
	if duplicateKey(b) {
		t.Fatalf("%T: accepted a repeated key: %q", got, b)
	}
	// Accepted: with data after it, it is refused.
	for _, tail := range []string{" x", " {}", "0", "]", ",", " null"} {
		if err := strictjson.Check(append(bytes.Clone(b), tail...), reflect.TypeFor[T]()); !errors.As(err, &se) {
			t.Fatalf("%T: %q%s: %v, want a syntax error", got, b, tail, err)
		}
	}
	// Accepted: with its first key repeated, it is refused naming that key.
	if key, rest, ok := firstKey(b); ok {
		qk, _ := json.Marshal(key)
		dup := append(append([]byte("{"), qk...), ":null,"...)
		dup = append(dup, rest...)
		err := strictjson.Check(dup, reflect.TypeFor[T]())
		if !errors.As(err, &pe) || !hasProblem(pe, key, "duplicate key") {
			t.Fatalf("%T: %q: %v, want %s: duplicate key", got, dup, err, key)
		}
	}
}

func hasProblem(e *strictjson.Error, path, msg string) bool {
	for _, p := range e.Problems {
		if p.Path == path && p.Message == msg {
			return true
		}
	}
	return false
}

// firstKey returns the first key of a body that is an object, and the body
// after its opening brace.
func firstKey(b []byte) (key string, rest []byte, ok bool) {
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return "", nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if _, err := dec.Token(); err != nil {
		return "", nil, false
	}
	tok, err := dec.Token()
	if key, isKey := tok.(string); err == nil && isKey {
		return key, trimmed[1:], true
	}
	return "", nil, false
}

// duplicateKey scans b with encoding/json's tokenizer (not the code under
// test) and reports whether some object repeats a key.
func duplicateKey(b []byte) bool {
	type frame struct {
		object  bool
		wantKey bool
		keys    map[string]bool
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(b))
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			stack = append(stack, &frame{object: tok == json.Delim('{'), wantKey: true, keys: map[string]bool{}})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
			continue
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
			k := tok.(string)
			if stack[n-1].keys[k] {
				return true
			}
			stack[n-1].keys[k] = true
			stack[n-1].wantKey = false
			continue
		}
		valueDone()
	}
}
