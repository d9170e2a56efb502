//go:build !nochdb

package analytics

import "syscall"

// setThreadNice lowers the calling OS thread's priority to nice (Linux
// keeps a nice value per thread, and threads it starts inherit it); a
// thread already at nice or lower priority is left as it is, so the
// setting never raises a priority (a process started at nice 15 keeps
// chDB at 15). Lowering a priority needs no privilege.
func setThreadNice(nice int) error {
	// The raw getpriority value is 20 - nice (Go's syscall package does
	// not turn it back as libc does).
	p, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
	if err != nil {
		return err
	}
	if 20-p >= nice {
		return nil
	}
	return syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), nice)
}
