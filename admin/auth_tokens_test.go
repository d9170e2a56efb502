package admin

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// Tokens of the tests (each at least 16 characters).
const (
	envTok   = "env-token-0123456789"
	adminTok = "file-admin-token-0123456789"
	readTok  = "file-read-token-0123456789"
	oldTok   = "old-token-0123456789"
	newTok   = "new-token-0123456789-rotated"
)

// fakeClock is the Auth's clock: a test moves it past the tokens file's
// check interval instead of sleeping.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// syncBuffer collects log output written by request goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// replaceFile swaps the file by rename, as Kubernetes updates a mounted Secret.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// authServer is an API whose Auth reads the tokens file at path.
func authServer(t *testing.T, o AuthOptions) *Server {
	t.Helper()
	a, err := NewAuth(o)
	if err != nil {
		t.Fatal(err)
	}
	return New(Options{Auth: a, Registry: emptyRegistry{}, Now: o.Now, Log: o.Log})
}

type answer struct {
	status int
	body   string
}

// call makes one request with the given Authorization header ("" for none).
func call(t *testing.T, s *Server, method, path, authz string) answer {
	t.Helper()
	var body io.Reader
	if method == "POST" || method == "PUT" {
		body = strings.NewReader("{}")
	}
	req := httptest.NewRequest(method, path, body)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := s.Test().Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b)}
}

const listPath = "/api/admin/webhooks/pipelines"

func get(t *testing.T, s *Server, tok string) int {
	t.Helper()
	return call(t, s, "GET", listPath, "Bearer "+tok).status
}

// passedAuth: the request reached its handler (whatever the handler said).
func passedAuth(a answer) bool { return a.status != 401 && a.status != 403 }

func TestTokensFileHoldsSeveralTokensWithRoles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, path, "\uFEFF# webhookd admin tokens\n\n"+
		adminTok+"\n"+
		"  "+readTok+"\tread   # the dashboard\r\n"+
		oldTok+" admin\n")
	s := authServer(t, AuthOptions{Token: envTok, TokensFile: path})
	for _, tok := range []string{envTok, adminTok, readTok, oldTok} {
		if got := get(t, s, tok); got != 200 {
			t.Errorf("GET with %s: %d, want 200", tok, got)
		}
	}
	for tok, want := range map[string]bool{envTok: true, adminTok: true, oldTok: true, readTok: false} {
		if got := call(t, s, "DELETE", listPath+"/x", "Bearer "+tok); passedAuth(got) != want {
			t.Errorf("DELETE with %s: %d, want passed=%t", tok, got.status, want)
		}
	}
	for _, tok := range []string{"", "unknown-token-0123456789", "# webhookd admin tokens", "read", adminTok + "x", adminTok[:20]} {
		if got := get(t, s, tok); got != 401 {
			t.Errorf("GET with %q: %d, want 401", tok, got)
		}
	}
}

// A read token can GET (and HEAD) everything; every other method a route
// takes answers 403 in the API's error envelope (a method no route takes is
// 405, whatever the role).
func TestReadTokenCanOnlyRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, path, readTok+" read\n"+adminTok+"\n")
	s := authServer(t, AuthOptions{TokensFile: path})
	for _, tok := range []string{readTok, adminTok} {
		if got := call(t, s, "PATCH", listPath+"/x", "Bearer "+tok); got.status != 405 {
			t.Errorf("PATCH: %d %s, want 405", got.status, got.body)
		}
	}
	for _, m := range []string{"GET", "HEAD"} {
		if got := call(t, s, m, listPath, "Bearer "+readTok); got.status != 200 {
			t.Errorf("%s with the read token: %d %s", m, got.status, got.body)
		}
	}
	for _, r := range []struct{ method, path string }{
		{"POST", listPath}, {"PUT", listPath + "/x"}, {"DELETE", listPath + "/x"},
		{"POST", "/api/admin/webhooks/test/step"}, {"POST", "/api/admin/webhooks/logs/dlq/retry"},
		{"DELETE", "/api/admin/webhooks/dlq/x"},
	} {
		got := call(t, s, r.method, r.path, "Bearer "+readTok)
		var env struct {
			Success bool
			Error   struct{ Code, Message string }
		}
		if got.status != 403 || json.Unmarshal([]byte(got.body), &env) != nil || env.Success || env.Error.Code != "forbidden" || env.Error.Message == "" {
			t.Errorf("%s %s with the read token: %d %s, want 403 forbidden", r.method, r.path, got.status, got.body)
		}
		if strings.Contains(got.body, readTok) {
			t.Errorf("%s %s: the answer holds the token", r.method, r.path)
		}
		if got := call(t, s, r.method, r.path, "Bearer "+adminTok); !passedAuth(got) {
			t.Errorf("%s %s with the admin token: %d", r.method, r.path, got.status)
		}
	}
}

