package pipeline

import (
	"strings"
	"testing"
	"time"
)

func TestAutoDisableAfterSecondsIsValidatedWithItsPath(t *testing.T) {
	for _, c := range []struct {
		body string
		ok   bool
	}{
		{`0`, true}, {`3600`, true}, {`2592000`, true},
		{`-1`, false}, {`2592001`, false}, {`1.5`, false}, {`"60"`, false}, {`1e3`, false},
	} {
		var p Pipeline
		err := Decode([]byte(`{"name":"n","trigger_type":"click","steps":[{"order":1,"url":"https://x.io"}],"auto_disable_after_seconds":`+c.body+`}`), &p)
		if err == nil {
			p.Normalize()
			err = p.Validate(allowEnv{}, DefaultRetryLimits, nil)
		}
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v", c.body, err)
		}
		if err != nil && !strings.Contains(err.Error(), "auto_disable_after_seconds") {
			t.Errorf("%s: error %q does not name the field", c.body, err)
		}
	}
}

func TestSetStatusKeepsTheFieldsThatGoWithIt(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	p := Pipeline{Status: StatusActive, CreatedAt: t0}
	if !p.StreakStart().Equal(t0) {
		t.Fatalf("streak start of a new pipeline %v", p.StreakStart())
	}
	p.SetStatus(StatusDisabled, t0.Add(time.Hour))
	p.DisabledReason = "auto-disabled"
	if p.DisabledAt == nil || !p.DisabledAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("disabled_at %v", p.DisabledAt)
	}
	p.SetStatus(StatusActive, t0.Add(2*time.Hour))
	if p.DisabledAt != nil || p.DisabledReason != "" || !p.StreakStart().Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("re-enabled: %+v", p)
	}
	p.SetStatus(StatusActive, t0.Add(3*time.Hour)) // no change: nothing moves
	if !p.StreakStart().Equal(t0.Add(2 * time.Hour)) {
		t.Fatalf("a no-op status write restarted the streak")
	}
	w := 60
	if p.AutoDisableAfter(72*time.Hour) != 72*time.Hour {
		t.Fatal("default window")
	}
	p.AutoDisableAfterSeconds = &w
	if p.AutoDisableAfter(72*time.Hour) != time.Minute {
		t.Fatal("override")
	}
}
