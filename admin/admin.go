// Package admin is the Fiber admin API of the spec (/api/admin/webhooks/…):
// pipelines, execution logs, health and metrics. Every route but the health
// probes requires the bearer token, compared in constant time.
package admin

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"

	"github.com/afftok/webhookd/admin/ui"
	"github.com/afftok/webhookd/analytics"
	"github.com/afftok/webhookd/opevents"
	"github.com/afftok/webhookd/pipeline"
)

type contextT = context.Context

//go:embed openapi.yaml
var openAPI []byte

// Registry is what the API needs of the pipeline registry.
type Registry interface {
	Get(id string) (*pipeline.Compiled, bool)
	List() []*pipeline.Compiled
	// Put writes p as the successor of revision base (0: create) and
	// Delete removes revision base; both fail with registry.ErrConflict when
	// base is no longer current.
	Put(ctx context.Context, p *pipeline.Pipeline, base int64) error
	Delete(ctx context.Context, id string, base int64) error
	// Sync applies what any replica wrote before the call.
	Sync(ctx context.Context) error
}

// Logs is what the API needs of the analytics store.
type Logs interface {
	RecentExecutions(ctx context.Context, f analytics.ExecutionFilter) ([]analytics.ExecutionLog, int64, error)
	Execution(ctx context.Context, id string) (*analytics.ExecutionLog, []analytics.AttemptLog, error)
	PipelineStats(ctx context.Context, ids []string, r analytics.Range) (map[string]*analytics.PipelineStats, error)
	// PipelineDetailStats is PipelineStats of one pipeline and its
	// StepStats in one query.
	PipelineDetailStats(ctx context.Context, pipelineID string, r analytics.Range) (*analytics.PipelineStats, map[string]*analytics.StepStats, error)
}

// Check is one readiness condition.
type Check struct {
	Name  string
	Ready func() bool
	// Reason, when set, says why the check is not ready (no secrets):
	// /readyz shows it under reasons.
	Reason func() string
}

// readiness evaluates checks: whether all are ready, each one's state, and
// the reasons of those that are not and say why.
func readiness(checks []Check) (ok bool, states map[string]bool, reasons map[string]string) {
	ok, states = true, map[string]bool{}
	for _, ch := range checks {
		r := ch.Ready()
		states[ch.Name] = r
		ok = ok && r
		if !r && ch.Reason != nil {
			if why := ch.Reason(); why != "" {
				if reasons == nil {
					reasons = map[string]string{}
				}
				reasons[ch.Name] = why
			}
		}
	}
	return ok, states, reasons
}

// readinessBody is /readyz's answer (schema Readiness).
type readinessBody struct {
	Status  string            `json:"status"`
	Checks  map[string]bool   `json:"checks"`
	Reasons map[string]string `json:"reasons,omitempty"`
}

func readinessOf(checks []Check) (int, readinessBody) {
	ok, states, reasons := readiness(checks)
	if ok {
		return 200, readinessBody{Status: "ready", Checks: states}
	}
	status := "starting"
	if _, stopping := reasons["shutdown"]; stopping {
		status = "stopping"
	} else if len(reasons) > 0 {
		status = "unavailable" // a check says what is wrong: waiting will not fix it
	}
	return 503, readinessBody{Status: status, Checks: states, Reasons: reasons}
}

// Options configure the API.
type Options struct {
	Addr  string
	Token string
	// JWTSecret, when set, makes HS256 JWTs with exp valid admin tokens too.
	JWTSecret   []byte
	JWTAudience string
	Registry    Registry
	Logs        Logs
	Env         pipeline.EnvPolicy
	Limits      pipeline.RetryLimits
	// Targets refuses, when a pipeline is saved or a step tested, URLs
	// whose host the outbound guard would always block (IP literals,
	// localhost); nil leaves every host to the guard at call time.
	Targets  pipeline.TargetPolicy
	DLQ      DLQ
	Redriver Redriver
	// Jobs holds replays and bulk redrives (nil: 503 on their routes).
	Jobs Jobs
	// ReplayOutcomes counts a replay's finished deliveries (nil: not shown).
	ReplayOutcomes ReplayOutcomes
	Tester         Tester
	Stats          StatsSource
	Queues         QueueDepths
	Checks         []Check
	// Grace bounds the API's shutdown (requests in flight may finish).
	Grace time.Duration
	Log   *slog.Logger
	Now   func() time.Time
	// Auth checks credentials (tokens file, JWT keys, roles); when nil, one
	// is built from Token, JWTSecret and JWTAudience.
	Auth *Auth
	// OperatorEvents lists the operator-events topic; Emitter produces to
	// it (a re-enable's event). Either may be nil.
	OperatorEvents OperatorEvents
	Emitter        EventEmitter
}

