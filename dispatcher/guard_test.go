package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ebitengine/purego"
)

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		addr string
		want AddrClass
	}{
		{"127.0.0.1", addrLoopback},
		{"127.255.255.254", addrLoopback},
		{"10.1.2.3", addrPrivate},
		{"172.16.0.1", addrPrivate},
		{"192.168.1.1", addrPrivate},
		{"169.254.169.254", addrLinkLocal},
		{"0.0.0.0", addrUnspecified},
		{"0.1.2.3", addrReserved},
		{"100.64.0.1", addrSharedNAT},
		{"192.0.0.170", addrReserved},
		{"198.18.0.1", addrReserved},
		{"240.0.0.1", addrReserved},
		{"255.255.255.255", addrReserved},
		{"224.0.0.1", addrMulticast},
		{"::1", addrLoopback},
		{"::", addrUnspecified},
		{"fd00::1", addrPrivate},
		{"fe80::1", addrLinkLocal},
		{"fe80::1%eth0", addrLinkLocal},
		{"ff02::1", addrMulticast},
		{"ff05::2", addrMulticast},
		{"fec0::1", addrSiteLocal},
		// IPv4-mapped: dialled as the IPv4 address.
		{"::ffff:127.0.0.1", addrLoopback},
		{"::ffff:7f00:1", addrLoopback},
		{"::ffff:10.0.0.1", addrPrivate},
		{"::ffff:8.8.8.8", addrPublic},
		// IPv4-compatible (deprecated): what it carries, else reserved.
		{"::7f00:1", addrLoopback},
		{"::127.0.0.1", addrLoopback},
		{"::a00:1", addrPrivate},
		{"::808:808", addrReserved},
		// IPv4-translated (deprecated SIIT): likewise.
		{"::ffff:0:7f00:1", addrLoopback},
		{"::ffff:0:a9fe:a9fe", addrLinkLocal},
		{"::ffff:0:808:808", addrReserved},
		// NAT64 well-known prefix: what it carries decides.
		{"64:ff9b::7f00:1", addrLoopback},
		{"64:ff9b::127.0.0.1", addrLoopback},
		{"64:ff9b::a00:1", addrPrivate},
		{"64:ff9b::a9fe:a9fe", addrLinkLocal},
		{"64:ff9b::808:808", addrPublic},
		{"64:ff9b:1::7f00:1", addrReserved}, // local-use NAT64: always
		{"64:ff9b:1::808:808", addrReserved},
		// 6to4: the IPv4 network in bits 16–47.
		{"2002:7f00:1::", addrLoopback},
		{"2002:7f00:1::1", addrLoopback},
		{"2002:a00:1::1", addrPrivate},
		{"2002:c0a8:101::", addrPrivate},
		{"2002:a9fe:a9fe::", addrLinkLocal},
		{"2002:808:808::1", addrPublic},
		// Teredo: client 127.0.0.1 obfuscated (^7f000001), server 10.0.0.1,
		// and RFC 4380's own public example.
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", addrLoopback},
		{"2001:0:a00:1:8000:63bf:3fff:fdd2", addrPrivate},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", addrPublic},
		// Public.
		{"93.184.216.34", addrPublic},
		{"8.8.8.8", addrPublic},
		{"2606:2800:220:1::1", addrPublic},
		{"2001:4860:4860::8888", addrPublic},
	} {
		if got := Classify(netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("Classify(%s) = %q, want %q", c.addr, got, c.want)
		}
	}
	if got := Classify(netip.Addr{}); got != addrReserved {
		t.Errorf("Classify(zero) = %q", got)
	}
}

