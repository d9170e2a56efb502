package strictjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/afftok/webhookd/strictjson"
)

type Inner struct {
	N int    `json:"n"`
	S string `json:"s"`
}

type Base struct {
	ID       string `json:"id"`
	Shadowed int    `json:"shadowed"`
}

type Extra struct {
	X int `json:"x"`
}

type hidden struct {
	H int `json:"h"`
}

// target has a field of every shape the checker handles.
type target struct {
	Base            // promoted: id (shadowed loses to the outer field)
	*Extra          // exported embedded pointer: x is promoted
	*hidden         // unexported embedded pointer: encoding/json cannot set h
	Shadowed string `json:"shadowed"`

	Name       string            `json:"name"`
	Count      int8              `json:"count"`
	Size       uint16            `json:"size"`
	Ratio      float32           `json:"ratio"`
	On         bool              `json:"on"`
	Ptr        *int              `json:"ptr"`
	Inner      Inner             `json:"inner"`
	InnerP     *Inner            `json:"inner_p"`
	List       []Inner           `json:"list"`
	Pair       [2]int            `json:"pair"`
	Headers    map[string]string `json:"headers"`
	ByID       map[int]bool      `json:"by_id"`
	Data       map[string]any    `json:"data"`
	Any        any               `json:"any"`
	Raw        json.RawMessage   `json:"raw"`
	At         time.Time         `json:"at"`
	AtP        *time.Time        `json:"at_p"`
	Bytes      []byte            `json:"bytes"`
	Num        json.Number       `json:"num"`
	Quoted     int               `json:"quoted,string"`
	Addr       netip.Addr        `json:"addr"` // an encoding.TextUnmarshaler
	Untagged   int
	Skip       int `json:"-"`
	Dash       int `json:"-,"` // named "-"
	unexported int
}

