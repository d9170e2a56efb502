package devstack

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestDataDirLockIsExclusiveUntilClosed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // created by the lock
	l, err := LockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, LockFile))
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("lock file holds %q (%v), want this pid", b, err)
	}
	// flock locks belong to the open file: a second open conflicts even
	// in this process, as a second webhookd would.
	_, err = LockDataDir(dir)
	var inUse *InUseError
	if !errors.As(err, &inUse) || inUse.PID != os.Getpid() || inUse.Dir != dir {
		t.Fatalf("second lock: %v", err)
	}
	if want := "data dir " + dir + " is in use by another webhookd (pid " + strconv.Itoa(os.Getpid()) + ")"; err.Error() != want {
		t.Fatalf("message %q, want %q", err, want)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := LockDataDir(dir)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	_ = l2.Close()
	var none *DirLock
	if none.Close() != nil {
		t.Fatal("Close of no lock")
	}
}

func TestInUseErrorWithoutAPID(t *testing.T) {
	if got := (&InUseError{Dir: "/x"}).Error(); got != "data dir /x is in use by another webhookd (pid unknown)" {
		t.Fatal(got)
	}
}
