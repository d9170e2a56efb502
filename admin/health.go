package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Health serves /healthz, /readyz and /metrics for a process that does not
// run the admin API (a dispatcher-, retry- or analytics-only replica), so its
// orchestrator can probe it like any other. /metrics takes the admin API's
// credentials (any role) when any are configured.
type Health struct {
	Addr   string
	Token  string
	Checks []Check
	Log    *slog.Logger
	// Auth is the admin API's credential check; when nil, one is built from Token.
	Auth *Auth
}

// Name implements the worker interface.
func (h *Health) Name() string { return "health" }

func (h *Health) handler() http.Handler {
	auth := h.Auth
	if auth == nil {
		auth = mustAuth(AuthOptions{Token: h.Token, Log: h.Log})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		code, body := readinessOf(h.Checks)
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	})
	metrics := promhttp.Handler()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := auth.Authenticate(r.Header.Get("Authorization")); auth.Configured() && !ok {
			// The admin API's 401, envelope and all (http.Error would send
			// it as text/plain).
			w.Header().Set("WWW-Authenticate", `Bearer realm="webhookd"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"success":false,"error":{"code":"unauthorized","message":"a valid bearer token is required (Authorization: Bearer <token>)","details":[]}}`))
			return
		}
		metrics.ServeHTTP(w, r)
	})
	return mux
}

// Run serves until ctx ends.
func (h *Health) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", h.Addr)
	if err != nil {
		return fmt.Errorf("health: listen on %s: %w", h.Addr, err)
	}
	log := h.Log
	if log == nil {
		log = slog.Default()
	}
	// The bound address (WEBHOOKD_ADMIN_ADDR may use port 0), as the admin
	// API logs its own, so probes and test harnesses can find it.
	log.Info("health endpoints listening", "addr", ln.Addr().String())
	srv := &http.Server{Handler: h.handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
