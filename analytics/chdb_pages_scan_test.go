//go:build !nochdb && linux

package analytics

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// smapsEntry is one mapping of a /proc/self/smaps text.
func smapsEntry(start uint64, perms, path string, rssKB, anonKB, privDirtyKB, sharedDirtyKB int) string {
	return fmt.Sprintf("%x-%x %s 00000000 fd:01 1234   %s\nSize: %d kB\nRss: %d kB\nShared_Dirty: %d kB\nPrivate_Dirty: %d kB\nAnonymous: %d kB\nSwap: 0 kB\n",
		start, start+1<<20, perms, path, 1024, rssKB, sharedDirtyKB, privDirtyKB, anonKB)
}

// TestLibraryMappingsDirtyPageCacheIsTheFiles: a read-only mapping whose
// pages are dirty in the page cache (the library was written moments ago
// and not yet written back, as on a CI machine that has just downloaded
// it; or it lives on tmpfs) holds nothing of its own and is released; a
// mapping with a page copied on write (Anonymous) or a writable one is not.
// CI failed TestReleaseLibraryPages with "released 0 bytes" because dirty
// page-cache pages were taken for written ones.
func TestLibraryMappingsDirtyPageCacheIsTheFiles(t *testing.T) {
	lib := "/x/.cache/chdb/v/libchdb.so"
	smaps := smapsEntry(0x10000000, "r--p", lib, 800, 0, 0, 0) + // clean
		smapsEntry(0x20000000, "r-xp", lib, 900, 0, 900, 0) + // dirty in the page cache, private
		smapsEntry(0x30000000, "r--p", lib, 700, 0, 0, 700) + // dirty in the page cache, shared with another process
		smapsEntry(0x40000000, "r--p", lib, 600, 4, 4, 0) + // a page copied on write (relocations)
		smapsEntry(0x50000000, "rw-p", lib, 500, 0, 0, 0) + // writable
		smapsEntry(0x60000000, "r--p", "/usr/lib/libother.so", 400, 0, 0, 0) +
		smapsEntry(0x70000000, "r--p", lib+" (deleted)", 300, 0, 300, 0) // replaced since it was mapped
	got := map[uint64]int64{}
	for _, m := range parseLibraryMappings(strings.NewReader(smaps), "/elsewhere/libchdb.so") {
		got[m.start] = m.rss
	}
	want := map[uint64]int64{0x10000000: 800 << 10, 0x20000000: 900 << 10, 0x30000000: 700 << 10, 0x70000000: 300 << 10}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("mappings to release %v, want %v", got, want)
	}
}

var pageSink byte

// TestReleaseFreshlyWrittenFilePages: with the kernel's own smaps, the
// resident pages of a file written just before it was mapped read-only are
// released (and still read the same afterwards); a private mapping with a
// page written in this process is left alone.
func TestReleaseFreshlyWrittenFilePages(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, fmt.Sprintf("pages-%d.bin", os.Getpid()))
	const size = 64 << 12
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_PRIVATE)
	if err != nil {
		t.Skip(err)
	}
	defer syscall.Munmap(m)
	for i := 0; i < size; i += 4096 {
		pageSink += m[i] // fault every page in
	}
	if residentLibraryPages(name) == 0 {
		b, _ := os.ReadFile("/proc/self/smaps") // what the kernel showed
		if i := strings.Index(string(b), name); i >= 0 {
			t.Log(string(b[i:min(len(b), i+1500)]))
		}
		t.Fatalf("%s: no resident read-only pages found after reading all %d of them", name, size>>12)
	}
	if got := releaseLibraryPages(name); got <= 0 {
		t.Fatalf("released %d bytes of a freshly written file's read-only mapping, want some", got)
	}
	if string(m) != string(data) {
		t.Fatal("the mapping reads differently after its pages were released")
	}

	// A private writable mapping written once, then made read-only: its
	// written page is the process's own.
	g, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	w, err := syscall.Mmap(int(g.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(w)
	w[0] = ^data[0]
	if err := syscall.Mprotect(w, syscall.PROT_READ); err != nil {
		t.Fatal(err)
	}
	_ = releaseLibraryPages(name)
	if w[0] != ^data[0] {
		t.Fatal("a page written in this process was released (its write is lost)")
	}
}
