//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly || illumos)

package devstack

import (
	"errors"
	"os"
)

var errLocked = errors.New("locked by another process")

// lockFile has no flock to take here: dev mode targets Linux (chDB ships
// for it), and elsewhere the data directory is not protected.
func lockFile(*os.File) error { return nil }
