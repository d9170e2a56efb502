package event

import (
	"encoding/json"
	"reflect"
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
// way, without an error; and a string plainString takes, json.Unmarshal
// takes to the same text. It reports whether the fast path took b.
func checkFastEnvelope(t *testing.T, b []byte) bool {
	t.Helper()
	if s, ok := plainString(b); ok {
		var want string
		if err := json.Unmarshal(b, &want); err != nil || s != want {
			t.Fatalf("plainString(%q) = %q; encoding/json: %q, %v", b, s, want, err)
		}
	}
	got, ok := fastEnvelope(b)
	if !ok {
		return false
	}
	want, err := decodeEnvelope(b)
	if err != nil {
		t.Fatalf("fast path took %q, encoding/json refuses it: %v", b, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\nfast     %#v\nencoding %#v", b, got, want)
	}
	return true
}
