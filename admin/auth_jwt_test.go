package admin

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const jwtSecret = "jwt-secret-0123456789-0123456789-xx"

// keys are generated once per run: RSA generation is slow under -race.
var (
	rsaKey, otherRSAKey = mustRSA(), mustRSA()
	ecKey, otherECKey   = mustEC(elliptic.P256()), mustEC(elliptic.P256())
)

func mustRSA() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

func mustEC(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func pemFile(t *testing.T, blocks ...*pem.Block) string {
	t.Helper()
	var b []byte
	for _, bl := range blocks {
		b = append(b, pem.EncodeToMemory(bl)...)
	}
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func pkixBlock(t *testing.T, pub any) *pem.Block {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "PUBLIC KEY", Bytes: der}
}

func certBlock(t *testing.T, key *ecdsa.PrivateKey) *pem.Block {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "admin-panel"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "CERTIFICATE", Bytes: der}
}

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// claims are valid admin-panel claims plus extra (a nil value deletes a claim).
func claims(extra jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "ops@afftok", "aud": "webhookd", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

type jwtCase struct {
	name, token string
	// want: 401 refused; "admin" may write; "read" may GET but gets 403 on POST.
	want string
}

func checkJWTCases(t *testing.T, s *Server, cases []jwtCase) {
	t.Helper()
	for _, c := range cases {
		authz := "Bearer " + c.token
		getStatus := call(t, s, "GET", listPath, authz).status
		post := call(t, s, "POST", listPath, authz)
		del := call(t, s, "DELETE", listPath+"/x", authz)
		switch c.want {
		case "401":
			if getStatus != 401 || post.status != 401 {
				t.Errorf("%s: GET %d, POST %d, want 401", c.name, getStatus, post.status)
			}
		case "admin":
			if getStatus != 200 || !passedAuth(post) || !passedAuth(del) {
				t.Errorf("%s: GET %d, POST %d, DELETE %d, want the admin role", c.name, getStatus, post.status, del.status)
			}
		case "read":
			if getStatus != 200 || post.status != 403 || del.status != 403 || !strings.Contains(post.body, `"code":"forbidden"`) {
				t.Errorf("%s: GET %d, POST %d %s, DELETE %d, want the read role", c.name, getStatus, post.status, post.body, del.status)
			}
		default:
			t.Fatalf("bad case %q", c.want)
		}
	}
}

// RS256 with the public key file beside HS256 with the secret: each token
// is verified in its key's algorithm only, carries its role, and keeps
// exp and audience rules.
func TestJWTsWithRSAKeyAndSecret(t *testing.T) {
	pubPEM := pem.EncodeToMemory(pkixBlock(t, &rsaKey.PublicKey))
	keyFile := pemFile(t, pkixBlock(t, &rsaKey.PublicKey))
	s := authServer(t, AuthOptions{JWTSecret: []byte(jwtSecret), JWTPublicKeyFile: keyFile, JWTAudience: "webhookd"})
	past := time.Now().Add(-time.Hour).Unix()
	checkJWTCases(t, s, []jwtCase{
		{"RS256 with role admin", sign(t, jwt.SigningMethodRS256, rsaKey, claims(jwt.MapClaims{"role": "admin"})), "admin"},
		{"RS256 with role read", sign(t, jwt.SigningMethodRS256, rsaKey, claims(jwt.MapClaims{"role": "read"})), "read"},
		{"RS256 without role (admin, as before roles)", sign(t, jwt.SigningMethodRS256, rsaKey, claims(nil)), "admin"},
		{"RS256 with an unknown role", sign(t, jwt.SigningMethodRS256, rsaKey, claims(jwt.MapClaims{"role": "root"})), "401"},
		{"RS256 with role Admin (roles are lowercase)", sign(t, jwt.SigningMethodRS256, rsaKey, claims(jwt.MapClaims{"role": "Admin"})), "401"},
		{"RS256 with an empty role", sign(t, jwt.SigningMethodRS256, rsaKey, claims(jwt.MapClaims{"role": ""})), "401"},
		{"RS256 with a numeric role", sign(t, jwt.SigningMethodRS256, rsaKey, claims(jwt.MapClaims{"role": 1})), "401"},
		{"RS256 with a list of roles", sign(t, jwt.SigningMethodRS256, rsaKey, claims(jwt.MapClaims{"role": []string{"read"}})), "401"},
		{"RS256 signed by another key", sign(t, jwt.SigningMethodRS256, otherRSAKey, claims(nil)), "401"},
		{"RS384 with the configured key", sign(t, jwt.SigningMethodRS384, rsaKey, claims(nil)), "401"},
		{"PS256 with the configured key", sign(t, jwt.SigningMethodPS256, rsaKey, claims(nil)), "401"},
		{"RS256 expired", sign(t, jwt.SigningMethodRS256, rsaKey, claims(jwt.MapClaims{"exp": past})), "401"},
		{"RS256 without exp", sign(t, jwt.SigningMethodRS256, rsaKey, claims(jwt.MapClaims{"exp": nil})), "401"},
		{"RS256 for another audience", sign(t, jwt.SigningMethodRS256, rsaKey, claims(jwt.MapClaims{"aud": "billing"})), "401"},
		{"RS256 without audience", sign(t, jwt.SigningMethodRS256, rsaKey, claims(jwt.MapClaims{"aud": nil})), "401"},
		{"HS256 with the secret", sign(t, jwt.SigningMethodHS256, []byte(jwtSecret), claims(nil)), "admin"},
		{"HS256 with the secret, role read", sign(t, jwt.SigningMethodHS256, []byte(jwtSecret), claims(jwt.MapClaims{"role": "read"})), "read"},
		{"HS256 expired", sign(t, jwt.SigningMethodHS256, []byte(jwtSecret), claims(jwt.MapClaims{"exp": past})), "401"},
		{"HS256 for another audience", sign(t, jwt.SigningMethodHS256, []byte(jwtSecret), claims(jwt.MapClaims{"aud": "billing"})), "401"},
		// Algorithm confusion: the public key is public; used as an HMAC
		// secret it must not verify anything.
		{"HS256 signed with the public key's PEM", sign(t, jwt.SigningMethodHS256, pubPEM, claims(nil)), "401"},
		{"HS256 signed with the public key's DER", sign(t, jwt.SigningMethodHS256, pkixBlock(t, &rsaKey.PublicKey).Bytes, claims(nil)), "401"},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil)), "401"},
		{"ES256 (no EC key configured)", sign(t, jwt.SigningMethodES256, ecKey, claims(nil)), "401"},
	})
}

