package admin

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
)

// /readyz says what is wrong when a check can: starting (no reason yet),
// unavailable (a reason: Kafka refuses the credentials), stopping
// (SIGTERM), on the admin API and on the health server alike.
func TestReadyzStatesAndReasons(t *testing.T) {
	yes, no := func() bool { return true }, func() bool { return false }
	why := func(s string) func() string { return func() string { return s } }
	for _, tc := range []struct {
		name    string
		checks  []Check
		code    int
		status  string
		reasons map[string]string
	}{
		{"ready", []Check{{Name: "registry", Ready: yes}, {Name: "kafka", Ready: yes, Reason: why("")}}, 200, "ready", nil},
		{"starting", []Check{{Name: "registry", Ready: no}, {Name: "kafka", Ready: yes, Reason: why("")}}, 503, "starting", nil},
		{"kafka refuses", []Check{{Name: "registry", Ready: yes}, {Name: "kafka", Ready: no, Reason: why("kafka authentication failed: …")}}, 503, "unavailable",
			map[string]string{"kafka": "kafka authentication failed: …"}},
		{"stopping", []Check{{Name: "dispatcher", Ready: no}, {Name: "shutdown", Ready: no, Reason: why("shutting down")}}, 503, "stopping",
			map[string]string{"shutdown": "shutting down"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := (&Health{Checks: tc.checks}).handler()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			var body readinessBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tc.code || body.Status != tc.status || len(body.Reasons) != len(tc.reasons) {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			for k, v := range tc.reasons {
				if body.Reasons[k] != v {
					t.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
			code, same := readinessOf(tc.checks)
			if code != rec.Code || same.Status != body.Status {
				t.Fatal("the admin API and the health server disagree")
			}
		})
	}
}
