// Package memlimit keeps a process's resident memory within a budget by
// moving the Go runtime's soft memory limit: Go's heap gets what the rest of
// the process (the embedded ClickHouse's heap, the pages of its library)
// leaves of the budget, up to a ceiling.
//
// A fixed Go limit must be set for the worst moment of the rest: when the
// embedded ClickHouse merges parts, its heap grows by 50–150 MB for seconds,
// and most of the time it does not. A fixed limit low enough for those
// seconds makes the collector run all the time (make bench: a 160 MiB limit
// cost 40 % more CPU per delivery); this one is low only while they last.
package memlimit

import (
	"context"
	"io/fs"
	"os"
	"path"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Every is how often the limit follows the process's memory.
const Every = 250 * time.Millisecond

// Ceiling and Floor are webhookd's bounds on Go's limit: deliveries keep a
// live heap of tens of MB, and above 256 MiB more room saves the collector
// little (make bench); below 64 MiB it would run almost without pause.
const (
	Ceiling = 256 << 20
	Floor   = 64 << 20
)

// Controller sets the Go runtime's memory limit from a budget for the
// whole process's resident memory.
type Controller struct {
	// Budget is the resident memory (bytes) the process should stay
	// within: Go's limit is Budget less what is resident outside Go.
	Budget int64
	// Ceiling is the highest limit set, whatever the room (bytes).
	Ceiling int64
	// Floor is the lowest limit set (bytes), and the limit is never below
	// the live heap times FloorFactor either: near the live heap the
	// collector would run without end and free little. The ceiling wins
	// over both: a live heap above Ceiling/FloorFactor makes the collector
	// work hard at the ceiling, as a fixed limit would.
	Floor int64

	// Test seams: the process's resident bytes, Go's own figures, and the
	// setter (debug.SetMemoryLimit).
	resident func() (int64, bool)
	goStats  func() Stats
	set      func(int64) int64
}

// FloorFactor: the limit is at least the live heap times this, so that a
// collection has room to free (the limit also counts Go's stacks and
// unreturned free pages, so somewhat less than a third of it).
const FloorFactor = 1.5

// Stats are the Go runtime's figures the limit is computed from.
type Stats struct {
	Mapped int64 // memory Go holds from the system, less what it returned (what its limit counts)
	Live   int64 // the heap live after the last collection
}

// Limit is the Go memory limit for resident bytes rss when Go holds s.
func (c *Controller) Limit(rss int64, s Stats) int64 {
	outside := rss - s.Mapped
	if outside < 0 {
		// Go's mapped memory is not all resident (pages never touched).
		outside = 0
	}
	limit := max(c.Budget-outside, c.Floor, int64(float64(s.Live)*FloorFactor))
	return min(limit, c.Ceiling)
}

// Step sets the limit once from the process's memory now and returns it
// (0: the resident size could not be read; nothing is set).
func (c *Controller) Step() int64 {
	resident, goStats, set := c.resident, c.goStats, c.set
	if resident == nil {
		resident = Resident
	}
	if goStats == nil {
		goStats = ReadStats
	}
	if set == nil {
		set = debug.SetMemoryLimit
	}
	rss, ok := resident()
	if !ok {
		return 0
	}
	limit := c.Limit(rss, goStats())
	set(limit)
	return limit
}

// Run sets the limit every Every until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	t := time.NewTicker(Every)
	defer t.Stop()
	for {
		c.Step()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

var statNames = []string{"/memory/classes/total:bytes", "/memory/classes/heap/released:bytes", "/gc/heap/live:bytes"}

// ReadStats reads Stats from the Go runtime.
func ReadStats() Stats {
	s := make([]metrics.Sample, len(statNames))
	for i, n := range statNames {
		s[i].Name = n
	}
	metrics.Read(s)
	u := func(i int) int64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return int64(s[i].Value.Uint64())
	}
	return Stats{Mapped: u(0) - u(1), Live: u(2)}
}

// CgroupLimit is the memory limit the process runs under in bytes: the
// lowest limit along its own cgroup and that cgroup's parents (a
// container's limit, a systemd unit's MemoryMax=, a slice's), read from
// cgroup v2's memory.max, else v1's memory.limit_in_bytes, under
// /sys/fs/cgroup; false when there is none.
func CgroupLimit() (int64, bool) {
	own, _ := os.ReadFile("/proc/self/cgroup")
	return cgroupLimit(os.DirFS("/"), string(own))
}

// cgroupLimit is CgroupLimit on fsys, own being /proc/self/cgroup's
// content. The hierarchies, relative to the file system's root: v2's
// unified one, then v1's memory controller. The first hierarchy with a
// limit file anywhere along the path decides; in it, the lowest limit
// wins. A path that is not in the mount (a container without its own
// cgroup namespace sees the host's path) still reaches the mount's root,
// the container's own cgroup.
func cgroupLimit(fsys fs.FS, own string) (int64, bool) {
	v2, v1 := cgroupPaths(own)
	for _, h := range []struct{ mount, file, path string }{
		{"sys/fs/cgroup", "memory.max", v2},
		{"sys/fs/cgroup/memory", "memory.limit_in_bytes", v1},
	} {
		p := h.path
		lowest, found := int64(0), false
		for {
			if b, err := fs.ReadFile(fsys, path.Join(h.mount, p, h.file)); err == nil {
				found = true
				if n, ok := parseCgroupLimit(string(b)); ok && (lowest == 0 || n < lowest) {
					lowest = n
				}
			}
			if p == "." {
				break
			}
			p = path.Dir(p)
		}
		if found {
			return lowest, lowest > 0
		}
	}
	return 0, false
}

// cgroupPaths reads /proc/self/cgroup's content: the process's cgroup in
// the v2 hierarchy (the "0::" line) and in v1's memory controller, each
// relative to its mount ("." for the root, also when absent or unusable).
func cgroupPaths(own string) (v2, v1 string) {
	v2, v1 = ".", "."
	for line := range strings.Lines(own) {
		id, rest, ok1 := strings.Cut(strings.TrimRight(line, "\n"), ":")
		controllers, p, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			continue
		}
		switch {
		case id == "0" && controllers == "":
			v2 = relative(p)
		case slices.Contains(strings.Split(controllers, ","), "memory"):
			v1 = relative(p)
		}
	}
	return v2, v1
}

// relative is a cgroup path as fs.FS names it under the mount: "." for the
// root, and for a path with a ".." in it (a cgroup outside the process's
// cgroup namespace, which the mount does not show).
func relative(p string) string {
	if slices.Contains(strings.Split(p, "/"), "..") {
		return "."
	}
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" || !fs.ValidPath(p) {
		return "."
	}
	return p
}

// parseCgroupLimit reads a cgroup memory limit file's content: a number of
// bytes, or "max" (v2) or a number near 2^63 (v1) for none.
func parseCgroupLimit(s string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 || n >= 1<<60 {
		return 0, false
	}
	return n, true
}

// Resident is the process's resident memory in bytes; false where it
// cannot be read (not Linux).
func Resident() (int64, bool) {
	resident, _, ok := Statm()
	return resident, ok
}

// Statm is the process's resident memory and, of it, the file-backed and
// shared pages, in bytes (/proc/self/statm); false where it cannot be read
// (not Linux).
func Statm() (resident, shared int64, ok bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return 0, 0, false
	}
	r, err1 := strconv.ParseInt(f[1], 10, 64)
	sh, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	page := int64(os.Getpagesize())
	return r * page, sh * page, true
}
