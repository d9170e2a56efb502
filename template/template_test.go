package template

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
)

// conversionScope is the guide's "Conversion" available_data.
func conversionScope(t testing.TB) *Scope {
	var data map[string]any
	dec := json.NewDecoder(strings.NewReader(`{
	  "conversion": {"id": "conv_123","click_id": "click_456","offer_id": "off_789","user_id": "user_012",
	    "amount": 49.99,"currency": "USD","status": "approved","external_id": "ext_123","timestamp": "2024-12-01T12:00:00Z"},
	  "click": {"id": "click_456","ip": "192.168.1.1","country": "US","device": "mobile","browser": "Chrome","os": "iOS"},
	  "offer": {"id": "off_789","title": "Premium VPN","payout": 25.00}}`))
	dec.UseNumber()
	if err := dec.Decode(&data); err != nil {
		t.Fatal(err)
	}
	return &Scope{
		System:  System{TriggerType: "conversion", Delivery: true, Now: time.Date(2024, 12, 1, 12, 0, 0, 0, time.UTC), Nonce: "abc123xyz"},
		Objects: data, Data: data,
		Env: func(n string) (string, bool) { return map[string]string{"CRM_API_KEY": "k-1"}[n], n == "CRM_API_KEY" },
	}
}

// The guide's "Example Template" must render exactly to its "Renders to".
func TestGuideExampleTemplateRendersToTheGuideOutput(t *testing.T) {
	raw := `"{\n  \"event\": \"conversion\",\n  \"id\": \"{{conversion.id}}\",\n  \"offer\": \"{{offer.title}}\",\n  \"amount\": {{conversion.amount}},\n  \"currency\": \"{{conversion.currency}}\",\n  \"source\": {\n    \"country\": \"{{click.country}}\",\n    \"device\": \"{{click.device}}\"\n  },\n  \"meta\": {\n    \"timestamp\": \"{{timestamp}}\",\n    \"nonce\": \"{{nonce}}\"\n  }\n}"`
	want := "{\n  \"event\": \"conversion\",\n  \"id\": \"conv_123\",\n  \"offer\": \"Premium VPN\",\n  \"amount\": 49.99,\n  \"currency\": \"USD\",\n  \"source\": {\n    \"country\": \"US\",\n    \"device\": \"mobile\"\n  },\n  \"meta\": {\n    \"timestamp\": \"2024-12-01T12:00:00Z\",\n    \"nonce\": \"abc123xyz\"\n  }\n}"
	b, err := ParseBody(json.RawMessage(raw))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b.Render(conversionScope(t))); got != want {
		t.Fatalf("rendered\n%s\nwant\n%s", got, want)
	}
}

func TestObjectTemplateKeepsTypesAndKeyOrder(t *testing.T) {
	b, err := ParseBody(json.RawMessage(`{"event":"{{trigger_type}}","conversion_id":"{{conversion.id}}","amount":"{{conversion.amount}}","label":"{{offer.title}} for {{conversion.amount}} {{conversion.currency}}","offer":"{{offer}}","missing":"{{conversion.nope}}","n":[1,true,null],"k":"{{env.CRM_API_KEY}}"}`))
	if err != nil {
		t.Fatal(err)
	}
	got := string(b.Render(conversionScope(t)))
	want := `{"event":"conversion","conversion_id":"conv_123","amount":49.99,"label":"Premium VPN for 49.99 USD","offer":{"id":"off_789","payout":25.00,"title":"Premium VPN"},"missing":null,"n":[1,true,null],"k":"k-1"}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// Hostile event strings can neither break nor extend the JSON body.
func TestHostileValuesCannotInjectIntoBody(t *testing.T) {
	hostile := []string{
		`", "admin": true, "x": "`, "line1\nline2\r\n", `{{conversion.id}}`, `\`, `\"`, "</script>\u2028\u0000",
		"日本語 ✓ 🎉", `}]}`, "\xff\xfe invalid utf8",
	}
	templates := []string{
		`"{\"ua\": \"{{click.user_agent}}\", \"n\": {{click.user_agent}}, \"mixed\": \"ua={{click.user_agent}}!\"}"`,
		`{"ua":"{{click.user_agent}}","mixed":"ua={{click.user_agent}}!","{{click.user_agent}}":1}`,
	}
	for _, h := range hostile {
		for _, tpl := range templates {
			b, err := ParseBody(json.RawMessage(tpl))
			if err != nil {
				t.Fatal(err)
			}
			s := &Scope{Objects: map[string]any{"click": map[string]any{"user_agent": h}}}
			out := b.Render(s)
			var m map[string]any
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatalf("value %q with template %s produced invalid JSON %s: %v", h, tpl, out, err)
			}
			if _, injected := m["admin"]; injected {
				t.Fatalf("value %q injected a key: %s", h, out)
			}
			var want string
			wb, _ := json.Marshal(h) // invalid UTF-8 bytes become U+FFFD, as JSON requires
			_ = json.Unmarshal(wb, &want)
			if ua, _ := m["ua"].(string); ua != want {
				t.Fatalf("ua = %q, want the value verbatim %q", ua, h)
			}
		}
	}
}

