package pipeline

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// sealedPrefix marks a signing key sealed with AES-256-GCM.
const sealedPrefix = "enc:v1:"

// Sealer encrypts signing keys for the pipelines topic, so the topic (its
// replicas, its backups, anyone with read ACLs) never holds them in clear.
type Sealer struct{ aead cipher.AEAD }

// NewSealer takes a base64 32-byte key (WEBHOOKD_SECRETS_KEY).
func NewSealer(b64 string) (*Sealer, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil || len(key) != 32 {
		return nil, errors.New("must be 32 bytes, base64-encoded (openssl rand -base64 32)")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// ErrSealed is returned when a sealed key cannot be opened (no key or the wrong one).
var ErrSealed = errors.New("signing key is encrypted with a WEBHOOKD_SECRETS_KEY this replica does not have")

// keys are the signing keys of a step that are sealed at rest.
func keys(s *Step) []*string { return []*string{&s.SigningKey, &s.PreviousSigningKey} }

// SealKeys returns a copy of p whose signing keys (current and previous)
// are sealed (p itself is untouched). A nil Sealer leaves them as they are.
func (s *Sealer) SealKeys(p *Pipeline) (*Pipeline, error) {
	c := *p
	c.Steps = append([]Step(nil), p.Steps...)
	if s == nil {
		return &c, nil
	}
	for i := range c.Steps {
		for _, k := range keys(&c.Steps[i]) {
			if *k == "" || strings.HasPrefix(*k, sealedPrefix) {
				continue
			}
			nonce := make([]byte, s.aead.NonceSize())
			if _, err := rand.Read(nonce); err != nil {
				return nil, fmt.Errorf("seal signing key: %w", err)
			}
			ct := s.aead.Seal(nonce, nonce, []byte(*k), []byte(p.ID))
			*k = sealedPrefix + base64.StdEncoding.EncodeToString(ct)
		}
	}
	return &c, nil
}

// OpenKeys opens sealed signing keys (current and previous) in place.
func (s *Sealer) OpenKeys(p *Pipeline) error {
	for i := range p.Steps {
		for _, k := range keys(&p.Steps[i]) {
			if !strings.HasPrefix(*k, sealedPrefix) {
				continue
			}
			if s == nil {
				return ErrSealed
			}
			ct, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(*k, sealedPrefix))
			if err != nil || len(ct) < s.aead.NonceSize() {
				return ErrSealed
			}
			pt, err := s.aead.Open(nil, ct[:s.aead.NonceSize()], ct[s.aead.NonceSize():], []byte(p.ID))
			if err != nil {
				return ErrSealed
			}
			*k = string(pt)
		}
	}
	return nil
}
