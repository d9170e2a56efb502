package admin

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/afftok/webhookd/pipeline"
)

// emptyRegistry is a boundary stand-in: these tests are about auth only.
type emptyRegistry struct{}

func (emptyRegistry) Get(string) (*pipeline.Compiled, bool)                { return nil, false }
func (emptyRegistry) List() []*pipeline.Compiled                           { return nil }
func (emptyRegistry) Put(context.Context, *pipeline.Pipeline, int64) error { return nil }
func (emptyRegistry) Delete(context.Context, string, int64) error          { return nil }
func (emptyRegistry) Sync(context.Context) error                           { return nil }

func TestAdminAcceptsTheTokenOrAValidJWTOnly(t *testing.T) {
	secret := []byte("jwt-secret-0123456789-0123456789-xx")
	s := New(Options{Token: "static-token-0123456789", JWTSecret: secret, JWTAudience: "webhookd", Registry: emptyRegistry{}})
	sign := func(method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	future, past := time.Now().Add(time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
	cases := []struct {
		name, token string
		want        int
	}{
		{"static token", "static-token-0123456789", 200},
		{"valid JWT", sign(jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "admin", "aud": "webhookd", "exp": future}), 200},
		{"expired JWT", sign(jwt.SigningMethodHS256, secret, jwt.MapClaims{"aud": "webhookd", "exp": past}), 401},
		{"JWT without exp", sign(jwt.SigningMethodHS256, secret, jwt.MapClaims{"aud": "webhookd"}), 401},
		{"JWT for another audience", sign(jwt.SigningMethodHS256, secret, jwt.MapClaims{"aud": "billing", "exp": future}), 401},
		{"JWT with another secret", sign(jwt.SigningMethodHS256, []byte("another-secret-0123456789-01234567"), jwt.MapClaims{"aud": "webhookd", "exp": future}), 401},
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"aud": "webhookd", "exp": future}), 401},
		{"wrong static token", "static-token-012345678X", 401},
		{"empty", "", 401},
	}
	for _, c := range cases {
		req := httptest.NewRequest("GET", "/api/admin/webhooks/pipelines", nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := s.Test().Test(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", c.name, resp.StatusCode, c.want)
		}
	}
}

// Every route but the health probes needs the token, the profiler included.
func TestEveryRouteButHealthNeedsTheToken(t *testing.T) {
	s := New(Options{Token: "static-token-0123456789", Registry: emptyRegistry{}})
	for _, r := range s.Test().GetRoutes(true) {
		if r.Method == "HEAD" || r.Path == "/healthz" || r.Path == "/readyz" {
			continue
		}
		path := strings.NewReplacer(":id", "x", "*", "heap").Replace(r.Path)
		resp, err := s.Test().Test(httptest.NewRequest(r.Method, path, nil), 5000)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 401 {
			t.Errorf("%s %s without a token: %d", r.Method, path, resp.StatusCode)
		}
	}
}
