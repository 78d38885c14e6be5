package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tidemark/tidemark/internal/engine"
)

// Serve runs the agent on the config file at path until ctx ends: it holds
// every configured repository's agent lock, serves /metrics and /healthz,
// and reloads the config on SIGHUP (a bad config is reported and the
// running one kept).
func Serve(ctx context.Context, path string, engines *engine.Registry, log *slog.Logger) error {
	cfg, err := LoadConfig(path, engines)
	if err != nil {
		return err
	}
	metrics := NewMetrics()
	alerts, err := NewAlerter(cfg.Alerts, log, metrics)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	runner := EngineRunner{Engines: engines, Log: log}
	board := NewBoard(runner.Status)
	locks := newRepoLocks(log)
	if err := locks.hold(ctx, cfg); err != nil {
		return err
	}
	defer locks.releaseAll()
	if cfg.Listen != "" {
		l, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("agent: listen for metrics: %w", err)
		}
		srv := &http.Server{Handler: metrics.Handler(alerts, board), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(l)
		defer srv.Close()
		log.Info("serving / (what can be restored), /metrics and /healthz", "addr", l.Addr().String())
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		ag := &Agent{Runner: runner, Log: log, Metrics: metrics, Alerts: alerts, Board: board,
			StreamDownGrace: time.Duration(cfg.Alerts.StreamDownAfter)}
		if g := ag.StreamDownGrace; g > 0 && g < 45*time.Second {
			ag.Tick = max(g/3, time.Second) // watch often enough to alert on time
		}
		go func() {
			defer close(done)
			ag.Run(runCtx, cfg)
		}()
		log.Info("agent running", "config", path, "databases", len(cfg.Databases))
		select {
		case <-ctx.Done():
			cancel()
			<-done
			log.Info("agent stopped")
			return nil
		case err := <-locks.lost:
			cancel()
			<-done
			return err
		case <-hup:
			next, err := LoadConfig(path, engines)
			if err != nil {
				log.Error("config reload failed; keeping the running config", "err", err)
				alerts.Raise(ctx, "agent", "config", fmt.Sprintf("config reload failed: %v", err))
				cancel()
				<-done
				continue
			}
			if err := locks.hold(ctx, next); err != nil {
				log.Error("config reload refused; keeping the running config", "err", err)
				alerts.Raise(ctx, "agent", "config", fmt.Sprintf("config reload refused: %v", err))
				cancel()
				<-done
				continue
			}
			alerts.Resolve(ctx, "agent", "config")
			log.Info("config reloaded", "config", path)
			cancel()
			<-done
			cfg = next
		}
	}
}
