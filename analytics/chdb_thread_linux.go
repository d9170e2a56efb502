//go:build !nochdb

package analytics

import "syscall"

// setThreadNice sets the calling OS thread's nice value (Linux keeps one
// per thread; threads it starts inherit it). Raising it needs no
// privilege; lowering it again would.
func setThreadNice(nice int) error {
	return syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), nice)
}
