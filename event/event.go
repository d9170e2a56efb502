// Package event decodes the tracking platform's event envelopes.
//
// Two shapes are accepted (DESIGN.md §2):
//
//	{"id":"evt_…","trigger_type":"conversion","trigger_id":"conv_123","timestamp":"…",
//	 "data":{"conversion":{…},"click":{…},"offer":{…}}}
//	{"id":"evt_…","type":"conversion.created","data":{"id":"conv_abc123","amount":49.99}}
//
// A flat data object (the second shape) is placed under its object's name, so
// templates always see {{conversion.amount}} whichever shape was produced.
// In both shapes data must be a JSON object; an event without one is invalid
// (see decodeData).
package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/afftok/webhookd/jsonvalue"
)

// The eight trigger types of the spec.
const (
	Click              = "click"
	Conversion         = "conversion"
	ConversionApproved = "conversion_approved"
	ConversionRejected = "conversion_rejected"
	Postback           = "postback"
	Fraud              = "fraud"
	OfferJoined        = "offer_joined"
	APIKeyEvent        = "api_key_event"
)

// TriggerTypes lists the spec's trigger types in the spec's order.
var TriggerTypes = []string{Click, Conversion, ConversionApproved, ConversionRejected, Postback, Fraud, OfferJoined, APIKeyEvent}

// IsTriggerType reports whether s is one of the spec's trigger types.
func IsTriggerType(s string) bool {
	for _, t := range TriggerTypes {
		if t == s {
			return true
		}
	}
	return false
}

// objectName is the template namespace a trigger type's own object lives under.
var objectName = map[string]string{
	Click: "click", Conversion: "conversion", ConversionApproved: "conversion",
	ConversionRejected: "conversion", Postback: "postback", Fraud: "fraud",
	OfferJoined: "offer", APIKeyEvent: "api_key",
}

// ObjectName returns the namespace under which a trigger type's data is placed.
func ObjectName(triggerType string) string { return objectName[triggerType] }

// typeToTrigger maps the dotted event types of the API reference.
var typeToTrigger = map[string]string{
	"click.tracked": Click, "conversion.created": Conversion,
	"conversion.approved": ConversionApproved, "conversion.rejected": ConversionRejected,
	"postback.received": Postback, "fraud.detected": Fraud, "offer.joined": OfferJoined,
}

// TriggerForType maps an event "type" to a trigger type ("" if unknown).
func TriggerForType(t string) string {
	if tt, ok := typeToTrigger[t]; ok {
		return tt
	}
	if strings.HasPrefix(t, "api_key.") && len(t) > len("api_key.") {
		return APIKeyEvent
	}
	if IsTriggerType(t) {
		return t
	}
	return ""
}

// Event is a decoded envelope.
type Event struct {
	ID          string
	Type        string // the dotted type as produced, or the trigger type
	TriggerType string
	TriggerID   string
	Timestamp   string // as produced (RFC 3339 expected), "" if absent
	// Data is the event's data exactly as produced: always a JSON object
	// (map[string]any) in a decoded event.
	Data any
	// Objects is the namespace view: click, conversion, offer, … .
	Objects map[string]any
}

// MaxSize bounds an event; larger records go to the DLQ rather than into memory.
const MaxSize = 1 << 20

// ErrInvalid wraps every decoding failure; such records go to the DLQ with reason invalid_event.
var ErrInvalid = errors.New("invalid event")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

type envelope struct {
	ID          json.RawMessage `json:"id"`
	Type        string          `json:"type"`
	TriggerType string          `json:"trigger_type"`
	TriggerID   json.RawMessage `json:"trigger_id"`
	Timestamp   json.RawMessage `json:"timestamp"`
	// Data is decoded with the envelope, in the one pass over the record
	// (numbers as json.Number); decodeData checks what it is.
	Data any `json:"data"`
}

