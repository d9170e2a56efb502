// Package apispec checks admin API answers against the API's own OpenAPI
// document with kin-openapi, so tests catch the document drifting from the
// code: every answer a test receives must be one the document describes for
// its route and status.
package apispec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/afftok/webhookd/admin"
)

// Checker validates answers; it is safe for concurrent use.
type Checker struct {
	router routers.Router
	errors *openapi3.Schema
}

// New loads and validates the document.
func New() (*Checker, error) {
	doc, err := openapi3.NewLoader().LoadFromData(admin.OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapi: invalid document: %w", err)
	}
	// Match any host: the document's server is an example address.
	doc.Servers = openapi3.Servers{{URL: "/"}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi router: %w", err)
	}
	ref := doc.Components.Schemas["Error"]
	if ref == nil || ref.Value == nil {
		return nil, errors.New("openapi: no Error schema")
	}
	return &Checker{router: router, errors: ref.Value}, nil
}

// Check validates one answer to req: its status must be documented for the
// route (or the route must be one the API does not have, answered with an
// error), and a JSON body must match the schema for that status.
func (c *Checker) Check(req *http.Request, status int, header http.Header, body []byte) error {
	where := req.Method + " " + req.URL.Path
	// Routes match on the decoded path; a copy without the body (read by
	// the caller already) and without the host.
	r := req.Clone(context.Background())
	r.Body = http.NoBody
	r.URL = &url.URL{Path: fiberPath(req.URL.Path), RawPath: fiberPath(req.URL.RawPath), RawQuery: req.URL.RawQuery}
	r.Host = ""
	// HEAD is GET without a body (RFC 9110 §9.3.2): the document describes
	// GET only, and kin-openapi would find no HEAD operation (and validates
	// nothing of a HEAD answer), so a HEAD answer is checked as GET's status
	// and headers.
	head := req.Method == http.MethodHead
	if head {
		r.Method = http.MethodGet
	}
	route, params, err := c.router.FindRoute(r)
	if err != nil {
		// No such operation in the document: the API must have answered
		// with an error in the envelope (401 before routing, 404, 405, 413,
		// 415, 431 …).
		if status < 400 {
			return fmt.Errorf("%s: %d from an undocumented operation", where, status)
		}
		if head {
			return nil
		}
		return c.checkError(where, status, header, body)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if head || !isJSON(header) {
		in.Options.ExcludeResponseBody = true
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return fmt.Errorf("%s → %d does not match the OpenAPI document: %w\nbody: %.2000s", where, status, err, body)
	}
	return nil
}

// fiberPath is the path as the API routes it (Fiber's defaults: CaseSensitive
// and StrictRouting off): lower case, trailing slashes ignored. Without it a
// 200 from /API/admin/webhooks/stats/ would count as an undocumented operation.
func fiberPath(p string) string {
	p = strings.ToLower(p)
	if t := strings.TrimRight(p, "/"); t != "" {
		return t
	}
	return p
}

func (c *Checker) checkError(where string, status int, header http.Header, body []byte) error {
	if !isJSON(header) {
		return fmt.Errorf("%s → %d: not JSON (%q)", where, status, header.Get("Content-Type"))
	}
	v, err := decode(body)
	if err != nil {
		return fmt.Errorf("%s → %d: %w", where, status, err)
	}
	if err := c.errors.VisitJSON(v, openapi3.MultiErrors()); err != nil {
		return fmt.Errorf("%s → %d: not the Error schema: %w\nbody: %.2000s", where, status, err, body)
	}
	return nil
}

func isJSON(h http.Header) bool {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

func decode(body []byte) (any, error) {
	var v any
	d := openapi3filter.RegisteredBodyDecoder("application/json")
	if d == nil {
		return nil, errors.New("no JSON decoder")
	}
	v, err := d(io.NopCloser(bytes.NewReader(body)), http.Header{}, openapi3.NewSchemaRef("", &openapi3.Schema{}), nil)
	return v, err
}
