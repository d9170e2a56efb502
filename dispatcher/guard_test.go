package dispatcher

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestGuardBlocksInternalAddresses(t *testing.T) {
	g := Guard{}
	for _, a := range []string{"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "::1", "fd00::1", "fe80::1", "0.0.0.0", "100.64.0.1", "::ffff:127.0.0.1", "64:ff9b::a00:1", "::7f00:1", "::ffff:0:7f00:1"} {
		if err := g.Check(netip.MustParseAddr(a)); !errors.Is(err, ErrBlockedAddress) {
			t.Errorf("%s allowed", a)
		}
	}
	for _, a := range []string{"93.184.216.34", "2606:2800:220:1::1"} {
		if err := g.Check(netip.MustParseAddr(a)); err != nil {
			t.Errorf("%s blocked: %v", a, err)
		}
	}
	allowed := Guard{Allowed: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	if allowed.Check(netip.MustParseAddr("10.9.9.9")) != nil || allowed.Check(netip.MustParseAddr("192.168.0.1")) == nil {
		t.Error("allow-list not honoured")
	}
}

// A real call to a loopback receiver is refused by the dialer, after DNS.
func TestGuardedClientRefusesLoopbackAfterResolution(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("request reached the server") }))
	defer srv.Close()
	d := New(Options{Client: NewHTTPClient(Guard{}, 4)})
	resp := d.do(context.Background(), &Request{Method: "POST", URL: "http://localhost:" + srv.URL[len("http://127.0.0.1:"):] + "/x", Header: http.Header{}, Timeout: 5e9})
	if resp.Class != Permanent || !strings.HasPrefix(resp.Err, "Blocked: 127.0.0.1 is a private") {
		t.Fatalf("resp = %+v", resp)
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			t.Error("redirect followed")
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	defer srv.Close()
	d := New(Options{Client: NewHTTPClient(Guard{AllowPrivate: true}, 4)})
	resp := d.do(context.Background(), &Request{Method: "POST", URL: srv.URL + "/x", Header: http.Header{}, Timeout: 5e9})
	if resp.Class != Transient || resp.Status != 302 || resp.Err != "HTTP 302" {
		t.Fatalf("resp = %+v", resp)
	}
}