func TestTextTemplateThatIsNotJSONIsRejected(t *testing.T) {
	for _, tpl := range []string{`"{\"a\": {{x}"`, `"{\"a\": \"{{click.id}}}"`, `"not json {{click.id}}"`, `"{\"a\": {{click.id}} {{click.id}}}"`} {
		if _, err := ParseBody(json.RawMessage(tpl)); err == nil {
			t.Errorf("template %s accepted", tpl)
		}
	}
}

func TestParseRejectsMalformedPlaceholders(t *testing.T) {
	for _, s := range []string{"{{", "a {{b", "{{}}", "{{a..b}}", "{{a b}}", "{{a|upper}}", "{{.a}}"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
	tp, err := Parse("x {{ conversion.id }} y {{steps.1.response.body.token}}")
	if err != nil {
		t.Fatal(err)
	}
	if phs := tp.Placeholders(); len(phs) != 2 || phs[0].String() != "conversion.id" || phs[1].Offset != 24 {
		t.Fatalf("placeholders = %+v", phs)
	}
}

func TestCheckNamespace(t *testing.T) {
	ok := []string{"trigger_type", "conversion.amount", "data", "data.x.y", "env.X", "steps.1.status", "fraud.indicators.0", "delivery_id"}
	bad := []string{"secrets.x", "env", "env.A.B", "trigger_type.x", "steps.1", "os.getenv"}
	for _, s := range ok {
		if err := CheckNamespace(Placeholder{Path: strings.Split(s, ".")}); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range bad {
		if err := CheckNamespace(Placeholder{Path: strings.Split(s, ".")}); err == nil {
			t.Errorf("%s accepted", s)
		}
	}
}

func TestURLValuesAreEscapedForTheirPosition(t *testing.T) {
	u, err := ParseURL("https://api.example.com/c/{{conversion.id}}/x?id={{conversion.id}}&t={{trigger_type}}#{{conversion.id}}")
	if err != nil {
		t.Fatal(err)
	}
	s := &Scope{System: System{TriggerType: "conversion"}, Objects: map[string]any{"conversion": map[string]any{"id": "a/b?c=d&e#f g"}}}
	got := u.Render(s)
	pu, err := url.Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	if pu.Host != "api.example.com" || pu.Query().Get("id") != "a/b?c=d&e#f g" || pu.Query().Get("t") != "conversion" || len(pu.Query()) != 2 {
		t.Fatalf("url %s parsed to host=%s query=%v", got, pu.Host, pu.Query())
	}
	if pu.Path != "/c/a/b?c=d&e#f g/x" || pu.RawPath == "" {
		t.Fatalf("path = %q raw %q", pu.Path, pu.RawPath)
	}
	h, _ := ParseURL("https://{{conversion.id}}.example.com/")
	if got := h.Render(&Scope{Objects: map[string]any{"conversion": map[string]any{"id": "evil.com/x@y"}}}); strings.Contains(got, "evil.com/") || strings.Contains(got, "@") {
		t.Fatalf("authority value not escaped: %s", got)
	}
}

func TestTemplatedAuthority(t *testing.T) {
	for raw, want := range map[string]bool{
		"https://api.example.com/c/{{conversion.id}}?id={{conversion.id}}#{{conversion.id}}": false,
		"https://{{conversion.id}}.example.com/":                                             true,
		"https://api.example.com:{{env.PORT}}/":                                              true,
		"{{env.SCHEME}}://api.example.com/":                                                  true,
		"https://api.example.com?q={{conversion.id}}":                                        false,
	} {
		u, err := ParseURL(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := u.TemplatedAuthority(); got != want {
			t.Errorf("%s: TemplatedAuthority = %v, want %v", raw, got, want)
		}
	}
}

func TestHeaderValuesCannotCarryCRLF(t *testing.T) {
	h, _ := ParseHeader("Bearer {{click.id}}")
	got := h.Render(&Scope{Objects: map[string]any{"click": map[string]any{"id": "x\r\nX-Evil: 1"}}})
	if strings.ContainsAny(got, "\r\n") || got != "Bearer x  X-Evil: 1" {
		t.Fatalf("got %q", got)
	}
}

func FuzzParseBody(f *testing.F) {
	for _, s := range []string{`"{\"a\": {{x.y}}, \"b\": \"{{z}}\"}"`, `{"a":"{{x}}","b":["{{y}} z"]}`, `"{{"`, `{"{{a}}":1}`, `"[{{a}},\"\\\"{{b}}\"]"`} {
		f.Add(s, "va\"l\n")
	}
	f.Fuzz(func(t *testing.T, tpl, val string) {
		b, err := ParseBody(json.RawMessage(tpl))
		if err != nil {
			return
		}
		s := &Scope{
			System:  System{TriggerType: val},
			Objects: map[string]any{"x": map[string]any{"y": val}, "z": val, "a": val, "b": []any{val, json.Number("1.5")}},
		}
		out := b.Render(allVars{s, val})
		if !json.Valid(out) {
			t.Fatalf("template %q with value %q rendered invalid JSON %q", tpl, val, out)
		}
	})
}

// allVars answers every path, so fuzzing exercises substitution everywhere.
type allVars struct {
	s   *Scope
	val string
}

func (a allVars) Lookup(p []string) (any, bool) {
	if v, ok := a.s.Lookup(p); ok {
		return v, ok
	}
	switch len(p) % 3 {
	case 0:
		return a.val, true
	case 1:
		return map[string]any{"k": a.val}, true
	}
	return nil, false
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"{{a.b}}", "x{{ y }}z", "{{", "}}{{a}}", "{{a-b_c.0}}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := Parse(s)
		if err != nil {
			return
		}
		for _, ph := range tp.Placeholders() {
			if len(ph.Path) == 0 || ph.Offset < 0 || ph.Offset >= len(s) || s[ph.Offset:ph.Offset+2] != "{{" {
				t.Fatalf("bad placeholder %+v in %q", ph, s)
			}
		}
		h := &Header{t: tp}
		if out := h.Render(allVars{&Scope{}, "a\r\nb"}); strings.ContainsAny(out, "\r\n") {
			t.Fatalf("header rendered CR/LF: %q", out)
		}
	})
}

func BenchmarkRenderObjectBody(b *testing.B) {
	body, _ := ParseBody(json.RawMessage(`{"event":"{{trigger_type}}","conversion_id":"{{conversion.id}}","amount":"{{conversion.amount}}","user_id":"{{conversion.user_id}}","offer":"{{offer.title}}"}`))
	s := conversionScope(b)
	b.ReportAllocs()
	for b.Loop() {
		body.Render(s)
	}
}

// quoteJSON's shortcut writes what the encoder writes, for any string.
func FuzzQuoteJSON(f *testing.F) {
	for _, s := range []string{"", "US", `a"b`, `a\b`, "<&>", "\x00\x1f\x7f", "é", "\u2028", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := marshalJSON(s)
		if got := quoteJSON(s); string(got) != string(want) {
			t.Fatalf("quoteJSON(%q) = %s, want %s", s, got, want)
		}
		if got := JSONLiteral(s); string(got) != string(want) {
			t.Fatalf("JSONLiteral(%q) = %s, want %s", s, got, want)
		}
	})
}

