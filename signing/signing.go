// Package signing produces the authentication headers of a webhook request in
// the spec's formats: HMAC-SHA256 over the exact body bytes, or an HS256 JWT.
package signing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Signature modes of the spec.
const (
	ModeNone = "none"
	ModeHMAC = "hmac"
	ModeJWT  = "jwt"
)

// Header names of the spec's "Headers Reference".
const (
	HeaderSignature  = "X-Afftok-Signature"
	HeaderTimestamp  = "X-Afftok-Timestamp"
	HeaderDeliveryID = "X-Afftok-Delivery-ID"
	HeaderRetryCount = "X-Afftok-Retry-Count"
	HeaderFailover   = "X-Afftok-Failover"
	HeaderReplay     = "X-Afftok-Replay" // the replay job's id, on replayed deliveries
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

// JWT returns the HS256 token for a request.
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
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(key))
	if err != nil {
		return "", fmt.Errorf("sign jwt: %w", err)
	}
	return s, nil
}

// Apply sets the delivery headers every request carries (timestamp, delivery
// id, retry count, JSON content type) and the signature of the given mode. It
// overwrites any same-named header a template set, so a template can never
// forge a signature or a delivery id.
func Apply(h http.Header, mode, key string, r Request) error {
	h.Set("Content-Type", "application/json")
	h.Set(HeaderTimestamp, strconv.FormatInt(r.Now.Unix(), 10))
	h.Set(HeaderDeliveryID, r.DeliveryID)
	h.Set(HeaderRetryCount, strconv.Itoa(r.RetryCount))
	h.Del(HeaderSignature)
	switch mode {
	case ModeHMAC:
		h.Set(HeaderSignature, HMAC(r.Body, key))
	case ModeJWT:
		tok, err := JWT(r, key)
		if err != nil {
			return err
		}
		h.Set("Authorization", "Bearer "+tok)
	case ModeNone, "":
	default:
		return fmt.Errorf("unknown signature mode %q", mode)
	}
	return nil
}
