package jsonvalue

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// A value reads as encoding/json reads it with UseNumber; what it refuses
// is an error here too. (Its users fuzz it against encoding/json:
// FuzzDecodeCompactRows, FuzzFastEnvelopeMatchesEncodingJSON.)
func TestValueIsEncodingJSONs(t *testing.T) {
	for _, s := range []string{
		`{"a":[1,-0.5,2e+3,true,false,null,{"b":"c"}],"a":"last"}`, `"caf\u00e9 \ud83d\ude00 \/"`, "\"\xff\"", `"\ud800"`, `[]`, `{}`, `-0`,
		`[1,]`, `[01]`, `1.`, `-`, `1e`, `"open`, `nul`, `{"a" 1}`, `{1:2}`, "\"tab\x01\"", `[1`,
	} {
		d := NewReader([]byte(s))
		got, err := d.Value()
		if err == nil && !d.AtEnd() {
			t.Errorf("%q: read %#v with data left", s, got)
		}
		dec := json.NewDecoder(bytes.NewReader([]byte(s)))
		dec.UseNumber()
		var want any
		werr := dec.Decode(&want)
		if werr == nil && dec.More() {
			werr = errStr("data after the value")
		}
		if (err != nil) != (werr != nil) || (err == nil && !reflect.DeepEqual(got, want)) {
			t.Errorf("%q: %#v, %v; encoding/json %#v, %v", s, got, err, want, werr)
		}
	}
}

type errStr string

func (e errStr) Error() string { return string(e) }
