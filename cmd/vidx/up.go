package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/vidx/vidx/app"
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
	log := newLogger(stderr, cfg.LogLevel)
	a, err := app.New(ctx, cfg, stages, log)
	if err != nil {
		return err
	}
	defer a.Close()
	log.Info("vidx running", "stages", stages, "brokers", a.Kafka().Brokers)
	if err := a.Run(ctx); err != nil {
		return fmt.Errorf("stages stopped: %w", err)
	}
	log.Info("vidx stopped")
	return nil
}