// Every system variable resolves on a delivery's scope, to its value; a
// filter's scope (no delivery) has the event's alone; uuid and nonce are
// absent for a pipeline that does not read them.
func TestSystemVariables(t *testing.T) {
	now := time.Date(2026, 11, 29, 3, 4, 5, 0, time.FixedZone("X", 3600))
	d := System{TriggerType: "click", TriggerID: "c-1", EventID: "e-1", EventType: "click.created", EventTimestamp: "2026-11-29T02:00:00Z",
		Delivery: true, PipelineID: "p-1", PipelineName: "P", DeliveryID: "d-1", ExecutionID: "x-1", Now: now, RetryCount: 2, UUID: "u-1", Nonce: "n-1"}
	want := map[string]any{"trigger_type": "click", "trigger_id": "c-1", "event_id": "e-1", "event_type": "click.created",
		"event_timestamp": "2026-11-29T02:00:00Z", "pipeline_id": "p-1", "pipeline_name": "P", "delivery_id": "d-1", "execution_id": "x-1",
		"timestamp": "2026-11-29T02:04:05Z", "timestamp_unix": json.Number("1795917845"), "retry_count": json.Number("2"), "uuid": "u-1", "nonce": "n-1"}
	for name := range scalarVars {
		got, ok := d.Lookup(name)
		if !ok || got != want[name] {
			t.Errorf("delivery %s = %#v, %v; want %#v", name, got, ok, want[name])
		}
		f := System{TriggerType: d.TriggerType, TriggerID: d.TriggerID, EventID: d.EventID, EventType: d.EventType, EventTimestamp: d.EventTimestamp}
		got, ok = f.Lookup(name)
		if event := name == "trigger_type" || name == "trigger_id" || name == "event_id" || name == "event_type" || name == "event_timestamp"; ok != event || (ok && got != want[name]) {
			t.Errorf("filter %s = %#v, %v; want only the event's variables", name, got, ok)
		}
	}
	if len(want) != len(scalarVars) {
		t.Errorf("%d system variables, the test knows %d", len(scalarVars), len(want))
	}
	d.UUID, d.Nonce = "", ""
	for _, name := range []string{"uuid", "nonce"} {
		if got, ok := d.Lookup(name); ok {
			t.Errorf("%s = %#v for a pipeline that does not read it, want absent", name, got)
		}
	}
	if _, ok := d.Lookup("data"); ok {
		t.Error("a namespace that is not a system variable resolved")
	}
}
