package dispatcher

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A delivery that times out, or whose answer is far larger than what is
// read of it, hangs up: its connection is closed, not left open to a
// receiver that still holds it (a leak per hung delivery otherwise).
func TestATimedOutOrOversizedAnswerClosesItsConnection(t *testing.T) {
	stop := make(chan struct{}) // ends what is left of the handlers if a check failed
	closed := make(chan net.Conn, 8)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Reading the whole body lets net/http watch the connection: the
		// request's context ends when the client hangs up.
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/hang":
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		case "/huge":
			w.WriteHeader(200)
			chunk := []byte(strings.Repeat("x", 1<<20))
			for range 50 {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- c
		}
	}
	srv.Start()
	t.Cleanup(func() { close(stop); srv.Close() })
	d := New(Options{Client: NewHTTPClient(Guard{AllowPrivate: true}, 4)})

	for _, c := range []struct {
		path, err string
		class     Class
	}{{"/hang", "Connection timeout", Transient}, {"/huge", "", Success}} {
		resp := d.do(context.Background(), &Request{Method: "POST", URL: srv.URL + c.path, Header: http.Header{}, Body: []byte(`{}`), Timeout: 300 * time.Millisecond})
		if resp.Class != c.class || resp.Err != c.err || len(resp.Body) > d.o.ResponseBodyLimit {
			t.Fatalf("%s: class %v, error %q, %d bytes of body", c.path, resp.Class, resp.Err, len(resp.Body))
		}
		// The server sees the connection closed: the client hung up (a
		// kept-alive connection would stay open, idle).
		select {
		case <-closed:
		case <-time.After(time.Minute): // a bound on a signal, not a pace
			t.Fatalf("%s: the connection is still open a minute after the delivery ended", c.path)
		}
	}
}
