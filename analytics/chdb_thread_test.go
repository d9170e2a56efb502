//go:build !nochdb && linux

package analytics

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// threadNice is the nice value of thread tid of this process.
func threadNice(t *testing.T, tid int) int {
	t.Helper()
	// getpriority's raw value is 20 - nice (the libc wrapper turns it
	// back; Go's syscall package does not).
	p, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
	if err != nil {
		t.Fatalf("getpriority(%d): %v", tid, err)
	}
	return 20 - p
}

// TestChDBThreadsRunAtTheStoresNice: with Options.Nice 10 every thread of
// the embedded ClickHouse — its schedule and merge pools, the threads an
// insert and a parallel query start — runs at nice 10, and Go's threads,
// which run the deliveries, at the process's priority. The chDB thread is
// the process's (the first store opened decides), so the test runs in a
// process of its own.
func TestChDBThreadsRunAtTheStoresNice(t *testing.T) {
	if os.Getenv("WEBHOOKD_TEST_CHDB_NICE_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestChDBThreadsRunAtTheStoresNice$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "WEBHOOKD_TEST_CHDB_NICE_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("--- PASS: TestChDBThreadsRunAtTheStoresNice")) {
			t.Fatalf("the test's own process: %v\n%s", err, out)
		}
		t.Logf("%s", out)
		return
	}
	goComm, err := os.ReadFile("/proc/self/comm") // the main thread's: Go's
	if err != nil {
		t.Fatal(err)
	}
	base := threadNice(t, os.Getpid()) // the process's (its main thread's)
	want := max(base, 10)
	s, err := OpenChDB(FindChDB(), filepath.Join(t.TempDir(), "ch"), Options{Database: "nice", Nice: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := s.b.(*chdbBackend)
	for _, q := range []string{
		"CREATE TABLE nice_t (k UInt64, v String) ENGINE = MergeTree ORDER BY k",
		"INSERT INTO nice_t SELECT number, toString(number) FROM numbers(2000000)",
		"INSERT INTO nice_t SELECT number, toString(number) FROM numbers(2000000)",
		"OPTIMIZE TABLE nice_t FINAL",
		"SELECT v, count() FROM nice_t GROUP BY v ORDER BY count() DESC LIMIT 1 SETTINGS max_threads = 8",
		"SELECT sum(number) FROM numbers_mt(50000000) SETTINGS max_threads = 8",
	} {
		if _, err := b.run(q); err != nil {
			t.Fatal(err)
		}
	}
	var chdbTid int
	onChDBThread(func() { chdbTid = syscall.Gettid() })
	if n := threadNice(t, chdbTid); n != want {
		t.Errorf("the chDB thread runs at nice %d; want %d", n, want)
	}

	// Goroutines locked to threads at once, each on an M of its own: Go's
	// threads run at the process's priority.
	const gs = 8
	niceOf := make(chan int, gs)
	hold := make(chan struct{})
	for range gs {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			niceOf <- threadNice(t, syscall.Gettid())
			<-hold
		}()
	}
	for range gs {
		if n := <-niceOf; n != base {
			t.Errorf("a Go thread runs at nice %d; want the process's %d", n, base)
		}
	}
	close(hold)

	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var chdb, goAtBase int
	for _, e := range tasks {
		comm, err := os.ReadFile(filepath.Join("/proc/self/task", e.Name(), "comm"))
		if err != nil {
			continue // ended since
		}
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			t.Fatal(err)
		}
		n := threadNice(t, tid)
		name := strings.TrimSpace(string(comm))
		switch {
		case bytes.Equal(comm, goComm) && n == base:
			goAtBase++
		case bytes.Equal(comm, goComm) && n == want:
			// The chDB thread, and threads ClickHouse left unnamed.
		case bytes.Equal(comm, goComm):
			t.Errorf("thread %d (%s) at nice %d", tid, name, n)
		case name == "MemoryWorker" && n < base:
			// ClickHouse raises this one's priority itself where it
			// may (CAP_SYS_NICE, as root): it reads the allocator's
			// statistics.
		default:
			chdb++
			if n != want {
				t.Errorf("the embedded ClickHouse's thread %d (%s) runs at nice %d; want %d", tid, name, n, want)
			}
		}
	}
	if chdb < 4 || goAtBase < 2 {
		t.Errorf("threads: %d of ClickHouse's (named), %d Go-named at nice %d; want ClickHouse's pools and Go's threads", chdb, goAtBase, base)
	}
	t.Logf("process at nice %d: %d ClickHouse threads at nice %d, %d Go-named threads at %d", base, chdb, want, goAtBase, base)
}

// TestAPanicOnTheChDBThreadIsTheCallers: a call that panics on the chDB
// thread panics in its caller, and the thread serves the next call.
func TestAPanicOnTheChDBThreadIsTheCallers(t *testing.T) {
	startChDBThread(0, nil)
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v; want the call's panic", r)
			}
		}()
		onChDBThread(func() { panic("boom") })
	}()
	ran := false
	onChDBThread(func() { ran = true })
	if !ran {
		t.Error("the next call did not run")
	}
}
