package admin

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/golang-jwt/jwt/v5"
)

// Role is what an admin credential may do.
type Role string

const (
	// RoleAdmin may use every route.
	RoleAdmin Role = "admin"
	// RoleRead may only read: GET and HEAD requests.
	RoleRead Role = "read"
)

func parseRole(s string) (Role, bool) {
	switch r := Role(s); r {
	case RoleAdmin, RoleRead:
		return r, true
	}
	return "", false
}

// Allows reports whether the role may make a request with this method.
func (r Role) Allows(method string) bool {
	return r == RoleAdmin || r == RoleRead && (method == fiber.MethodGet || method == fiber.MethodHead)
}

const (
	// minTokenLen matches WEBHOOKD_ADMIN_TOKEN's minimum.
	minTokenLen = 16
	// checkEvery bounds how often the tokens file is stat'ed: rotation takes
	// effect within about this long, and a busy API costs one stat a second.
	checkEvery = time.Second
	// racyWindow: a file changed within this long of when it was read may
	// change again with the same mtime and size (filesystem timestamps are
	// coarser than writes), so it is read again until it has been still this
	// long — git's "racily clean" rule.
	racyWindow = 2 * time.Second
	// jwtLeeway tolerates clock skew between the issuer and this replica.
	jwtLeeway = 30 * time.Second
)

// AuthOptions configure Auth.
type AuthOptions struct {
	// Token is WEBHOOKD_ADMIN_TOKEN; it has the admin role.
	Token string
	// TokensFile holds one token per line, each optionally followed by a
	// role (admin or read; admin when absent); blank lines and # comments
	// are ignored. It is read again when it changes.
	TokensFile string
	// JWTSecret, when set, makes HS256 JWTs signed with it valid.
	JWTSecret []byte
	// JWTPublicKeyFile, when set, is a PEM RSA or EC P-256 public key (or a
	// certificate holding one) that verifies RS256 or ES256 JWTs.
	JWTPublicKeyFile string
	// JWTAudience, when set, is the aud every JWT must carry.
	JWTAudience string
	Log         *slog.Logger
	Now         func() time.Time
}

// Auth checks admin bearer credentials: the env token, the tokens file and
// JWTs, and says which role they carry. The admin API and the health server
// of replicas without it share one, so /metrics takes the same tokens.
//
// Static tokens are compared as SHA-256 digests in constant time: digests
// have one length, so neither a token's bytes nor its length leak through
// timing, and the plain tokens are not kept.
type Auth struct {
	env     *[sha256.Size]byte
	file    *tokenFile
	jwtKeys map[string]any // alg → key: only the algorithms of configured keys
	jwtOpts []jwt.ParserOption
}

// NewAuth loads the tokens file and the JWT public key. Either one that
// cannot be read or parsed is an error: a replica does not start with
// credentials other than the ones configured.
func NewAuth(o AuthOptions) (*Auth, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &Auth{jwtKeys: map[string]any{}}
	if o.Token != "" {
		d := sha256.Sum256([]byte(o.Token))
		a.env = &d
	}
	if o.TokensFile != "" {
		f := &tokenFile{path: o.TokensFile, log: o.Log, now: o.Now}
		if err := f.load(); err != nil {
			return nil, fmt.Errorf("admin tokens file: %w", err)
		}
		a.file = f
	}
	if len(o.JWTSecret) > 0 {
		a.jwtKeys[jwt.SigningMethodHS256.Alg()] = o.JWTSecret
	}
	if o.JWTPublicKeyFile != "" {
		alg, key, err := loadPublicKey(o.JWTPublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("admin JWT public key: %w", err)
		}
		a.jwtKeys[alg] = key
	}
	algs := make([]string, 0, len(a.jwtKeys))
	for alg := range a.jwtKeys {
		algs = append(algs, alg)
	}
	a.jwtOpts = []jwt.ParserOption{jwt.WithValidMethods(algs), jwt.WithExpirationRequired(),
		jwt.WithLeeway(jwtLeeway), jwt.WithTimeFunc(o.Now)}
	if o.JWTAudience != "" {
		a.jwtOpts = append(a.jwtOpts, jwt.WithAudience(o.JWTAudience))
	}
	return a, nil
}

// mustAuth is NewAuth for options that name no file, which cannot fail.
func mustAuth(o AuthOptions) *Auth {
	if o.TokensFile != "" || o.JWTPublicKeyFile != "" {
		panic("admin: mustAuth with files")
	}
	a, err := NewAuth(o)
	if err != nil {
		panic(err)
	}
	return a
}

// Configured reports whether any credential is configured. The admin API
// refuses everything without one; the health server then leaves /metrics open.
func (a *Auth) Configured() bool {
	return a.env != nil || a.file != nil || len(a.jwtKeys) > 0
}

