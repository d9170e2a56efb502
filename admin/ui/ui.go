// Package ui is the admin web UI: plain ES modules, CSS and one HTML page,
// embedded in the binary and served at /ui/ by the admin API's Fiber app.
//
// The assets need no credential (the page must load to show its sign-in
// form); every piece of data the UI shows comes from the authenticated JSON
// API, called with the token the operator signed in with as a bearer header.
// Every answer carries a strict Content-Security-Policy: scripts, styles,
// images and API calls from this origin only, no inline script or style.
package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"path"
	"strings"

	"github.com/gofiber/fiber/v2"
)

//go:embed static
var static embed.FS

// Prefix is where the UI is served.
const Prefix = "/ui"

// CSP is the Content-Security-Policy of every /ui answer.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// asset is one embedded file, with what its answers need.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".json": "application/json",
}

// assets maps a path under /ui/ ("js/app.js") to its file.
var assets = load()

func load() map[string]*asset {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err)
	}
	out := map[string]*asset{}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		ct := contentTypes[path.Ext(p)]
		if ct == "" {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(body)
		out[p] = &asset{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic(err)
	}
	return out
}

// Handler serves GET and HEAD under /ui (and redirects / to /ui/); it
// passes every other request on, to the API's routes and their credential
// check. Register it before the API's authentication.
//
// A path naming an embedded file gets the file; any other path without an
// extension gets index.html, so that the UI's own routes (/ui/pipelines/p1)
// load the app, which routes on the client; an unknown file is a 404.
// Answers are revalidated (Cache-Control: no-cache) against their ETag.
func Handler(c *fiber.Ctx) error {
	p := c.Path()
	lower := strings.ToLower(p)
	if p != "/" && lower != Prefix && !strings.HasPrefix(lower, Prefix+"/") {
		return c.Next()
	}
	// Every answer under /ui carries the headers, the API's error answers
	// to other methods (401, 405) too.
	setSecurityHeaders(c)
	if c.Method() != fiber.MethodGet && c.Method() != fiber.MethodHead {
		return c.Next()
	}
	if p == "/" {
		return c.Redirect(Prefix+"/", fiber.StatusFound)
	}
	if lower == Prefix {
		return c.Redirect(Prefix+"/", fiber.StatusMovedPermanently)
	}
	rel := strings.TrimPrefix(p[len(Prefix):], "/")
	a, found := assets[rel]
	if !found || rel == "" {
		if rel != "" && path.Ext(rel) != "" {
			c.Set(fiber.HeaderCacheControl, "no-store")
			return c.Status(fiber.StatusNotFound).SendString("not found\n")
		}
		a = assets["index.html"]
	}
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set(fiber.HeaderETag, a.etag)
	if match := c.Get(fiber.HeaderIfNoneMatch); match != "" && etagMatches(match, a.etag) {
		return c.SendStatus(fiber.StatusNotModified)
	}
	c.Set(fiber.HeaderContentType, a.contentType)
	return c.Send(a.body)
}

// setSecurityHeaders sets the headers every /ui answer carries.
func setSecurityHeaders(c *fiber.Ctx) {
	c.Set(fiber.HeaderContentSecurityPolicy, CSP)
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
	c.Set(fiber.HeaderXFrameOptions, "DENY")
}

// etagMatches reports whether an If-None-Match list names etag (weak
// comparison, as RFC 9110 asks for If-None-Match).
func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}
