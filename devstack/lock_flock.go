//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly || illumos

package devstack

import (
	"errors"
	"os"
	"syscall"
)

var errLocked = errors.New("locked by another process")

// lockFile takes an exclusive flock on f without waiting. flock (not
// fcntl) locks belong to the open file, so a second open of the lock file
// in this very process conflicts too, which the tests rely on.
func lockFile(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return errLocked
		}
		return err
	}
}
