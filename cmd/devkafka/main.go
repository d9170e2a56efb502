// Command devkafka runs a single-broker Kafka (kfake, the Kafka wire
// protocol in process) on its own, so tests and local setups can run the
// broker in a process apart from webhookd: crash tests kill webhookd while the
// broker keeps every record.
//
//	devkafka -addr 127.0.0.1:0 -data-dir /tmp/kafka
//	devkafka -tls-cert broker.pem -tls-key broker.key -tls-client-ca ca.pem \
//	         -sasl SCRAM-SHA-256:webhookd:secret
//
// -tls-cert/-tls-key make the listener TLS; -tls-client-ca also requires
// each client to present a certificate that CA signed. -sasl (repeatable)
// requires SASL authentication and adds a user (PLAIN, SCRAM-SHA-256 or
// SCRAM-SHA-512), so secure client settings can be tried without a real
// cluster.
//
// Once the broker accepts connections it prints exactly one line to stdout,
// `listening <host:port>`; SIGTERM or SIGINT closes the cluster (flushing its
// data when -data-dir is set) and exits 0.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/afftok/webhookd/devstack"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "devkafka:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("devkafka", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:9092", "listen address (127.0.0.1 only; port 0 picks a free port)")
	dataDir := fs.String("data-dir", "", "directory the broker persists topics, offsets and groups under (empty: memory only)")
	tlsCert := fs.String("tls-cert", "", "PEM certificate of the broker: the listener speaks TLS")
	tlsKey := fs.String("tls-key", "", "PEM private key of -tls-cert")
	clientCA := fs.String("tls-client-ca", "", "PEM CA: clients must present a certificate it signed (mutual TLS)")
	var users []string
	fs.Func("sasl", "MECHANISM:user:password, repeatable: require SASL and add this user (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)", func(v string) error {
		users = append(users, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	extra, err := secureOpts(*tlsCert, *tlsKey, *clientCA, users)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	k, err := devstack.StartKafka(*addr, *dataDir, extra...)
	if err != nil {
		return err
	}
	defer k.Close()
	bound := k.Addrs()[0]
	// The listener is bound once StartKafka returns; a dial proves it before
	// anyone is told to connect.
	conn, err := net.DialTimeout("tcp", bound, 10*time.Second)
	if err != nil {
		return fmt.Errorf("broker does not accept connections on %s: %w", bound, err)
	}
	_ = conn.Close()
	fmt.Printf("listening %s\n", bound)
	<-ctx.Done()
	return nil
}

// secureOpts are the broker's TLS and SASL options from the flags.
func secureOpts(cert, key, clientCA string, users []string) ([]kfake.Opt, error) {
	var opts []kfake.Opt
	if cert != "" || key != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("-tls-cert/-tls-key: %w", err)
		}
		tc := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
		if clientCA != "" {
			pem, err := os.ReadFile(clientCA)
			if err != nil {
				return nil, fmt.Errorf("-tls-client-ca: %w", err)
			}
			tc.ClientCAs = x509.NewCertPool()
			if !tc.ClientCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("-tls-client-ca: no certificates in %s", clientCA)
			}
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
		opts = append(opts, kfake.TLS(tc))
	} else if clientCA != "" {
		return nil, fmt.Errorf("-tls-client-ca needs -tls-cert and -tls-key")
	}
	if len(users) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range users {
			mech, rest, ok1 := strings.Cut(u, ":")
			user, pass, ok2 := strings.Cut(rest, ":")
			if !ok1 || !ok2 || user == "" {
				return nil, fmt.Errorf("-sasl %q: want MECHANISM:user:password", mech)
			}
			switch mech {
			case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
			default:
				return nil, fmt.Errorf("-sasl: mechanism %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", mech)
			}
			opts = append(opts, kfake.Superuser(mech, user, pass))
		}
	}
	return opts, nil
}