func TestGuardCheck(t *testing.T) {
	tenSlash8 := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, c := range []struct {
		name    string
		g       Guard
		addr    string
		blocked bool
	}{
		{"loopback", Guard{}, "127.0.0.1", true},
		{"mapped loopback", Guard{}, "::ffff:127.0.0.1", true},
		{"compatible loopback", Guard{}, "::7f00:1", true},
		{"translated loopback", Guard{}, "::ffff:0:7f00:1", true},
		{"NAT64 of private", Guard{}, "64:ff9b::a00:1", true},
		{"6to4 of loopback", Guard{}, "2002:7f00:1::", true},
		{"public", Guard{}, "93.184.216.34", false},
		{"public v6", Guard{}, "2606:2800:220:1::1", false},
		{"NAT64 of public (DNS64)", Guard{}, "64:ff9b::5db8:d822", false},
		{"allowed CIDR", Guard{Allowed: tenSlash8}, "10.9.9.9", false},
		{"allowed CIDR, mapped", Guard{Allowed: tenSlash8}, "::ffff:10.9.9.9", false},
		{"outside the allowed CIDR", Guard{Allowed: tenSlash8}, "192.168.0.1", true},
		{"allowed CIDR, zoned", Guard{Allowed: []netip.Prefix{netip.MustParsePrefix("fe80::/10")}}, "fe80::1%eth0", false},
		{"private allowed", Guard{AllowPrivate: true}, "169.254.169.254", false},
	} {
		err := c.g.Check(netip.MustParseAddr(c.addr))
		if c.blocked != errors.Is(err, ErrBlockedAddress) || !c.blocked && err != nil {
			t.Errorf("%s: Check(%s) = %v", c.name, c.addr, err)
		}
	}
	err := Guard{}.Check(netip.MustParseAddr("::ffff:127.0.0.1"))
	if want := "127.0.0.1 is a private, loopback, link-local or reserved address (loopback)"; err == nil || err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}

// hostCases are URL hosts (url.URL.Hostname) and whether the production
// guard refuses them before any DNS.
var hostCases = []struct {
	host    string
	blocked bool
}{
	{"127.0.0.1", true},
	{"127.0.0.2", true},
	{"::1", true},
	{"::ffff:127.0.0.1", true},
	{"::FFFF:127.0.0.1", true},
	{"0:0:0:0:0:ffff:7f00:1", true},
	{"::7f00:1", true},
	{"::127.0.0.1", true},
	{"::ffff:0:7f00:1", true},
	{"64:ff9b::7f00:1", true},
	{"2002:7f00:1::", true},
	{"fe80::1%eth0", true},
	{"169.254.169.254", true},
	{"10.0.0.1", true},
	// inet_aton's numeric forms (glibc getaddrinfo, Go's cgo resolver).
	{"2130706433", true},
	{"0x7f.1", true},
	{"0X7F.0.0.1", true},
	{"017700000001", true},
	{"0x7f000001", true},
	{"127.1", true},
	{"0177.0.0.1", true},
	{"127.000.000.001", true},
	{"0", true},
	{"10.1", true},
	{"0xa9fea9fe", true},
	{"127.0.0.1.", true}, // WHATWG URL parsers drop the dot
	// localhost (RFC 6761).
	{"localhost", true},
	{"LocalHost", true},
	{"localhost.", true},
	{"api.localhost", true},
	// What net/http dials after IDNA mapping.
	{"１２７.０.０.１", true},
	{"127。0。0。1", true},
	{"ｌｏｃａｌｈｏｓｔ", true},
	{"ⓛocalhost", true},
	// Left to the dialer: names, and what is not an IPv4 number.
	{"example.com", false},
	{"localhost.example.com", false},
	{"mylocalhost", false},
	{"127.0.0.1.nip.io", false},
	{"1.2.3.4.5", false},
	{"256.1.1.1", false},
	{"08", false},
	{"0x", false},
	{"0xg.1", false},
	{"4294967296", false},
	{"bücher.example", false},
	// Public literals.
	{"93.184.216.34", false},
	{"0x5db8d822", false}, // 93.184.216.34
	{"2606:2800:220:1::1", false},
	{"64:ff9b::808:808", false},
	{"2002:808:808::1", false},
}

func TestCheckHost(t *testing.T) {
	for _, c := range hostCases {
		err := Guard{}.CheckHost(c.host)
		var he *HostError
		if c.blocked != errors.As(err, &he) || !c.blocked && err != nil {
			t.Errorf("CheckHost(%q) = %v, want blocked %v", c.host, err, c.blocked)
		}
		if err := (Guard{AllowPrivate: true}).CheckHost(c.host); err != nil {
			t.Errorf("with private targets allowed, CheckHost(%q) = %v", c.host, err)
		}
	}
}

