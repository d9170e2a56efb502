//go:build !nochdb

package analytics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/afftok/webhookd/memlimit"
)

// chDB (ClickHouse in-process) is loaded lazily with dlopen when a chDB store
// is opened, never at program start: chdb-go loads libchdb.so in an init
// function and panics without it, which would stop a serve-mode binary that
// never uses chDB from starting. The handful of C functions needed are bound
// here with purego, the mechanism chdb-go itself uses.

type chdbConn struct{}
type chdbResult struct{}

var chdbLib struct {
	once    sync.Once
	err     error
	connect func(argc int, argv []*byte) **chdbConn
	close   func(c **chdbConn)
	query   func(c *chdbConn, q string, format string) *chdbResult
	buf     func(r *chdbResult) *byte
	length  func(r *chdbResult) uintptr
	errText func(r *chdbResult) string
	destroy func(r *chdbResult)
}

// ChDBVersion is the @chdb/lib-linux-x64-gnu package version the Makefile
// installs; FindChDB looks for it first.
const ChDBVersion = "26.7.3-stable.1"

// FindChDB returns the path of libchdb.so: $WEBHOOKD_CHDB_LIBRARY, then the
// repo's .cache (searched upwards from the working directory and from the
// executable), then the system's library path.
func FindChDB() string {
	if p := os.Getenv("WEBHOOKD_CHDB_LIBRARY"); p != "" {
		return p
	}
	rel := filepath.Join(".cache", "chdb", ChDBVersion, "libchdb.so")
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for d := dir; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, rel)); err == nil {
				return filepath.Join(d, rel)
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "libchdb.so"
}

// jemallocConf is chDB's allocator setting unless JE_MALLOC_CONF is set:
// memory chDB frees is kept 200 ms to be reused, then goes back to the
// system (jemalloc's background thread returns it over those 200 ms, busy
// or idle). Freed at once instead (decay 0, the setting before), every query
// and insert faulted its buffers in again: page faults and page clearing
// were 42 % of a log query's CPU, and the stats answers took 20–40 %
// longer (issue 10). A longer decay (1 s) was as fast but raised the peak
// RSS of a 1 M backlog in make bench from 494 to 550–577 MB; 200 ms: 505 MB.
// The purge above PurgeAboveAnon bounds what a burst keeps.
const jemallocConf = "background_thread:true,dirty_decay_ms:200,muzzy_decay_ms:0"

// DefaultPurgeAboveAnon is the process's anonymous resident memory above
// which the memory chDB has freed goes back to the system after each call
// (Options.PurgeAboveAnon).
const DefaultPurgeAboveAnon = 256 << 20

// purgeEvery is how often at most the resident size is checked.
const purgeEvery = 250 * time.Millisecond

func loadChDB(path string, nice int, log *slog.Logger) error {
	l := &chdbLib
	l.once.Do(func() {
		startChDBThread(nice, log)
		onChDBThread(func() {
			// Read by chDB's jemalloc when the library initialises.
			if _, set := os.LookupEnv("JE_MALLOC_CONF"); !set {
				_ = os.Setenv("JE_MALLOC_CONF", jemallocConf)
			}
			h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
			if err != nil {
				l.err = fmt.Errorf("load chDB from %s (install it with `make chdb`, or set WEBHOOKD_CHDB_LIBRARY): %w", path, err)
				return
			}
			purego.RegisterLibFunc(&l.connect, h, "chdb_connect")
			purego.RegisterLibFunc(&l.close, h, "chdb_close_conn")
			purego.RegisterLibFunc(&l.query, h, "chdb_query")
			purego.RegisterLibFunc(&l.buf, h, "chdb_result_buffer")
			purego.RegisterLibFunc(&l.length, h, "chdb_result_length")
			purego.RegisterLibFunc(&l.errText, h, "chdb_result_error")
			purego.RegisterLibFunc(&l.destroy, h, "chdb_destroy_query_result")
		})
	})
	return l.err
}

// chdbThread is the one OS thread every call into chDB is made on: the
// library is loaded, the session opened and every query and insert run
// there. ClickHouse's threads (insert pipelines, merges, its schedule
// pools) are started from it or from each other, and a thread starts at
// the priority of the thread that starts it: with the thread's nice value
// raised (Options.Nice), all of the embedded engine works at that lower
// priority, and the process's Go threads — deliveries — go first when the
// two want the same core. Its goroutine stays locked to the thread for the
// life of the process, so the lowered priority never reaches other Go code.
var chdbThread struct {
	once  sync.Once
	calls chan func()
}

