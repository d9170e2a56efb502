package analytics

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// withOrigin keeps every field of a JSON object record and adds the
// origin's; anything but an object is refused.
func FuzzWithOrigin(f *testing.F) {
	for _, s := range []string{`{"kind":"attempt","latency_ms":5}`, `{}`, ` { } `, `{"src_offset":1}`, `[1]`, `"x"`, `{`, ``, "{\"a\":\"\u2028\"}\n"} {
		f.Add([]byte(s), "webhooks.executions", int32(3), int64(42))
	}
	f.Fuzz(func(t *testing.T, rec []byte, topic string, partition int32, offset int64) {
		var in map[string]any
		isObject := json.Unmarshal(rec, &in) == nil && in != nil
		out, ok := withOrigin(rec, Origin{Topic: topic, Partition: partition, Offset: offset})
		if !ok {
			if isObject {
				t.Fatalf("refused an object: %q", rec)
			}
			return
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			if isObject {
				t.Fatalf("%q → invalid JSON %q: %v", rec, out, err)
			}
			return // not JSON in, not JSON out: the insert refuses it
		}
		if !isObject {
			return
		}
		for k, v := range in {
			if k == "src_topic" || k == "src_partition" || k == "src_offset" {
				continue
			}
			if b1, _ := json.Marshal(v); string(b1) != string(mustJSON(got[k])) {
				t.Fatalf("field %q: %v became %v", k, v, got[k])
			}
		}
	})
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// A range's minutes and whole hours tile it: from ≤ hfrom ≤ hto ≤ to, all
// on their boundaries, the hours empty only when no whole hour fits.
func FuzzRangeParams(f *testing.F) {
	f.Add(int64(1_700_000_000_000), int64(3_600_000))
	f.Add(int64(1_700_000_030_500), int64(59_000))
	f.Add(int64(0), int64(1))
	f.Fuzz(func(t *testing.T, fromMS, spanMS int64) {
		if fromMS < 0 || fromMS > 1<<45 || spanMS <= 0 || spanMS > 400*24*3600*1000 {
			return
		}
		r := Range{From: time.UnixMilli(fromMS), To: time.UnixMilli(fromMS + spanMS)}
		p := r.params()
		// The parameters are Unix seconds, compared here in milliseconds.
		from, to, hfrom, hto := p["from"].(int64)*1000, p["to"].(int64)*1000, p["hfrom"].(int64)*1000, p["hto"].(int64)*1000
		const minute, hour = int64(60_000), int64(3_600_000)
		if from%minute != 0 || to%minute != 0 || hfrom%minute != 0 || hto%minute != 0 {
			t.Fatalf("not on minutes: %v", p)
		}
		if !(from <= hfrom && hfrom <= hto && hto <= to) || from > fromMS || to < fromMS+spanMS || to-(fromMS+spanMS) >= minute {
			t.Fatalf("%d+%d: %v", fromMS, spanMS, p)
		}
		if hfrom < hto && (hfrom%hour != 0 || hto%hour != 0) {
			t.Fatalf("hours not on hours: %v", p)
		}
		if hfrom == hto {
			first := (from + hour - 1) / hour * hour
			if first+hour <= to {
				t.Fatalf("a whole hour fits but none is used: %v", p)
			}
		}
	})
}

// feedRow keeps exactly the feed's fields of a JSON object record, values
// unchanged, with the origin's in front; it reads every object whose keys
// have no escapes.
func FuzzFeedRow(f *testing.F) {
	for _, s := range []string{`{"v":1,"kind":"attempt","pipeline_id":"p1","latency_ms":5,"request_body":"{\"a\":[1,\"}\"]}","status":"success"}`,
		`{}`, ` { } `, `{"src_offset":1,"error":"a\\\"b"}`, `[1]`, `"x"`, `{`, ``, `{"a":{"b":[{}]},"tier":null,"failover":true}`,
		"{\"error\":\"\u2028\"}\n", `{"a\"b":1}`, `{"status":1 , "attempt" : -2e3}`} {
		f.Add([]byte(s), "webhooks.executions", int32(3), int64(42))
	}
	f.Fuzz(func(t *testing.T, rec []byte, topic string, partition int32, offset int64) {
		var in map[string]any
		isObject := json.Unmarshal(rec, &in) == nil && in != nil
		out, ok := feedRow(rec, Origin{Topic: topic, Partition: partition, Offset: offset}, attemptFeedFields)
		if !ok {
			if isObject && !strings.Contains(string(rec), `\`) {
				t.Fatalf("refused an object: %q", rec)
			}
			return
		}
		if !isObject {
			return // not JSON in: the insert refuses what comes out
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%q → invalid JSON %q: %v", rec, out, err)
		}
		want := map[string]any{"src_topic": topic, "src_partition": float64(partition), "src_offset": float64(offset)}
		for _, k := range attemptFeedFields {
			if v, ok := in[k]; ok {
				want[k] = v
			}
		}
		var wantRT map[string]any // as JSON reads it (a topic that is not UTF-8)
		_ = json.Unmarshal(mustJSON(want), &wantRT)
		if string(mustJSON(got)) != string(mustJSON(wantRT)) {
			t.Fatalf("%q → %s, want %s", rec, mustJSON(got), mustJSON(want))
		}
		// The key fields' values read as JSON reads them (the last of a
		// key given twice), and the fed_key put last keeps the record JSON.
		out2, vals, ok := feedRowKeyed(rec, Origin{Topic: topic, Partition: partition, Offset: offset}, attemptFeedFields, executionKeyFields)
		if !ok || string(out2) != string(out) {
			t.Fatalf("%q: keyed %q, %v; want %q", rec, out2, ok, out)
		}
		for i, k := range executionKeyFields {
			v, present := in[k]
			var wantText string
			switch x := v.(type) {
			case string:
				wantText = x
			default:
				if present {
					var gotV any
					if json.Unmarshal([]byte(vals[i]), &gotV) != nil || string(mustJSON(gotV)) != string(mustJSON(v)) {
						t.Fatalf("%q: %s = %q, want %s", rec, k, vals[i], mustJSON(v))
					}
					continue
				}
			}
			if vals[i] != wantText && utf8.ValidString(wantText) {
				t.Fatalf("%q: %s = %q, want %q", rec, k, vals[i], wantText)
			}
		}
		h := feedKeyHash("e:" + vals[0] + ":f")
		keyed := withFedKey(out, h, true)
		var fk struct {
			FedKey  int64 `json:"fed_key"`
			Retried bool  `json:"retried"`
		}
		if err := json.Unmarshal(keyed, &fk); err != nil || fk.FedKey != h || h <= 0 || !fk.Retried {
			t.Fatalf("%q → %q: fed_key %d, want %d (%v)", out, keyed, fk.FedKey, h, err)
		}
	})
}

// FuzzCanonicalRecord: a record the sink rewrites after a failed insert
// (rewriteRecords) comes out as webhookd writes it — valid UTF-8 JSON with
// each key once — reads as the same row, and rewriting it again changes
// nothing.
func FuzzCanonicalRecord(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"kind":"attempt","attempt_id":"a","attempt_id":"b","started_at":"2026-11-27T10:00:00Z"}`,
		`{"v":1,"kind":"attempt","attempt_id":"a\ud800\udc00\ud800","http_status":200}`,
		`{"v":1,"kind":"execution","execution_id":"x","seq":3,"inserted_at":"now"}`,
		`{"v":1,"kind":"attempt","started_at":"not a time"}`,
		`null`, `[]`, `{`,
	} {
		f.Add("attempts", []byte(s))
		f.Add("executions", []byte(s))
	}
	f.Fuzz(func(t *testing.T, table string, r []byte) {
		if table != "attempts" {
			table = "executions"
		}
		out, err := canonicalRecord(table, r)
		if err != nil {
			return
		}
		if !utf8.Valid(out) || !json.Valid(out) {
			t.Fatalf("rewritten %q is not valid UTF-8 JSON", out)
		}
		d := json.NewDecoder(bytes.NewReader(out))
		if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("rewritten %q is not an object", out)
		}
		seen := map[string]bool{}
		for d.More() {
			k, err := d.Token()
			if err != nil {
				t.Fatal(err)
			}
			if seen[k.(string)] {
				t.Fatalf("rewritten %q has %q twice", out, k)
			}
			seen[k.(string)] = true
			var skip json.RawMessage
			if err := d.Decode(&skip); err != nil {
				t.Fatal(err)
			}
		}
		again, err := canonicalRecord(table, out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("rewriting %q again gave %q, %v", out, again, err)
		}
	})
}
