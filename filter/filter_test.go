package filter

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/afftok/webhookd/event"
	"github.com/afftok/webhookd/template"
)

// sample is a conversion as the tracking platform produces it.
const sample = `{"id":"evt_1","type":"conversion.created","trigger_id":"conv_1","timestamp":"2024-12-01T12:00:00Z","data":{
  "conversion":{"id":"conv_1","amount":49.99,"count":3,"big":9007199254740993,"status":"approved","approved":true,"note":null,
                "amount_text":"49.99","tags":["a","b"],"meta":{"k":"v"}},
  "click":{"id":"clk_1","country":"US","ua":"Mozilla/5.0 (iPhone)"}}}`

func vars(t testing.TB, raw string) template.Vars {
	t.Helper()
	ev, err := event.Decode([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return Vars(ev)
}

func mustParse(t testing.TB, f string) *Filter {
	t.Helper()
	c, err := Parse([]byte(f))
	if err != nil {
		t.Fatalf("%s: %v", f, err)
	}
	return c
}

// TestOperators: every operator, on a match, a mismatch, a value of another
// JSON type and a missing path.
func TestOperators(t *testing.T) {
	v := vars(t, sample)
	cases := []struct {
		filter string
		want   bool
	}{
		// $eq, and a bare value meaning $eq.
		{`{"click.country": "US"}`, true},
		{`{"click.country": "CA"}`, false},
		{`{"click.country": {"$eq": "US"}}`, true},
		{`{"conversion.amount": 49.99}`, true},
		{`{"conversion.amount": 49.990}`, true}, // numbers compare by value
		{`{"conversion.count": 3.0}`, true},
		{`{"conversion.amount_text": 49.99}`, false}, // a string never equals a number
		{`{"conversion.amount": "49.99"}`, false},    // nor a number a string
		{`{"conversion.approved": true}`, true},
		{`{"conversion.approved": "true"}`, false},
		{`{"conversion.note": null}`, true},            // present and null
		{`{"conversion.missing": null}`, false},        // missing is not null
		{`{"conversion.tags": {"$eq": "a"}}`, false},   // arrays equal no scalar
		{`{"conversion.meta": {"$eq": "v"}}`, false},   // nor do objects
		{`{"conversion.big": 9007199254740993}`, true}, // exact for 64-bit integers
		{`{"conversion.big": 9007199254740992}`, false},
		{`{"click.missing": "US"}`, false},
		// $neq: true for other values, other types and missing paths.
		{`{"click.country": {"$neq": "US"}}`, false},
		{`{"click.country": {"$neq": "CA"}}`, true},
		{`{"conversion.amount": {"$neq": "49.99"}}`, true},
		{`{"click.missing": {"$neq": "US"}}`, true},
		// Ordering: numbers only.
		{`{"conversion.amount": {"$gt": 49}}`, true},
		{`{"conversion.amount": {"$gt": 49.99}}`, false},
		{`{"conversion.amount": {"$gte": 49.99}}`, true},
		{`{"conversion.amount": {"$gte": 50}}`, false},
		{`{"conversion.amount": {"$lt": 50}}`, true},
		{`{"conversion.amount": {"$lt": 49.99}}`, false},
		{`{"conversion.amount": {"$lte": 49.99}}`, true},
		{`{"conversion.amount": {"$lte": -1e3}}`, false},
		{`{"conversion.amount": {"$gte": 10, "$lt": 100}}`, true}, // operators of one path: AND
		{`{"conversion.amount": {"$gte": 10, "$lt": 20}}`, false},
		{`{"conversion.amount_text": {"$gte": 10}}`, false}, // a numeric string is not a number
		{`{"click.country": {"$lt": 1}}`, false},
		{`{"conversion.approved": {"$gt": 0}}`, false},
		{`{"conversion.note": {"$lte": 0}}`, false},
		{`{"conversion.missing": {"$gt": 0}}`, false},
		{`{"conversion.missing": {"$lte": 0}}`, false},
		// $in / $nin.
		{`{"click.country": {"$in": ["US", "CA"]}}`, true},
		{`{"click.country": {"$in": ["DE", "FR"]}}`, false},
		{`{"conversion.count": {"$in": [1, 2, 3]}}`, true},
		{`{"conversion.count": {"$in": ["3"]}}`, false},
		{`{"conversion.note": {"$in": [null]}}`, true},
		{`{"conversion.tags": {"$in": ["a"]}}`, false},
		{`{"click.missing": {"$in": ["US", null]}}`, false},
		{`{"click.country": {"$nin": ["US"]}}`, false},
		{`{"click.country": {"$nin": ["DE"]}}`, true},
		{`{"conversion.count": {"$nin": ["3"]}}`, true},
		{`{"click.missing": {"$nin": ["US"]}}`, true},
		// $exists.
		{`{"click.country": {"$exists": true}}`, true},
		{`{"click.country": {"$exists": false}}`, false},
		{`{"conversion.note": {"$exists": true}}`, true},
		{`{"click.missing": {"$exists": false}}`, true},
		{`{"click.missing": {"$exists": true}}`, false},
		{`{"conversion.tags.1": {"$exists": true}}`, true}, // numeric segments index arrays, as in templates
		{`{"conversion.tags.2": {"$exists": true}}`, false},
		// $regex: RE2, strings only, not anchored.
		{`{"click.ua": {"$regex": "iPhone|iPad"}}`, true},
		{`{"click.ua": {"$regex": "^iPhone"}}`, false},
		{`{"click.ua": {"$regex": "(?i)IPHONE"}}`, true},
		{`{"conversion.amount": {"$regex": "49"}}`, false},
		{`{"conversion.amount_text": {"$regex": "^49\\.99$"}}`, true},
		{`{"click.missing": {"$regex": ".*"}}`, false},
		// Event variables, the flat envelope's namespace and data.
		{`{"trigger_type": "conversion", "event_type": "conversion.created", "event_id": "evt_1", "trigger_id": "conv_1"}`, true},
		{`{"event_timestamp": {"$regex": "^2024-12"}}`, true},
		{`{"data.conversion.amount": {"$gt": 10}}`, true},
		{`{"conversion": {"$exists": true}}`, true},
		{`{"offer": {"$exists": false}}`, true},
		// $and / $or, nested, and the implicit AND across keys.
		{`{"conversion.amount": {"$gte": 10}, "click.country": {"$in": ["US", "CA"]}}`, true},
		{`{"conversion.amount": {"$gte": 10}, "click.country": {"$in": ["DE"]}}`, false},
		{`{"$or": [{"click.country": "DE"}, {"conversion.amount": {"$gt": 40}}]}`, true},
		{`{"$or": [{"click.country": "DE"}, {"conversion.amount": {"$gt": 60}}]}`, false},
		{`{"$and": [{"click.country": "US"}, {"$or": [{"conversion.status": "rejected"}, {"conversion.approved": true}]}]}`, true},
		{`{"$and": [{"click.country": "US"}, {"conversion.status": "rejected"}]}`, false},
		{`{"$or": [{"click.country": "US"}], "conversion.amount": {"$lt": 1}}`, false},
		// Empty: no filter.
		{`{}`, true},
		{` null `, true},
		{``, true},
	}
	for _, c := range cases {
		f := mustParse(t, c.filter)
		if got := f.Match(v); got != c.want {
			t.Errorf("%s: matched %v, want %v", c.filter, got, c.want)
		}
	}
}

// TestProblemsNameTheirPath: every kind of mistake, reported at its path.
func TestProblemsNameTheirPath(t *testing.T) {
	cases := []struct {
		filter string
		path   string // the first problem's path
		msg    string // part of its message
	}{
		{`{"conversion.amount": {"$gte": "ten"}}`, "conversion.amount.$gte", "must be a number"},
		{`{"conversion.amount": {"$lt": null}}`, "conversion.amount.$lt", "must be a number"},
		{`{"click.country": {"$in": "US"}}`, "click.country.$in", "must be an array"},
		{`{"click.country": {"$nin": ["US", {"a": 1}]}}`, "click.country.$nin[1]", "must be a string, number, boolean or null"},
		{`{"click.country": {"$eq": ["US"]}}`, "click.country.$eq", "must be a string, number, boolean or null"},
		{`{"click.country": ["US"]}`, "click.country", "use {\"$in\""},
		{`{"click.country": {"country": "US"}}`, "click.country", "must hold operators"},
		{`{"click.country": {}}`, "click.country", "at least one operator"},
		{`{"click.country": {"$like": "US"}}`, "click.country.$like", "is not an operator"},
		{`{"click.country": {"$exists": 1}}`, "click.country.$exists", "must be true or false"},
		{`{"click.ua": {"$regex": 1}}`, "click.ua.$regex", "must be a string"},
		{`{"click.ua": {"$regex": "a(b"}}`, "click.ua.$regex", "not a valid RE2"},
		{`{"click.ua": {"$regex": "(a)\\1"}}`, "click.ua.$regex", "not a valid RE2"}, // no backreferences
		{`{"click.ua": {"$regex": "` + strings.Repeat("a", MaxPatternBytes+1) + `"}}`, "click.ua.$regex", "longer than 1024 bytes"},
		{`{"click.ua": {"$regex": "` + strings.Repeat("x{1000}", 6) + `"}}`, "click.ua.$regex", "RE2 instructions"},
		{`{"conversion.amount": {"$gt": 1e999}}`, "conversion.amount.$gt", "out of range"},
		{`{"$or": {"a": 1}}`, "$or", "must be an array of filters"},
		{`{"$or": []}`, "$or", "at least one filter"},
		{`{"$and": [{"click.country": "US"}, 3]}`, "$and[1]", "must be an object"},
		{`{"$and": [{}]}`, "$and[0]", "at least one condition"},
		{`{"$or": [{"click.country": {"$in": [1, []]}}]}`, "$or[0].click.country.$in[1]", "must be a string"},
		{`{"$not": {"a": 1}}`, "$not", "is not a filter key"},
		{`{"env.SECRET": "x"}`, "env.SECRET", "env values cannot be filtered on"},
		{`{"steps.1.status": 200}`, "steps.1.status", "step results"},
		{`{"uuid": "x"}`, "uuid", "not part of the event"},
		{`{"delivery_id": "x"}`, "delivery_id", "not part of the event"},
		{`{"nope.x": 1}`, "nope.x", "unknown variable"},
		{`{"trigger_type.x": 1}`, "trigger_type.x", "has no fields"},
		{`{"click..country": 1}`, "click..country", "empty path segment"},
		{`{"click.coun try": 1}`, "click.coun try", "invalid character"},
		{`[]`, "", "must be an object"},
		{`"US"`, "", "must be an object"},
		{`{"a":`, "", "not valid JSON"},
		{`{} {}`, "", "not valid JSON"},
		{deep(MaxDepth + 1), strings.Repeat("$and[0].", MaxDepth+1)[:len(strings.Repeat("$and[0].", MaxDepth+1))-1], "more than 8 levels"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.filter))
		var fe *Error
		if !errors.As(err, &fe) || len(fe.Problems) == 0 {
			t.Errorf("%.80s: err %v, want a problem at %q", c.filter, err, c.path)
			continue
		}
		p := fe.Problems[0]
		if p.Path != c.path || !strings.Contains(p.Message, c.msg) {
			t.Errorf("%.80s: problem %q: %q, want %q: …%s…", c.filter, p.Path, p.Message, c.path, c.msg)
		}
	}
	// Every problem is listed, not only the first.
	_, err := Parse([]byte(`{"a.b": 1, "click.x": {"$gt": "1", "$in": 2}}`))
	var fe *Error
	if !errors.As(err, &fe) || len(fe.Problems) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
}

// deep is a filter whose $and nesting is n levels deep.
func deep(n int) string {
	f := `{"click.country": "US"}`
	for range n {
		f = `{"$and": [` + f + `]}`
	}
	return f
}

func TestLimits(t *testing.T) {
	mustParse(t, deep(MaxDepth))
	var in []string
	for i := range MaxList {
		in = append(in, fmt.Sprint(i))
	}
	mustParse(t, `{"conversion.count": {"$in": [`+strings.Join(in, ",")+`]}}`)
	in = append(in, "1")
	if _, err := Parse([]byte(`{"conversion.count": {"$in": [` + strings.Join(in, ",") + `]}}`)); err == nil || !strings.Contains(err.Error(), "more than the 1000 allowed") {
		t.Fatalf("over MaxList: %v", err)
	}
	var keys []string
	for i := range MaxConditions + 1 {
		keys = append(keys, fmt.Sprintf(`"data.k%d": 1`, i))
	}
	if _, err := Parse([]byte(`{` + strings.Join(keys, ",") + `}`)); err == nil || !strings.Contains(err.Error(), "conditions, more than the 256 allowed") {
		t.Fatalf("over MaxConditions: %v", err)
	}
	if _, err := Parse([]byte(`{"data.k": "` + strings.Repeat("x", MaxBytes) + `"}`)); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("over MaxBytes: %v", err)
	}
}

