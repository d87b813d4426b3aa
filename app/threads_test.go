package app_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/stages/pool"
)

// TestSampleDecodeThreads: a sample stage in the process of the encoder
// decodes with one ffmpeg thread unless the configuration names a count;
// on its own it leaves the count to ffmpeg.
func TestSampleDecodeThreads(t *testing.T) {
	f := requireTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tiny := filepath.Join(f.models, "tiny-clip")
	for _, tc := range []struct {
		name   string
		stages []string
		set    int
		want   int
	}{
		{"sample alone", []string{app.StageSample}, 0, 0},
		{"sample beside encode", []string{app.StageSample, app.StageEncode}, 0, 1},
		{"every stage", app.AllStages, 0, 1},
		{"set beside encode", []string{app.StageSample, app.StageEncode}, 2, 2},
		{"set alone", []string{app.StageSample}, 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := poolingConfig(t.TempDir(), tiny, pool.MeanP)
			cfg.Stages.Sample.DecodeThreads = tc.set
			a, err := app.New(ctx, cfg, tc.stages, testLogger())
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if got := a.Config.Stages.Sample.DecodeThreads; got != tc.want {
				t.Errorf("decode threads %d, want %d", got, tc.want)
			}
		})
	}
}
