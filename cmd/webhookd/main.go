// Command webhookd delivers webhooks for the AffTok tracking platform.
//
//	webhookd dev     zero-setup: in-process Kafka and ClickHouse, all roles
//	webhookd serve   production: brokers and a ClickHouse server from WEBHOOKD_* settings
//	webhookd config  print every setting with its defaults (Markdown)
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/afftok/webhookd/app"
	"github.com/afftok/webhookd/config"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "webhookd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: webhookd dev|serve|config")
	}
	var mode config.Mode
	switch args[0] {
	case "dev":
		mode = config.ModeDev
	case "serve":
		mode = config.ModeServe
	case "config":
		fmt.Println("| Variable | serve default | dev default | Meaning |\n|---|---|---|---|")
		for _, d := range config.Docs() {
			fmt.Printf("| `%s` | `%s` | `%s` | %s |\n", d.Env, d.Default, d.DevDefault, d.Help)
		}
		return nil
	default:
		return fmt.Errorf("unknown command %q: usage: webhookd dev|serve|config", args[0])
	}
	cfg, err := config.Load(mode, os.Getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	log := newLogger(cfg)
	slog.SetDefault(log)
	// Deliveries allocate briskly and keep little: collecting at twice the
	// live heap instead of the default's equal costs a little memory and
	// saves much CPU (make bench). GOGC, when set, wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	// A soft ceiling on the Go heap keeps that trade within bounds: near it
	// the collector works harder rather than growing. GOMEMLIMIT wins.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(256 << 20)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	go func() {
		<-ctx.Done()
		stop() // a second signal stops the process at once
		log.Info("shutting down", "grace", cfg.ShutdownGrace)
		// The delivery consumers stop within the grace period by
		// construction, then the analytics sink's last batch (at most
		// another grace period), the endpoints (2 s) and the clients' flush
		// (5 s); this is the backstop should anything ignore its
		// cancellation.
		time.Sleep(2*cfg.ShutdownGrace + 10*time.Second)
		log.Error("shutdown took longer than WEBHOOKD_SHUTDOWN_GRACE; exiting without waiting further")
		os.Exit(1)
	}()
	log.Info("webhookd running", "mode", mode, "roles", cfg.Roles, "admin", cfg.AdminAddr)
	return a.Run(ctx)
}

func newLogger(cfg config.Config) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}
