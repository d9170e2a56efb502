package pipeline

import (
	"errors"
	"strings"
	"testing"
)

// A header value saved with a line break (or another control character) is
// refused at its field; a tab and templated values are fine (values are
// sanitised when rendered).
func TestHeaderValuesWithControlCharactersAreRefused(t *testing.T) {
	for _, tc := range []struct {
		value string
		bad   bool
	}{
		{`a\r\nX-Injected: 1`, true},
		{`a\nb`, true},
		{`a\u0000b`, true},
		{`a\u007fb`, true},
		{`a\tb`, false},
		{`Bearer {{env.K}}`, false},
		{`{{data.click_id}}`, false},
	} {
		var p Pipeline
		if err := Decode([]byte(`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io","headers":{"X-H":"`+tc.value+`"}}]}`), &p); err != nil {
			t.Fatalf("%s: %v", tc.value, err)
		}
		p.Normalize()
		err := p.Validate(allowEnv{"K": true}, DefaultRetryLimits, nil)
		var ve *ValidationError
		switch {
		case !tc.bad && err != nil:
			t.Errorf("%s: %v", tc.value, err)
		case tc.bad && (!errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Field != "steps[0].headers.X-H" ||
			!strings.Contains(ve.Fields[0].Message, "control characters")):
			t.Errorf("%s: %v, want steps[0].headers.X-H: control characters", tc.value, err)
		}
	}
}