// OperatorEvents is what the API needs of the operator events' log.
type OperatorEvents interface {
	List(ctx context.Context, f opevents.Filter) ([]opevents.Event, int, error)
}

// EventEmitter produces operator events.
type EventEmitter interface {
	Emit(ctx context.Context, ev opevents.Event) error
}

// Server is the admin API worker.
type Server struct {
	o     Options
	app   *fiber.App
	ln    net.Listener
	ready chan struct{}
	// table knows every route, for 405 + Allow.
	table *routeTable
	// pipeLocks serialise this replica's writes to each pipeline.
	pipeLocks keyedLocks
	// baseCtx outlives requests (test calls); cancelled at shutdown.
	baseCtx    context.Context
	cancelBase context.CancelFunc
}

// New builds the API; Run serves it.
func New(o Options) *Server {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Grace <= 0 {
		o.Grace = 10 * time.Second
	}
	if o.Auth == nil {
		o.Auth = mustAuth(AuthOptions{Token: o.Token, JWTSecret: o.JWTSecret, JWTAudience: o.JWTAudience, Log: o.Log, Now: o.Now})
	}
	if o.Limits.MaxAttempts == 0 {
		o.Limits = pipeline.DefaultRetryLimits
	}
	s := &Server{o: o, ready: make(chan struct{})}
	s.baseCtx, s.cancelBase = context.WithCancel(context.Background())
	s.app = fiber.New(fiber.Config{
		// Values taken from a request outlive the handler (they go into
		// pipelines and Kafka records): make Fiber copy them.
		Immutable: true,
		// A body over the limit is refused (413) from its declared length,
		// before it is read.
		BodyLimit: 1 << 20,
		// Request line and headers; beyond it the answer is 431.
		ReadBufferSize: 16 << 10,
		// No route takes a form: a multipart body is left to requireJSON
		// (415) instead of being parsed while the request is read, which
		// answered a malformed one 400 before any route.
		DisablePreParseMultipartForm: true,
		ReadTimeout:                  30 * time.Second,
		WriteTimeout:                 60 * time.Second,
		IdleTimeout:                  120 * time.Second,
		DisableStartupMessage:        true,
		ErrorHandler:                 s.errorHandler,
	})
	s.app.Use(recover.New())
	s.routes()
	s.wrapUnknownMethods()
	return s
}

