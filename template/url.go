package template

import (
	"fmt"
	"net/url"
	"strings"
)

// URL is a compiled URL template; every placeholder knows which part of the
// URL it sits in, so a value can never add a path segment, a query parameter
// or a fragment.
type URL struct {
	t   *Text
	ctx []urlPart // per part of t
}

type urlPart byte

const (
	urlAuthority urlPart = iota // scheme://host:port
	urlPath
	urlQuery
	urlFragment
)

// ParseURL compiles a URL template.
func ParseURL(s string) (*URL, error) {
	t, err := Parse(s)
	if err != nil {
		return nil, err
	}
	u := &URL{t: t, ctx: make([]urlPart, len(t.parts))}
	state, slashes := urlAuthority, 0
	seenScheme := false
	for i, p := range t.parts {
		u.ctx[i] = state
		if p.ph != nil {
			continue
		}
		for j := 0; j < len(p.lit); j++ {
			c := p.lit[j]
			switch state {
			case urlAuthority:
				switch {
				case c == ':' && !seenScheme && strings.HasPrefix(p.lit[j:], "://"):
					seenScheme = true
					j += 2
				case c == '/' && (seenScheme || slashes > 0):
					state = urlPath
				case c == '?':
					state = urlQuery
				case c == '#':
					state = urlFragment
				}
			case urlPath:
				switch c {
				case '?':
					state = urlQuery
				case '#':
					state = urlFragment
				}
			case urlQuery:
				if c == '#' {
					state = urlFragment
				}
			}
		}
	}
	return u, nil
}

// Placeholders lists the URL's placeholders.
func (u *URL) Placeholders() []Placeholder { return u.t.Placeholders() }

// TemplatedAuthority reports whether a placeholder sits before the path
// (scheme, host or port): then the host is only known once rendered.
func (u *URL) TemplatedAuthority() bool {
	for i, p := range u.t.parts {
		if p.ph != nil && u.ctx[i] == urlAuthority {
			return true
		}
	}
	return false
}

// Render returns the URL with every value escaped for its position. Values in
// the authority are path-escaped too, so a value cannot smuggle in a path or
// userinfo; the result is parsed and checked by the caller before it is used.
func (u *URL) Render(v Vars) string {
	var b strings.Builder
	for i, p := range u.t.parts {
		if p.ph == nil {
			b.WriteString(p.lit)
			continue
		}
		s := Stringify(lookup(v, p.ph.Path))
		switch u.ctx[i] {
		case urlQuery:
			b.WriteString(url.QueryEscape(s))
		case urlAuthority:
			b.WriteString(escapeAuthority(s))
		default:
			b.WriteString(url.PathEscape(s))
		}
	}
	return b.String()
}

// escapeAuthority keeps the characters a host[:port] is made of and
// percent-escapes the rest ("/", "@", "?", "#", spaces, …).
func escapeAuthority(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' || c == '-' || c == ':' || c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// Header is a compiled header-value template.
type Header struct{ t *Text }

// ParseHeader compiles a header-value template.
func ParseHeader(s string) (*Header, error) {
	t, err := Parse(s)
	if err != nil {
		return nil, err
	}
	return &Header{t: t}, nil
}

// Placeholders lists the header's placeholders.
func (h *Header) Placeholders() []Placeholder { return h.t.Placeholders() }

// Render interpolates the value; control characters from values or the
// template become spaces, so a header can never be split (no CR/LF injection).
func (h *Header) Render(v Vars) string {
	return SanitizeHeaderValue(h.t.Interpolate(v, nil))
}

// SanitizeHeaderValue replaces ASCII control characters (other than tab) by spaces.
func SanitizeHeaderValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' {
			return r
		}
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