func TestCheckHostHonoursAllowedCIDRs(t *testing.T) {
	g := Guard{Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	for _, c := range []struct {
		host    string
		blocked bool
	}{
		{"127.0.0.1", false},
		{"::ffff:127.0.0.1", false}, // dialled as 127.0.0.1
		{"0x7f.1", false},
		{"localhost", false}, // 127.0.0.1 may be reached
		{"127.0.0.2", true},
		{"::7f00:1", true}, // dialled as IPv6: not in 127.0.0.1/32
		{"::1", true},
	} {
		if err := g.CheckHost(c.host); (err != nil) != c.blocked {
			t.Errorf("CheckHost(%q) = %v, want blocked %v", c.host, err, c.blocked)
		}
	}
}

func TestCheckHostMessages(t *testing.T) {
	for _, c := range []struct{ host, want string }{
		{"127.0.0.1", "points to a loopback address the outbound guard blocks"},
		{"::ffff:127.0.0.1", "points to a loopback address the outbound guard blocks (::ffff:127.0.0.1 means 127.0.0.1)"},
		{"2002:a00:1::", "points to a private address the outbound guard blocks (2002:a00:1:: means 10.0.0.1)"},
		{"0x7f.1", "points to a loopback address the outbound guard blocks (0x7f.1 means 127.0.0.1)"},
		{"0", "points to an unspecified address the outbound guard blocks (0 means 0.0.0.0)"},
		{"169.254.169.254", "points to a link-local address the outbound guard blocks"},
		{"api.localhost", "points to a loopback address the outbound guard blocks"},
		{"::808:808", "points to a reserved address the outbound guard blocks"},
	} {
		if err := (Guard{}).CheckHost(c.host); err == nil || err.Error() != c.want {
			t.Errorf("CheckHost(%q) = %q, want %q", c.host, err, c.want)
		}
	}
}

// CheckHost reads a host as the HTTP client does: for hosts that need no
// DNS, the address net/http actually dials passes the guard exactly when
// CheckHost lets the host through. (Names, and inet_aton's numeric forms,
// go to DNS with the pure-Go resolver; TestInetAtonMatchesGlibc covers the
// cgo one.)
func TestCheckHostAgreesWithWhatTheClientDials(t *testing.T) {
	var mu sync.Mutex
	var dialled string
	errStop := errors.New("stop")
	d := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		mu.Lock()
		dialled = address
		mu.Unlock()
		return errStop
	}}
	cl := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	for _, host := range []string{"127.0.0.1", "127.0.0.2", "10.0.0.1", "169.254.169.254", "93.184.216.34",
		"[::1]", "[::ffff:127.0.0.1]", "[0:0:0:0:0:ffff:7f00:1]", "[::7f00:1]", "[::127.0.0.1]", "[::ffff:0:7f00:1]",
		"[64:ff9b::7f00:1]", "[64:ff9b::808:808]", "[2002:7f00:1::]", "[2002:808:808::1]", "[fe80::1%25lo]", "[2606:2800:220:1::1]",
		"１２７.０.０.１", "127。0。0。1", "９３.１８４.２１６.３４", "ｌｏｃａｌｈｏｓｔ", "localhost", "LOCALHOST"} {
		u, err := url.Parse("http://" + host + "/x")
		if err != nil {
			t.Fatal(err)
		}
		want := Guard{}.CheckHost(u.Hostname()) != nil
		mu.Lock()
		dialled = ""
		mu.Unlock()
		_, err = cl.Get(u.String())
		mu.Lock()
		got := dialled
		mu.Unlock()
		if got == "" {
			t.Errorf("%s: nothing dialled: %v", host, err)
			continue
		}
		if blocked := (Guard{}).Check(netip.MustParseAddrPort(got).Addr()) != nil; blocked != want {
			t.Errorf("%s: the client dialled %s (blocked %v); CheckHost says blocked %v", host, got, blocked, want)
		}
	}
}

// inet_aton from the C library, the oracle for inetAton; nil where there is no glibc.
var cInetAton = sync.OnceValue(func() func(string, *[4]byte) int32 {
	h, err := purego.Dlopen("libc.so.6", purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil
	}
	var f func(string, *[4]byte) int32
	purego.RegisterLibFunc(&f, h, "inet_aton")
	return f
})

// inetAtonOracle is glibc's answer for s, or ok=false if it does not apply
// (no glibc, or s has what a C string or inet_aton's trailing-space rule
// would cut short: getaddrinfo uses the exact variant).
func inetAtonOracle(s string) (addr netip.Addr, parsed, ok bool) {
	f := cInetAton()
	if f == nil || strings.ContainsAny(s, "\x00 \t\n\v\f\r") {
		return netip.Addr{}, false, false
	}
	var b [4]byte
	if f(s, &b) == 0 {
		return netip.Addr{}, false, true
	}
	return netip.AddrFrom4(b), true, true
}

