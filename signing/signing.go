// Package signing produces the authentication headers of a webhook request in
// the spec's formats — HMAC-SHA256 over the exact body bytes, or an HS256 JWT —
// and in the Standard Webhooks format (https://www.standardwebhooks.com/).
// During a signing-key rotation it also signs with the previous key, so a
// receiver holding either key can verify.
package signing

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Signature modes of the spec.
const (
	ModeNone = "none"
	ModeHMAC = "hmac"
	ModeJWT  = "jwt"
	// ModeStandard is Standard Webhooks: webhook-id, webhook-timestamp and
	// webhook-signature "v1,<base64 HMAC-SHA256 of id.timestamp.body>".
	ModeStandard = "standard"
)

// Header names of the spec's "Headers Reference".
const (
	HeaderSignature  = "X-Afftok-Signature"
	HeaderTimestamp  = "X-Afftok-Timestamp"
	HeaderDeliveryID = "X-Afftok-Delivery-ID"
	HeaderRetryCount = "X-Afftok-Retry-Count"
	HeaderFailover   = "X-Afftok-Failover"
	// HeaderSignaturePrevious carries, during a key rotation's grace, what the
	// previous key signs: "sha256=<hex>" in hmac mode, the JWT in jwt mode.
	HeaderSignaturePrevious = "X-Afftok-Signature-Previous"
	HeaderReplay            = "X-Afftok-Replay" // the replay job's id, on replayed deliveries
)

// Standard Webhooks headers (lowercase, as the standard writes them; HTTP
// header names are case-insensitive).
const (
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
)

// SecretPrefix starts a Standard Webhooks secret: "whsec_<base64 key>".
const SecretPrefix = "whsec_"

// Bounds of a Standard Webhooks key (the standard: between 24 and 64 bytes).
const (
	MinSecretBytes = 24
	MaxSecretBytes = 64
)

// JWTLifetime is exp - iat of the JWT (spec: iat 1701432000, exp 1701432300).
const JWTLifetime = 300 * time.Second

// Request is what a signature covers.
type Request struct {
	Body        []byte
	DeliveryID  string
	PipelineID  string
	TriggerType string
	TriggerID   string
	RetryCount  int
	Now         time.Time
	// PreviousKey is the key a rotation replaced, while its grace lasts
	// ("" otherwise): the request is signed with it too.
	PreviousKey string
}

// Claims is the JWT payload of the spec.
type Claims struct {
	DeliveryID  string `json:"delivery_id"`
	PipelineID  string `json:"pipeline_id"`
	TriggerType string `json:"trigger_type"`
	TriggerID   string `json:"trigger_id"`
	jwt.RegisteredClaims
}

// HMAC returns "sha256=<lowercase hex HMAC-SHA256(body)>".
func HMAC(body []byte, key string) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// KeyID is a signing key's public, stable identifier: the first 16 hex
// digits of SHA-256 of the key as configured. A receiver computes it from
// the keys it holds to pick the one a JWT's "kid" names. It reveals nothing
// a signature does not: both let a key be checked against guesses, and only
// a guessable key is at risk from that.
func KeyID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:8])
}

// JWT returns the HS256 token for a request, its header's "kid" naming the
// key (KeyID).
func JWT(r Request, key string) (string, error) {
	now := r.Now.Truncate(time.Second)
	claims := Claims{
		DeliveryID: r.DeliveryID, PipelineID: r.PipelineID,
		TriggerType: r.TriggerType, TriggerID: r.TriggerID,
		RegisteredClaims: jwt.RegisteredClaims{
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(JWTLifetime)),
		},
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	tok.Header["kid"] = KeyID(key)
	s, err := tok.SignedString([]byte(key))
	if err != nil {
		return "", fmt.Errorf("sign jwt: %w", err)
	}
	return s, nil
}

// ParseSecret returns the key bytes of a Standard Webhooks secret,
// "whsec_<base64>" (standard base64, padded), between MinSecretBytes and
// MaxSecretBytes long. Its errors never quote the secret.
func ParseSecret(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, errors.New(`must have the form whsec_<base64>, e.g. "whsec_" followed by the base64 of 32 random bytes (omit signing_key and one is generated)`)
	}
	key, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return nil, errors.New("the part after whsec_ is not valid base64 (standard alphabet, with padding)")
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return nil, fmt.Errorf("the key after whsec_ must be %d to %d bytes, not %d", MinSecretBytes, MaxSecretBytes, len(key))
	}
	return key, nil
}

// NewSecret returns a fresh Standard Webhooks secret: whsec_ and the
// base64 of 32 random bytes.
func NewSecret() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b[:])
}

// Standard returns "v1,<base64 HMAC-SHA256 of id.timestamp.body>" keyed by
// the secret's decoded bytes.
func Standard(r Request, secret string) (string, error) {
	key, err := ParseSecret(secret)
	if err != nil {
		return "", fmt.Errorf("signing key %w", err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(r.DeliveryID))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, r.Now.Unix(), 10))
	mac.Write([]byte{'.'})
	mac.Write(r.Body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// Apply sets the delivery headers every request carries (timestamp, delivery
// id, retry count, JSON content type) and the signature of the given mode. It
// overwrites any same-named header a template set, so a template can never
// forge a signature or a delivery id.
//
// With r.PreviousKey (a rotation's grace) the request is signed with both
// keys: in standard mode webhook-signature lists both signatures, new key
// first; in hmac mode X-Afftok-Signature stays the new key's alone and
// X-Afftok-Signature-Previous has the old key's; in jwt mode Authorization
// has the new key's token and X-Afftok-Signature-Previous the old key's,
// each naming its key in "kid".
func Apply(h http.Header, mode, key string, r Request) error {
	h.Set("Content-Type", "application/json")
	h.Set(HeaderTimestamp, strconv.FormatInt(r.Now.Unix(), 10))
	h.Set(HeaderDeliveryID, r.DeliveryID)
	h.Set(HeaderRetryCount, strconv.Itoa(r.RetryCount))
	for _, k := range []string{HeaderSignature, HeaderSignaturePrevious, HeaderWebhookID, HeaderWebhookTimestamp, HeaderWebhookSignature} {
		h.Del(k)
	}
	prev := r.PreviousKey
	if prev == key {
		prev = ""
	}
	switch mode {
	case ModeHMAC:
		h.Set(HeaderSignature, HMAC(r.Body, key))
		if prev != "" {
			h.Set(HeaderSignaturePrevious, HMAC(r.Body, prev))
		}
	case ModeJWT:
		tok, err := JWT(r, key)
		if err != nil {
			return err
		}
		h.Set("Authorization", "Bearer "+tok)
		if prev != "" {
			old, err := JWT(r, prev)
			if err != nil {
				return err
			}
			h.Set(HeaderSignaturePrevious, old)
		}
	case ModeStandard:
		sig, err := Standard(r, key)
		if err != nil {
			return err
		}
		if prev != "" {
			// A previous key that no longer parses (it was stored before
			// validation got stricter) must not stop deliveries.
			if old, err := Standard(r, prev); err == nil {
				sig += " " + old
			}
		}
		h.Set(HeaderWebhookID, r.DeliveryID)
		h.Set(HeaderWebhookTimestamp, strconv.FormatInt(r.Now.Unix(), 10))
		h.Set(HeaderWebhookSignature, sig)
	case ModeNone, "":
	default:
		return fmt.Errorf("unknown signature mode %q", mode)
	}
	return nil
}