// Decode parses one Kafka record value.
func Decode(b []byte) (*Event, error) {
	if len(b) > MaxSize {
		return nil, invalid("event is %d bytes, more than the %d allowed", len(b), MaxSize)
	}
	env, ok := fastEnvelope(b)
	if !ok {
		var err error
		if env, err = decodeEnvelope(b); err != nil {
			return nil, err
		}
	}
	e := &Event{ID: scalarString(env.ID), Timestamp: scalarString(env.Timestamp)}
	switch {
	case env.TriggerType != "":
		if !IsTriggerType(env.TriggerType) {
			return nil, invalid("unknown trigger_type %q", env.TriggerType)
		}
		e.TriggerType, e.Type = env.TriggerType, env.TriggerType
		if env.Type != "" {
			e.Type = env.Type
		}
	case env.Type != "":
		e.TriggerType = TriggerForType(env.Type)
		if e.TriggerType == "" {
			return nil, invalid("unknown event type %q", env.Type)
		}
		e.Type = env.Type
	default:
		return nil, invalid("missing trigger_type or type")
	}
	data, err := decodeData(env.Data)
	if err != nil {
		return nil, err
	}
	e.Data = data
	e.Objects = objects(e.TriggerType, e.Data)
	e.TriggerID = scalarString(env.TriggerID)
	if e.TriggerID == "" {
		if own, ok := e.Objects[ObjectName(e.TriggerType)].(map[string]any); ok {
			e.TriggerID = scalarText(own["id"])
		}
	}
	if e.Timestamp == "" {
		if own, ok := e.Objects[ObjectName(e.TriggerType)].(map[string]any); ok {
			if ts, ok := own["timestamp"].(string); ok {
				e.Timestamp = ts
			}
		}
	}
	return e, nil
}

// decodeEnvelope is encoding/json's reading of an envelope (numbers as
// json.Number): every event fastEnvelope declines, and its errors.
func decodeEnvelope(b []byte) (envelope, error) {
	var env envelope
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&env); err != nil {
		return env, invalid("not a JSON object envelope: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return env, invalid("unexpected data after the JSON envelope")
	}
	return env, nil
}

// decodeData applies the one rule for an event's data, whichever shape the
// event has: it must be a JSON object. In the nested shape that object holds
// the related objects ({"conversion":{…},"click":{…}}); in the flat shape it
// is the trigger's own object (its fields, plus any related objects nested
// in it) — either way it is what {{data}} renders and what the namespaces
// are built from. An event without data (no "data" key, or null) or with
// any other JSON value there is invalid (issue 8): delivering it would
// render every {{click.…}}/{{data…}} as null, so it goes to the DLQ as
// invalid_event with the reason named, and the partition goes on. An empty
// object is data: the producer said there is nothing more to tell.
func decodeData(data any) (map[string]any, error) {
	switch d := data.(type) {
	case nil:
		return nil, invalid(`event data is missing: "data" must be a JSON object`)
	case map[string]any:
		return d, nil
	default:
		return nil, invalid(`event data must be a JSON object, not %s`, jsonKind(d))
	}
}

// jsonKind names the kind of a decoded JSON value other than an object.
func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case []any:
		return "an array"
	case bool:
		return "a boolean"
	}
	return "a number"
}

// objects builds the namespace view. Nested data ({"conversion":{…},"click":{…}})
// is used as is; flat data (the trigger's own object's fields) is placed under
// the trigger's object name.
func objects(triggerType string, data any) map[string]any {
	out := map[string]any{}
	m, _ := data.(map[string]any)
	if m == nil {
		return out
	}
	for k, v := range m {
		if _, isObj := v.(map[string]any); isObj {
			out[k] = v
		}
	}
	// A flat object (its fields at the top of data) may still carry related
	// objects ({"id":…, "click":{…}}), which stay reachable under their names.
	if name := ObjectName(triggerType); out[name] == nil {
		out[name] = m
	}
	return out
}

// scalarString renders a raw JSON scalar (string or number) as text;
// anything else is "".
func scalarString(raw json.RawMessage) string {
	r := jsonvalue.NewReader(bytes.TrimSpace(raw))
	v, err := r.Value()
	if err != nil || !r.AtEnd() {
		return ""
	}
	return scalarText(v)
}

// scalarText renders a decoded JSON scalar (string or json.Number) as
// text; anything else is "".
func scalarText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	}
	return ""
}

// ParseTime parses an event timestamp; the zero time if it is absent or unparsable.
func ParseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}