// Authenticate checks an Authorization header value: the Bearer scheme (any
// case, RFC 7235) then a static token or a JWT. It returns the credential's role.
func (a *Auth) Authenticate(header string) (Role, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	tok = strings.TrimLeft(tok, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
		return "", false
	}
	if role, ok := a.staticToken(tok); ok {
		return role, true
	}
	return a.jwtToken(tok)
}

func (a *Auth) staticToken(tok string) (Role, bool) {
	d := sha256.Sum256([]byte(tok))
	role, found := Role(""), 0
	if a.env != nil && subtle.ConstantTimeCompare(a.env[:], d[:]) == 1 {
		role, found = RoleAdmin, 1
	}
	if a.file != nil {
		// Every entry is compared, a match or not.
		for _, e := range a.file.current() {
			if subtle.ConstantTimeCompare(e.digest[:], d[:]) == 1 && found == 0 {
				role, found = e.role, 1
			}
		}
	}
	return role, found == 1
}

// adminClaims are the registered claims plus the role; Role is raw so that
// an absent claim (admin, as before roles existed) differs from a bad one.
type adminClaims struct {
	jwt.RegisteredClaims
	Role json.RawMessage `json:"role,omitempty"`
}

// jwtToken accepts a JWT signed with a configured key in that key's
// algorithm only (HS256 with the secret, RS256 or ES256 with the public key,
// never alg none), with exp and, if configured, the audience.
func (a *Auth) jwtToken(tok string) (Role, bool) {
	if len(a.jwtKeys) == 0 || strings.Count(tok, ".") != 2 {
		return "", false
	}
	var c adminClaims
	_, err := jwt.ParseWithClaims(tok, &c, func(t *jwt.Token) (any, error) {
		// WithValidMethods already limits the algorithms; the key comes from
		// the algorithm too, so a token can't pick the public key as an HMAC secret.
		if key, ok := a.jwtKeys[t.Method.Alg()]; ok {
			return key, nil
		}
		return nil, errors.New("unexpected signing method")
	}, a.jwtOpts...)
	if err != nil {
		return "", false
	}
	if len(c.Role) == 0 {
		return RoleAdmin, true
	}
	var s string
	if json.Unmarshal(c.Role, &s) != nil {
		return "", false
	}
	return parseRole(s)
}

