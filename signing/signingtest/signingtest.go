// Package signingtest holds the spec's Go verification snippet, unmodified,
// for tests that check what webhookd sends.
package signingtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// VerifyHMAC is the guide's Go snippet ("verifyHMAC"), unmodified but for
// the exported name.
func VerifyHMAC(body []byte, signature, secret string) bool {
	parts := strings.SplitN(signature, "=", 2)
	if len(parts) != 2 {
		return false
	}

	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	expected := hex.EncodeToString(mac.Sum(nil))

	return hmac.Equal([]byte(parts[1]), []byte(expected))
}
