package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// process is one child process (webhookd or devkafka) whose stdout and
// stderr go, line by line, into a logBuffer.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process exited and its output is read
	err  error         // cmd.Wait's answer, set before done is closed
}

func launch(bin string, args, env []string, out *logBuffer) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out // one writer: exec serialises its writes
	cmd.WaitDelay = 10 * time.Second  // never hang on a pipe after the exit
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.flush()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig and waits for the exit; past within it kills the process
// and says so. It returns how long the exit took and the exit error.
func (p *process) signal(sig os.Signal, within time.Duration) (time.Duration, error) {
	start := time.Now()
	if p.exited() {
		return 0, fmt.Errorf("had already exited: %v", p.err)
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return time.Since(start), p.err
	case <-time.After(within):
		_ = p.cmd.Process.Kill()
		<-p.done
		return time.Since(start), fmt.Errorf("did not exit within %v of %v; killed it", within, sig)
	}
}

// logBuffer keeps every line a process (and its restarts) printed, and lets
// a waiter block until a line it is looking for appears.
type logBuffer struct {
	name string
	echo io.Writer // os.Stderr when WEBHOOKD_TEST_LOG is set

	mu      sync.Mutex
	lines   []string
	partial []byte
	grew    chan struct{} // closed and replaced whenever a line is added
}

func newLogBuffer(name string) *logBuffer {
	b := &logBuffer{name: name, grew: make(chan struct{})}
	if os.Getenv("WEBHOOKD_TEST_LOG") != "" {
		b.echo = os.Stderr
	}
	return b
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.partial = append(b.partial, p...)
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			break
		}
		b.addLocked(string(b.partial[:i]))
		b.partial = b.partial[i+1:]
	}
	return len(p), nil
}

// flush keeps a last line printed without a newline.
func (b *logBuffer) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.partial) > 0 {
		b.addLocked(string(b.partial))
		b.partial = nil
	}
}

func (b *logBuffer) addLocked(line string) {
	b.lines = append(b.lines, line)
	if b.echo != nil {
		fmt.Fprintf(b.echo, "[%s] %s\n", b.name, line)
	}
	close(b.grew)
	b.grew = make(chan struct{})
}

// Lines is a copy of every line so far.
func (b *logBuffer) Lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.lines...)
}

func (b *logBuffer) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.lines)
}

// tail is the last n lines, for failure messages.
func (b *logBuffer) tail(n int) string {
	lines := b.Lines()
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitLine waits for the first line at index ≥ from that match accepts and
// returns what match returned for it. It gives up when stop is closed (the
// process exited) or after within.
func (b *logBuffer) waitLine(from int, match func(string) (string, bool), stop <-chan struct{}, within time.Duration) (string, error) {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for i := from; ; {
		b.mu.Lock()
		lines, grew := b.lines[i:], b.grew
		b.mu.Unlock()
		for _, l := range lines {
			if v, ok := match(l); ok {
				return v, nil
			}
		}
		i += len(lines)
		select {
		case <-grew:
		case <-stop:
			// The process is gone; its last lines may have arrived with it.
			b.mu.Lock()
			lines = b.lines[i:]
			b.mu.Unlock()
			for _, l := range lines {
				if v, ok := match(l); ok {
					return v, nil
				}
			}
			return "", fmt.Errorf("process exited first")
		case <-deadline.C:
			return "", fmt.Errorf("not within %v", within)
		}
	}
}

// jsonLine decodes one JSON log line (WEBHOOKD_LOG_FORMAT=json); ok is false
// for anything else.
func jsonLine(line string) (map[string]any, bool) {
	if !strings.HasPrefix(line, "{") {
		return nil, false
	}
	var m map[string]any
	if json.Unmarshal([]byte(line), &m) != nil {
		return nil, false
	}
	return m, true
}
