package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// pki is a test CA and the broker's and a client's certificates it signed,
// written as PEM files.
type pki struct {
	CA, BrokerCert, BrokerKey, ClientCert, ClientKey string
	pool                                             *x509.CertPool
	client                                           tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "webhookd test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, name string) (string, string) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+".key", "PRIVATE KEY", kder)
	}
	p := &pki{CA: write("ca.pem", "CERTIFICATE", caDER)}
	p.BrokerCert, p.BrokerKey = leaf(2, "broker", x509.ExtKeyUsageServerAuth, "broker")
	p.ClientCert, p.ClientKey = leaf(3, "webhookd", x509.ExtKeyUsageClientAuth, "client")
	p.pool = x509.NewCertPool()
	p.pool.AddCert(caCert)
	if p.client, err = tls.LoadX509KeyPair(p.ClientCert, p.ClientKey); err != nil {
		t.Fatal(err)
	}
	return p
}

// secureBroker is a devkafka process with TLS and/or SASL.
type secureBroker struct {
	addr string
	proc *process
	logs *logBuffer
}

// startSecureBroker runs devkafka with args (its -addr defaults to a free
// port) and stops it when the test ends.
func startSecureBroker(t *testing.T, args ...string) *secureBroker {
	t.Helper()
	if !strings.Contains(strings.Join(args, " "), "-addr") {
		args = append([]string{"-addr", "127.0.0.1:0"}, args...)
	}
	b := &secureBroker{logs: newLogBuffer("devkafka-secure")}
	var err error
	if b.proc, err = launch(devkafkaBin, args, os.Environ(), b.logs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !b.proc.exited() {
			_, _ = b.proc.signal(syscall.SIGTERM, stopWithin)
		}
	})
	if b.addr, err = b.logs.waitLine(0, func(l string) (string, bool) { return strings.CutPrefix(l, "listening ") }, b.proc.done, readyWithin); err != nil {
		t.Fatalf("secure devkafka: %v\n%s", err, b.logs.tail(20))
	}
	return b
}

// secureCase is one way of connecting: the broker's flags, webhookd's
// settings, and the same connection for the test's own producer.
type secureCase struct {
	name   string
	broker []string
	env    map[string]string
	client []kgo.Opt
}

