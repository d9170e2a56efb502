package dispatcher

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/afftok/webhookd/signing"
)

// Request is a rendered, signed HTTP request.
type Request struct {
	Method  string
	URL     string
	Host    string // host:port, the key of the per-host limit and breaker
	Header  http.Header
	Body    []byte
	Timeout time.Duration
	// Secrets are the values this request must never show.
	Secrets *Secrets
}

// Class is how an attempt's outcome is treated (errors are classified once,
// here).
type Class uint8

const (
	// Success: a 2xx answer.
	Success Class = iota + 1
	// Transient: network error, timeout, 408/425/429/5xx — and, as the spec
	// says, every other non-2xx: worth retrying.
	Transient
	// Permanent: the request cannot succeed as it is (render error, address
	// blocked by the SSRF guard, invalid URL): retrying cannot help.
	Permanent
)

// Response is the classified outcome of one HTTP attempt. Err is the
// operator-facing error text with the request's secrets already redacted;
// the underlying error never leaves Do.
type Response struct {
	Status  int
	Header  http.Header
	Body    []byte // as received, bounded (not redacted: used only for chaining)
	Latency time.Duration
	Class   Class
	Err     string
	// Aborted: the caller's context ended while the request was out.
	Aborted bool
}

// outcome is what the response tells the host's breaker.
func (r *Response) outcome() Outcome {
	switch {
	case r.Aborted || r.Class == Permanent:
		return Neutral
	case r.Err != "" || r.Status >= 500:
		return Unhealthy
	}
	return Healthy
}

// ErrBlockedAddress is returned when a webhook target resolves to an address
// webhookd may not call (SSRF guard).
var ErrBlockedAddress = errors.New("address not allowed")

// do sends a request and classifies the answer. It never returns an error: a
// failed call is a Response with Class and Err set.
func (d *Dispatcher) do(ctx context.Context, r *Request) *Response {
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	var body io.Reader
	if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	hr, err := http.NewRequestWithContext(ctx, r.Method, r.URL, body)
	if err != nil {
		return &Response{Class: Permanent, Err: r.Secrets.Redact("Invalid request: " + err.Error())}
	}
	// Built for this attempt alone and not changed after: the client
	// reads it, so it needs no copy.
	hr.Header = r.Header
	start := time.Now()
	resp, err := d.o.Client.Do(hr)
	if err != nil {
		out := &Response{Latency: time.Since(start)}
		out.Class, out.Err = classifyError(err)
		out.Err = r.Secrets.Redact(out.Err)
		out.Aborted = ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded)
		return out
	}
	defer resp.Body.Close()
	b, rerr := io.ReadAll(io.LimitReader(resp.Body, int64(d.o.ResponseBodyLimit)))
	// Drain a little more so the connection can be reused, but never much.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	out := &Response{Status: resp.StatusCode, Header: resp.Header, Body: b, Latency: time.Since(start), Class: Success}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		out.Class, out.Err = Transient, "HTTP "+strconv.Itoa(resp.StatusCode)
		if rerr != nil {
			out.Err += " (" + r.Secrets.Redact(describe(rerr)) + ")"
		}
	}
	// A 2xx whose body is cut short is still the receiver's answer: the
	// status line says it took the webhook.
	return out
}

// classifyError turns a request error into its class and the text
// operators read ("Connection timeout", "DNS error: …"). The text is built
// from the error's parts, not its whole message (which quotes the URL).
func classifyError(err error) (Class, string) {
	var ne net.Error
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostnameErr x509.HostnameError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.Is(err, ErrBlockedAddress):
		return Permanent, "Blocked: " + blockedText(err)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return Transient, "Connection timeout"
	case errors.As(err, &dnsErr):
		return Transient, "DNS error: " + dnsErr.Err + " (" + dnsErr.Name + ")"
	case errors.Is(err, syscall.ECONNREFUSED):
		return Transient, "Connection refused"
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostnameErr):
		return Transient, "TLS error: " + describe(err)
	case errors.As(err, &recordErr), strings.Contains(describe(err), "server gave HTTP response to HTTPS client"):
		return Transient, "TLS error: the server did not answer with TLS"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return Transient, "Connection reset"
	}
	return Transient, "Request failed: " + describe(err)
}

// describe is an error's message without the `Method "URL": ` prefix that
// *url.Error adds (the URL may carry secrets and is shown elsewhere).
func describe(err error) string {
	var ue *url.Error
	for errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

func blockedText(err error) string {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if be, ok := e.(*blockedError); ok {
			return be.Error()
		}
	}
	return ErrBlockedAddress.Error()
}

// blockedError is the guard's refusal: which address, and why.
type blockedError struct {
	addr  string
	class AddrClass // empty when the address could not even be parsed
}

func (e *blockedError) Error() string {
	s := fmt.Sprintf("%s is a private, loopback, link-local or reserved address", e.addr)
	if e.class != addrPublic {
		s += " (" + string(e.class) + ")"
	}
	return s
}
func (e *blockedError) Unwrap() error { return ErrBlockedAddress }

// signatureHeaders are never shown, whatever their value.
var signatureHeaders = map[string]bool{"Authorization": true, http.CanonicalHeaderKey(signing.HeaderSignature): true,
	http.CanonicalHeaderKey(signing.HeaderSignaturePrevious): true, http.CanonicalHeaderKey(signing.HeaderWebhookSignature): true}

// RedactedHeader returns the request headers fit to show: signatures and
// values carrying secrets are replaced.
func (r *Request) RedactedHeader() map[string]string {
	out := map[string]string{}
	for k := range r.Header {
		v := r.Header.Get(k)
		if signatureHeaders[http.CanonicalHeaderKey(k)] {
			v = Redacted
		} else {
			v = r.Secrets.Redact(v)
		}
		out[k] = v
	}
	return out
}
