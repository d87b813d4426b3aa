package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/telemetry"
)

func cmdUp(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("up", stderr, "up [--embedded] [--config FILE] [flags]")
	var cf configFlags
	cf.register(fs, true)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	return serve(ctx, cf, app.AllStages, stderr)
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("run", stderr, "run STAGE [--config FILE] [flags]")
	var cf configFlags
	cf.register(fs, false)
	if len(args) == 0 || args[0] == "" || args[0][0] == '-' {
		fs.Usage()
		return errUsage
	}
	stage := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	return serve(ctx, cf, []string{stage}, stderr)
}

func serve(ctx context.Context, cf configFlags, stages []string, stderr io.Writer) error {
	cfg, err := cf.load(os.Getenv)
	if err != nil {
		return err
	}
	log := newFormatLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	service := "vidx"
	if len(stages) == 1 {
		service = "vidx-" + stages[0]
	}
	tel, err := telemetry.New(ctx, telemetry.Config{ServiceName: service, Env: os.Getenv})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("telemetry shutdown", "err", err)
		}
	}()
	a, err := app.New(ctx, cfg, stages, log, app.WithTelemetry(tel))
	if err != nil {
		if ctx.Err() != nil {
			// Stopped while starting (a rolling restart, a scale-down):
			// nothing was consumed, so there is nothing to drain.
			log.Info("vidx stopped during start-up", "err", err)
			return nil
		}
		return err
	}
	defer a.Close()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	if cfg.Telemetry.Addr != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := tel.Serve(ctx, cfg.Telemetry.Addr, telemetry.Probes{Live: a.Live, Ready: a.Ready}, log); err != nil {
				log.Error("metrics and health endpoints stopped", "err", err)
				stop()
			}
		}()
	}
	log.Info("vidx running", "stages", stages, "brokers", a.Kafka().Brokers)
	err = a.Run(ctx)
	stop()
	wg.Wait()
	if err != nil {
		return fmt.Errorf("stages stopped: %w", err)
	}
	log.Info("vidx stopped")
	return nil
}
