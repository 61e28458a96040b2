// Command frontdeskd runs one frontdesk node. `frontdeskd --dev` runs a
// single-node cluster on 127.0.0.1:7420 with a temporary data dir.
// `frontdeskd healthcheck` exits 0 if the node on this host is ready (for
// container health checks).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/frontdeskhq/frontdesk/internal/gctune"
	"github.com/frontdeskhq/frontdesk/node"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(args[1:], os.Getenv, os.Stderr)
	}
	cfg, err := node.ParseFlags("frontdeskd", args, os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "frontdeskd:", err)
		return 2
	}
	log := newLogger(cfg)
	if cfg.GCHeadroom > 0 {
		tuner, err := gctune.Start(cfg.GCHeadroom, os.Getenv)
		switch {
		case errors.Is(err, gctune.ErrGOGCSet):
			log.Info("GOGC is set: --gc-headroom is not applied", "GOGC", os.Getenv("GOGC"))
		case err != nil:
			log.Error("cannot start", "err", err)
			return 1
		default:
			defer tuner.Stop()
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.Start(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if cfg.Dev {
		log.Info("dev mode: one node, data in a temporary directory removed on exit", "api", "http://"+n.APIAddr())
	}
	<-ctx.Done()
	log.Info("shutting down: moving leaderships away")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	return 0
}

func newLogger(cfg *node.Config) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
