package event

import (
	"encoding/json"
	"errors"
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
		if e, err := Decode([]byte(`{"trigger_type":"` + tt + `"}`)); err != nil || e.TriggerType != tt {
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

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"type":"conversion.created","data":{"id":"c","amount":1.5}}`, `{"trigger_type":"click","data":{"click":{"id":1}}}`,
		`{"id":5,"type":"api_key.x","data":{}}`, `{"trigger_type":"fraud","trigger_id":["x"]}`, `{`} {
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
	})
}
