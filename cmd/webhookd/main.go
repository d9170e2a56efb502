// Command webhookd delivers webhooks for the AffTok tracking platform.
//
//	webhookd dev     zero-setup: in-process Kafka and ClickHouse, all roles
//	webhookd serve   production: brokers and a ClickHouse server from WEBHOOKD_* settings
//	webhookd config  print the effective configuration as YAML, secrets redacted
//	                 (--markdown: every setting with its defaults, as a Markdown table)
//	webhookd topics  the topics webhookd needs against those on the brokers;
//	                 --apply creates the missing ones (never deletes or alters)
//
// Each takes --config FILE (or WEBHOOKD_CONFIG=FILE): a YAML file of
// settings, under the WEBHOOKD_* environment variables.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/afftok/webhookd/app"
	"github.com/afftok/webhookd/config"
	"github.com/afftok/webhookd/memlimit"
)

// memoryBudget is the process's memory budget in bytes and where it came
// from: WEBHOOKD_MEMORY_BUDGET_MB, else 90 % of the lowest cgroup limit
// along the process's cgroup and its parents (memlimit.CgroupLimit); 0:
// none.
func memoryBudget(cfg config.Config) (int64, string) {
	if cfg.MemoryBudgetMB > 0 {
		return int64(cfg.MemoryBudgetMB) << 20, "WEBHOOKD_MEMORY_BUDGET_MB (or its mode default)"
	}
	if n, ok := memlimit.CgroupLimit(); ok {
		return n / 10 * 9, "90 % of the cgroup memory limit"
	}
	return 0, ""
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, errHelpShown) {
			return
		}
		if !errors.Is(err, errUsage) { // flag has said why
			fmt.Fprintln(os.Stderr, "webhookd:", err)
		}
		os.Exit(1)
	}
}

const usage = "usage: webhookd dev|serve|config|topics [--config FILE] (webhookd COMMAND -h for more)"

func run(args []string) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	var mode config.Mode
	switch args[0] {
	case "dev":
		mode = config.ModeDev
	case "serve":
		mode = config.ModeServe
	case "config":
		return configCommand(args[1:], os.Stdout, os.Stderr)
	case "topics":
		return topicsCommand(args[1:], os.Stdout)
	default:
		return fmt.Errorf("unknown command %q; %s", args[0], usage)
	}
	fs := flag.NewFlagSet("webhookd "+args[0], flag.ContinueOnError)
	file := configFlag(fs)
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	cfg, err := config.LoadFile(mode, *file, os.Getenv)
	if err != nil {
		return configError(err)
	}
	log := newLogger(cfg)
	slog.SetDefault(log)
	for _, name := range config.UnknownEnv(os.Environ()) {
		log.Warn("unknown setting in the environment, ignored (misspelt?)", "variable", name)
	}
	// Deliveries allocate briskly and keep little: collecting at twice the
	// live heap instead of the default's equal costs a little memory and
	// saves much CPU (make bench). GOGC, when set, wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	// A soft ceiling on the Go heap keeps that trade within bounds: near it
	// the collector works harder rather than growing. Within a memory
	// budget, the ceiling comes down while the rest of the process holds
	// more. GOMEMLIMIT wins.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memlimit.Ceiling)
		// Off where the process's resident size cannot be read (not Linux).
		budget, from := memoryBudget(cfg)
		if _, readable := memlimit.Resident(); readable && budget > 0 {
			memCtx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go (&memlimit.Controller{Budget: budget, Ceiling: memlimit.Ceiling, Floor: memlimit.Floor}).Run(memCtx)
			log.Info("memory budget", "MiB", budget>>20, "from", from)
		}
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
