package dispatcher

import (
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// Guard decides which resolved addresses outbound calls may reach. The check
// runs in the dialer, after DNS resolution and for every connection
// (redirects are not followed), so DNS rebinding cannot get around it.
type Guard struct {
	AllowPrivate bool
	Allowed      []netip.Prefix
}

var extraBlocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64 can reach private IPv4
	netip.MustParsePrefix("fec0::/10"),       // site-local
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (::7f00:1 is 127.0.0.1)
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated (::ffff:0:7f00:1)
}

// Check returns nil if addr may be dialled.
func (g Guard) Check(addr netip.Addr) error {
	addr = addr.Unmap()
	for _, p := range g.Allowed {
		if p.Contains(addr) {
			return nil
		}
	}
	if g.AllowPrivate {
		return nil
	}
	blocked := addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() ||
		addr.IsLinkLocalMulticast() || addr.IsInterfaceLocalMulticast() || addr.IsMulticast() || addr.IsUnspecified()
	for _, p := range extraBlocked {
		blocked = blocked || p.Contains(addr)
	}
	if blocked {
		return &blockedError{addr: addr.String()}
	}
	return nil
}

func (g Guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &blockedError{addr: address}
	}
	return g.Check(ap.Addr())
}

// NewHTTPClient returns the client for webhook calls: guarded dialer, no
// proxy from the environment (a proxy would hide the real target from the
// guard), no redirects (a 3xx is an answer, and following it could lead
// anywhere). Requests per host are bounded above it (Hosts), not by
// connections: idlePerHost only sizes the pool of kept-alive connections.
func NewHTTPClient(g Guard, idlePerHost int) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: g.control}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   idlePerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
