package ordering

import (
	"testing"

	"github.com/afftok/webhookd/delivery"
)

func TestRecordsRoundTrip(t *testing.T) {
	l := &Lock{Order: "p|A", Blocker: "wh_del_1", Topic: "ev", Partition: 2, ParkPartition: 1, ParkFrom: 7}
	r := l.record("order")
	e, err := decodeEntry(r.Key, r.Value)
	if err != nil || !e.isLock || *e.lock != *l {
		t.Fatalf("lock read back as %+v, %v", e, err)
	}
	task := &delivery.Task{DeliveryID: "wh_del_1", Order: "p|A", Source: &delivery.Source{Topic: "ev", Partition: 2}}
	rr := ReleaseRecord("order", task)
	e, err = decodeEntry(rr.Key, rr.Value)
	if err != nil || e.isLock || e.release == nil || e.release.DeliveryID != "wh_del_1" || e.release.Partition != 2 {
		t.Fatalf("release read back as %+v, %v", e, err)
	}
	for _, ts := range tombstones("order", "p|A") {
		e, err := decodeEntry(ts.Key, ts.Value)
		if err != nil || e.lock != nil || e.release != nil || e.order != "p|A" {
			t.Fatalf("tombstone read back as %+v, %v", e, err)
		}
	}
}

func TestForeignOrderRecordsAreRefused(t *testing.T) {
	for _, c := range []struct{ key, value string }{
		{"other|x", `{}`},
		{"lock|p|A", `{"order":"p|B","blocker":"d"}`}, // names another key
		{"lock|p|A", `{"order":"p|A"}`},               // no blocker
		{"rel|p|A", `{"order":"p|A"}`},                // no delivery
		{"rel|p|A", `not json`},
	} {
		if _, err := decodeEntry([]byte(c.key), []byte(c.value)); err == nil {
			t.Errorf("%s = %s was accepted", c.key, c.value)
		}
	}
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add([]byte("lock|p|A"), []byte(`{"order":"p|A","blocker":"d","park_from":-1}`))
	f.Add([]byte("rel|p|A"), []byte(`{"order":"p|A","delivery_id":"d"}`))
	f.Add([]byte("rel|p|A"), []byte(nil))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		e, err := decodeEntry(key, value)
		if err != nil {
			return
		}
		if e.lock != nil && (e.lock.Order != e.order || e.lock.Blocker == "") {
			t.Fatalf("accepted a lock that does not name its key and blocker: %+v", e.lock)
		}
		if e.release != nil && (e.release.Order != e.order || e.release.DeliveryID == "") {
			t.Fatalf("accepted a release that does not name its key and delivery: %+v", e.release)
		}
	})
}
