package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// fastSeeds are envelopes fastEnvelope must read as encoding/json does, or
// decline.
var fastSeeds = []string{
	`{"id":"b-1","type":"click.tracked","data":{"id":"c1","seq":1,"sent":1764277200000000000,"country":"US","device":"mobile"}}`,
	`{"id":"e-1","trigger_type":"conversion","timestamp":"2026-11-27T21:00:00Z","data":{"conversion":{"id":"cv-1","amount":12.5e-3},"click":{"id":"c-9"}}}`,
	" \n{ \"id\" : 5 , \"type\":\"api_key.x\", \"data\" : { } } \t",
	`{"trigger_type":"fraud","trigger_id":["x"],"data":{"a":[1,-0,0.5,1E+9,true,false,null,{"b":[]}]}}`,
	`{"type":"click.tracked","data":{"u":"caf\u00e9 \ud83d\ude00 \/ \"q\"","k":"é","k":"last"}}`,
	`{"ID":"upper","type":"click","data":{}}`,
	`{"Data":{"x":1},"type":"click","data":{}}`,
	`{"ſd":"long s","type":"click","data":{}}`,
	`{"type":"click","type":"conversion","data":{}}`,
	`{"type":5,"data":{}}`,
	`{"type":null,"trigger_type":"click","data":{}}`,
	`{"type":"click","data":{}} x`,
	`{"type":"click","data":{}}{}`,
	`{"type":"click","data":{"a":01}}`,
	`{"type":"click","data":{"a":"\ud800"}}`,
	"{\"type\":\"click\",\"data\":{\"a\":\"\xff\"}}",
	`{"type":"click","data":{"a":"tab	inside"}}`,
	`{"type":"click","data":{"a":1.}}`,
	`{"type":"click","data":{"a":-}}`,
	`{"type":"click","unknown":{"deep":[[[["x"]]]]},"data":{}}`,
	`{"type":"click","data":{},}`,
	`[]`, `null`, `"x"`, `{`, ``, `{"a"}`, `{"type":"click","data":tru}`,
	` "pl\u00e9in" `, `-1.5e3`, `"tab	in"`, `"\x"`, `0x1`, `"a" "b"`, `12 `, `true`,
}

func FuzzFastEnvelopeMatchesEncodingJSON(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFastEnvelope(t, b)
	})
}

// The seeds run in every go test, fuzzing or not; the declines are counted
// so the test fails if the fast path stops taking ordinary events.
func TestFastEnvelopeMatchesEncodingJSON(t *testing.T) {
	taken := 0
	for _, s := range fastSeeds {
		if checkFastEnvelope(t, []byte(s)) {
			taken++
		}
	}
	for _, s := range fastSeeds[:5] {
		if _, ok := fastEnvelope([]byte(s)); !ok {
			t.Errorf("declined the ordinary event %s", s)
		}
	}
	if taken == len(fastSeeds) {
		t.Error("declined none of the seeds: the unusual ones should go to encoding/json")
	}
}

// checkFastEnvelope: what fastEnvelope reads, encoding/json reads the same
// way, without an error; and scalarString renders b as encoding/json reads
// it (scalarReference). It reports whether the fast path took b.
func checkFastEnvelope(t *testing.T, b []byte) bool {
	t.Helper()
	if got, want := scalarString(b), scalarReference(b); got != want {
		t.Fatalf("scalarString(%.200q) = %.200q; encoding/json: %.200q", b, got, want)
	}
	got, ok := fastEnvelope(b)
	if !ok {
		return false
	}
	want, err := decodeEnvelope(b)
	if err != nil {
		t.Fatalf("fast path took %.200q, encoding/json refuses it: %v", b, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%.200q:\nfast     %.300v\nencoding %.300v", b, got, want)
	}
	return true
}

// scalarReference is scalarString as encoding/json reads a scalar: a
// string, or a number's text; anything else "".
func scalarReference(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
		return ""
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// Without a trigger_id, the trigger's own object's id is the trigger id,
// a string or a number's text, in either reading of the envelope.
func TestTriggerIDFromTheObjectsID(t *testing.T) {
	for raw, want := range map[string]string{
		`{"type":"click.tracked","data":{"id":"c-1"}}`:                    "c-1",
		`{"type":"click.tracked","data":{"id":12.50}}`:                    "12.50",
		`{"type":"click.tracked","data":{"id":["x"]}}`:                    "",
		`{"TYPE":"click.tracked","data":{"click":{"id":"c\u00e9"}}}`:      "cé",
		`{"trigger_type":"click","trigger_id":7,"data":{"id":"ignored"}}`: "7",
	} {
		e, err := Decode([]byte(raw))
		if err != nil {
			t.Errorf("%s: %v", raw, err)
		} else if e.TriggerID != want {
			t.Errorf("%s: trigger id %q, want %q", raw, e.TriggerID, want)
		}
	}
}

// At encoding/json's nesting limit (10,000, the envelope counted) the fast
// path reads what encoding/json reads and declines what it refuses.
func TestFastEnvelopeAtEncodingJSONsDepthLimit(t *testing.T) {
	for n, taken := range map[int]bool{9998: true, 9999: false, 20000: false} {
		b := []byte(`{"type":"click.tracked","data":{"a":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}}`)
		if got := checkFastEnvelope(t, b); got != taken {
			t.Errorf("%d arrays deep in data: fast path took it %v, want %v", n, got, taken)
		}
	}
	if _, err := Decode([]byte(`{"type":"click.tracked","data":{"a":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}}`)); !errors.Is(err, ErrInvalid) {
		t.Errorf("an event past the nesting limit: %v, want invalid", err)
	}
}