func secureCases(t *testing.T, p *pki) []secureCase {
	passFile := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(passFile, []byte("scram-256-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsEnv := map[string]string{"WEBHOOKD_KAFKA_TLS": "true", "WEBHOOKD_KAFKA_TLS_CA_FILE": p.CA}
	clientTLS := kgo.DialTLSConfig(&tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{p.client}})
	return []secureCase{
		{
			name:   "TLS with a client certificate",
			broker: []string{"-tls-cert", p.BrokerCert, "-tls-key", p.BrokerKey, "-tls-client-ca", p.CA},
			env:    merge(tlsEnv, map[string]string{"WEBHOOKD_KAFKA_TLS_CERT_FILE": p.ClientCert, "WEBHOOKD_KAFKA_TLS_KEY_FILE": p.ClientKey}),
			client: []kgo.Opt{clientTLS},
		},
		{
			name:   "SASL PLAIN",
			broker: []string{"-sasl", "PLAIN:webhookd:plain-secret"},
			env:    map[string]string{"WEBHOOKD_KAFKA_SASL_MECHANISM": "PLAIN", "WEBHOOKD_KAFKA_USER": "webhookd", "WEBHOOKD_KAFKA_PASSWORD": "plain-secret"},
			client: []kgo.Opt{kgo.SASL(plain.Auth{User: "webhookd", Pass: "plain-secret"}.AsMechanism())},
		},
		{
			name:   "SASL SCRAM-SHA-256, password from a file",
			broker: []string{"-sasl", "SCRAM-SHA-256:webhookd:scram-256-secret"},
			env:    map[string]string{"WEBHOOKD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "WEBHOOKD_KAFKA_USER": "webhookd", "WEBHOOKD_KAFKA_PASSWORD_FILE": passFile},
			client: []kgo.Opt{kgo.SASL(scram.Auth{User: "webhookd", Pass: "scram-256-secret"}.AsSha256Mechanism())},
		},
		{
			name: "SASL SCRAM-SHA-512 over TLS with a client certificate",
			broker: []string{"-sasl", "SCRAM-SHA-512:webhookd:scram-512-secret",
				"-tls-cert", p.BrokerCert, "-tls-key", p.BrokerKey, "-tls-client-ca", p.CA},
			env: merge(tlsEnv, map[string]string{"WEBHOOKD_KAFKA_TLS_CERT_FILE": p.ClientCert, "WEBHOOKD_KAFKA_TLS_KEY_FILE": p.ClientKey,
				"WEBHOOKD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "WEBHOOKD_KAFKA_USER": "webhookd", "WEBHOOKD_KAFKA_PASSWORD": "scram-512-secret"}),
			client: []kgo.Opt{clientTLS, kgo.SASL(scram.Auth{User: "webhookd", Pass: "scram-512-secret"}.AsSha512Mechanism())},
		},
	}
}

// TestSecureKafkaDeliversAnEvent runs webhookd (every role: dispatcher,
// retry tiers, failover, analytics sink, admin API, jobs, ordering) against
// a broker that accepts only TLS with a client certificate, SASL PLAIN,
// SCRAM-SHA-256 or SCRAM-SHA-512, and checks an event produced there
// reaches a real receiver and its execution log comes back through the
// analytics sink: every client of the process connected.
func TestSecureKafkaDeliversAnEvent(t *testing.T) {
	p := newPKI(t)
	for _, tc := range secureCases(t, p) {
		t.Run(tc.name, func(t *testing.T) {
			b := startSecureBroker(t, tc.broker...)
			in := startInstance(t, "dev", merge(ownTopics("secure."), sharedEnv, tc.env, map[string]string{
				"WEBHOOKD_KAFKA_BROKERS": b.addr, "WEBHOOKD_TOPIC_PARTITIONS": "1"}))
			rcv := newReceiver(t)
			pl := in.CreatePipeline(t, `{"name":"secure","trigger_type":"click","steps":[{"order":1,"url":"`+rcv.URL+`/hook",
			  "body_template":{"id":"{{event_id}}"}}]}`)

			cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.addr)}, tc.client...)...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			rec := &kgo.Record{Topic: "secure.events", Key: []byte("k"), Value: []byte(`{"id":"evt_secure","type":"click.tracked","data":{"id":"c1"}}`)}
			if err := cl.ProduceSync(t.Context(), rec).FirstErr(); err != nil {
				t.Fatalf("produce over the secure listener: %v", err)
			}
			got := rcv.next(t)
			if !strings.Contains(string(got.Body), "evt_secure") {
				t.Fatalf("receiver got %s", got.Body)
			}
			if l := in.WaitExecution(t, pl["id"].(string), "c1"); l["status"] != "completed" {
				t.Fatalf("execution log: %v", l)
			}
			code, body := probe(t, in, "/readyz")
			if code != 200 || body["reasons"] != nil {
				t.Fatalf("/readyz: %d %v", code, body)
			}
		})
	}
}

// probe GETs a health path of the instance.
func probe(t *testing.T, in *instance, path string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+in.AdminAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	// The answer is the OpenAPI document's (Readiness: reasons, statuses).
	if err := spec.Check(req, resp.StatusCode, resp.Header, raw); err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s: %d, not JSON: %s", path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

// TestWrongKafkaPasswordFailsFastAndClearly starts webhookd with a wrong
// SCRAM password (and, apart, with a CA that did not sign the broker's
// certificate): it must exit non-zero within seconds, saying which setting
// to check, without the password in its output — not retry forever.
func TestWrongKafkaPasswordFailsFastAndClearly(t *testing.T) {
	p := newPKI(t)
	otherCA := newPKI(t).CA
	cases := []struct {
		name, want string
		broker     []string
		env        map[string]string
	}{
		{"wrong SCRAM password", "SASL SCRAM-SHA-256 authentication as user \"webhookd\"; check WEBHOOKD_KAFKA_USER and WEBHOOKD_KAFKA_PASSWORD",
			[]string{"-sasl", "SCRAM-SHA-256:webhookd:right-password"},
			map[string]string{"WEBHOOKD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "WEBHOOKD_KAFKA_USER": "webhookd", "WEBHOOKD_KAFKA_PASSWORD": "wrong-password-3f9a"}},
		{"wrong PLAIN password", "SASL PLAIN authentication as user \"webhookd\"; check WEBHOOKD_KAFKA_USER and WEBHOOKD_KAFKA_PASSWORD",
			[]string{"-sasl", "PLAIN:webhookd:right-password"},
			map[string]string{"WEBHOOKD_KAFKA_SASL_MECHANISM": "PLAIN", "WEBHOOKD_KAFKA_USER": "webhookd", "WEBHOOKD_KAFKA_PASSWORD": "wrong-password-3f9a"}},
		{"untrusted broker certificate", "kafka TLS failed: the broker's certificate is not trusted; check WEBHOOKD_KAFKA_TLS_CA_FILE",
			[]string{"-tls-cert", p.BrokerCert, "-tls-key", p.BrokerKey},
			map[string]string{"WEBHOOKD_KAFKA_TLS": "true", "WEBHOOKD_KAFKA_TLS_CA_FILE": otherCA}},
		{"no client certificate for mutual TLS", "kafka TLS failed: the broker refused the handshake",
			[]string{"-tls-cert", p.BrokerCert, "-tls-key", p.BrokerKey, "-tls-client-ca", p.CA},
			map[string]string{"WEBHOOKD_KAFKA_TLS": "true", "WEBHOOKD_KAFKA_TLS_CA_FILE": p.CA}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := startSecureBroker(t, tc.broker...)
			in := newInstance(t, "dev", merge(ownTopics("wrongpw."), tc.env, map[string]string{"WEBHOOKD_KAFKA_BROKERS": b.addr}))
			start := time.Now()
			proc, err := launch(in.Bin, []string{in.Mode}, in.environ(), in.logs)
			if err != nil {
				t.Fatal(err)
			}
			in.proc = proc
			select {
			case <-proc.done:
			case <-time.After(time.Minute):
				t.Fatalf("still running after a minute: it retries instead of failing\n%s", in.logs.tail(20))
			}
			took := time.Since(start)
			if proc.err == nil {
				t.Fatal("exited 0")
			}
			out := strings.Join(in.Logs(), "\n")
			if !strings.Contains(out, "webhookd: kafka topics: kafka ") || !strings.Contains(out, tc.want) {
				t.Errorf("output does not say %q:\n%s", tc.want, in.logs.tail(10))
			}
			if strings.Contains(out, "wrong-password-3f9a") || strings.Contains(out, "right-password") {
				t.Errorf("a password is in the output:\n%s", out)
			}
			t.Logf("%s: exited (%v) after %v: %s", tc.name, proc.err, took.Round(time.Millisecond), in.logs.tail(1))
			// Fast: the time to start chDB, not a retry loop's.
			if took > 30*time.Second {
				t.Errorf("took %v to fail", took)
			}
		})
	}
}

// TestReadyzNamesKafkaAuthFailureWhileRunning: the brokers stop accepting
// webhookd's password while it runs (the broker restarts with a rotated
// one). /readyz turns 503 and names the SASL failure, without the password;
// when the broker takes the password again, /readyz recovers.
func TestReadyzNamesKafkaAuthFailureWhileRunning(t *testing.T) {
	// The broker keeps its topics and groups across its restarts; its
	// users come from the flags (the saved sasl.json is removed).
	data := t.TempDir()
	b := startSecureBroker(t, "-data-dir", data, "-sasl", "PLAIN:webhookd:first-password")
	port := b.addr[strings.LastIndex(b.addr, ":")+1:]
	in := startInstance(t, "dev", merge(ownTopics("rotate."), sharedEnv, map[string]string{
		"WEBHOOKD_KAFKA_BROKERS": b.addr, "WEBHOOKD_TOPIC_PARTITIONS": "1",
		"WEBHOOKD_KAFKA_SASL_MECHANISM": "PLAIN", "WEBHOOKD_KAFKA_USER": "webhookd", "WEBHOOKD_KAFKA_PASSWORD": "first-password"}))

	restart := func(pass string) {
		if _, err := b.proc.signal(syscall.SIGTERM, stopWithin); err != nil {
			t.Fatal(err)
		}
		saved, _ := filepath.Glob(filepath.Join(data, "*sasl.json"))
		for _, f := range saved {
			_ = os.Remove(f)
		}
		*b = *startSecureBroker(t, "-addr", "127.0.0.1:"+port, "-data-dir", data, "-sasl", "PLAIN:webhookd:"+pass)
	}
	restart("rotated-password")
	var body map[string]any
	for deadline := time.Now().Add(arriveWithin); ; time.Sleep(100 * time.Millisecond) { // probes poll, as kubelet does
		var code int
		code, body = probe(t, in, "/readyz")
		if code == http.StatusServiceUnavailable && body["reasons"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never named the refusal: %v", body)
		}
	}
	reason, _ := body["reasons"].(map[string]any)["kafka"].(string)
	raw, _ := json.Marshal(body)
	if !strings.Contains(reason, `kafka authentication failed: `) || !strings.Contains(reason, `SASL PLAIN authentication as user "webhookd"; check WEBHOOKD_KAFKA_USER and WEBHOOKD_KAFKA_PASSWORD`) ||
		strings.Contains(string(raw), "password\"") || strings.Contains(string(raw), "first-password") || strings.Contains(string(raw), "rotated-password") {
		t.Fatalf("/readyz: %s", raw)
	}
	if body["checks"].(map[string]any)["kafka"] != false || body["status"] != "unavailable" {
		t.Fatalf("/readyz checks: %s", raw)
	}
	t.Logf("/readyz while refused: %s", raw)

	restart("first-password")
	for deadline := time.Now().Add(arriveWithin); ; time.Sleep(100 * time.Millisecond) {
		code, body := probe(t, in, "/readyz")
		if checks, _ := body["checks"].(map[string]any); checks["kafka"] == true {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still refuses after the password came back: %d %v", code, body)
		}
	}
}
