package admin

import (
	"crypto/subtle"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/golang-jwt/jwt/v5"
)

func (s *Server) auth(c *fiber.Ctx) error {
	h := c.Get(fiber.HeaderAuthorization)
	tok, ok := strings.CutPrefix(h, "Bearer ")
	tok = strings.TrimSpace(tok)
	if !ok || !(s.staticToken(tok) || s.jwtToken(tok)) {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="webhookd"`)
		return apiError(fiber.StatusUnauthorized, "unauthorized", "a valid bearer token is required (Authorization: Bearer <token>)")
	}
	return c.Next()
}

func (s *Server) staticToken(tok string) bool {
	return s.o.Token != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.o.Token)) == 1
}

// jwtToken accepts an HS256 JWT signed with the configured secret, with an
// exp claim (and the configured audience, if any): tokens the platform's
// admin panel issues.
func (s *Server) jwtToken(tok string) bool {
	if len(s.o.JWTSecret) == 0 || strings.Count(tok, ".") != 2 {
		return false
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(30 * time.Second)}
	if s.o.JWTAudience != "" {
		opts = append(opts, jwt.WithAudience(s.o.JWTAudience))
	}
	_, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return s.o.JWTSecret, nil }, opts...)
	return err == nil
}