// wrapUnknownMethods answers methods Fiber does not know (it would send a
// bare "Invalid http method") in the error model: 401 without a valid
// credential, else 405 with what the path allows.
func (s *Server) wrapUnknownMethods() {
	srv := s.app.Server()
	inner := srv.Handler
	srv.Handler = func(ctx *fasthttp.RequestCtx) {
		if slices.Contains(s.app.Config().RequestMethods, string(ctx.Method())) {
			inner(ctx)
			return
		}
		e := apiError(fiber.StatusUnauthorized, "unauthorized", "a valid bearer token is required (Authorization: Bearer <token>)")
		if _, ok := s.o.Auth.Authenticate(string(ctx.Request.Header.Peek(fiber.HeaderAuthorization))); ok || isProbe(string(ctx.Path())) {
			allow := strings.Join(s.table.allowed(string(ctx.Path())), ", ")
			e = apiError(fiber.StatusMethodNotAllowed, "method_not_allowed", "unknown method "+strconv.Quote(string(ctx.Method())))
			if allow != "" {
				ctx.Response.Header.Set(fiber.HeaderAllow, allow)
			} else {
				e = apiError(fiber.StatusNotFound, "not_found", "no route "+string(ctx.Path()))
			}
		} else {
			ctx.Response.Header.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="webhookd"`)
		}
		e.Details = []pipeline.FieldError{}
		body, _ := json.Marshal(fiber.Map{"success": false, "error": e})
		ctx.SetStatusCode(e.Status)
		ctx.SetContentType(fiber.MIMEApplicationJSON)
		ctx.SetBody(body)
	}
}

func (s *Server) routes() {
	a := s.app
	a.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	a.Get("/readyz", s.readyz)
	// The web UI's static files need no credential (the page shows the
	// sign-in form); the data it shows comes from the routes below.
	a.Use(ui.Handler)
	a.Use(s.auth)
	a.Use(s.requireJSON)
	a.Get("/metrics", adaptor.HTTPHandler(promhttp.Handler()))
	// Go's profiler, behind the token like everything else: operators
	// profile a live replica with `go tool pprof`.
	a.Get("/debug/pprof/*", adaptor.HTTPHandlerFunc(pprofHandler))
	a.Get("/api/admin/webhooks/openapi.yaml", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, "application/yaml")
		return c.Send(openAPI)
	})
	w := a.Group("/api/admin/webhooks")
	w.Post("/pipelines", s.createPipeline)
	w.Get("/pipelines", s.listPipelines)
	w.Get("/pipelines/:id", s.getPipeline)
	w.Put("/pipelines/:id", s.updatePipeline)
	w.Delete("/pipelines/:id", s.deletePipeline)
	w.Get("/logs/recent", s.recentLogs)
	w.Get("/logs/failures", s.failureLogs)
	w.Get("/logs/executions/:id", s.getExecution)
	w.Get("/stats", s.stats)
	w.Get("/stats/timeseries", s.timeSeries)
	w.Post("/test/pipeline/:id", s.testPipeline)
	w.Post("/test/step", s.testStep)
	w.Get("/operator-events", s.listOperatorEvents)
	w.Get("/whoami", s.whoami)
	// The API reference's /logs/dlq… paths, and the guide's /dlq… paths.
	for _, prefix := range []string{"/logs/dlq", "/dlq"} {
		w.Get(prefix, s.listDLQ)
		w.Post(prefix+"/retry", s.bulkRetryDLQ)
		w.Post(prefix+"/:id/retry", s.retryDLQ)
		w.Delete(prefix+"/:id", s.deleteDLQ)
		w.Get(prefix+"/redrive/:id", s.getRedrive)
		w.Delete(prefix+"/redrive/:id", s.cancelRedrive)
	}
	w.Post("/replay", s.replay)
	w.Get("/replay/:id", s.getReplay)
	w.Delete("/replay/:id", s.cancelReplay)
	a.Use(s.noRoute)
	s.table = newRouteTable(a.GetRoutes(true))
}

// pprofHandler serves net/http/pprof's profiles under /debug/pprof/.
func pprofHandler(w http.ResponseWriter, r *http.Request) {
	switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
	case "profile":
		pprof.Profile(w, r)
	case "trace":
		pprof.Trace(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "cmdline":
		pprof.Cmdline(w, r)
	default:
		pprof.Index(w, r)
	}
}

// Name implements the worker interface.
func (s *Server) Name() string { return "admin" }

// Addr is the bound address once Run has started listening.
func (s *Server) Addr() string {
	<-s.ready
	return s.ln.Addr().String()
}

// Run serves until ctx ends, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.o.Addr)
	if err != nil {
		return fmt.Errorf("admin API: listen on %s: %w", s.o.Addr, err)
	}
	s.ln = ln
	close(s.ready)
	s.o.Log.Info("admin API listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- s.app.Listener(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin API: %w", err)
	case <-ctx.Done():
		s.cancelBase() // ends test calls and bulk redrives in flight
		// The supervisor stops the API after the consumers drained (it
		// answered /readyz 503 meanwhile); what is left is short requests,
		// and test calls, which cancelBase just ended.
		if err := s.app.ShutdownWithTimeout(min(s.o.Grace*3/4, 2*time.Second)); err != nil {
			return fmt.Errorf("admin API shutdown: %w", err)
		}
		return nil
	}
}

// callCtx is a request's context, also ended when the server shuts down:
// for calls that can take long (test calls wait on receivers).
func (s *Server) callCtx(c *fiber.Ctx) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(c.UserContext())
	stop := context.AfterFunc(s.baseCtx, cancel)
	return ctx, func() { stop(); cancel() }
}

// Test exposes the app for in-process tests.
func (s *Server) Test() *fiber.App { return s.app }

func (s *Server) readyz(c *fiber.Ctx) error {
	code, body := readinessOf(s.o.Checks)
	return c.Status(code).JSON(body)
}

// Error is the spec's error envelope body: {"success":false,"error":{…}}.
// Code is stable per kind of error (see errorCodes); Details lists every bad
// field of a 400, and is [] otherwise.
type Error struct {
	Status  int                   `json:"-"`
	Code    string                `json:"code"`
	Message string                `json:"message"`
	Details []pipeline.FieldError `json:"details"`
}

func (e *Error) Error() string { return e.Message }

func apiError(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

// errorCodes are the stable codes of errors raised outside the handlers (by
// Fiber or the HTTP server), by status. Handlers use the same codes.
var errorCodes = map[int]string{
	fiber.StatusBadRequest:                  "bad_request",
	fiber.StatusUnauthorized:                "unauthorized",
	fiber.StatusForbidden:                   "forbidden",
	fiber.StatusNotFound:                    "not_found",
	fiber.StatusMethodNotAllowed:            "method_not_allowed",
	fiber.StatusRequestTimeout:              "request_timeout",
	fiber.StatusConflict:                    "conflict",
	fiber.StatusPreconditionFailed:          "precondition_failed",
	fiber.StatusRequestEntityTooLarge:       "payload_too_large",
	fiber.StatusUnsupportedMediaType:        "unsupported_media_type",
	fiber.StatusUnprocessableEntity:         "unprocessable",
	fiber.StatusRequestHeaderFieldsTooLarge: "header_too_large",
	fiber.StatusServiceUnavailable:          "unavailable",
}

func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	var ae *Error
	var ve *pipeline.ValidationError
	var fe *fiber.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		ae = &Error{Status: fiber.StatusServiceUnavailable, Code: "unavailable", Message: "a dependency did not answer in time"}
	case errors.As(err, &ae):
	case errors.As(err, &ve):
		ae = &Error{Status: fiber.StatusBadRequest, Code: "validation_failed", Message: "the request has invalid fields", Details: ve.Fields}
	case errors.As(err, &fe) && fe.Code >= 400 && fe.Code < 500:
		code := errorCodes[fe.Code]
		if code == "" {
			code = "bad_request"
		}
		ae = &Error{Status: fe.Code, Code: code, Message: fe.Message}
		switch fe.Code {
		case fiber.StatusRequestHeaderFieldsTooLarge:
			ae.Message = "the request line and headers exceed 16 KiB"
		case fiber.StatusRequestEntityTooLarge:
			ae.Message = "request bodies are limited to 1 MiB"
		}
	default:
		s.o.Log.Error("admin API error", "method", c.Method(), "path", c.Path(), "err", err)
		ae = &Error{Status: fiber.StatusInternalServerError, Code: "internal", Message: "internal error"}
	}
	if ae.Details == nil {
		ae.Details = []pipeline.FieldError{}
	}
	return c.Status(ae.Status).JSON(fiber.Map{"success": false, "error": ae})
}

// noRoute answers what no route took: 405 with Allow when the path exists
// under other methods (OPTIONS: 204 with Allow), else 404.
func (s *Server) noRoute(c *fiber.Ctx) error {
	allow := s.table.allowed(c.Path())
	if len(allow) == 0 {
		return apiError(fiber.StatusNotFound, "not_found", "no route "+c.Method()+" "+c.Path())
	}
	c.Set(fiber.HeaderAllow, strings.Join(allow, ", "))
	if c.Method() == fiber.MethodOptions {
		return c.SendStatus(fiber.StatusNoContent)
	}
	return apiError(fiber.StatusMethodNotAllowed, "method_not_allowed",
		c.Method()+" is not allowed on "+c.Path()+"; allowed: "+strings.Join(allow, ", "))
}

// requireJSON answers 415 to a request body that says it is not JSON. A
// body without Content-Type is read as JSON; requests no route takes are
// left to noRoute (404/405 come first).
func (s *Server) requireJSON(c *fiber.Ctx) error {
	if len(c.Request().Body()) == 0 || !s.table.has(c.Method(), c.Path()) {
		return c.Next()
	}
	ct := c.Get(fiber.HeaderContentType)
	if ct == "" {
		return c.Next()
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err == nil && (mt == fiber.MIMEApplicationJSON || strings.HasSuffix(mt, "+json")) &&
		(params["charset"] == "" || strings.EqualFold(params["charset"], "utf-8")) {
		return c.Next()
	}
	return apiError(fiber.StatusUnsupportedMediaType, "unsupported_media_type",
		"request bodies are JSON: send Content-Type: application/json (got "+strconv.Quote(ct)+")")
}

func ok(c *fiber.Ctx, status int, data any) error {
	return c.Status(status).JSON(fiber.Map{"success": true, "data": data})
}

// OpenAPI is the API's OpenAPI document, as served at
// /api/admin/webhooks/openapi.yaml.
func OpenAPI() []byte { return openAPI }
