package main

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/encoders/testmodels"
	"github.com/vidx/vidx/media"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/stages/pool"
	"github.com/vidx/vidx/stages/sample"
)

// demoVideo is a generated video and the query that must find it.
type demoVideo struct {
	id, lavfi, query string
}

var demoVideos = []demoVideo{
	{"red-clip", "color=c=red:", "red"},
	{"green-clip", "color=c=green:", "a green screen"},
	{"blue-clip", "color=c=blue:", "something blue"},
	{"yellow-clip", "color=c=yellow:", "a yellow video"},
	{"magenta-clip", "color=c=magenta:", "magenta"},
	{"pattern-clip", "testsrc2=", ""},
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr, "demo [flags]")
	dir := fs.String("dir", "", "working directory for models, videos and data (default: a temporary directory)")
	keep := fs.Bool("keep", false, "keep the working directory")
	timeout := fs.Duration("timeout", 3*time.Minute, "give up after this long")
	logLevel := fs.String("log-level", "warn", "log level of the stages")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	work := *dir
	if work == "" {
		tmp, err := os.MkdirTemp("", "vidx-demo-")
		if err != nil {
			return err
		}
		work = tmp
		if !*keep {
			defer os.RemoveAll(tmp)
		}
	}
	fmt.Fprintf(stdout, "vidx demo in %s\n", work)

	models := filepath.Join(work, "models")
	if err := testmodels.WriteAll(models); err != nil {
		return fmt.Errorf("writing test models: %w", err)
	}
	videos := filepath.Join(work, "videos")
	if err := os.MkdirAll(videos, 0o755); err != nil {
		return err
	}
	for _, v := range demoVideos {
		if err := makeVideo(ctx, filepath.Join(videos, v.id+".mp4"), v.lavfi); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "generated %d videos and the test model bundles\n", len(demoVideos))

	cfg := config.Default()
	cfg.DataDir = filepath.Join(work, "data")
	cfg.LogLevel = *logLevel
	cfg.Embedded.Broker, cfg.Embedded.BrokerPort = true, 0
	cfg.Model.Bundle = filepath.Join(models, "color")
	// Jobs may only read the generated videos.
	cfg.Stages.Sample.Sources.FileRoots = []string{videos}
	// One query at a time: with an empty bank the first answers are plain
	// cosine, later ones are re-ranked against the queries before them.
	cfg.Stages.Query.MaxBatch = 1
	log := newLogger(stderr, cfg.LogLevel)
	a, err := app.New(ctx, cfg, app.AllStages, log)
	if err != nil {
		return err
	}
	defer a.Close()
	runCtx, stopStages := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- a.Run(runCtx) }()
	defer func() { stopStages(); <-stopped }()
	cfg.Kafka = a.Kafka()

	start := time.Now()
	for _, v := range demoVideos {
		job := schemas.VideoJob{VideoID: v.id, URI: filepath.Join(videos, v.id+".mp4"), Source: "demo"}
		if err := publishJob(ctx, cfg, &job); err != nil {
			return err
		}
	}
	if err := waitIndexed(ctx, a.Store(), cfg.Store.Collection, len(demoVideos)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "indexed %d videos through sample -> encode -> pool -> index over Kafka in %.1fs\n\n",
		len(demoVideos), time.Since(start).Seconds())

	if err := reportParity(ctx, stdout, a, cfg, videos); err != nil {
		return err
	}

	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "QUERY\tEXPECTED\tFIRST\tSCORE\tCOSINE\tSECOND\tCOSINE\tOK")
	failed := 0
	for _, v := range demoVideos {
		if v.query == "" {
			continue
		}
		res, err := search(ctx, cfg, schemas.Query{Text: v.query, TopK: 3})
		if err != nil {
			return err
		}
		if len(res.Hits) < 2 {
			return fmt.Errorf("query %q returned %d hits", v.query, len(res.Hits))
		}
		ok := res.Hits[0].VideoID == v.id
		if !ok {
			failed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.4f\t%.4f\t%s\t%.4f\t%s\n", v.query, v.id, res.Hits[0].VideoID, res.Hits[0].Score,
			res.Hits[0].Cosine, res.Hits[1].VideoID, res.Hits[1].Cosine, map[bool]string{true: "yes", false: "NO"}[ok])
	}
	tw.Flush()
	if failed > 0 {
		return fmt.Errorf("%d queries did not rank their video first", failed)
	}
	fmt.Fprintln(stdout, "\nall queries ranked their video first")
	return nil
}

func makeVideo(ctx context.Context, path, lavfi string) error {
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", lavfi+"size=320x240:rate=10:duration=4",
		"-vf", "noise=alls=12:allf=t", "-c:v", "libx264", "-pix_fmt", "yuv420p", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ffmpeg %s: %w: %s", filepath.Base(path), err, out)
	}
	return nil
}

func waitIndexed(ctx context.Context, store sinks.Store, collection string, want int) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		n, err := store.Count(ctx, collection, sinks.Filter{})
		if err != nil && !errors.Is(err, sinks.ErrNotFound) {
			return err
		}
		if n >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the index: %d of %d clips after the deadline: %w", n, want, ctx.Err())
		case <-tick.C:
		}
	}
}

// reportParity compares each clip's vector as indexed through Kafka (JPEG
// frames) with the vector computed straight from the decoded frames.
func reportParity(ctx context.Context, w io.Writer, a *app.App, cfg config.Config, videos string) error {
	s := cfg.Stages.Sample
	dec, err := media.NewDecoder(s.Options())
	if err != nil {
		return err
	}
	stage, err := sample.NewStage(sample.StageConfig{Codec: s.Codec, Quality: s.Quality})
	if err != nil {
		return err
	}
	worst, total, clips := 1.0, 0, 0
	for _, v := range demoVideos {
		job := schemas.VideoJob{VideoID: v.id, URI: filepath.Join(videos, v.id+".mp4")}
		err := dec.Clips(ctx, job.URI, func(c media.Clip) error {
			msg, err := stage.EncodeClip(&job, c)
			if err != nil {
				return err
			}
			total += len(msg)
			clips++
			imgs := make([]*image.RGBA, len(c.Frames))
			for i, f := range c.Frames {
				imgs[i] = f.Image
			}
			frames, err := a.Encode.Embed(ctx, imgs)
			if err != nil {
				return err
			}
			direct, err := pool.MeanPool(frames)
			if err != nil {
				return err
			}
			hits, err := a.Store().Search(ctx, cfg.Store.Collection, sinks.SearchRequest{
				Vector: direct, TopK: 1, WithVectors: true,
				Filter: sinks.Filter{VideoIDs: []string{v.id}},
			})
			if err != nil || len(hits) == 0 {
				return fmt.Errorf("clip of %s not found in the index: %v", v.id, err)
			}
			worst = math.Min(worst, float64(hits[0].Score))
			return nil
		})
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "clip messages: %d clips, %.1f KiB each on average (%s q%d, limit %d KiB)\n",
		clips, float64(total)/float64(clips)/1024, s.Codec, s.Quality, sample.MaxMessageBytes/1024)
	fmt.Fprintf(w, "Kafka path vs decoded frames: lowest clip cosine %.6f", worst)
	if s.Codec == schemas.CodecJPEG {
		// The colour test model turns a mean colour into a sharp softmax, so
		// JPEG's chroma rounding shows more here than with a ViT.
		fmt.Fprint(w, " (JPEG frames; stages.sample.codec: png is lossless)")
	}
	fmt.Fprint(w, "\n\n")
	return nil
}
