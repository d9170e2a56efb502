package event

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecodeBothEnvelopeShapes(t *testing.T) {
	nested, err := Decode([]byte(`{"id":"evt_1","trigger_type":"conversion","trigger_id":"conv_123","timestamp":"2024-12-01T12:00:00Z",
	  "data":{"conversion":{"id":"conv_123","amount":49.99},"click":{"id":"click_456"},"offer":{"id":"off_789"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if nested.TriggerType != Conversion || nested.TriggerID != "conv_123" || nested.ID != "evt_1" || nested.Timestamp != "2024-12-01T12:00:00Z" {
		t.Fatalf("nested = %+v", nested)
	}
	if amt := nested.Objects["conversion"].(map[string]any)["amount"]; amt != json.Number("49.99") {
		t.Fatalf("amount = %#v (numbers keep their spelling)", amt)
	}
	if nested.Objects["offer"].(map[string]any)["id"] != "off_789" {
		t.Fatalf("offer = %v", nested.Objects["offer"])
	}

	flat, err := Decode([]byte(`{"type":"conversion.created","data":{"id":"conv_abc123","amount":49.99,"click":{"id":"c1"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if flat.TriggerType != Conversion || flat.TriggerID != "conv_abc123" || flat.Type != "conversion.created" {
		t.Fatalf("flat = %+v", flat)
	}
	if flat.Objects["conversion"].(map[string]any)["id"] != "conv_abc123" || flat.Objects["click"].(map[string]any)["id"] != "c1" {
		t.Fatalf("flat objects = %v", flat.Objects)
	}
}

func TestEveryTriggerTypeIsAccepted(t *testing.T) {
	types := map[string]string{
		"click.tracked": Click, "conversion.created": Conversion, "conversion.approved": ConversionApproved,
		"conversion.rejected": ConversionRejected, "postback.received": Postback, "fraud.detected": Fraud,
		"offer.joined": OfferJoined, "api_key.created": APIKeyEvent, "api_key.revoked": APIKeyEvent,
	}
	for typ, want := range types {
		e, err := Decode([]byte(`{"type":"` + typ + `","data":{"id":"x"}}`))
		if err != nil || e.TriggerType != want {
			t.Errorf("%s: %v %v", typ, e, err)
		}
	}
	for _, tt := range TriggerTypes {
		if e, err := Decode([]byte(`{"trigger_type":"` + tt + `","data":{}}`)); err != nil || e.TriggerType != tt {
			t.Errorf("%s: %v %v", tt, e, err)
		}
	}
}

func TestUndecodableEventsAreInvalid(t *testing.T) {
	for _, b := range []string{``, `not json`, `[]`, `"x"`, `{}`, `{"type":"click.exploded"}`, `{"trigger_type":"sale"}`,
		`{"type":"api_key."}`, `{"type":"click.tracked","data":[1]}`, `{"type":"click.tracked","data":"x"}`, `{"type":"click.tracked"} {}`} {
		if _, err := Decode([]byte(b)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: err = %v, want ErrInvalid", b, err)
		}
	}
}

// The data rule (issue 8): an event's data must be a JSON object, in both
// shapes. Missing, null or any other JSON value is an invalid event whose
// error names data; the consumer sends it to the DLQ as invalid_event.
func TestEventDataMustBeAJSONObject(t *testing.T) {
	cases := []struct {
		name, raw string
		wantErr   string // "" valid
	}{
		{"envelope without data", `{"id":"evt_1","trigger_type":"click","trigger_id":"c1"}`, "event data is missing"},
		{"envelope with null data", `{"id":"evt_1","trigger_type":"click","trigger_id":"c1","data":null}`, "event data is missing"},
		{"envelope with string data", `{"id":"evt_1","trigger_type":"click","data":"x"}`, "event data must be a JSON object, not a string"},
		{"flat without data", `{"id":"evt_1","type":"click.tracked"}`, "event data is missing"},
		{"flat with null data", `{"id":"evt_1","type":"click.tracked","data":null}`, "event data is missing"},
		{"flat with null data and spaces", `{"id":"evt_1","type":"click.tracked","data": null }`, "event data is missing"},
		{"flat with string data", `{"id":"evt_1","type":"click.tracked","data":"clk_1"}`, "event data must be a JSON object, not a string"},
		{"flat with number data", `{"id":"evt_1","type":"click.tracked","data":12}`, "event data must be a JSON object, not a number"},
		{"flat with boolean data", `{"id":"evt_1","type":"click.tracked","data":false}`, "event data must be a JSON object, not a boolean"},
		{"flat with array data", `{"id":"evt_1","type":"click.tracked","data":[{"id":"clk_1"}]}`, "event data must be a JSON object, not an array"},
		{"flat with empty object data", `{"id":"evt_1","type":"click.tracked","data":{}}`, ""},
		{"flat with object data", `{"id":"evt_1","type":"click.tracked","data":{"id":"clk_1"}}`, ""},
		{"envelope with nested objects", `{"id":"evt_1","trigger_type":"click","data":{"click":{"id":"clk_1"}}}`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := Decode([]byte(c.raw))
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if _, ok := e.Data.(map[string]any); !ok {
					t.Fatalf("Data = %#v, want an object", e.Data)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("err = %v, want ErrInvalid with %q", err, c.wantErr)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"type":"conversion.created","data":{"id":"c","amount":1.5}}`, `{"trigger_type":"click","data":{"click":{"id":1}}}`,
		`{"id":5,"type":"api_key.x","data":{}}`, `{"trigger_type":"fraud","trigger_id":["x"]}`, `{`,
		`{"type":"click.tracked","data":null}`, `{"trigger_type":"click"}`, `{"type":"click.tracked","data":"x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not marked invalid: %v", err)
			}
			return
		}
		if !IsTriggerType(e.TriggerType) || e.Objects == nil {
			t.Fatalf("decoded %+v", e)
		}
		// Every accepted event has object data: templates never see a
		// missing or scalar data.
		if _, ok := e.Data.(map[string]any); !ok {
			t.Fatalf("accepted %q with data %#v", b, e.Data)
		}
	})
}
