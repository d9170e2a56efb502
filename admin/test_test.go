package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/afftok/webhookd/dispatcher"
)

// The test endpoints call out through the same SSRF guard as deliveries: with
// the production guard, a loopback target is refused after resolution.
func TestTestStepIsGuardedAgainstSSRF(t *testing.T) {
	hit := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hit = true }))
	defer srv.Close()
	s := New(Options{Token: testToken, Tester: dispatcher.New(dispatcher.Options{Client: dispatcher.NewHTTPClient(dispatcher.Guard{}, 4)})})
	for _, target := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1), "http://169.254.169.254/latest/meta-data/"} {
		_, b := serve(t, s, "POST", "/api/admin/webhooks/test/step", `{"url":"`+target+`/x","timeout_seconds":2}`)
		var out struct {
			Data struct {
				Status string
				Steps  []struct{ Error string }
			}
		}
		_ = json.Unmarshal(b, &out)
		if out.Data.Status != "failed" || len(out.Data.Steps) != 1 || !strings.HasPrefix(out.Data.Steps[0].Error, "Blocked:") {
			t.Fatalf("%s: %s", target, b)
		}
	}
	if hit {
		t.Fatal("a guarded test call reached the loopback server")
	}
}
