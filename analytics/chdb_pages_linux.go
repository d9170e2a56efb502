//go:build !nochdb

package analytics

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// releaseLibraryPages unmaps the pages of the library named lib (its base
// name) that are resident but hold nothing of their own: the read-only
// mappings (code, constants) none of whose pages was ever written, so each
// page is exactly the file's. Loading and starting chDB runs the static
// initialisers spread over its 560 MB library and maps about 200 MB of it,
// most never used again; the code inserts, merges and queries use is mapped
// back on its next use (from the page cache: a minor fault). It returns the
// bytes that were resident in the mappings it released. Measured: a chDB
// process's file-backed RSS goes from 195 MB to 66 MB, and stays at about
// 127 MB under a stream of inserts (TestReleaseLibraryPages).
func releaseLibraryPages(lib string) (released int64) {
	for _, m := range cleanLibraryMappings(lib) {
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), syscall.MADV_DONTNEED); errno == 0 {
			released += m.rss
		}
	}
	return released
}

// libraryMapping is one mapping of a library's file (/proc/self/smaps).
type libraryMapping struct {
	start, end uint64
	writable   bool
	ours       bool
	rss        int64
	anon       int64 // bytes of pages no longer the file's (copied on write, or swapped out)
}

// cleanLibraryMappings lists the read-only mappings of the library named
// lib (its base name) that have resident pages, none of them written. A
// file whose pages are not in the page cache (a DAX mount, for one) shows
// none: there is nothing to release there.
func cleanLibraryMappings(lib string) []libraryMapping {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil
	}
	defer f.Close()
	return parseLibraryMappings(f, lib)
}

// parseLibraryMappings is cleanLibraryMappings reading smaps from r. A
// page written in this process is Anonymous (a private mapping copies it);
// Private_Dirty and Shared_Dirty also count the page cache's own dirty
// pages, a file written moments ago and not yet written back (a library
// just downloaded, as on a fresh CI machine) or any tmpfs file: those are
// still the file's, and unmapping them loses nothing.
func parseLibraryMappings(r io.Reader, lib string) []libraryMapping {
	ours := libraryMatcher(lib)
	type mapping = libraryMapping
	var cur *mapping
	var candidates []mapping
	flush := func() {
		if cur != nil && cur.ours && !cur.writable && cur.anon == 0 && cur.rss > 0 {
			candidates = append(candidates, *cur)
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		fields := strings.Fields(string(line))
		if len(fields) == 0 {
			continue
		}
		if key, ok := strings.CutSuffix(fields[0], ":"); ok {
			// A "Key: value kB" line of the current mapping.
			if cur == nil || len(fields) < 2 {
				continue
			}
			v, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				continue
			}
			switch key {
			case "Rss":
				cur.rss = v << 10
			case "Anonymous", "Swap":
				cur.anon += v << 10
			}
			continue
		}
		// A mapping's header: start-end perms offset dev inode [path].
		flush()
		cur = nil
		lo, hi, ok := bytes.Cut([]byte(fields[0]), []byte("-"))
		if !ok || len(fields) < 5 {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		cur = &mapping{start: start, end: end, writable: strings.Contains(fields[1], "w"),
			ours: len(fields) >= 6 && ours(fields[4], mappedPath(fields))}
	}
	flush()
	return candidates
}

// residentLibraryPages is the bytes resident in the mappings
// releaseLibraryPages would release.
func residentLibraryPages(lib string) (n int64) {
	for _, m := range cleanLibraryMappings(lib) {
		n += m.rss
	}
	return n
}

// mappedPath is the file of a smaps header line's fields; a file replaced
// or removed since it was mapped reads "path (deleted)".
func mappedPath(fields []string) string {
	last := fields[len(fields)-1]
	if last == "(deleted)" && len(fields) >= 7 {
		return fields[len(fields)-2]
	}
	return last
}

// libraryMatcher tells a mapping of the library lib from a smaps header's
// inode and path: by the file's base name, the base name it resolves to
// (lib may be a symlink to a versioned file), or the file's inode number
// (a path the kernel shows differently, through a bind mount or overlay).
func libraryMatcher(lib string) func(inode, path string) bool {
	names := map[string]bool{filepath.Base(lib): true}
	if real, err := filepath.EvalSymlinks(lib); err == nil {
		names[filepath.Base(real)] = true
	}
	ino := ""
	if fi, err := os.Stat(lib); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino = strconv.FormatUint(st.Ino, 10)
		}
	}
	return func(inode, path string) bool {
		return names[filepath.Base(path)] || (ino != "" && inode == ino)
	}
}
