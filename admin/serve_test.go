package admin

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// testToken is the admin token of the in-process test servers.
const testToken = "tok-0123456789abcdef"

// serve sends one request with the test token and a JSON body through s's
// handlers and returns the status and body.
func serve(t *testing.T, s *Server, method, path, body string) (int, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.Test().Test(req, 10000)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
