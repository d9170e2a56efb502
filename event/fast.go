package event

import (
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/afftok/webhookd/jsonvalue"
)

// fastEnvelope decodes the envelope of an ordinary event in one pass over
// its bytes, without reflection (jsonvalue): encoding/json's Decoder took
// 8 µs of a delivery's CPU for a 150-byte event, three times the rest of
// the decoding. It gives the envelope encoding/json would (numbers as
// json.Number, a repeated key's last value in data, strings as it makes
// them), and declines — ok false — whatever it does not read the same
// way, which Decode then hands to encoding/json for its answer or its
// error: a malformed or trailing byte, a top level that is not an object,
// an envelope key given twice or one encoding/json could match only
// ignoring case (as it matches struct fields), a type or trigger_type
// that is not a string, nesting past jsonvalue's bound.
// FuzzFastEnvelopeMatchesEncodingJSON holds it to that.
func fastEnvelope(b []byte) (env envelope, ok bool) {
	r := jsonvalue.NewReader(b)
	r.Space()
	if !r.Skip('{') {
		return env, false
	}
	var seen [len(envelopeFields)]bool
	if r.Closes('}') {
		return env, r.AtEnd()
	}
	for {
		r.Space()
		if c, _ := r.Peek(); c != '"' {
			return env, false
		}
		key, err := r.String()
		if err != nil {
			return env, false
		}
		r.Space()
		if !r.Skip(':') {
			return env, false
		}
		r.Space()
		field := envelopeField(key)
		if field < 0 && mayFold(key) {
			return env, false // encoding/json may match it to a field
		}
		if field >= 0 {
			if seen[field] {
				return env, false
			}
			seen[field] = true
		}
		start := r.Pos()
		v, err := r.ValueIn(1) // inside the envelope
		if err != nil {
			return env, false
		}
		raw := json.RawMessage(b[start:r.Pos()])
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
		closed, err := r.Next('}')
		if err != nil {
			return env, false
		}
		if closed {
			return env, r.AtEnd()
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
