package bus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Access follows whether the brokers accept this process: it sees every
// connection attempt of every client (a kgo hook) and remembers the last
// refusal of its TLS settings or SASL credentials, until a later connection
// succeeds. Readiness reports it (Ready, Reason), and start-up turns a
// refusal into one clear error (Explain) instead of retrying forever: a wrong
// password does not become right by waiting.
type Access struct {
	// Set by ClientOpts, for the messages.
	mechanism, user string
	tls             bool

	mu      sync.Mutex
	refusal error
	at      time.Time
}

var _ kgo.HookBrokerConnect = (*Access)(nil)

// OnBrokerConnect implements kgo.HookBrokerConnect. kgo calls it after the
// dial, the TLS handshake and the SASL exchange of each connection, with
// the error of whichever failed.
func (a *Access) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, conn net.Conn, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil {
		a.refusal = nil
		return
	}
	r := a.classify(err)
	if r == nil && conn != nil && a.mechanism != "" && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
		// Connected, then closed while the connection was being set up
		// (versions, then SASL): a broker that refuses the credentials
		// may close the connection instead of answering.
		r = &RefusedError{fmt.Sprintf("kafka authentication failed: the broker closed the connection during SASL %s authentication as user %q; check WEBHOOKD_KAFKA_USER and WEBHOOKD_KAFKA_PASSWORD (or _FILE) [%s]", a.mechanism, a.user, brief(err)), err}
	}
	if r != nil {
		a.refusal, a.at = r, time.Now()
	}
}

// Ready reports whether no connection has been refused since the last one
// that was accepted.
func (a *Access) Ready() bool { return a.Err() == nil }

// Reason is why Ready is false ("" when it is true): the refusal, naming the
// mechanism, user and the settings to check, never a secret.
func (a *Access) Reason() string {
	if err := a.Err(); err != nil {
		return err.Error()
	}
	return ""
}

// Err is the last refusal not followed by an accepted connection, or nil.
func (a *Access) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.refusal
}

// Explain returns the clear refusal when err (from any Kafka call) was
// caused by one, or err itself.
func (a *Access) Explain(err error) error {
	if err == nil {
		return nil
	}
	if r := a.classify(err); r != nil {
		return r
	}
	if r := a.Err(); r != nil {
		return fmt.Errorf("%w (%v)", r, err)
	}
	return err
}

// RefusedError is a connection the brokers refused for its TLS settings or
// credentials. Retrying with the same settings cannot succeed.
type RefusedError struct {
	msg string
	err error
}

func (e *RefusedError) Error() string { return e.msg }
func (e *RefusedError) Unwrap() error { return e.err }

// classify turns an authentication or TLS failure into a RefusedError (nil
// for any other error: a broker down, a timeout).
func (a *Access) classify(err error) *RefusedError {
	if errors.As(err, new(*RefusedError)) {
		var r *RefusedError
		errors.As(err, &r)
		return r
	}
	who := fmt.Sprintf("SASL %s authentication as user %q", a.mechanism, a.user)
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return &RefusedError{fmt.Sprintf("kafka authentication failed: the brokers refused %s; check WEBHOOKD_KAFKA_USER and WEBHOOKD_KAFKA_PASSWORD (or _FILE) [%s]", who, brief(err)), err}
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		return &RefusedError{fmt.Sprintf("kafka authentication failed: the brokers do not accept SASL %s; check WEBHOOKD_KAFKA_SASL_MECHANISM [%s]", a.mechanism, brief(err)), err}
	case errors.Is(err, kerr.IllegalSaslState):
		return &RefusedError{fmt.Sprintf("kafka authentication failed: %s was out of step with the broker [%s]", who, brief(err)), err}
	}
	var (
		unknownCA *x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		alert     tls.AlertError
		record    tls.RecordHeaderError
		firstRead *kgo.ErrFirstReadEOF
		op        *net.OpError
	)
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verify):
		return &RefusedError{fmt.Sprintf("kafka TLS failed: the broker's certificate is not trusted; check WEBHOOKD_KAFKA_TLS_CA_FILE [%s]", brief(err)), err}
	case errors.As(err, &alert), errors.As(err, &op) && op.Op == "remote error":
		// The broker ended the handshake with an alert: typically it
		// wants a client certificate it can verify.
		return &RefusedError{fmt.Sprintf("kafka TLS failed: the broker refused the handshake; check WEBHOOKD_KAFKA_TLS_CERT_FILE and WEBHOOKD_KAFKA_TLS_KEY_FILE [%s]", brief(err)), err}
	case errors.As(err, &record):
		return &RefusedError{"kafka TLS failed: the broker does not speak TLS on that port; check WEBHOOKD_KAFKA_TLS and WEBHOOKD_KAFKA_BROKERS", err}
	case errors.As(err, &firstRead):
		// The broker closed the connection on the first request: it
		// expects TLS or SASL that this process does not send (or the
		// reverse).
		return &RefusedError{fmt.Sprintf("kafka refused the connection before any request was answered; check WEBHOOKD_KAFKA_TLS and WEBHOOKD_KAFKA_SASL_MECHANISM match the brokers' listener [%s]", brief(err)), err}
	}
	return nil
}

// brief is err's text on one line, bounded (a broker's message is its own).
func brief(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
