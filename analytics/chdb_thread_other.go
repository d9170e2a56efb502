//go:build !nochdb && !linux

package analytics

// setThreadNice does nothing outside Linux, where a nice value is the
// whole process's: WEBHOOKD_CHDB_NICE is Linux-only.
func setThreadNice(int) error { return nil }