// auth is the admin API's middleware: 401 without a valid credential, 403
// when its role does not allow the method.
func (s *Server) auth(c *fiber.Ctx) error {
	if isProbe(c.Path()) {
		return c.Next() // the probes' routes took GET/HEAD; other methods: 405
	}
	role, ok := s.o.Auth.Authenticate(c.Get(fiber.HeaderAuthorization))
	if !ok {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="webhookd"`)
		return apiError(fiber.StatusUnauthorized, "unauthorized", "a valid bearer token is required (Authorization: Bearer <token>)")
	}
	// A method no route takes is 404/405 for everyone (noRoute), not 403.
	if !role.Allows(c.Method()) && s.table.has(c.Method(), c.Path()) {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="webhookd", error="insufficient_scope"`)
		return apiError(fiber.StatusForbidden, "forbidden", "this token has the read role: it may only make GET and HEAD requests")
	}
	// Profiles can hold request data from memory: admin tokens only.
	if role != RoleAdmin && strings.HasPrefix(strings.ToLower(c.Path()), "/debug/pprof") {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="webhookd", error="insufficient_scope"`)
		return apiError(fiber.StatusForbidden, "forbidden", "profiles are for admin tokens only")
	}
	c.Locals(roleKey{}, role)
	return c.Next()
}

// roleKey holds the request's credential's Role in the Fiber context.
type roleKey struct{}

// whoami answers the credential's role: the web UI signs in with it, and
// hides what a read token may not do.
func (s *Server) whoami(c *fiber.Ctx) error {
	role, _ := c.Locals(roleKey{}).(Role)
	return ok(c, fiber.StatusOK, fiber.Map{"role": role})
}

// isProbe reports whether path is /healthz or /readyz, which need no token.
func isProbe(path string) bool {
	p := strings.TrimSuffix(strings.ToLower(path), "/")
	return p == "/healthz" || p == "/readyz"
}

// tokenEntry is one line of the tokens file.
type tokenEntry struct {
	digest [sha256.Size]byte
	role   Role
}

// tokenFile is the tokens file's last good content, checked for changes at
// most every checkEvery by the request that finds it due. Checking on the
// request path needs no goroutine to start or stop, and a request is never
// answered from a set older than checkEvery once the file has changed.
type tokenFile struct {
	path string
	log  *slog.Logger
	now  func() time.Time

	set atomic.Pointer[[]tokenEntry]

	// mu is held by the one request that checks the file; the others use
	// set as it is meanwhile.
	mu       sync.Mutex
	checked  time.Time
	stat     os.FileInfo // of the content in set
	loadedAt time.Time
	sum      [sha256.Size]byte // of the content in set
	failing  string            // the error last logged; "" while the file loads
}

func (f *tokenFile) current() []tokenEntry {
	if f.mu.TryLock() {
		now := f.now()
		if now.Sub(f.checked) >= checkEvery || now.Before(f.checked) {
			f.checked = now
			f.refresh()
		}
		f.mu.Unlock()
	}
	return *f.set.Load()
}

// refresh reads the file again if its identity, mtime or size changed (or
// it changed too recently to trust them), keeping the last good set when it
// cannot be read or parsed. Called with mu held.
func (f *tokenFile) refresh() {
	fi, err := os.Stat(f.path)
	if err == nil && os.SameFile(fi, f.stat) && fi.ModTime().Equal(f.stat.ModTime()) && fi.Size() == f.stat.Size() &&
		f.loadedAt.Sub(fi.ModTime()) >= racyWindow {
		return
	}
	if err == nil {
		err = f.load()
	}
	if err != nil {
		// Fail closed on the last good set, and say so once per distinct
		// error (it repeats every second until fixed). The error names the
		// path and a line number, never a token.
		if msg := err.Error(); msg != f.failing {
			f.failing = msg
			f.log.Error("admin tokens file unreadable; keeping the tokens last loaded from it", "path", f.path, "err", err)
		}
		return
	}
	if f.failing != "" {
		f.failing = ""
		f.log.Info("admin tokens file readable again", "path", f.path)
	}
}

// load reads and parses the file, and makes it the current set.
func (f *tokenFile) load() error {
	fh, err := os.Open(f.path)
	if err != nil {
		return err
	}
	defer fh.Close()
	// The stat of the open file describes the content read (the path may be
	// a symlink swapped meanwhile, as Kubernetes updates mounted Secrets).
	fi, err := fh.Stat()
	if err != nil {
		return err
	}
	const limit = 1 << 20
	data, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return err
	}
	if len(data) > limit {
		return fmt.Errorf("%s: larger than 1 MiB", f.path)
	}
	entries, err := parseTokens(data)
	if err != nil {
		return fmt.Errorf("%s: %w", f.path, err)
	}
	sum := sha256.Sum256(data)
	changed := f.stat == nil || sum != f.sum
	f.set.Store(&entries)
	f.stat, f.loadedAt, f.sum = fi, f.now(), sum
	if changed {
		read := 0
		for _, e := range entries {
			if e.role == RoleRead {
				read++
			}
		}
		f.log.Info("admin tokens loaded", "path", f.path, "tokens", len(entries), "read_only", read)
	}
	return nil
}

// parseTokens parses the tokens file: per line a token, then optionally
// whitespace and a role; blank lines and comments (from a field starting
// with #) are ignored. Errors name lines, never their content.
func parseTokens(data []byte) ([]tokenEntry, error) {
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	entries := []tokenEntry{}
	seen := map[[sha256.Size]byte]int{}
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		fields := strings.Fields(line)
		for j, fl := range fields {
			if strings.HasPrefix(fl, "#") {
				fields = fields[:j]
				break
			}
		}
		if len(fields) == 0 {
			continue
		}
		if len(fields) > 2 {
			return nil, fmt.Errorf("line %d: want a token, then optionally a role (admin or read)", n)
		}
		if len(fields[0]) < minTokenLen {
			return nil, fmt.Errorf("line %d: a token must be at least %d characters", n, minTokenLen)
		}
		e := tokenEntry{digest: sha256.Sum256([]byte(fields[0])), role: RoleAdmin}
		if len(fields) == 2 {
			r, ok := parseRole(fields[1])
			if !ok {
				return nil, fmt.Errorf("line %d: the role must be admin or read", n)
			}
			e.role = r
		}
		if prev, dup := seen[e.digest]; dup {
			return nil, fmt.Errorf("line %d repeats the token of line %d", n, prev)
		}
		seen[e.digest] = n
		entries = append(entries, e)
	}
	return entries, nil
}

// loadPublicKey reads a PEM file holding exactly one RSA or EC P-256 public
// key, or one certificate (whose key is used; its validity dates are not
// checked, it is only a container here). One block only: a certificate
// chain would otherwise make its CA's key a valid JWT signer.
func loadPublicKey(path string) (alg string, key any, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", nil, err
	}
	var blocks []*pem.Block
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if len(blocks) != 1 {
		return "", nil, fmt.Errorf("%s: want exactly one PEM block (a public key or a certificate), found %d", path, len(blocks))
	}
	var pub any
	switch b := blocks[0]; b.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(b.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(b.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(b.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		return "", nil, fmt.Errorf("%s: a %q PEM block is not a public key or certificate", path, b.Type)
	}
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", nil, fmt.Errorf("%s: an RSA key must have at least 2048 bits", path)
		}
		return jwt.SigningMethodRS256.Alg(), k, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", nil, fmt.Errorf("%s: an EC key must be on P-256 (ES256)", path)
		}
		return jwt.SigningMethodES256.Alg(), k, nil
	default:
		return "", nil, fmt.Errorf("%s: a %T is neither an RSA nor an EC public key", path, pub)
	}
}
