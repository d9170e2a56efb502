package pipeline

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/afftok/webhookd/strictjson"
)

// Decode maps strictjson's errors onto the API's: field problems become one
// *ValidationError, while malformed JSON and a body of the wrong kind are
// plain errors (400 bad_request).
func TestDecodeMapsProblemsToFieldErrors(t *testing.T) {
	var p Pipeline
	err := Decode([]byte(`{"name":5,"steps":[{"order":1.5,"url":"https://x.io","url":"https://y.io","retry_policy":{"max_attempts":"3"}}],"x":1}`), &p)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	want := []FieldError{
		{"name", "must be a string"}, {"steps[0].order", "must be an integer"}, {"steps[0].url", "duplicate key"},
		{"steps[0].retry_policy.max_attempts", "must be an integer"}, {"x", "is not a known field"},
	}
	if !reflect.DeepEqual(ve.Fields, want) {
		t.Fatalf("fields %+v", ve.Fields)
	}

	for body, msg := range map[string]string{
		`{"name":"n"} {}`: "request body is not valid JSON: invalid character '{' after the top-level value; a body holds exactly one JSON value (at offset 13)",
		`{"name":`:        "request body is not valid JSON: unexpected end of JSON input (at offset 8)",
		`"pipeline"`:      "request body must be an object",
	} {
		err := Decode([]byte(body), &p)
		if err == nil || errors.As(err, &ve) || err.Error() != msg {
			t.Errorf("%s: %v, want %q", body, err, msg)
		}
	}

	// A body with more problems than strictjson lists says how many more.
	err = Decode([]byte(`{"steps":[`+strings.Repeat(`{"order":"1"},`, strictjson.MaxProblems+2)+`{}]}`), &p)
	if !errors.As(err, &ve) || len(ve.Fields) != strictjson.MaxProblems+1 || ve.Fields[strictjson.MaxProblems].Message != "2 more problems are not listed" {
		t.Fatalf("err = %v", err)
	}
}
