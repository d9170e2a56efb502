//go:build !nochdb && !linux

package analytics

import "errors"

// setThreadNice is Linux-only: elsewhere a nice value is the process's.
func setThreadNice(int) error {
	return errors.New("a thread's own nice value is Linux-only")
}