func TestCheck(t *testing.T) {
	typ := reflect.TypeFor[target]()
	cases := []struct {
		name string
		body string
		want []string // "path: message" of every problem, in order
	}{
		// Accepted.
		{"every field valid", `{"id":"i","x":1,"shadowed":"s","name":"n","count":-128,"size":65535,"ratio":1.5,"on":true,
			"ptr":7,"inner":{"n":1,"s":"s"},"inner_p":{"n":2},"list":[{"n":3},{}],"pair":[1,2],"headers":{"A":"b"},
			"by_id":{"1":true,"-2":false},"data":{"k":[1,"x",null,{"y":true}]},"any":3.5,"raw":{"any":["thing",1e400]},
			"at":"2024-12-01T12:00:00Z","at_p":"2024-12-01T12:00:00.5+02:00","bytes":"aGk=","num":"12.5e3","quoted":"42",
			"addr":"192.0.2.1","Untagged":9,"-":1}`, nil},
		{"whitespace around the value", " \t\r\n{}\n ", nil},
		{"null where the Go type has one", `{"ptr":null,"inner_p":null,"list":null,"headers":null,"data":null,"any":null,"raw":null,"at":null,"at_p":null,"bytes":null,"addr":null}`, nil},
		{"surrogate pair", `{"name":"\ud83d\ude00 \u00e9 é"}`, nil},
		{"integer zero and negative zero", `{"count":0,"size":0,"ptr":-0}`, nil},

		// One value per body.
		{"trailing garbage", `{"name":"n"} garbage`, []string{"syntax: invalid character 'g' after the top-level value; a body holds exactly one JSON value (at offset 13)"}},
		{"a second value", `{} {}`, []string{"syntax: invalid character '{' after the top-level value; a body holds exactly one JSON value (at offset 3)"}},
		{"empty body", ``, []string{"syntax: unexpected end of JSON input (at offset 0)"}},
		{"malformed", `{"name":}`, []string{"syntax: invalid character '}' looking for the beginning of a value (at offset 8)"}},
		{"unterminated", `{"name":"n`, []string{"syntax: unexpected end of JSON input (at offset 10)"}},
		{"nothing after a colon", `{"quoted":`, []string{"syntax: unexpected end of JSON input (at offset 10)"}}, // found by FuzzStrictDecode
		{"leading zero", `{"count":01}`, []string{"syntax: invalid character '1' after object key:value pair (at offset 10)"}},
		{"bare control character", "{\"name\":\"a\nb\"}", []string{"syntax: control character U+000A in string literal (escape it) (at offset 10)"}},
		{"bad escape", `{"name":"\x"}`, []string{`syntax: invalid character 'x' in string escape code (at offset 10)`}},
		{"invalid UTF-8 outside a string", "{\xff}", []string{"syntax: invalid byte 0xFF (not UTF-8) looking for the beginning of an object key string (at offset 1)"}},
		{"too deep", `{"raw":` + strings.Repeat("[", 1001) + strings.Repeat("]", 1001) + `}`, []string{"syntax: nesting deeper than 1000 levels (at offset 1006)"}},

		// Duplicate keys, at any depth.
		{"duplicate top-level key", `{"name":"a","name":"b"}`, []string{"name: duplicate key"}},
		{"duplicate key spelled with an escape", `{"name":"a","n\u0061me":"b"}`, []string{"name: duplicate key"}},
		{"duplicate key in a list element", `{"list":[{"n":1},{"n":1,"s":"","n":2}]}`, []string{"list[1].n: duplicate key"}},
		{"duplicate key in a map", `{"headers":{"A":"1","A":"2"}}`, []string{"headers.A: duplicate key"}},
		{"duplicate key inside a raw value", `{"raw":{"a":{"b":1,"b":1}}}`, []string{"raw.a.b: duplicate key"}},
		{"duplicate key inside an any", `{"data":{"x":[{"k":1,"k":2}]}}`, []string{"data.x[0].k: duplicate key"}},

		// Invalid Unicode, never replaced.
		{"invalid UTF-8 in a value", "{\"name\":\"a\xffb\"}", []string{"name: is not valid UTF-8"}},
		{"invalid UTF-8 in a key", "{\"na\xffme\":1}", []string{"na\uFFFDme: key is not valid UTF-8"}},
		{"invalid UTF-8 in a raw value", "{\"raw\":[\"\xc3\"]}", []string{"raw[0]: is not valid UTF-8"}},
		{"encoded surrogate bytes", "{\"name\":\"\xed\xa0\x80\"}", []string{"name: is not valid UTF-8"}},
		{"lone high surrogate", `{"name":"a\ud800b"}`, []string{`name: contains an unpaired surrogate escape \ud800`}},
		{"lone low surrogate", `{"headers":{"A":"\udc00"}}`, []string{`headers.A: contains an unpaired surrogate escape \udc00`}},

		// Types.
		{"the issue's body", `{"name":5,"count":"7","list":"nope"}`, []string{"name: must be a string", "count: must be an integer", "list: must be an array"}},
		{"every mismatch", `{"ratio":"x","on":1,"inner":[],"headers":[],"pair":{},"any":{"a":1},"data":5}`,
			[]string{"ratio: must be a number", "on: must be true or false", "inner: must be an object", "headers: must be an object", "pair: must be an array", "data: must be an object"}},
		{"null where the Go type has none", `{"name":null,"count":null,"on":null,"inner":null,"pair":null}`,
			[]string{"name: must be a string", "count: must be an integer", "on: must be true or false", "inner: must be an object", "pair: must be an array"}},
		{"header values must be strings", `{"headers":{"A":1,"B":null,"C":"ok"}}`, []string{"headers.A: must be a string", "headers.B: must be a string"}},
		{"non-integral numbers", `{"count":1.5,"size":1e2,"ptr":1.0}`, []string{"count: must be an integer", "size: must be an integer", "ptr: must be an integer"}},
		{"integers out of range", `{"count":128,"size":-1,"ptr":9223372036854775808}`, []string{
			"count: must be an integer between -128 and 127", "size: must be an integer between 0 and 65535", "ptr: must be an integer between -9223372036854775808 and 9223372036854775807"}},
		{"floats out of range", `{"ratio":1e39,"data":{"x":-1e400}}`, []string{"ratio: is out of range for a 32-bit number", "data.x: is out of range for a 64-bit number"}},
		{"array too long", `{"pair":[1,2,3,4]}`, []string{"pair: must have at most 2 elements"}},
		{"map key of the wrong kind", `{"by_id":{"1":true,"x":false,"99999999999999999999":true}}`, []string{
			"by_id.x: is not a valid key: keys must be integers between -9223372036854775808 and 9223372036854775807",
			"by_id.99999999999999999999: is not a valid key: keys must be integers between -9223372036854775808 and 9223372036854775807"}},
		{"time", `{"at":"yesterday","at_p":5}`, []string{`at: must be an RFC 3339 time string (such as "2024-12-01T12:00:00Z")`, `at_p: must be an RFC 3339 time string (such as "2024-12-01T12:00:00Z")`}},
		{"bytes", `{"bytes":"!!"}`, []string{"bytes: must be a base64 string"}},
		{"bytes as an array", `{"bytes":[1]}`, []string{"bytes: must be a base64 string"}},
		{"json.Number", `{"num":"x"}`, []string{"num: must be a number"}},
		{"quoted", `{"quoted":5}`, []string{"quoted: must be a string holding an integer"}},
		{"quoted non-integer", `{"quoted":"1.5"}`, []string{"quoted: must be an integer"}},
		{"quoted with spaces", `{"quoted":" 5"}`, []string{"quoted: must be a string holding an integer"}},
		{"text unmarshaler", `{"addr":"nope"}`, []string{`addr: is invalid: ParseAddr("nope"): unable to parse IP`}},
		{"text unmarshaler wants a string", `{"addr":5}`, []string{`addr: must be a string`}},
		{"the body itself", `[]`, []string{": must be an object"}},

		// Paths: nested, embedded, pointers.
		{"nested paths", `{"inner":{"n":"x"},"inner_p":{"s":1},"list":[{},{"n":true}]}`, []string{"inner.n: must be an integer", "inner_p.s: must be a string", "list[1].n: must be an integer"}},
		{"pointer to a scalar", `{"ptr":"7"}`, []string{"ptr: must be an integer"}},
		{"embedded struct fields are promoted", `{"id":5,"x":"y"}`, []string{"id: must be a string", "x: must be an integer"}},
		{"the outer field shadows the embedded one", `{"shadowed":5}`, []string{"shadowed: must be a string"}},
		{"a field behind an unexported embedded pointer", `{"h":1}`, []string{"h: cannot be set (it is promoted through an embedded pointer to an unexported struct)"}},

		// Unknown fields.
		{"unknown fields", `{"nmae":"x","inner":{"m":1},"list":[{"z":{}}]}`, []string{"nmae: is not a known field", "inner.m: is not a known field", "list[0].z: is not a known field"}},
		{"names match exactly", `{"NAME":"x","untagged":1,"Skip":1,"unexported":1,"Base":{}}`, []string{
			"NAME: is not a known field", "untagged: is not a known field", "Skip: is not a known field", "unexported: is not a known field", "Base: is not a known field"}},
		{"an unknown field is not checked further", `{"nope":{"a":1,"b":"\ud800"}}`, []string{"nope: is not a known field", `nope.b: contains an unpaired surrogate escape \ud800`}},

		// Everything at once.
		{"every problem is listed", `{"name":5,"name":6,"count":1.5,"list":[{"n":"1","q":1},{"s":false}],"headers":{"A":2},"zz":0}`, []string{
			"name: must be a string", "name: duplicate key", "count: must be an integer", "list[0].n: must be an integer", "list[0].q: is not a known field",
			"list[1].s: must be a string", "headers.A: must be a string", "zz: is not a known field"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := describe(strictjson.Check([]byte(c.body), typ))
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("body %s\n got: %q\nwant: %q", c.body, got, c.want)
			}
		})
	}
}

