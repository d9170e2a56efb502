package e2e

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// dockerStage is one FROM … of a Dockerfile and its instructions.
type dockerStage struct {
	From, Name string
	Lines      []string // instructions after FROM, continuation lines joined
}

func parseDockerfile(t *testing.T, path string) []dockerStage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		stages []dockerStage
		cur    string
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, cur = cur+line, ""
		fields := strings.Fields(line)
		if strings.EqualFold(fields[0], "FROM") {
			st := dockerStage{From: fields[1]}
			if len(fields) == 4 && strings.EqualFold(fields[2], "AS") {
				st.Name = fields[3]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("%s: %q before any FROM", path, line)
		}
		stages[len(stages)-1].Lines = append(stages[len(stages)-1].Lines, line)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return stages
}

// TestDockerfileBuildsAStaticBinaryThatServes checks the image recipe
// without a Docker engine: the Dockerfile is multi-stage, its final stage is
// distroless nonroot with the binary alone, and its build stage's `go build`
// line — run here as written, output redirected — makes a static binary
// (no ELF interpreter, no shared libraries, so no chDB) that starts `serve`
// against the test broker and answers /healthz and /readyz.
func TestDockerfileBuildsAStaticBinaryThatServes(t *testing.T) {
	stages := parseDockerfile(t, "../Dockerfile")
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage Dockerfile, got %d stage(s)", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	if !strings.HasPrefix(build.From, "golang:") || build.Name == "" {
		t.Fatalf("build stage: FROM %s AS %q", build.From, build.Name)
	}
	if !regexp.MustCompile(`^gcr\.io/distroless/static(-debian\d+)?:nonroot$`).MatchString(final.From) {
		t.Errorf("final stage FROM %s, want gcr.io/distroless/static…:nonroot", final.From)
	}
	var copied, user, entry bool
	for _, l := range final.Lines {
		f := strings.Fields(l)
		switch strings.ToUpper(f[0]) {
		case "COPY":
			copied = copied || (strings.Contains(l, "--from="+build.Name) && strings.HasSuffix(l, " /webhookd"))
			if strings.Contains(strings.ToLower(l), "chdb") {
				t.Errorf("final stage copies chDB: %s", l)
			}
		case "USER":
			user = f[1] == "65532:65532" || f[1] == "65532" || f[1] == "nonroot" || f[1] == "nonroot:nonroot"
		case "ENTRYPOINT":
			entry = strings.Contains(l, `"/webhookd"`)
		case "RUN":
			t.Errorf("final stage runs a command (distroless has no shell): %s", l)
		}
	}
	if !copied || !user || !entry {
		t.Errorf("final stage: copies the binary from %s %v, runs as nonroot %v, entrypoint /webhookd %v: %q", build.Name, copied, user, entry, final.Lines)
	}

	// The build stage's go build line, as written.
	var cmd string
	for _, l := range build.Lines {
		if strings.HasPrefix(strings.ToUpper(l), "RUN ") && strings.Contains(l, "go build") {
			cmd = strings.TrimSpace(l[4:])
		}
	}
	if cmd == "" {
		t.Fatalf("no RUN … go build in the build stage: %q", build.Lines)
	}
	if !strings.Contains(cmd, "CGO_ENABLED=0") {
		t.Errorf("the build does not set CGO_ENABLED=0: %s", cmd)
	}
	out := regexp.MustCompile(`-o\s+(\S+)`)
	m := out.FindStringSubmatch(cmd)
	if m == nil || m[1] != "/webhookd" {
		t.Fatalf("build output %v, want -o /webhookd (what the final stage copies): %s", m, cmd)
	}
	bin := filepath.Join(t.TempDir(), "webhookd")
	run := exec.Command("sh", "-c", out.ReplaceAllString(cmd, "-o "+bin))
	run.Dir = ".." // the build context: the repository root (WORKDIR /src)
	// The image's toolchain environment: nothing of this machine's that
	// would change the result (CGO_ENABLED comes from the line itself).
	run.Env = append(os.Environ(), "CGO_ENABLED=1", "GOFLAGS=")
	if b, err := run.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, b)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: it is dynamically linked")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary links shared libraries %v", libs)
	}
	f.Close()

	// serve, as the image's CMD runs it: roles that need no ClickHouse,
	// against the test broker; the harness waits for /readyz 200.
	in := newInstance(t, "serve", merge(ownTopics("image."), map[string]string{
		"WEBHOOKD_ROLES": "dispatcher,retry", "WEBHOOKD_TOPIC_PARTITIONS": "1", "WEBHOOKD_CREATE_EVENT_TOPICS": "true",
		"WEBHOOKD_CHDB_LIBRARY": "/nonexistent/libchdb.so"}))
	in.Bin = bin
	in.Start(t)
	if code, body := probe(t, in, "/healthz"); code != 200 || body["status"] != "ok" {
		t.Fatalf("/healthz: %d %v", code, body)
	}
	if took, err := in.Stop(); err != nil {
		t.Fatalf("exit after SIGTERM (%v): %v", took, err)
	}
}
