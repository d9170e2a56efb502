package devstack

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DirLock is the exclusive hold of one `webhookd dev` on its data directory:
// the embedded broker and chDB each assume they are the only writer of their
// files, and a second process would start its broker (which rewrites the
// broker's state when it stops) before chDB's own lock refused it. Taken
// before anything touches the directory, held until Close or the process's
// end (the kernel drops the lock with its holder, even after SIGKILL, so a
// crash leaves nothing stale).
type DirLock struct{ f *os.File }

// InUseError says which process holds the data directory.
type InUseError struct {
	Dir string
	PID int // 0 if the holder has not written it yet
}

func (e *InUseError) Error() string {
	pid := "pid unknown"
	if e.PID > 0 {
		pid = "pid " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("data dir %s is in use by another webhookd (%s)", e.Dir, pid)
}

// LockFile is the lock's file in the data directory; it holds the pid of
// the process that has the lock (the lock, not the file, is the truth:
// the file outlives its holder).
const LockFile = ".lock"

// LockDataDir creates dir if needed and locks it, or returns *InUseError
// when another process holds it.
func LockDataDir(dir string) (*DirLock, error) {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := lockFile(f); err != nil {
		defer f.Close()
		if errors.Is(err, errLocked) {
			return nil, &InUseError{Dir: dir, PID: readPID(f)}
		}
		return nil, fmt.Errorf("data dir lock %s: %w", f.Name(), err)
	}
	// Ours: say whose it is, for the message a second process gives.
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("data dir lock %s: %w", f.Name(), err)
	}
	return &DirLock{f: f}, nil
}

func readPID(f *os.File) int {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 32))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Close releases the lock.
func (l *DirLock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the only descriptor drops the flock
	l.f = nil
	return err
}