// startChDBThread starts the thread at nice (0: the process's own
// priority); the first call decides, for the life of the process. A nice
// value the system refuses is logged and the thread runs at the process's.
func startChDBThread(nice int, log *slog.Logger) {
	chdbThread.once.Do(func() {
		chdbThread.calls = make(chan func())
		started := make(chan struct{})
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the process
			if nice != 0 {
				if err := setThreadNice(nice); err != nil && log != nil {
					log.Warn("the embedded ClickHouse runs at the process's priority: its thread's nice value could not be raised", "nice", nice, "error", err)
				}
			}
			close(started)
			for f := range chdbThread.calls {
				f()
			}
		}()
		<-started
	})
}

// onChDBThread runs f on the chDB thread and waits for it; a panic in f
// is raised again in the caller, as if f had run there.
func onChDBThread(f func()) {
	done := make(chan struct{})
	var panicked any
	chdbThread.calls <- func() {
		defer func() {
			panicked = recover()
			close(done)
		}()
		f()
	}
	<-done
	if panicked != nil {
		panic(panicked)
	}
}

// chdbBackend runs SQL in the embedded engine. chDB allows one session per
// process and its connection is not safe for concurrent use: calls are
// serialised, which is fine for the dev-mode and test loads it serves.
type chdbBackend struct {
	mu   sync.Mutex
	conn **chdbConn
	path string
	lib  string

	// purgeAbove is the anonymous resident memory (bytes) above which chDB's freed
	// memory is returned after a call (0: after every call); checked is
	// when the size was last read, purges how many times it was returned.
	purgeAbove int64
	checked    time.Time
	purges     int64
	purgeOff   bool // the engine refused a purge: none is tried again
	log        *slog.Logger
}

var chdbOpen struct {
	sync.Mutex
	path string
}

func openChDB(lib, dataPath string, purgeAbove int64, nice int, log *slog.Logger) (*chdbBackend, error) {
	if err := loadChDB(lib, nice, log); err != nil {
		return nil, err
	}
	chdbOpen.Lock()
	defer chdbOpen.Unlock()
	if chdbOpen.path != "" {
		return nil, fmt.Errorf("chDB is already open at %s in this process (one session per process)", chdbOpen.path)
	}
	abs, err := filepath.Abs(dataPath)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("chDB data dir: %w", err)
	}
	argv := []*byte{cstr("clickhouse"), cstr("--path=" + abs)}
	var c **chdbConn
	onChDBThread(func() { c = chdbLib.connect(len(argv), argv) })
	if c == nil || *c == nil {
		return nil, fmt.Errorf("chDB: cannot open a session at %s (is another process using it?)", abs)
	}
	chdbOpen.path = abs
	b := &chdbBackend{conn: c, path: abs, lib: lib, purgeAbove: purgeAbove, log: log}
	// Numbers as numbers; "/" not escaped as "\/" (decodeCompactRows
	// reads strings without escapes without encoding/json).
	if _, err := b.run("SET output_format_json_quote_64bit_integers = 0, output_format_json_escape_forward_slashes = 0"); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

func cstr(s string) *byte {
	b := append([]byte(s), 0)
	return &b[0]
}

func (b *chdbBackend) run(q string) (out []byte, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn == nil {
		return nil, errors.New("chDB store is closed")
	}
	onChDBThread(func() { out, err = b.call(q) })
	return out, err
}

// call runs q (on the chDB thread, b.mu held) and returns its output.
func (b *chdbBackend) call(q string) ([]byte, error) {
	defer b.bound()
	r := chdbLib.query(*b.conn, q, "JSONCompactEachRow")
	if r == nil {
		return nil, errors.New("chDB returned no result")
	}
	defer chdbLib.destroy(r)
	if e := chdbLib.errText(r); e != "" {
		return nil, fmt.Errorf("chDB: %s", e)
	}
	n := chdbLib.length(r)
	if p := chdbLib.buf(r); p != nil && n > 0 {
		return append([]byte(nil), unsafe.Slice(p, n)...), nil
	}
	return nil, nil
}

