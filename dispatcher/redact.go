package dispatcher

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/afftok/webhookd/template"
)

// Redacted replaces a secret wherever a delivery shows something.
const Redacted = "[redacted]"

// minSecretLen: shorter values are not treated as secrets (replacing every
// "1" or "on" would destroy the text, and such values protect nothing).
const minSecretLen = 4

// Secrets are the values one request must never show: the env values its
// templates read and its signing key. Redact is applied at the source —
// before text becomes an error, a log line or a record — to the URL, bodies,
// headers and error texts of the request, in every form a value can take
// there (as is, URL-escaped, JSON-escaped) and in any ASCII letter case (a
// DNS error may print a host name lowercased).
type Secrets struct {
	forms []string // lowercased forms of every secret, longest first
}

// Add registers a secret value.
func (s *Secrets) Add(v string) {
	if len(v) < minSecretLen {
		return
	}
	for _, f := range formsOf(v) {
		if !containsString(s.forms, f) {
			s.forms = append(s.forms, f)
		}
	}
	// Longest first: a secret that contains another is replaced whole.
	slices.SortStableFunc(s.forms, func(a, b string) int { return len(b) - len(a) })
}

// formsCache keeps each secret's forms: the same env values and signing
// keys come back with every delivery. It is bounded; when full it starts
// over (the forms are cheap to make again).
var formsCache struct {
	sync.Mutex
	m map[string][]string
}

const formsCacheSize = 4096

// formsOf is how a value can appear, lowercased: as is, escaped for a URL's
// query or path, as a header value, and each of those inside a JSON string
// (with and without HTML escaping: templates do not escape <, > and &, an
// echoing receiver may).
func formsOf(v string) []string {
	formsCache.Lock()
	f, ok := formsCache.m[v]
	formsCache.Unlock()
	if ok {
		return f
	}
	for _, b := range []string{v, url.QueryEscape(v), url.PathEscape(v), template.SanitizeHeaderValue(v)} {
		for _, x := range []string{b, jsonInner(b, false), jsonInner(b, true)} {
			if x = asciiLower(x); !containsString(f, x) {
				f = append(f, x)
			}
		}
	}
	formsCache.Lock()
	if formsCache.m == nil || len(formsCache.m) >= formsCacheSize {
		formsCache.m = map[string][]string{}
	}
	formsCache.m[v] = f
	formsCache.Unlock()
	return f
}

// Redact returns text with every secret replaced by [redacted].
func (s *Secrets) Redact(text string) string {
	if s == nil || len(s.forms) == 0 || text == "" {
		return text
	}
	lower := asciiLower(text)
	var b strings.Builder
	for _, f := range s.forms {
		if !strings.Contains(lower, f) {
			continue
		}
		b.Reset()
		i := 0
		for {
			j := strings.Index(lower[i:], f)
			if j < 0 {
				break
			}
			b.WriteString(text[i : i+j])
			b.WriteString(Redacted)
			i += j + len(f)
		}
		b.WriteString(text[i:])
		text = b.String()
		lower = asciiLower(text)
	}
	return text
}

// RedactBytes is Redact for a body.
func (s *Secrets) RedactBytes(b []byte) []byte {
	if s == nil || len(s.forms) == 0 {
		return b
	}
	return []byte(s.Redact(string(b)))
}

// jsonInner is v as it appears between the quotes of a JSON string.
func jsonInner(v string, escapeHTML bool) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(escapeHTML)
	_ = enc.Encode(v)
	out := strings.TrimSuffix(b.String(), "\n")
	return out[1 : len(out)-1]
}

// asciiLower lowercases ASCII letters only, so byte offsets are unchanged.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func containsString(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
