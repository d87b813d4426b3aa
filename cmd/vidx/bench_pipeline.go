package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/bench"
	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/schemas"
)

// benchPipeline runs what vidx up --embedded runs, on the default settings
// but the bundle and spinning under test, and times indexing run.Videos.
func benchPipeline(stderr io.Writer, logLevel string) func(context.Context, bench.PipelineRun) (time.Duration, error) {
	return func(ctx context.Context, run bench.PipelineRun) (time.Duration, error) {
		cfg := config.Default()
		cfg.DataDir = run.Work
		cfg.LogLevel = logLevel
		cfg.Embedded.Broker, cfg.Embedded.BrokerPort = true, 0
		cfg.Model.Bundle = run.Bundle
		cfg.Model.AllowSpinning = run.AllowSpinning
		if run.IntraOpThreads > 0 {
			cfg.Model.IntraOpThreads = run.IntraOpThreads
		}
		if run.DecodeThreads > 0 {
			cfg.Stages.Sample.DecodeThreads = run.DecodeThreads
		}
		if run.Probe != "" {
			cfg.Stages.Sample.Probe = run.Probe
		}
		if run.SampleReplicas > 0 {
			cfg.Stages.Sample.Replicas = run.SampleReplicas
		}
		if len(run.Videos) > 0 {
			cfg.Stages.Sample.Sources.FileRoots = []string{filepath.Dir(run.Videos[0])}
		}
		a, err := app.New(ctx, cfg, app.AllStages, newLogger(stderr, logLevel))
		if err != nil {
			return 0, err
		}
		defer a.Close()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		runCtx, stop := context.WithCancel(ctx)
		stopped := make(chan error, 1)
		go func() { stopped <- a.Run(runCtx) }()
		defer func() { stop(); <-stopped }()
		cfg.Kafka = a.Kafka()

		start := time.Now()
		for i, v := range run.Videos {
			job := schemas.VideoJob{VideoID: fmt.Sprintf("bench-%03d", i), URI: v, Source: "bench"}
			if err := publishJob(ctx, cfg, &job); err != nil {
				return 0, err
			}
		}
		if err := waitIndexed(ctx, a.Store(), cfg.Store.Collection, len(run.Videos)); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
}