// bound returns the memory chDB has freed to the system when the process's
// anonymous resident memory is above purgeAbove, reading it at most every
// purgeEvery (b.mu held, on the chDB thread). jemalloc keeps freed pages for 200 ms to reuse
// them (jemallocConf); under a burst of large inserts those 200 ms could
// otherwise add a batch's worth of memory to the peak.
func (b *chdbBackend) bound() {
	if b.purgeOff {
		return
	}
	if b.purgeAbove > 0 {
		if time.Since(b.checked) < purgeEvery {
			return
		}
		b.checked = time.Now()
		if anon, ok := anonResident(); !ok || anon <= b.purgeAbove {
			return
		}
	}
	r := chdbLib.query(*b.conn, "SYSTEM JEMALLOC PURGE", "JSONCompactEachRow")
	if r == nil {
		return
	}
	defer chdbLib.destroy(r)
	if e := chdbLib.errText(r); e != "" {
		// Another build of chDB (without jemalloc): freed memory goes back
		// by its allocator's own rules, and no call pays for a refusal.
		b.purgeOff = true
		if b.log != nil {
			b.log.Warn("the embedded ClickHouse cannot return freed memory on demand (SYSTEM JEMALLOC PURGE); WEBHOOKD_CHDB_PURGE_ABOVE_MB has no effect", "error", e)
		}
		return
	}
	b.purges++
}

// anonResident is the process's resident memory less its file-backed and
// shared pages (statm's resident − shared): the heaps, Go's and chDB's,
// not the pages of libchdb.so, which the kernel can drop at any time.
func anonResident() (int64, bool) {
	resident, shared, ok := memlimit.Statm()
	return resident - shared, ok
}

func (b *chdbBackend) exec(_ context.Context, q string, p Params) error {
	sq, err := bindParams(q, p)
	if err != nil {
		return err
	}
	_, err = b.run(sq)
	return err
}

func (b *chdbBackend) query(_ context.Context, q string, p Params) ([][]any, error) {
	sq, err := bindParams(q, p)
	if err != nil {
		return nil, err
	}
	out, err := b.run(sq)
	if err != nil {
		return nil, err
	}
	return decodeCompactRows(out)
}

// insertSettings is an INSERT's SETTINGS for ctx: its deduplication token
// (checked to be plain text by WithDedupToken) and the given others.
func insertSettings(ctx context.Context, others ...string) string {
	if t := DedupToken(ctx); t != "" {
		others = append(others, "insert_deduplication_token = '"+t+"'")
	}
	if len(others) == 0 {
		return ""
	}
	return " SETTINGS " + strings.Join(others, ", ")
}

func (b *chdbBackend) insert(ctx context.Context, table string, cols []string, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	var sb strings.Builder
	sb.WriteString("INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ")" + insertSettings(ctx) + " FORMAT JSONCompactEachRow\n")
	for _, r := range rows {
		line, err := encodeCompactRow(r)
		if err != nil {
			return err
		}
		sb.Write(line)
		sb.WriteByte('\n')
	}
	_, err := b.run(sb.String())
	return err
}

// insertJSON inserts records that are already JSON objects with the
// table's column names (fields the table lacks are skipped; RFC 3339 times
// are read as such): the sink hands the executions topic's records to chDB
// as they are, without decoding them in Go.
func (b *chdbBackend) insertJSON(ctx context.Context, table string, rows [][]byte) error {
	if len(rows) == 0 {
		return nil
	}
	n := 0
	for _, r := range rows {
		n += len(r) + 1
	}
	var sb strings.Builder
	sb.Grow(n + 200)
	// One thread parses: a batch is a few MB, and splitting it between
	// parser threads cost a quarter more CPU than it saved in time.
	sb.WriteString("INSERT INTO " + table + insertSettings(ctx, "input_format_skip_unknown_fields = 1", "date_time_input_format = 'best_effort'",
		"input_format_parallel_parsing = 0") + " FORMAT JSONEachRow\n")
	for _, r := range rows {
		sb.Write(r)
		sb.WriteByte('\n')
	}
	_, err := b.run(sb.String())
	return err
}

// releaseStartupPages unmaps the library's pages that only starting chDB
// used (see releaseLibraryPages); Migrate calls it once the schema is in
// place. It returns the bytes released.
func (b *chdbBackend) releaseStartupPages() int64 { return releaseLibraryPages(b.lib) }

func (b *chdbBackend) ping(context.Context) error {
	_, err := b.run("SELECT 1")
	return err
}

func (b *chdbBackend) close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn != nil {
		onChDBThread(func() { chdbLib.close(b.conn) })
		b.conn = nil
		chdbOpen.Lock()
		chdbOpen.path = ""
		chdbOpen.Unlock()
	}
	return nil
}
