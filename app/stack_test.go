package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/afftok/webhookd/admin/apispec"
	"github.com/afftok/webhookd/app"
	"github.com/afftok/webhookd/config"
)

// One webhookd per test process, built by app.New as `webhookd dev` builds
// it: the embedded Kafka (kfake), chDB, the registry, the DLQ, and the admin
// API listening on a loopback port, called over real HTTP.
var stack struct {
	once   sync.Once
	a      *app.App
	err    error
	dir    string
	cancel context.CancelFunc
	done   chan error
}

const (
	adminToken = "stack-admin-token-0123456789"
	readToken  = "stack-read-token-0123456789"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if stack.a != nil {
		stack.cancel()
		<-stack.done
		stack.a.Close()
	}
	if stack.dir != "" {
		os.RemoveAll(stack.dir)
	}
	os.Exit(code)
}

// startStack returns the process's webhookd, started on first use.
func startStack(tb testing.TB) *app.App {
	tb.Helper()
	stack.once.Do(func() {
		stack.err = func() error {
			dir, err := os.MkdirTemp("", "webhookd-app-")
			if err != nil {
				return err
			}
			stack.dir = dir
			tokens := filepath.Join(dir, "tokens")
			if err := os.WriteFile(tokens, []byte(readToken+" read\n"), 0o600); err != nil {
				return err
			}
			env := map[string]string{
				"WEBHOOKD_DATA_DIR": filepath.Join(dir, "data"), "WEBHOOKD_DEV_KAFKA_ADDR": "127.0.0.1:0",
				"WEBHOOKD_ADMIN_ADDR": "127.0.0.1:0", "WEBHOOKD_ADMIN_TOKEN": adminToken, "WEBHOOKD_ADMIN_TOKENS_FILE": tokens,
				"WEBHOOKD_CHDB_LIBRARY": os.Getenv("WEBHOOKD_CHDB_LIBRARY"), "WEBHOOKD_ALLOW_PRIVATE_TARGETS": "false",
				"WEBHOOKD_ANALYTICS_FLUSH_INTERVAL": "100ms",
			}
			cfg, err := config.Load(config.ModeDev, func(k string) string { return env[k] })
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			ctx, cancel := context.WithCancel(context.Background())
			a, err := app.New(ctx, cfg, log)
			if err != nil {
				cancel()
				return err
			}
			stack.a, stack.cancel, stack.done = a, cancel, make(chan error, 1)
			go func() { stack.done <- a.Run(ctx) }()
			ready := time.NewTicker(20 * time.Millisecond)
			defer ready.Stop()
			for !a.Ready() {
				select {
				case err := <-stack.done:
					return fmt.Errorf("webhookd stopped while starting: %v", err)
				case <-ready.C:
				}
			}
			return nil
		}()
	})
	if stack.err != nil {
		tb.Fatalf("start webhookd: %v", stack.err)
	}
	return stack.a
}

var spec struct {
	once sync.Once
	c    *apispec.Checker
	err  error
}

// checker checks answers against the OpenAPI document.
func checker(tb testing.TB) *apispec.Checker {
	spec.once.Do(func() { spec.c, spec.err = apispec.New() })
	if spec.err != nil {
		tb.Fatal(spec.err)
	}
	return spec.c
}

// response is what a client got.
type response struct {
	status int
	header http.Header
	body   []byte
}

// envelope is the API's answer body.
type envelope struct {
	Success *bool           `json:"success"`
	Data    json.RawMessage `json:"data"`
	Error   *struct {
		Code    *string            `json:"code"`
		Message *string            `json:"message"`
		Details *[]json.RawMessage `json:"details"`
	} `json:"error"`
}

var client = &http.Client{Timeout: 2 * time.Minute}

// send makes one request to the admin API.
func send(req *http.Request) (*response, error) {
	resp, err := client.Do(req)
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		// An oversized request is answered (431, 413) and the connection
		// closed before the client has written all of it; net/http may then
		// report the reset, not the answer. Send it whole on a connection
		// of its own and read what came back before the reset.
		return sendWhole(req)
	}
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

func request(tb testing.TB, a *app.App, method, target string, body []byte, headers ...string) *response {
	tb.Helper()
	req, err := http.NewRequest(method, "http://"+a.Admin.Addr()+target, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if body == nil {
		req.Body = nil
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	r, err := send(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, target, err)
	}
	if err := checker(tb).Check(req, r.status, r.header, r.body); err != nil {
		tb.Error(err)
	}
	return r
}

// errorCodes are the stable codes each status may carry.
var errorCodes = map[int][]string{
	400: {"bad_request", "validation_failed"},
	401: {"unauthorized"},
	403: {"forbidden"},
	404: {"not_found"},
	405: {"method_not_allowed"},
	408: {"request_timeout"},
	409: {"conflict", "already_handled"},
	412: {"precondition_failed"},
	413: {"payload_too_large"},
	415: {"unsupported_media_type"},
	422: {"not_retryable", "unprocessable"},
	431: {"header_too_large"},
	503: {"unavailable"},
}

// checkEnvelope verifies an error answer's shape: the envelope with a code
// stable for its status, a message, and details (an array).
func checkEnvelope(r *response) error {
	if r.status < 400 {
		return nil
	}
	var env envelope
	if err := json.Unmarshal(r.body, &env); err != nil {
		return fmt.Errorf("%d: body not JSON: %q", r.status, r.body)
	}
	if env.Success == nil || *env.Success || env.Error == nil || env.Error.Code == nil || env.Error.Message == nil || *env.Error.Message == "" || env.Error.Details == nil {
		return fmt.Errorf("%d: not the error envelope: %s", r.status, r.body)
	}
	codes, ok := errorCodes[r.status]
	if !ok {
		return fmt.Errorf("status %d is not in the error model: %s", r.status, r.body)
	}
	for _, c := range codes {
		if c == *env.Error.Code {
			if r.status == 405 && r.header.Get("Allow") == "" {
				return fmt.Errorf("405 without Allow")
			}
			return nil
		}
	}
	return fmt.Errorf("%d with code %q, want one of %v", r.status, *env.Error.Code, codes)
}

func errorCode(r *response) string {
	var env envelope
	if json.Unmarshal(r.body, &env) != nil || env.Error == nil || env.Error.Code == nil {
		return ""
	}
	return *env.Error.Code
}

func details(r *response) []string {
	var env struct {
		Error struct {
			Details []struct{ Field string } `json:"details"`
		} `json:"error"`
	}
	_ = json.Unmarshal(r.body, &env)
	var out []string
	for _, d := range env.Error.Details {
		out = append(out, d.Field)
	}
	return out
}

func dataOf(tb testing.TB, r *response) map[string]any {
	tb.Helper()
	var env struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(r.body, &env); err != nil || env.Data == nil {
		tb.Fatalf("%d %s", r.status, r.body)
	}
	return env.Data
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var _ = strings.Contains

// sendWhole writes req in one piece on a connection of its own (ignoring a
// write cut short by the server closing) and reads the answer.
func sendWhole(req *http.Request) (*response, error) {
	if req.GetBody != nil {
		b, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		req.Body = b
	}
	var buf bytes.Buffer
	if err := req.Write(&buf); err != nil {
		return nil, err
	}
	conn, err := net.Dial("tcp", req.URL.Host)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	go func() { _, _ = conn.Write(buf.Bytes()) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: body}, nil
}
