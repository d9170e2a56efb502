package ordering

import (
	"context"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/delivery"
)

type failFirst struct{ ran []string }

func (f *failFirst) RunLeft(_ context.Context, _ *kgo.Client, t *delivery.Task) (bool, error) {
	f.ran = append(f.ran, t.DeliveryID)
	if t.DeliveryID == "d1" {
		return false, errors.New("Kafka refused a record (fatal)")
	}
	return false, nil
}
func (f *failFirst) Refused(context.Context, *kgo.Client, *delivery.Task, string, error) error {
	return nil
}
func (f *failFirst) Unreadable(context.Context, *kgo.Client, *kgo.Record, string, error) error {
	return nil
}

func TestAKeysNextEventWaitsOutAFailedOne(t *testing.T) {
	f := &failFirst{}
	o := New(nil, Options{Engine: f})
	mk := func(id string, off int64) (*kgo.Record, *delivery.Task) {
		rec := &kgo.Record{Topic: "ev", Partition: 0, Offset: off}
		return rec, &delivery.Task{DeliveryID: id, Order: "p|k", Source: &delivery.Source{Topic: "ev", Offset: off}}
	}
	r1, t1 := mk("d1", 10)
	r2, t2 := mk("d2", 11)
	j1, j2 := o.Job(r1, t1), o.Job(r2, t2)
	if err := j1(context.Background(), nil); err == nil {
		t.Fatal("want error")
	}
	if err := j2(context.Background(), nil); err == nil {
		t.Fatal("the key's next event finished although the one before it failed")
	}
	if len(f.ran) == 2 {
		t.Fatalf("the key's next event ran although the one before it failed (offset 10 unmarked, 11 delivered/locked): %v", f.ran)
	}
}
