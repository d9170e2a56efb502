package memlimit

import (
	"context"
	"io/fs"
	"path"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/fstest"
	"testing/synctest"
	"time"
)

const mib = 1 << 20

func TestLimitIsWhatTheRestOfTheProcessLeaves(t *testing.T) {
	c := &Controller{Budget: 480 * mib, Ceiling: 256 * mib, Floor: 64 * mib}
	for _, tc := range []struct {
		name              string
		rss, mapped, live int64
		want              int64
	}{
		{"room beyond the ceiling: the ceiling", 300 * mib, 150 * mib, 40 * mib, 256 * mib},
		{"a merge's 200 MB outside Go: the budget less it", 500 * mib, 150 * mib, 40 * mib, 130 * mib},
		{"no room: the floor", 600 * mib, 150 * mib, 20 * mib, 64 * mib},
		{"no room, a large live heap: 1.5 times it", 600 * mib, 150 * mib, 100 * mib, 150 * mib},
		{"a live heap beyond the ceiling's reach: the ceiling still", 600 * mib, 300 * mib, 200 * mib, 256 * mib},
		{"Go's mapped memory not all resident: nothing counted outside", 100 * mib, 150 * mib, 40 * mib, 256 * mib},
	} {
		if got := c.Limit(tc.rss, Stats{Mapped: tc.mapped, Live: tc.live}); got != tc.want {
			t.Errorf("%s: limit %d MiB, want %d MiB", tc.name, got/mib, tc.want/mib)
		}
	}
}

// The controller reads the process as it is: memory taken outside the Go
// heap (as the embedded ClickHouse takes it) lowers Go's limit by as much,
// and returning it raises the limit again.
func TestMemoryOutsideGoLowersGosLimit(t *testing.T) {
	if _, ok := Resident(); !ok {
		t.Skip("no /proc/self/statm here")
	}
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	c := &Controller{Budget: 4 << 30, Ceiling: 8 << 30, Floor: 64 * mib}
	before := c.Step()
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("Go's limit is %d, the controller set %d", got, before)
	}

	const foreign = 200 * mib
	m, err := syscall.Mmap(-1, 0, foreign, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(m); i += 4096 {
		m[i] = 1
	}
	during := c.Step()
	if err := syscall.Munmap(m); err != nil {
		t.Fatal(err)
	}
	after := c.Step()

	if drop := before - during; drop < foreign*9/10 || drop > foreign*11/10 {
		t.Errorf("200 MiB taken outside Go lowered the limit by %d MiB (from %d to %d MiB)", drop/mib, before/mib, during/mib)
	}
	if rise := after - during; rise < foreign*9/10 {
		t.Errorf("returning the 200 MiB raised the limit by %d MiB only", rise/mib)
	}
}

func TestRunFollowsUntilCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var limits []int64
		set := func() []int64 { mu.Lock(); defer mu.Unlock(); return slices.Clone(limits) }
		var rss atomic.Int64
		rss.Store(300 * mib)
		c := &Controller{Budget: 480 * mib, Ceiling: 256 * mib, Floor: 64 * mib,
			resident: func() (int64, bool) { return rss.Load(), true },
			goStats:  func() Stats { return Stats{Mapped: 150 * mib, Live: 30 * mib} },
			set: func(n int64) int64 {
				mu.Lock()
				defer mu.Unlock()
				limits = append(limits, n)
				return 0
			}}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { c.Run(ctx); close(done) }()
		synctest.Wait()
		rss.Store(500 * mib) // a merge starts
		time.Sleep(Every)
		synctest.Wait()
		cancel()
		<-done
		got := set()
		time.Sleep(10 * Every)
		synctest.Wait()
		if later := set(); len(later) != len(got) {
			t.Errorf("the limit was set %d times after Run returned", len(later)-len(got))
		}
		if want := []int64{256 * mib, 130 * mib}; !slices.Equal(got, want) {
			t.Errorf("limits set %v MiB, want [256 130]", mibs(got))
		}
	})
}

func TestUnreadableMemorySetsNothing(t *testing.T) {
	set := false
	c := &Controller{Budget: 480 * mib, Ceiling: 256 * mib,
		resident: func() (int64, bool) { return 0, false },
		goStats:  func() Stats { return Stats{} },
		set:      func(int64) int64 { set = true; return 0 }}
	if got := c.Step(); got != 0 || set {
		t.Errorf("Step with no resident size: %d, set %v", got, set)
	}
}

func mibs(ns []int64) []int64 {
	out := make([]int64, len(ns))
	for i, n := range ns {
		out[i] = n / mib
	}
	return out
}

