package dispatcher

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"github.com/afftok/webhookd/pipeline"
)

// Guard decides which resolved addresses outbound calls may reach. The check
// runs in the dialer, after DNS resolution and for every connection
// (redirects are not followed), so DNS rebinding cannot get around it.
// CheckHost asks the same question of a URL's host before any DNS, so a
// target that could never pass is refused when a pipeline is saved.
type Guard struct {
	AllowPrivate bool
	Allowed      []netip.Prefix
}

var _ pipeline.TargetPolicy = Guard{}

// AddrClass says why the guard blocks an address ("loopback", "private",
// …: the words its messages use); empty for an address calls may reach.
type AddrClass string

const (
	addrPublic      AddrClass = ""
	addrUnspecified AddrClass = "unspecified"
	addrLoopback    AddrClass = "loopback"
	addrPrivate     AddrClass = "private"
	addrLinkLocal   AddrClass = "link-local"
	addrMulticast   AddrClass = "multicast"
	addrSharedNAT   AddrClass = "carrier-grade NAT"
	addrSiteLocal   AddrClass = "site-local"
	addrReserved    AddrClass = "reserved"
)

// Ranges netip has no predicate for. Loopback, private (RFC 1918, fc00::/7),
// link-local, multicast and unspecified come from netip's own predicates.
var (
	blocked = []classedPrefix{
		{netip.MustParsePrefix("0.0.0.0/8"), addrReserved},      // "this network": 0.x reaches the local host on Linux
		{netip.MustParsePrefix("100.64.0.0/10"), addrSharedNAT}, // shared address space (RFC 6598)
		{netip.MustParsePrefix("192.0.0.0/24"), addrReserved},   // IETF protocol assignments
		{netip.MustParsePrefix("198.18.0.0/15"), addrReserved},  // benchmarking
		{netip.MustParsePrefix("240.0.0.0/4"), addrReserved},    // reserved, and broadcast
		{netip.MustParsePrefix("64:ff9b:1::/48"), addrReserved}, // local-use NAT64 (RFC 8215): where the IPv4 sits is the operator's choice
		{netip.MustParsePrefix("fec0::/10"), addrSiteLocal},     // deprecated site-local, still routed inside some networks
	}
	// IPv6 forms that carry an IPv4 address. An address in one of them is
	// judged by the IPv4 address it carries. The first two are deprecated
	// and never a receiver's real address, so they stay blocked whatever
	// they carry; NAT64 and 6to4 reach public IPv4 hosts legitimately (DNS64
	// answers 64:ff9b::a.b.c.d for every IPv4-only host), so only what
	// they carry decides.
	embedding = []struct {
		p           netip.Prefix
		v4          func(a [16]byte) []netip.Addr
		alwaysBlock bool
	}{
		{netip.MustParsePrefix("::/96"), last4, true},           // IPv4-compatible: ::7f00:1 is 127.0.0.1
		{netip.MustParsePrefix("::ffff:0:0:0/96"), last4, true}, // IPv4-translated (SIIT): ::ffff:0:7f00:1
		{netip.MustParsePrefix("64:ff9b::/96"), last4, false},   // NAT64 well-known prefix (RFC 6052)
		{netip.MustParsePrefix("2002::/16"), sixToFour, false},  // 6to4: 2002:AABB:CCDD:: is AA.BB.CC.DD's network
		{netip.MustParsePrefix("2001::/32"), teredo, false},     // Teredo: the server, and the client XOR-obfuscated
	}
)

type classedPrefix struct {
	p     netip.Prefix
	class AddrClass
}

func last4(a [16]byte) []netip.Addr     { return []netip.Addr{netip.AddrFrom4([4]byte(a[12:16]))} }
func sixToFour(a [16]byte) []netip.Addr { return []netip.Addr{netip.AddrFrom4([4]byte(a[2:6]))} }
func teredo(a [16]byte) []netip.Addr {
	client := [4]byte{^a[12], ^a[13], ^a[14], ^a[15]}
	return []netip.Addr{netip.AddrFrom4(client), netip.AddrFrom4([4]byte(a[4:8]))}
}

// Classify is the guard's one list of what it blocks: the class of an
// address (empty if calls may reach it). The dial-time check and the
// save-time check both come here. An IPv4-mapped address is its IPv4
// address (the dialler uses IPv4 for it); other IPv6 forms that carry an
// IPv4 address take the class of what they carry.
func Classify(addr netip.Addr) AddrClass {
	c, _ := classify(addr)
	return c
}

// classify is Classify that also returns the address that decided: addr
// itself or the IPv4 address it carries.
func classify(addr netip.Addr) (AddrClass, netip.Addr) {
	a := addr.Unmap().WithZone("")
	switch {
	case !a.IsValid():
		return addrReserved, a
	case a.IsUnspecified():
		return addrUnspecified, a
	case a.IsLoopback():
		return addrLoopback, a
	case a.IsPrivate():
		return addrPrivate, a
	case a.IsLinkLocalUnicast():
		return addrLinkLocal, a
	case a.IsMulticast(): // interface-, link- and global-scope alike
		return addrMulticast, a
	}
	for _, r := range blocked {
		if r.p.Contains(a) {
			return r.class, a
		}
	}
	if a.Is4() {
		return addrPublic, a
	}
	for _, e := range embedding {
		if !e.p.Contains(a) {
			continue
		}
		for _, v4 := range e.v4(a.As16()) {
			if c, _ := classify(v4); c != addrPublic {
				return c, v4
			}
		}
		if e.alwaysBlock {
			return addrReserved, a
		}
		return addrPublic, a
	}
	return addrPublic, a
}

