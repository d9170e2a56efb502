package bus

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/config"
)

// A refusal from a real Kafka (an error code, then the close) and kfake's
// (the close) both read as an authentication failure naming the mechanism,
// user and settings, never the password; an accepted connection clears it.
func TestAccessNamesRefusalsAndClearsOnSuccess(t *testing.T) {
	a := &Access{mechanism: "SCRAM-SHA-512", user: "svc"}
	if !a.Ready() || a.Reason() != "" {
		t.Fatal("not ready before any connection")
	}
	a.OnBrokerConnect(kgo.BrokerMetadata{}, 0, nil, fmt.Errorf("dial: %w", io.EOF))
	if !a.Ready() {
		t.Fatal("a dial failure is not a refusal")
	}
	a.OnBrokerConnect(kgo.BrokerMetadata{}, 0, nil, fmt.Errorf("sasl: %w", kerr.SaslAuthenticationFailed))
	if a.Ready() || !strings.Contains(a.Reason(), `kafka authentication failed: the brokers refused SASL SCRAM-SHA-512 authentication as user "svc"; check WEBHOOKD_KAFKA_USER and WEBHOOKD_KAFKA_PASSWORD`) {
		t.Fatalf("reason = %q", a.Reason())
	}
	if err := a.Explain(errors.New("list topics: EOF")); !errors.Is(err, kerr.SaslAuthenticationFailed) || !strings.Contains(err.Error(), "list topics: EOF") {
		t.Fatalf("Explain = %v", err)
	}
	a.OnBrokerConnect(kgo.BrokerMetadata{}, 0, nil, nil)
	if !a.Ready() || a.Explain(io.EOF) != io.EOF {
		t.Fatalf("still refused after an accepted connection: %q", a.Reason())
	}
	if err := a.Explain(kerr.UnsupportedSaslMechanism); !strings.Contains(err.Error(), "WEBHOOKD_KAFKA_SASL_MECHANISM") {
		t.Fatalf("Explain = %v", err)
	}
}

// ClientOpts against kfake with SASL: the right password from a file
// (trailing newline dropped) connects; a wrong one is refused at once,
// named by Access, with no password in the text.
func TestClientOptsPasswordFileAndRefusal(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser(mech, "svc", "s3cret-pw"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			file := filepath.Join(t.TempDir(), "pw")
			for _, tc := range []struct {
				content string
				ok      bool
			}{{"s3cret-pw\n", true}, {"not-the-pw\n", false}} {
				if err := os.WriteFile(file, []byte(tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
				cfg := config.Defaults(config.ModeServe)
				cfg.KafkaBrokers, cfg.KafkaSASLMechanism, cfg.KafkaUser, cfg.KafkaPasswordFile = strings.Join(c.ListenAddrs(), ","), mech, "svc", file
				access := &Access{}
				opts, err := ClientOpts(&cfg, access)
				if err != nil {
					t.Fatal(err)
				}
				cl, err := kgo.NewClient(opts...)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				start := time.Now()
				err = access.Explain(cl.Ping(ctx))
				cancel()
				cl.Close()
				if tc.ok != (err == nil) {
					t.Fatalf("password %q: ping err = %v", tc.content, err)
				}
				if !tc.ok {
					if !errors.As(err, new(*RefusedError)) || strings.Contains(err.Error(), "pw") || time.Since(start) > 10*time.Second {
						t.Fatalf("refusal after %v: %v", time.Since(start), err)
					}
					if access.Ready() {
						t.Fatal("access ready after a refusal")
					}
				}
			}
		})
	}
}

func TestClientOptsRejectsUnreadableFiles(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	notPEM := filepath.Join(dir, "x.pem")
	_ = os.WriteFile(notPEM, []byte("nope"), 0o600)
	for name, set := range map[string]func(c *config.Config){
		"WEBHOOKD_KAFKA_PASSWORD_FILE: open": func(c *config.Config) {
			c.KafkaSASLMechanism, c.KafkaPasswordFile = "PLAIN", filepath.Join(dir, "missing")
		},
		"WEBHOOKD_KAFKA_PASSWORD_FILE: " + empty + " is empty": func(c *config.Config) { c.KafkaSASLMechanism, c.KafkaPasswordFile = "PLAIN", empty },
		"WEBHOOKD_KAFKA_TLS_CA_FILE: no certificates":          func(c *config.Config) { c.KafkaTLS, c.KafkaTLSCAFile = true, notPEM },
		"WEBHOOKD_KAFKA_TLS_CERT_FILE / WEBHOOKD_KAFKA_TLS_KEY_FILE": func(c *config.Config) {
			c.KafkaTLS, c.KafkaTLSCertFile, c.KafkaTLSKeyFile = true, notPEM, notPEM
		},
	} {
		cfg := config.Defaults(config.ModeServe)
		set(&cfg)
		if _, err := ClientOpts(&cfg, nil); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("err = %v, want %q", err, name)
		}
	}
}

// Every Kafka client is made from ClientOpts: outside package bus no
// production code names seed brokers, TLS or SASL, so no client can connect
// without the configured security (tests and the dev broker aside).
func TestNoClientBypassesClientOpts(t *testing.T) {
	forbidden := map[string]bool{"SeedBrokers": true, "DialTLSConfig": true, "DialTLS": true, "SASL": true, "Dialer": true}
	root := ".."
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "e2e", "bus", "bustest", "testdata", "bench", "devkafka", ".git", ".cache", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "kgo" && forbidden[sel.Sel.Name] {
					t.Errorf("%s uses kgo.%s: build clients from bus.ClientOpts", path, sel.Sel.Name)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