// describe flattens an error of Check into "path: message" lines.
func describe(err error) []string {
	var se *strictjson.SyntaxError
	var pe *strictjson.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		return []string{"syntax: " + se.Error()}
	case errors.As(err, &pe):
		var out []string
		for _, p := range pe.Problems {
			out = append(out, p.Path+": "+p.Message)
		}
		return out
	}
	return []string{"unexpected: " + err.Error()}
}

func TestDecodeAgreesWithEncodingJSON(t *testing.T) {
	body := []byte(`{"id":"i","x":1,"name":"n\u00e9","count":3,"ratio":0.25,"ptr":7,"inner_p":{"n":2},"list":[{"n":3}],
		"headers":{"A":"b"},"by_id":{"1":true},"data":{"k":[1,"x",null]},"any":[1],"raw": {"a" : 1},
		"at":"2024-12-01T12:00:00Z","bytes":"aGk=","num":12,"quoted":"42","addr":"::1","Untagged":9}`)
	var got, want target
	if err := strictjson.Decode(body, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if got.Quoted != 42 || got.Extra == nil || got.X != 1 || string(got.Raw) != `{"a" : 1}` {
		t.Fatalf("decoded %+v", got)
	}
}

func TestDecodeReportsNothingOnTheTargetWhenItRejects(t *testing.T) {
	var v target
	err := strictjson.Decode([]byte(`{"name":"set","count":1.5}`), &v)
	if err == nil || v.Name != "" {
		t.Fatalf("err %v, name %q: a rejected body must not be half-decoded", err, v.Name)
	}
	if err := strictjson.Decode([]byte(`{}`), v); err == nil {
		t.Fatal("decoding into a non-pointer must fail")
	}
}

// Names that collide at the same depth cancel out in encoding/json, a tag
// beats no tag, and a shallower field beats a deeper one: Check agrees.
func TestEmbeddedNameRulesMatchEncodingJSON(t *testing.T) {
	type A struct{ X, Y int }
	type B struct {
		X int
		Y int `json:"Y"`
	}
	type C struct{ Z int }
	type D struct{ C }
	type both struct {
		A
		B
		D
		Z string
	}
	for _, c := range []struct {
		body  string
		known bool
	}{
		{`{"X":1}`, false}, // A.X and B.X: same depth, neither tagged
		{`{"Y":1}`, true},  // B.Y is tagged
		{`{"Z":"s"}`, true},
	} {
		var v both
		dec := json.NewDecoder(bytes.NewReader([]byte(c.body)))
		dec.DisallowUnknownFields()
		jsonErr := dec.Decode(&v)
		err := strictjson.Check([]byte(c.body), reflect.TypeFor[both]())
		if (jsonErr == nil) != c.known || (err == nil) != c.known {
			t.Errorf("%s: encoding/json %v, strictjson %v, want known=%v", c.body, jsonErr, err, c.known)
		}
	}
}

func TestProblemsAreBounded(t *testing.T) {
	body := "[" + strings.Repeat(`1,`, strictjson.MaxProblems+49) + "1]"
	err := strictjson.Check([]byte(body), reflect.TypeFor[[]string]())
	var pe *strictjson.Error
	if !errors.As(err, &pe) || len(pe.Problems) != strictjson.MaxProblems || pe.Omitted != 50 {
		t.Fatalf("err %v", err)
	}
	if pe.Problems[0].Path != "[0]" || !strings.HasSuffix(pe.Error(), "; and 50 more") {
		t.Fatalf("first %+v, error %q", pe.Problems[0], pe.Error())
	}
}