func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	s := authServer(t, AuthOptions{Token: envTok})
	for h, want := range map[string]int{
		"Bearer " + envTok:                200,
		"bearer " + envTok:                200,
		"BEARER " + envTok:                200,
		"bEaReR " + envTok:                200,
		"Bearer     " + envTok:            200,
		"  bearer   " + envTok + "   ":    200,
		"Basic " + envTok:                 401,
		"Bearer" + envTok:                 401,
		"Bearer":                          401,
		"Bearer  ":                        401,
		"Bearer " + envTok + " " + envTok: 401,
		"Token " + envTok:                 401,
		envTok:                            401,
	} {
		if got := call(t, s, "GET", listPath, h).status; got != want {
			t.Errorf("Authorization %q: %d, want %d", h, got, want)
		}
	}
}

// Rotation: add the new token, move clients, remove the old one; the API
// follows the file within a check interval, without a restart.
func TestTokensFileRotationNeedsNoRestart(t *testing.T) {
	clock := newFakeClock()
	path := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, path, oldTok+"\n")
	s := authServer(t, AuthOptions{TokensFile: path, Now: clock.Now})
	if get(t, s, oldTok) != 200 || get(t, s, newTok) != 401 {
		t.Fatal("before rotation")
	}

	writeFile(t, path, oldTok+"\n"+newTok+"\n") // 1. add the new token
	clock.Advance(checkEvery)
	if got := get(t, s, newTok); got != 200 {
		t.Fatalf("new token after it was added: %d", got)
	}
	if got := get(t, s, oldTok); got != 200 {
		t.Fatalf("old token while both are listed: %d", got)
	}

	replaceFile(t, path, "# rotated\n"+newTok+"\n") // 2. remove the old one
	clock.Advance(checkEvery)
	if got := get(t, s, oldTok); got != 401 {
		t.Fatalf("old token after it was removed: %d", got)
	}
	if got := get(t, s, newTok); got != 200 {
		t.Fatalf("new token after the old one was removed: %d", got)
	}
}

// The same with the real clock, as in production: wait (bounded) for the
// change to show, no fixed sleep.
func TestTokensFileReloadsWithTheRealClock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, path, oldTok+"\n")
	s := authServer(t, AuthOptions{TokensFile: path})
	if get(t, s, oldTok) != 200 {
		t.Fatal("old token refused")
	}
	replaceFile(t, path, newTok+" read\n")
	deadline := time.Now().Add(20 * checkEvery)
	for get(t, s, newTok) != 200 {
		if time.Now().After(deadline) {
			t.Fatal("the new token was not accepted in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := get(t, s, oldTok); got != 401 {
		t.Fatalf("old token after reload: %d", got)
	}
	if got := call(t, s, "POST", listPath, "Bearer "+newTok).status; got != 403 {
		t.Fatalf("the new token's read role: POST %d", got)
	}
}

// A tokens file that can't be read or parsed after a change leaves the last
// good set in force (never open, never empty), logs why without a token, and
// the next good version is taken.
func TestUnreadableTokensFileKeepsTheLastGoodSet(t *testing.T) {
	for _, c := range []struct {
		name   string
		break_ func(t *testing.T, path string)
		inLog  string
	}{
		{"removed", func(t *testing.T, path string) { os.Remove(path) }, "no such file"},
		{"a directory", func(t *testing.T, path string) {
			os.Remove(path)
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, "is a directory"},
		{"an unknown role", func(t *testing.T, path string) { replaceFile(t, path, newTok+"\n"+adminTok+" superuser\n") }, "line 2: the role must be admin or read"},
		{"a short token", func(t *testing.T, path string) { replaceFile(t, path, newTok+"\nshort\n") }, "line 2: a token must be at least 16"},
		{"three fields", func(t *testing.T, path string) { replaceFile(t, path, newTok+" read "+adminTok+"\n") }, "line 1: want a token"},
		{"a repeated token", func(t *testing.T, path string) { replaceFile(t, path, newTok+"\n"+newTok+" read\n") }, "line 2 repeats the token of line 1"},
		{"too large", func(t *testing.T, path string) { replaceFile(t, path, newTok+"\n"+strings.Repeat("#", 1<<20)) }, "larger than 1 MiB"},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := newFakeClock()
			logs := &syncBuffer{}
			path := filepath.Join(t.TempDir(), "tokens")
			writeFile(t, path, oldTok+"\n"+readTok+" read\n")
			s := authServer(t, AuthOptions{TokensFile: path, Now: clock.Now, Log: slog.New(slog.NewTextHandler(logs, nil))})

			c.break_(t, path)
			clock.Advance(checkEvery)
			if got := get(t, s, oldTok); got != 200 {
				t.Errorf("old token after the file broke: %d", got)
			}
			if got := call(t, s, "POST", listPath, "Bearer "+readTok).status; got != 403 {
				t.Errorf("read token after the file broke: POST %d (its role must be kept too)", got)
			}
			if got := get(t, s, newTok); got != 401 {
				t.Errorf("a token of the broken file: %d", got)
			}
			clock.Advance(checkEvery)
			get(t, s, oldTok) // a second check: the same error is not logged again
			out := logs.String()
			if !strings.Contains(out, "admin tokens file unreadable") || !strings.Contains(out, c.inLog) || strings.Count(out, "admin tokens file unreadable") != 1 {
				t.Errorf("log: %s", out)
			}
			for _, tok := range []string{oldTok, readTok, newTok, adminTok} {
				if strings.Contains(out, tok) {
					t.Errorf("the log holds a token: %s", out)
				}
			}

			// Fixed: the new version is taken.
			os.Remove(path)
			writeFile(t, path, newTok+"\n")
			clock.Advance(checkEvery)
			if get(t, s, newTok) != 200 || get(t, s, oldTok) != 401 {
				t.Errorf("after the file was fixed: new %d, old %d", get(t, s, newTok), get(t, s, oldTok))
			}
			if !strings.Contains(logs.String(), "admin tokens file readable again") {
				t.Errorf("log: %s", logs.String())
			}
		})
	}
}