func TestInetAtonMatchesGlibc(t *testing.T) {
	if cInetAton() == nil {
		t.Skip("no glibc to compare with")
	}
	for _, s := range append(inetAtonSeeds, "1.2.3.4", "1.2.3", "1.2", "1", "0x", "0x.1", "00x1", "0xffffffff", "0x100000000", "4294967295",
		"037777777777", "040000000000", "1.16777215", "1.16777216", "1.2.65535", "1.2.65536", "1.2.3.256", "255.255.255.255", "1..2", ".1", "1.",
		"09", "0.09", "0x1g", "+1", "-1", "1e3", "999999999999999999999999") {
		want, wantOK, _ := inetAtonOracle(s)
		got, gotOK := inetAton(s)
		if gotOK != wantOK || got != want {
			t.Errorf("inetAton(%q) = %v %v, glibc says %v %v", s, got, gotOK, want, wantOK)
		}
	}
}

var inetAtonSeeds = []string{"127.0.0.1", "2130706433", "0x7f.1", "017700000001", "0x7f000001", "127.1", "0177.0.0.1", "127.000.000.001", "0", "08", "256.1.1.1", "1.2.3.4.5"}

func FuzzInetAton(f *testing.F) {
	for _, s := range inetAtonSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := inetAton(s)
		if want, wantOK, apply := inetAtonOracle(s); apply && (ok != wantOK || got != want) {
			t.Fatalf("inetAton(%q) = %v %v, glibc says %v %v", s, got, ok, want, wantOK)
		}
		if !ok {
			return
		}
		if !got.Is4() || strings.Trim(s, "0123456789abcdefABCDEFxX.") != "" {
			t.Fatalf("inetAton(%q) = %v from characters a number cannot have", s, got)
		}
		// Dotted decimal without leading zeros means what netip says.
		if a, err := netip.ParseAddr(s); err == nil && a != got {
			t.Fatalf("inetAton(%q) = %v, netip says %v", s, got, a)
		}
	})
}

func FuzzCheckHost(f *testing.F) {
	for _, c := range hostCases {
		f.Add(c.host)
	}
	f.Fuzz(func(t *testing.T, host string) {
		err := Guard{}.CheckHost(host)
		var he *HostError
		if err != nil && (!errors.As(err, &he) || !strings.HasPrefix(err.Error(), "points to ")) {
			t.Fatalf("CheckHost(%q) = %v", host, err)
		}
		// Never stricter than the dial-time check, never laxer on a literal.
		if a, perr := netip.ParseAddr(host); perr == nil && (Guard{}.Check(a) != nil) != (err != nil) {
			t.Fatalf("CheckHost(%q) = %v, Check(%v) = %v", host, err, a, Guard{}.Check(a))
		}
		if err := (Guard{AllowPrivate: true}).CheckHost(host); err != nil {
			t.Fatalf("with private targets allowed, CheckHost(%q) = %v", host, err)
		}
	})
}

// A real call to a loopback receiver is refused by the dialer, after DNS.
func TestGuardedClientRefusesLoopbackAfterResolution(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("request reached the server") }))
	defer srv.Close()
	d := New(Options{Client: NewHTTPClient(Guard{}, 4)})
	resp := d.do(context.Background(), &Request{Method: "POST", URL: "http://localhost:" + srv.URL[len("http://127.0.0.1:"):] + "/x", Header: http.Header{}, Timeout: 5e9})
	// localhost is 127.0.0.1 or ::1, whichever the machine's resolver
	// gives first (an /etc/hosts listing "::1 localhost" first, or
	// getaddrinfo's RFC 6724 order, gives ::1): either is refused.
	if resp.Class != Permanent || !(strings.HasPrefix(resp.Err, "Blocked: 127.0.0.1 is a private") || strings.HasPrefix(resp.Err, "Blocked: ::1 is a private")) {
		t.Fatalf("resp = %+v", resp)
	}
}

// Every IPv6 spelling of a loopback receiver is refused by the dialer too.
func TestGuardedClientRefusesIPv6FormsOfLoopback(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("request reached the server") }))
	defer srv.Close()
	port := srv.URL[len("http://127.0.0.1:"):]
	d := New(Options{Client: NewHTTPClient(Guard{}, 4)})
	for _, h := range []string{"[::ffff:127.0.0.1]", "[::127.0.0.1]", "[::7f00:1]", "[::ffff:0:7f00:1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]"} {
		resp := d.do(context.Background(), &Request{Method: "POST", URL: fmt.Sprintf("http://%s:%s/x", h, port), Header: http.Header{}, Timeout: 5e9})
		if resp.Class != Permanent || !strings.HasPrefix(resp.Err, "Blocked: ") || !strings.HasSuffix(resp.Err, "(loopback)") {
			t.Errorf("%s: resp = %+v", h, resp)
		}
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
