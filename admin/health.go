package admin

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Health serves /healthz, /readyz and /metrics for a process that does not
// run the admin API (a dispatcher-, retry- or analytics-only replica), so its
// orchestrator can probe it like any other. /metrics needs the admin token
// when one is configured.
type Health struct {
	Addr   string
	Token  string
	Checks []Check
	Log    *slog.Logger
}

// Name implements the worker interface.
func (h *Health) Name() string { return "health" }

// Run serves until ctx ends.
func (h *Health) Run(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		var parts []string
		ready := true
		for _, c := range h.Checks {
			r := c.Ready()
			ready = ready && r
			parts = append(parts, fmt.Sprintf("%q:%t", c.Name, r))
		}
		status := "ready"
		if !ready {
			status = "starting"
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintf(w, `{"status":%q,"checks":{%s}}`, status, strings.Join(parts, ","))
	})
	metrics := promhttp.Handler()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if h.Token != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(h.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="webhookd"`)
			http.Error(w, `{"success":false,"error":{"code":"unauthorized","message":"a valid bearer token is required"}}`, http.StatusUnauthorized)
			return
		}
		metrics.ServeHTTP(w, r)
	})
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
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
