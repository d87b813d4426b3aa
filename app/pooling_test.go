package app_test

import (
	"context"
	"errors"
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/media"
	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/stages/pool"
)

// poolingConfig is an all-embedded configuration on dataDir with the given
// bundle and pooling mode.
func poolingConfig(dataDir, bundleDir, mode string) config.Config {
	cfg := config.Default()
	cfg.DataDir = dataDir
	cfg.Embedded.Broker, cfg.Embedded.BrokerPort = true, 0
	cfg.Model.Bundle = bundleDir
	cfg.Stages.Pool.Mode = mode
	cfg.Stages.Query.MaxBatch = 1
	return cfg
}

// runApp starts the stages and returns a function that stops them and
// closes the app, reporting stage errors.
func runApp(t *testing.T, ctx context.Context, cfg config.Config, stages []string) (*app.App, func()) {
	t.Helper()
	a, err := app.New(ctx, cfg, stages, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stages: %v", err)
		}
		a.Close()
	}
	t.Cleanup(stop)
	return a, stop
}

// copyBundle copies a bundle directory, renaming the model, to stand for
// another model of the same width.
func copyBundle(t *testing.T, src, name string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "vidx-model.yaml" {
			data = []byte(strings.Replace(string(data), "name: test-tiny-clip", "name: "+name, 1))
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestPoolingModeKeptWithCollection indexes with meanP, then tries to start
// stages on the same data directory with seqTransf, or with another model:
// every stage that can see the collection must refuse, naming both sides,
// so that vectors pooled or embedded differently never mix.
func TestPoolingModeKeptWithCollection(t *testing.T) {
	f := requireTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	tiny := filepath.Join(f.models, "tiny-clip")

	a, stop := runApp(t, ctx, poolingConfig(dataDir, tiny, pool.MeanP), app.AllStages)
	publish(t, ctx, a, "red", job("red", f.videos["red"]))
	waitCount(t, ctx, a.Store(), a.Config.Store.Collection, 1)
	stop()

	other := copyBundle(t, tiny, "other-clip")
	cases := []struct {
		name   string
		bundle string
		mode   string
		stages []string
		want   []string
	}{
		{"seqTransf, every stage", tiny, pool.SeqTransf, app.AllStages, []string{`pooled with "meanP", requested "seqTransf"`}},
		{"seqTransf, index", tiny, pool.SeqTransf, []string{app.StageIndex}, []string{"stage index", `pooled with "meanP", requested "seqTransf"`}},
		{"seqTransf, query", tiny, pool.SeqTransf, []string{app.StageQuery}, []string{"stage query", `pooled with "meanP", requested "seqTransf"`}},
		{"seqTransf, pool beside the store", tiny, pool.SeqTransf, []string{app.StagePool, app.StageQuery}, []string{"stage pool", `pooled with "meanP", requested "seqTransf"`}},
		{"another model, index", other, pool.MeanP, []string{app.StageIndex}, []string{`holds vectors of model "test-tiny-clip", requested "other-clip"`}},
		{"another model, query", other, pool.MeanP, []string{app.StageQuery}, []string{`holds vectors of model "test-tiny-clip", requested "other-clip"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := app.New(ctx, poolingConfig(dataDir, c.bundle, c.mode), c.stages, testLogger())
			if err == nil {
				b.Close()
				t.Fatal("started against a collection of another pooling or model")
			}
			if !errors.Is(err, sinks.ErrIncompatible) {
				t.Errorf("error %v does not wrap sinks.ErrIncompatible", err)
			}
			for _, s := range c.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %s", err, s)
				}
			}
		})
	}

	// The collection is intact and still served with the settings it was
	// built with.
	a, _ = runApp(t, ctx, poolingConfig(dataDir, tiny, pool.MeanP), app.AllStages)
	spec, err := a.Store().Collection(ctx, a.Config.Store.Collection)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Pooling != pool.MeanP || spec.Model != "test-tiny-clip" {
		t.Errorf("collection spec %+v, want meanP and test-tiny-clip", spec)
	}
	if r := ask(t, ctx, a, "q", "a red video"); len(r.Hits) != 1 || r.Hits[0].VideoID != "red" {
		t.Errorf("query after the refusals: %+v", r.Hits)
	}
}

// TestSeqTransfPipeline indexes a video with seqTransf through Kafka and
// checks that the collection records seqTransf and that the stored vector is
// the temporal head's pooling of the video's frame embeddings.
func TestSeqTransfPipeline(t *testing.T) {
	f := requireTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, _ := runApp(t, ctx, poolingConfig(t.TempDir(), filepath.Join(f.models, "tiny-clip"), pool.SeqTransf), app.AllStages)
	publish(t, ctx, a, "blue", job("blue", f.videos["blue"]))
	waitCount(t, ctx, a.Store(), a.Config.Store.Collection, 1)

	spec, err := a.Store().Collection(ctx, a.Config.Store.Collection)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Pooling != pool.SeqTransf {
		t.Errorf("collection pooling %q, want seqTransf", spec.Pooling)
	}

	rt, err := onnx.NewRuntime("")
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	temporal, err := rt.NewTemporalEncoder(a.Manifest(), onnx.SessionOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := media.NewDecoder(media.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var direct, meanP []float32
	err = dec.Clips(ctx, f.videos["blue"], func(c media.Clip) error {
		imgs := make([]*image.RGBA, len(c.Frames))
		for i, fr := range c.Frames {
			imgs[i] = fr.Image
		}
		vecs, err := a.Encode.Embed(ctx, imgs)
		if err != nil {
			return err
		}
		out, err := temporal.Pool(ctx, [][][]float32{vecs})
		if err != nil {
			return err
		}
		direct = out[0]
		meanP, err = pool.MeanPool(vecs)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	hits, err := a.Store().Search(ctx, a.Config.Store.Collection, sinks.SearchRequest{Vector: direct, TopK: 1, WithVectors: true})
	if err != nil || len(hits) != 1 {
		t.Fatalf("search: %v %v", hits, err)
	}
	dot := func(x, y []float32) (s float64) {
		for i := range x {
			s += float64(x[i]) * float64(y[i])
		}
		return s
	}
	stored := hits[0].Vector
	t.Logf("cosine(stored, seqTransf of decoded frames) = %.6f; cosine(stored, meanP) = %.6f", dot(stored, direct), dot(stored, meanP))
	if c := dot(stored, direct); !(c >= 0.999) {
		t.Errorf("stored vector has cosine %.6f with the seqTransf pooling of the decoded frames, want >= 0.999", c)
	}
	if c := dot(stored, meanP); c > 0.999 {
		t.Errorf("stored vector is the meanP pooling (cosine %.6f)", c)
	}
}

// TestSeqTransfRefused covers settings seqTransf cannot run with.
func TestSeqTransfRefused(t *testing.T) {
	f := requireTools(t)
	ctx := context.Background()
	cases := []struct {
		name   string
		bundle string
		stages []string
		edit   func(*config.Config)
		want   []string
	}{
		{"bundle without temporal head", "color", []string{app.StagePool}, nil,
			[]string{"stages.pool.mode is seqTransf", "model bundle test-color", "no temporal head", "use meanP"}},
		{"index for a bundle without temporal head", "color", []string{app.StageIndex}, nil,
			[]string{"no temporal head"}},
		{"sampling more frames than the head takes", "tiny-clip", []string{app.StageSample, app.StagePool},
			func(c *config.Config) { c.Stages.Sample.MaxFrames = 16 },
			[]string{"stages.sample.max_frames is 16", "at most 12 frames"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := poolingConfig(t.TempDir(), filepath.Join(f.models, c.bundle), pool.SeqTransf)
			if c.edit != nil {
				c.edit(&cfg)
			}
			a, err := app.New(ctx, cfg, c.stages, testLogger())
			if err == nil {
				a.Close()
				t.Fatal("no error")
			}
			for _, s := range c.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}
