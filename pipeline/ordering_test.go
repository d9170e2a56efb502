package pipeline

import (
	"errors"
	"testing"
)

func TestOrderingDefaultsToNoneAndAcceptsOnlyNoneOrKey(t *testing.T) {
	for _, c := range []struct {
		in, stored string
		ok         bool
	}{{"", OrderingNone, true}, {"none", OrderingNone, true}, {"key", OrderingKey, true}, {"fifo", "", false}, {"KEY", "", false}} {
		p := Pipeline{Name: "n", TriggerType: "click", Ordering: c.in, Steps: []Step{{Order: 1, URL: "https://hooks.example.com/a"}}}
		p.Normalize()
		err := p.Validate(nil, DefaultRetryLimits, nil)
		var ve *ValidationError
		switch {
		case c.ok && err != nil:
			t.Errorf("ordering %q: %v", c.in, err)
		case c.ok && p.Ordering != c.stored:
			t.Errorf("ordering %q stored as %q, want %q", c.in, p.Ordering, c.stored)
		case !c.ok && (!errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Field != "ordering"):
			t.Errorf("ordering %q: %v, want one problem at ordering", c.in, err)
		}
		if c.ok && p.OrderedByKey() != (c.stored == OrderingKey) {
			t.Errorf("ordering %q: OrderedByKey %v", c.in, p.OrderedByKey())
		}
	}
}