// At start-up a tokens file that can't be loaded is an error, named without tokens.
func TestNewAuthRefusesABadTokensFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewAuth(AuthOptions{TokensFile: filepath.Join(dir, "missing")}); err == nil {
		t.Error("a missing tokens file was accepted")
	}
	path := filepath.Join(dir, "tokens")
	writeFile(t, path, adminTok+" root\n")
	_, err := NewAuth(AuthOptions{TokensFile: path})
	if err == nil || !strings.Contains(err.Error(), "line 1") || strings.Contains(err.Error(), adminTok) {
		t.Errorf("err = %v", err)
	}
}

// The health server of replicas without the admin API checks /metrics
// with the same Auth: file tokens of any role, any-case scheme.
func TestHealthMetricsTakesTheAdminCredentials(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, path, readTok+" read\n")
	a, err := NewAuth(AuthOptions{Token: envTok, TokensFile: path})
	if err != nil {
		t.Fatal(err)
	}
	h := (&Health{Auth: a}).handler()
	for authz, want := range map[string]int{"": 401, "bearer " + readTok: 200, "Bearer " + envTok: 200, "Bearer wrong-token-0123456789": 401} {
		req := httptest.NewRequest("GET", "/metrics", nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("/metrics with %q: %d, want %d", authz, rec.Code, want)
		}
		if want == 401 && (rec.Header().Get("Content-Type") != "application/json" ||
			!strings.Contains(rec.Body.String(), `"code":"unauthorized"`) || !strings.Contains(rec.Body.String(), `"details":[]`)) {
			t.Errorf("/metrics with %q: not the error envelope: %s %s", authz, rec.Header().Get("Content-Type"), rec.Body)
		}
	}
	// No credential configured at all: /metrics stays open, as before.
	rec := httptest.NewRecorder()
	(&Health{}).handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Errorf("/metrics without configured credentials: %d", rec.Code)
	}
}

// Every route a read token can't use documents its 403.
func TestOpenAPIDocumentsForbiddenOnWritingRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	for _, r := range New(Options{Token: envTok}).Test().GetRoutes(true) {
		if r.Method == "GET" || r.Method == "HEAD" || r.Path == "/" || strings.HasSuffix(r.Path, "*") {
			continue
		}
		p := regexp.MustCompile(`:(\w+)`).ReplaceAllString(r.Path, "{$1}")
		op, _ := doc.Paths[p][strings.ToLower(r.Method)].(map[string]any)
		responses, _ := op["responses"].(map[string]any)
		if _, ok := responses["403"]; !ok {
			t.Errorf("%s %s: no 403 response documented", r.Method, p)
		}
	}
}

// GET /whoami answers the credential's role (the web UI signs in with it):
// admin for the env token and admin lines, read for read lines; no valid
// credential is a 401. The UI's files need none.
func TestWhoAmIAnswersTheRole(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, file, adminTok+"\n"+readTok+" read\n")
	s := authServer(t, AuthOptions{Token: envTok, TokensFile: file})
	for tok, want := range map[string]string{envTok: "admin", adminTok: "admin", readTok: "read"} {
		got := call(t, s, "GET", "/api/admin/webhooks/whoami", "Bearer "+tok)
		if got.status != 200 || got.body != `{"data":{"role":"`+want+`"},"success":true}` {
			t.Errorf("whoami with a %s token: %d %s", want, got.status, got.body)
		}
	}
	if got := call(t, s, "GET", "/api/admin/webhooks/whoami", "Bearer nope-0123456789abcdef"); got.status != 401 {
		t.Errorf("whoami with a wrong token: %d %s", got.status, got.body)
	}
	if got := call(t, s, "GET", "/ui/", ""); got.status != 200 || !strings.Contains(got.body, `<div id="app">`) {
		t.Errorf("/ui/ without a token: %d %.100s", got.status, got.body)
	}
}
