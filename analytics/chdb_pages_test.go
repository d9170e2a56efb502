//go:build !nochdb && linux

package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/afftok/webhookd/delivery"
)

// rssFile is the process's resident file-backed memory, in bytes.
func rssFile(t *testing.T) int64 { return procStatusBytes(t, "RssFile:") }

// procStatusBytes is a kB field of /proc/self/status, in bytes (the test
// is skipped where there is none).
func procStatusBytes(t *testing.T, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Skipf("no %s in /proc/self/status", field)
	return 0
}

// TestReleaseLibraryPages: the pages of chDB's library that are resident
// and hold nothing of their own can be let go, and the engine goes on
// working after it (the schema, inserts, the aggregates' feed, queries): the
// code they use is mapped back. The RSS figures are logged, not asserted:
// how much is resident depends on what ran before in the process and on
// the machine's memory pressure (run alone: 173 MB after opening, 22 after
// Migrate, 118 in use).
func TestReleaseLibraryPages(t *testing.T) {
	s, err := OpenChDB(FindChDB(), filepath.Join(t.TempDir(), "ch"), Options{Database: "pages"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	before := rssFile(t)
	b := s.b.(*chdbBackend)
	resident := residentLibraryPages(b.lib)
	if resident == 0 && before < 64<<20 {
		// The kernel shows no page-cache pages in the library's mappings
		// nor much file-backed memory at all (a DAX or similar mount maps
		// the file's storage directly): there is nothing to release, and
		// nothing this test can measure. With the usual 140–180 MB
		// resident, finding none of it is a failure below.
		t.Skipf("the library's read-only mappings show no resident pages here (file-backed RSS %d MB): nothing to release", before>>20)
	}
	released := b.releaseStartupPages()
	if released <= 0 {
		t.Fatalf("released %d bytes of the library's pages after opening (%d MB of them resident), want some", released, resident>>20)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	t.Logf("file-backed RSS: %d MB after opening, %d MB released, %d MB after Migrate", before>>20, released>>20, after>>20)
	now := time.Now().UTC()
	var offset int64
	for range 5 {
		var atts, execs [][]byte
		var origins []Origin
		for i := range 2000 {
			offset++
			id := fmt.Sprintf("%016x", offset)
			a, _ := json.Marshal(delivery.Attempt{V: delivery.Version, Kind: delivery.KindAttempt, AttemptID: "at-" + id, ExecutionID: "ex-" + id,
				DeliveryID: "dl-" + id, PipelineID: "p-1", PipelineName: "pages", TriggerType: "click", TriggerID: "c" + id, EventID: "b-" + id,
				StepID: "s-1", StepName: "step 1", StepOrder: 1, Tier: "primary", Status: "success", HTTPStatus: 200, LatencyMS: int64(i % 7),
				RequestURL: "http://127.0.0.1:40000/r", StartedAt: now})
			e, _ := json.Marshal(delivery.Execution{V: delivery.Version, Kind: delivery.KindExecution, ExecutionID: "ex-" + id, DeliveryID: "dl-" + id,
				PipelineID: "p-1", PipelineName: "pages", TriggerType: "click", TriggerID: "c" + id, EventID: "b-" + id, Status: "completed",
				StartedAt: now, CompletedAt: now.Add(time.Millisecond), Seq: now.UnixNano()})
			atts, execs = append(atts, a), append(execs, e)
			origins = append(origins, Origin{Topic: "webhookd.executions", Partition: int32(i % 4), Offset: offset})
		}
		for _, err := range []error{
			s.InsertRecords(WithDedupToken(ctx, fmt.Sprintf("a%d", offset)), "attempts", atts),
			s.Feed(ctx, &Batch{AttemptRecs: atts, AttemptRecOrigins: origins}),
			s.InsertRecords(WithDedupToken(ctx, fmt.Sprintf("e%d", offset)), "executions", execs),
			s.Feed(ctx, &Batch{ExecutionRecs: execs, ExecutionRecOrigins: origins}),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	rows, err := s.b.query(ctx, "SELECT count() FROM "+s.t("attempts")+" WHERE status = 'success'", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := asInt(rows[0][0]); got != offset {
		t.Fatalf("%d attempts stored, want %d", got, offset)
	}
	t.Logf("file-backed RSS after %d deliveries stored and counted: %d MB", offset, rssFile(t)>>20)
}

// TestLibraryMatcherFindsTheLibraryByAnyName: the library is found in smaps
// when it was opened through a symlink (smaps shows the file it resolves to),
// through a hard link or bind mount (another name, the same inode), and
// after it was replaced ("(deleted)"); another file is not.
func TestLibraryMatcherFindsTheLibraryByAnyName(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "libchdb.so.26")
	if err := os.WriteFile(real, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "libchdb.so")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		t.Fatal(err)
	}
	ino := strconv.FormatUint(fi.Sys().(*syscall.Stat_t).Ino, 10)
	ours := libraryMatcher(link)
	for _, c := range []struct {
		inode, path string
		want        bool
	}{
		{ino, real, true},                       // the symlink's target, as smaps shows it
		{ino, "/elsewhere/other-name.so", true}, // a hard link or bind mount
		{"1", "/x/libchdb.so", true},            // the name it was opened by
		{"1", "/usr/lib/libc.so.6", false},
	} {
		if got := ours(c.inode, c.path); got != c.want {
			t.Errorf("ours(%s, %s) = %v, want %v", c.inode, c.path, got, c.want)
		}
	}
	fields := strings.Fields("7f00-7f10 r-xp 00000000 fe:00 " + ino + " " + real + " (deleted)")
	if got := mappedPath(fields); got != real {
		t.Errorf("mappedPath of a replaced library = %q, want %q", got, real)
	}
}