func TestCgroupLimit(t *testing.T) {
	for in, want := range map[string]int64{
		"1073741824\n":          1 << 30,
		"max\n":                 0, // v2: none
		"9223372036854771712\n": 0, // v1: none
		"":                      0,
		"-1":                    0,
		"12abc":                 0,
	} {
		if got, ok := parseCgroupLimit(in); got != want || ok != (want > 0) {
			t.Errorf("parseCgroupLimit(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}

func TestCgroupLimitAlongTheProcesssCgroup(t *testing.T) {
	const gib = 1 << 30
	v2 := func(files map[string]string) fstest.MapFS {
		fsys := fstest.MapFS{}
		for name, content := range files {
			fsys[path.Join("sys/fs/cgroup", name)] = &fstest.MapFile{Data: []byte(content)}
		}
		return fsys
	}
	for _, c := range []struct {
		name string
		fsys fstest.MapFS
		own  string
		want int64
	}{
		{"a container with its own cgroup namespace", v2(map[string]string{"memory.max": "1073741824\n"}), "0::/\n", gib},
		{"a systemd unit's MemoryMax= on the service, none above", v2(map[string]string{
			"system.slice/memory.max":                  "max\n",
			"system.slice/webhookd.service/memory.max": "2147483648\n",
		}), "0::/system.slice/webhookd.service\n", 2 * gib},
		{"a slice's limit below the unit's: the lowest wins", v2(map[string]string{
			"work.slice/memory.max":                "1073741824\n",
			"work.slice/webhookd.scope/memory.max": "max\n",
		}), "0::/work.slice/webhookd.scope\n", gib},
		{"the cgroup's own directory has no memory.max (controller not enabled there)", v2(map[string]string{
			"kubepods/memory.max": "536870912\n",
		}), "0::/kubepods/pod1/ctr\n", gib / 2},
		{"a host path the mount does not have reaches the mount's root", v2(map[string]string{"memory.max": "1073741824\n"}),
			"0::/kubepods/burstable/pod1/ctr\n", gib},
		{"no limit anywhere", v2(map[string]string{"user.slice/memory.max": "max\n"}), "0::/user.slice\n", 0},
		{"a path outside the cgroup namespace is the root", v2(map[string]string{
			"memory.max":     "1073741824\n",
			"etc/memory.max": "536870912\n",
		}), "0::/../../etc\n", gib},
		{"cgroup v1: the memory controller's line", fstest.MapFS{
			"sys/fs/cgroup/memory/memory.limit_in_bytes":            {Data: []byte("9223372036854771712\n")},
			"sys/fs/cgroup/memory/docker/memory.limit_in_bytes":     {Data: []byte("9223372036854771712\n")},
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": {Data: []byte("805306368\n")},
		}, "12:cpu,cpuacct:/docker/abc\n5:memory:/docker/abc\n0::/system.slice/docker.service\n", 768 << 20},
		{"cgroup v1 with no limit", fstest.MapFS{
			"sys/fs/cgroup/memory/memory.limit_in_bytes": {Data: []byte("9223372036854771712\n")},
		}, "5:memory:/\n", 0},
		{"no /proc/self/cgroup: the mount's root", v2(map[string]string{"memory.max": "1073741824\n"}), "", gib},
		{"no cgroup file system", fstest.MapFS{}, "0::/\n", 0},
	} {
		got, ok := cgroupLimit(c.fsys, c.own)
		if got != c.want || ok != (c.want > 0) {
			t.Errorf("%s: cgroupLimit = %d, %v; want %d", c.name, got, ok, c.want)
		}
	}
}

func FuzzCgroupPaths(f *testing.F) {
	for _, s := range []string{"0::/\n", "0::/system.slice/a.service\n", "5:memory:/docker/abc\n0::/x\n", "0::/../..", "1:name=systemd:/a\n", ":::", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, own string) {
		v2, v1 := cgroupPaths(own)
		for _, p := range []string{v2, v1} {
			if !fs.ValidPath(p) {
				t.Fatalf("cgroupPaths(%q) = %q, %q: not a path under the mount", own, v2, v1)
			}
		}
		// Every path ends: cgroupLimit walks each to the mount's root.
		cgroupLimit(fstest.MapFS{}, own)
	})
}

func FuzzParseCgroupLimit(f *testing.F) {
	for _, s := range []string{"1073741824\n", "max\n", "9223372036854771712", " 42 ", "0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := parseCgroupLimit(s)
		if ok != (n > 0) || n >= 1<<60 {
			t.Fatalf("parseCgroupLimit(%q) = %d, %v", s, n, ok)
		}
	})
}
