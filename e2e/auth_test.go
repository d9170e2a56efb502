package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Tokens rotate through WEBHOOKD_ADMIN_TOKENS_FILE on a running process:
// the new token works once the file has it, the old one keeps working until
// its line is removed (no gap), a read token can only read, and the scheme
// is case-insensitive.
func TestAdminTokensRotateWithoutARestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	const (
		oldTok  = "rotate-old-token-0123456789"
		newTok  = "rotate-new-token-0123456789"
		readTok = "rotate-read-token-0123456789"
	)
	write := func(content string) {
		// Written aside and renamed in, as a Kubernetes Secret update is.
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write(oldTok + "\n" + readTok + " read\n")
	in := startInstance(t, "dev", merge(ownTopics("rot."), map[string]string{"WEBHOOKD_ADMIN_TOKENS_FILE": file}))
	status := func(method, auth string) int {
		req, _ := http.NewRequest(method, "http://"+in.AdminAddr+"/api/admin/webhooks/pipelines", nil)
		req.Header.Set("Authorization", auth)
		resp, err := apiClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// until polls a condition the reload makes true (the file is checked
	// about once a second).
	until := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(arriveWithin); !ok(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v", what, arriveWithin)
			}
		}
	}
	if status("GET", "Bearer "+oldTok) != 200 || status("GET", "bearer "+oldTok) != 200 || status("GET", "BEARER "+readTok) != 200 {
		t.Fatal("tokens from the file are not accepted")
	}
	if got := status("POST", "Bearer "+readTok); got != 403 {
		t.Fatalf("a read token writing: %d", got)
	}
	if got := status("GET", "Bearer "+newTok); got != 401 {
		t.Fatalf("a token not yet in the file: %d", got)
	}
	write(oldTok + "\n" + newTok + "\n" + readTok + " read\n")
	until("the new token accepted", func() bool { return status("GET", "Bearer "+newTok) == 200 })
	if status("GET", "Bearer "+oldTok) != 200 {
		t.Fatal("the old token stopped working before it was removed")
	}
	write(newTok + "\n")
	until("the old token refused", func() bool { return status("GET", "Bearer "+oldTok) == 401 })
	if status("GET", "Bearer "+newTok) != 200 || status("GET", "Bearer "+readTok) != 401 {
		t.Fatal("after the old lines were removed")
	}
	// The env token still works beside the file.
	if status("GET", "Bearer "+testToken) != 200 {
		t.Fatal("the env token stopped working")
	}
}