// ES256 with a certificate as the key file, and no secret: only ES256 is
// accepted, and HMAC with the certificate's bytes is refused.
func TestJWTsWithECCertificate(t *testing.T) {
	cert := certBlock(t, ecKey)
	s := authServer(t, AuthOptions{JWTPublicKeyFile: pemFile(t, cert)})
	checkJWTCases(t, s, []jwtCase{
		{"ES256 with role admin", sign(t, jwt.SigningMethodES256, ecKey, claims(jwt.MapClaims{"role": "admin"})), "admin"},
		{"ES256 with role read", sign(t, jwt.SigningMethodES256, ecKey, claims(jwt.MapClaims{"role": "read"})), "read"},
		{"ES256 without audience (none configured)", sign(t, jwt.SigningMethodES256, ecKey, claims(jwt.MapClaims{"aud": nil})), "admin"},
		{"ES256 expired within the leeway", sign(t, jwt.SigningMethodES256, ecKey, claims(jwt.MapClaims{"exp": time.Now().Add(-10 * time.Second).Unix()})), "admin"},
		{"ES256 expired beyond the leeway", sign(t, jwt.SigningMethodES256, ecKey, claims(jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix()})), "401"},
		{"ES256 signed by another key", sign(t, jwt.SigningMethodES256, otherECKey, claims(nil)), "401"},
		{"HS256 signed with the certificate's PEM", sign(t, jwt.SigningMethodHS256, pem.EncodeToMemory(cert), claims(nil)), "401"},
		{"HS256 signed with the certificate's DER", sign(t, jwt.SigningMethodHS256, cert.Bytes, claims(nil)), "401"},
		{"RS256 (no RSA key configured)", sign(t, jwt.SigningMethodRS256, rsaKey, claims(nil)), "401"},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil)), "401"},
	})
}

// The public key file takes one RSA (≥ 2048 bits) or EC P-256 public key,
// as PKIX, PKCS#1 or a certificate; anything else stops the start.
func TestJWTPublicKeyFileFormats(t *testing.T) {
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		content []*pem.Block
		wantAlg string // "" for an error
	}{
		{"PKIX RSA", []*pem.Block{pkixBlock(t, &rsaKey.PublicKey)}, "RS256"},
		{"PKCS#1 RSA", []*pem.Block{{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)}}, "RS256"},
		{"PKIX EC", []*pem.Block{pkixBlock(t, &ecKey.PublicKey)}, "ES256"},
		{"EC certificate", []*pem.Block{certBlock(t, ecKey)}, "ES256"},
		{"a private key", []*pem.Block{{Type: "EC PRIVATE KEY", Bytes: ecDER}}, ""},
		{"two keys", []*pem.Block{pkixBlock(t, &rsaKey.PublicKey), pkixBlock(t, &ecKey.PublicKey)}, ""},
		{"a certificate chain", []*pem.Block{certBlock(t, ecKey), certBlock(t, otherECKey)}, ""},
		{"P-384", []*pem.Block{pkixBlock(t, &mustEC(elliptic.P384()).PublicKey)}, ""},
		{"RSA 1024", []*pem.Block{pkixBlock(t, &small.PublicKey)}, ""},
		{"not PEM", nil, ""},
		{"garbage in a PUBLIC KEY block", []*pem.Block{{Type: "PUBLIC KEY", Bytes: []byte("nope")}}, ""},
	} {
		alg, _, err := loadPublicKey(pemFile(t, c.content...))
		if alg != c.wantAlg || (err == nil) != (c.wantAlg != "") {
			t.Errorf("%s: alg %q, err %v; want %q", c.name, alg, err, c.wantAlg)
		}
	}
	if _, err := NewAuth(AuthOptions{JWTPublicKeyFile: filepath.Join(t.TempDir(), "missing.pem")}); err == nil {
		t.Error("a missing public key file was accepted")
	}
}