// TestMatchesWhatTemplatesRender: a filter and a template read one value
// for one path (the same Lookup on the same scope).
func TestMatchesWhatTemplatesRender(t *testing.T) {
	v := vars(t, `{"id":"evt_2","type":"click.tracked","data":{"id":"clk_2","country":"CA","geo":{"city":"Toronto"}}}`)
	for path, want := range map[string]string{"click.country": "CA", "click.geo.city": "Toronto", "data.country": "CA", "event_type": "click.tracked", "trigger_type": "click"} {
		txt, err := template.Parse("{{" + path + "}}")
		if err != nil {
			t.Fatal(err)
		}
		if got := txt.Interpolate(v, nil); got != want {
			t.Fatalf("template {{%s}} = %q", path, got)
		}
		if !mustParse(t, fmt.Sprintf(`{%q: %q}`, path, want)).Match(v) {
			t.Errorf("filter on %s = %q does not match what the template renders", path, want)
		}
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		`{"conversion.amount": {"$gte": 10}, "click.country": {"$in": ["US", "CA"]}}`,
		`{"$or": [{"click.ua": {"$regex": "(?i)iphone"}}, {"conversion.note": null}], "data.x": {"$exists": false}}`,
		`{"$and": [{"$and": [{"trigger_type": {"$neq": "click", "$nin": [1, true, null]}}]}]}`,
		`{"conversion.count": {"$lt": 1e308, "$gt": -9223372036854775808}}`,
		`{"click.ua": {"$regex": "a{1000}"}}`,
		`{}`, `[]`, `null`, `{"$or": []}`,
	} {
		f.Add([]byte(s))
	}
	evs := []template.Vars{vars(f, sample), vars(f, `{"id":"e","type":"click.tracked","data":{"id":"c","country":["US"]}}`)}
	f.Fuzz(func(t *testing.T, b []byte) {
		flt, err := Parse(b)
		if err != nil {
			var fe *Error
			if !errors.As(err, &fe) || len(fe.Problems) == 0 {
				t.Fatalf("a rejected filter must list its problems: %v", err)
			}
			return
		}
		if flt != nil && (flt.Conditions < 1 || flt.Conditions > MaxConditions) {
			t.Fatalf("accepted %d conditions", flt.Conditions)
		}
		// Matching never panics and is a pure function of the event.
		for _, v := range evs {
			if flt.Match(v) != flt.Match(v) {
				t.Fatal("match is not deterministic")
			}
		}
	})
}

// BenchmarkMatch is the cost a filter adds to each (event, pipeline) pair:
// a typical three-clause filter on an event already decoded.
func BenchmarkMatch(b *testing.B) {
	ev, err := event.Decode([]byte(sample))
	if err != nil {
		b.Fatal(err)
	}
	f := mustParse(b, `{"conversion.amount": {"$gte": 10}, "click.country": {"$in": ["US", "CA"]}, "conversion.status": {"$neq": "rejected"}}`)
	b.Run("vars+match", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !f.Match(Vars(ev)) {
				b.Fatal("no match")
			}
		}
	})
	v := Vars(ev)
	b.Run("match", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !f.Match(v) {
				b.Fatal("no match")
			}
		}
	})
}
