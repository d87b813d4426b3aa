package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/telemetry"
)

func cmdUp(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("up", stderr, "up [--embedded] [--config FILE] [flags] [VIDEO_FOLDER...]")
	var cf configFlags
	cf.register(fs, true)
	httpAddr := fs.String("http-addr", "-", "address of the search page and HTTP API (default http.addr, else 127.0.0.1:8080; empty disables)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	cf.httpAddr, cf.httpDefault = *httpAddr, "127.0.0.1:8080"
	// Folders named on the command line are where local video files may be
	// read from, next to the working and data directories.
	cf.fileRoots = fs.Args()
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
	httpAddr := fs.String("http-addr", "-", "address of the search page and HTTP API, served by the query stage (default http.addr; empty disables)")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	cf.httpAddr = *httpAddr
	return serve(ctx, cf, []string{stage}, stderr)
}

func serve(ctx context.Context, cf configFlags, stages []string, stderr io.Writer) error {
	cfg, err := cf.load(os.Getenv)
	if err != nil {
		return err
	}
	if err := confineFiles(&cfg, cf.fileRoots); err != nil {
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

// confineFiles limits the local files jobs may name (and the media the HTTP
// API serves) to stages.sample.sources.file_roots, which defaults to the
// working directory and the data directory; folders named on the command
// line are added to either.
func confineFiles(cfg *config.Config, folders []string) error {
	src := &cfg.Stages.Sample.Sources
	if len(src.FileRoots) == 0 {
		src.FileRoots = defaultFileRoots(cfg)
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return fmt.Errorf("data_dir: %w", err)
		}
	}
	for _, d := range folders {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("video folder: %w", err)
		}
		if !st.IsDir() {
			return fmt.Errorf("video folder %s is not a directory", d)
		}
		src.FileRoots = append(src.FileRoots, d)
	}
	return nil
}

// defaultFileRoots are the working directory (unless it is /, which would
// allow every file) and the data directory.
func defaultFileRoots(cfg *config.Config) []string {
	var roots []string
	if wd, err := os.Getwd(); err == nil && wd != string(filepath.Separator) {
		roots = append(roots, wd)
	}
	return append(roots, cfg.DataDir)
}