// Check returns nil if addr may be dialled: it is in an allowed CIDR,
// private targets are allowed, or Classify finds it public.
func (g Guard) Check(addr netip.Addr) error {
	addr = addr.Unmap()
	for _, p := range g.Allowed {
		if p.Contains(addr.WithZone("")) { // a zone picks the interface, not the address
			return nil
		}
	}
	if g.AllowPrivate {
		return nil
	}
	if c := Classify(addr); c != addrPublic {
		return &blockedError{addr: addr.String(), class: c}
	}
	return nil
}

// HostError is CheckHost's refusal of a URL host.
type HostError struct {
	Host  string // as the URL has it
	Class AddrClass
	// Means is the address the host stands for when it is not written
	// plainly ("0x7f.1" means 127.0.0.1; 2002:7f00:1:: carries it).
	Means string
}

func (e *HostError) Error() string {
	article := "a "
	if c := string(e.Class); c != "" && strings.IndexByte("aeiou", c[0]) >= 0 {
		article = "an "
	}
	s := "points to " + article + string(e.Class) + " address the outbound guard blocks"
	if e.Means != "" {
		s += " (" + e.Host + " means " + e.Means + ")"
	}
	return s
}

// CheckHost returns a *HostError if every call to a URL with this host
// (url.URL.Hostname: no brackets, no port) would be refused by Check,
// whatever DNS answers, and nil otherwise. It reads the host as the HTTP
// client and the resolvers would: non-ASCII hosts through IDNA as net/http
// does ("１２７.０.０.１" is dialled as 127.0.0.1), IP literals as netip
// does, then the numeric IPv4 forms of inet_aton (2130706433, 0x7f.1,
// 017700000001, 127.1) that glibc's getaddrinfo — Go's cgo resolver —
// answers without DNS (the pure-Go resolver sends them to DNS, where no
// such name exists: either way such a host can reach nothing else), and
// localhost and *.localhost (RFC 6761: always this machine). Other names
// are left to the dialer: what they resolve to can change.
func (g Guard) CheckHost(host string) error {
	h := host
	if !isASCII(h) {
		// net/http dials idna.Lookup.ToASCII(host) when that succeeds and
		// the host as is otherwise.
		if a, err := idna.Lookup.ToASCII(h); err == nil {
			h = a
		}
	}
	h = strings.ToLower(h)
	if addr, err := netip.ParseAddr(h); err == nil {
		return g.checkHostAddr(host, h, addr)
	}
	name := strings.TrimSuffix(h, ".") // other parsers (WHATWG URLs) drop one trailing dot
	if addr, ok := inetAton(name); ok {
		return g.checkHostAddr(host, h, addr)
	}
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		// Blocked unless the guard lets one of the loopback addresses through
		// (an allowed 127.0.0.1/32, as the tests use).
		v4, v6 := g.Check(netip.AddrFrom4([4]byte{127, 0, 0, 1})), g.Check(netip.IPv6Loopback())
		if v4 != nil && v6 != nil {
			return &HostError{Host: host, Class: addrLoopback}
		}
	}
	return nil
}

func (g Guard) checkHostAddr(host, h string, addr netip.Addr) error {
	if g.Check(addr) == nil {
		return nil
	}
	c, decided := classify(addr)
	e := &HostError{Host: host, Class: c}
	if decided.String() != h {
		e.Means = decided.String()
	}
	return e
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// inetAton reads s as glibc's inet_aton does (and getaddrinfo, which uses
// it before any lookup): one to four dot-separated parts, each decimal,
// octal (leading 0) or hex (leading 0x), every part but the last one byte
// and the last filling the bytes left ("127.1" is 127.0.0.1, 2130706433 and
// 0x7f000001 too). No sign, no space, no empty part.
func inetAton(s string) (netip.Addr, bool) {
	var parts [4]uint64
	n := 0
	for {
		if n == len(parts) {
			return netip.Addr{}, false
		}
		v, rest, ok := atonPart(s)
		if !ok {
			return netip.Addr{}, false
		}
		parts[n] = v
		n++
		if rest == "" {
			break
		}
		if rest[0] != '.' {
			return netip.Addr{}, false
		}
		s = rest[1:]
	}
	last := parts[n-1]
	if last > 0xffffffff>>(8*(n-1)) {
		return netip.Addr{}, false
	}
	var b [4]byte
	for i := 0; i < n-1; i++ {
		if parts[i] > 0xff {
			return netip.Addr{}, false
		}
		b[i] = byte(parts[i])
	}
	for i := 3; i >= n-1; i-- {
		b[i] = byte(last)
		last >>= 8
	}
	return netip.AddrFrom4(b), true
}

// atonPart is strtoul(s, &end, 0) for inet_aton: it must start with a
// digit; a value past 32 bits fails.
func atonPart(s string) (v uint64, rest string, ok bool) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, s, false
	}
	base, i := uint64(10), 0
	if s[0] == '0' {
		base, i = 8, 1
		if len(s) > 2 && (s[1] == 'x' || s[1] == 'X') && hexDigit(s[2]) >= 0 {
			base, i = 16, 2
		}
	}
	for ; i < len(s); i++ {
		d := hexDigit(s[i])
		if d < 0 || uint64(d) >= base {
			break
		}
		if v = v*base + uint64(d); v > 0xffffffff {
			return 0, s, false
		}
	}
	return v, s[i:], true
}

func hexDigit(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
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
