package event

import "testing"

// BenchmarkDecode is one event as make bench produces it (flat shape), and
// one in the nested shape with a related object.
func BenchmarkDecode(b *testing.B) {
	for _, c := range []struct{ name, v string }{
		{"flat", `{"id":"b-123456","type":"click.tracked","data":{"id":"c123456","seq":123456,"sent":1764277200000000000,"country":"US","device":"mobile"}}`},
		{"nested", `{"id":"e-1","trigger_type":"conversion","timestamp":"2026-11-27T21:00:00Z","data":{"conversion":{"id":"cv-1","amount":12.5,"currency":"EUR","status":"approved","offer_id":"o-77"},"click":{"id":"c-9","country":"DE","device":"desktop","sub1":"abc","sub2":"def"}}}`},
	} {
		raw := []byte(c.v)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
