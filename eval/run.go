package eval

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/stages/pool"
	"github.com/vidx/vidx/stages/query"
)

// DefaultBankSize is the query stage's default bank size, the streaming
// evaluation's default too.
func DefaultBankSize() int { return config.Default().Stages.Query.BankSize }

// ingestStages are the stages an evaluation runs: everything up to the
// index. Captions are scored in-process (see StreamScores for how that
// matches the query stage).
func ingestStages() []string {
	return []string{app.StageSample, app.StageEncode, app.StagePool, app.StageIndex}
}

// Options configures an evaluation.
type Options struct {
	// Bundle is the model bundle directory.
	Bundle string
	// Dataset lists the videos and captions (LoadDataset).
	Dataset *Dataset
	// Pooling is the pool stage's mode, meanP or seqTransf. Empty selects
	// seqTransf when the bundle has a temporal head and meanP otherwise.
	Pooling string
	// Codec is how frames travel from the sample stage to the encode stage:
	// schemas.CodecJPEG (lossy, at stages.sample.quality) or
	// schemas.CodecPNG (lossless). Empty keeps the configured transport,
	// config.Default's stages.sample.codec. Comparing the two separates
	// the model's error from what the transport costs.
	Codec string
	// BankSize is the streaming evaluation's query bank (DefaultBankSize is
	// the query stage's default); 0 ranks each caption against itself only.
	BankSize int
	// WorkDir holds the embedded broker's and store's data under
	// WorkDir/data and is kept. Empty uses a temporary directory that Close
	// removes.
	WorkDir string
	// ORTLib is the ONNX Runtime library (onnx.DefaultLibPath when empty).
	ORTLib string
	// Log receives the stages' logs (discarded when nil).
	Log *slog.Logger
	// Progress receives a line per step for people watching (nil: quiet).
	Progress io.Writer
}

// Evaluator is a running vidx (embedded broker, embedded store, the ingest
// stages) plus the bundle's text encoder.
type Evaluator struct {
	opts     Options
	cfg      config.Config
	manifest *bundle.Manifest
	app      *app.App
	rt       *onnx.Runtime
	text     *onnx.TextEncoder
	stop     context.CancelFunc
	stopped  chan struct{} // closed when the stages have returned
	runErr   error         // what they returned, once stopped is closed
	tmp      string
}

// Start assembles the stages with the production code path (app.New on
// config.Default with an embedded broker on a free port and a fresh store)
// and starts them.
func Start(ctx context.Context, o Options) (_ *Evaluator, err error) {
	if o.Dataset == nil || len(o.Dataset.Videos) == 0 {
		return nil, errors.New("eval: no dataset")
	}
	if o.BankSize < 0 {
		return nil, fmt.Errorf("eval: bank size must not be negative, got %d", o.BankSize)
	}
	if o.Codec == "" {
		o.Codec = config.Default().Stages.Sample.Codec
	}
	if o.Codec != schemas.CodecJPEG && o.Codec != schemas.CodecPNG {
		return nil, fmt.Errorf("eval: codec %q is not %s or %s", o.Codec, schemas.CodecJPEG, schemas.CodecPNG)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	m, err := bundle.Load(o.Bundle)
	if err != nil {
		return nil, err
	}
	if !(m.LogitScale > 0) {
		return nil, fmt.Errorf("eval: bundle %s: logit_scale %v is not positive", o.Bundle, m.LogitScale)
	}
	if o.Pooling == "" {
		o.Pooling = pool.MeanP
		if m.Temporal != nil {
			o.Pooling = pool.SeqTransf
		}
	}
	if o.Pooling != pool.MeanP && o.Pooling != pool.SeqTransf {
		return nil, fmt.Errorf("eval: pooling %q is not %s or %s", o.Pooling, pool.MeanP, pool.SeqTransf)
	}

	e := &Evaluator{opts: o, manifest: m}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	work := o.WorkDir
	if work == "" {
		if work, err = os.MkdirTemp("", "vidx-eval-"); err != nil {
			return nil, fmt.Errorf("eval: %w", err)
		}
		e.tmp = work
	}
	data := filepath.Join(work, "data")
	if entries, err := os.ReadDir(data); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("eval: %s already holds data of an earlier run; remove it or choose another work directory", data)
	}

	cfg := config.Default()
	cfg.DataDir = data
	cfg.Embedded.Broker, cfg.Embedded.BrokerPort = true, 0
	cfg.Model.Bundle = o.Bundle
	cfg.Model.ORTLib = o.ORTLib
	cfg.Stages.Pool.Mode = o.Pooling
	cfg.Stages.Sample.Codec = o.Codec
	// One clip per video: the metrics rank videos, not segments.
	cfg.Stages.Sample.Mode = schemas.ModeWhole
	a, err := app.New(ctx, cfg, ingestStages(), o.Log)
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	e.app = a
	e.cfg = a.Config

	if e.rt, err = onnx.NewRuntime(o.ORTLib); err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	e.text, err = e.rt.NewTextEncoder(m, onnx.SessionOptions{
		IntraOpThreads: cfg.Model.IntraOpThreads, InterOpThreads: cfg.Model.InterOpThreads, MaxBatch: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}

	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	e.stop, e.stopped = stop, make(chan struct{})
	go func() {
		e.runErr = a.Run(runCtx)
		close(e.stopped)
	}()
	return e, nil
}

// Config is the configuration the stages run with (the embedded broker's
// address filled in).
func (e *Evaluator) Config() config.Config { return e.cfg }

// Close stops the stages and releases everything; a temporary work
// directory is removed.
func (e *Evaluator) Close() error {
	var errs []error
	if e.stop != nil {
		e.stop()
		<-e.stopped
		if err := e.runErr; err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
		e.stop = nil
	}
	if e.app != nil {
		e.app.Close()
		e.app = nil
	}
	if e.rt != nil {
		// Closing the runtime closes the text encoder too.
		errs = append(errs, e.rt.Close())
		e.rt, e.text = nil, nil
	}
	if e.tmp != "" {
		errs = append(errs, os.RemoveAll(e.tmp))
		e.tmp = ""
	}
	return errors.Join(errs...)
}

// Ingest publishes one VideoJob per dataset video to the videos topic and
// waits until the store holds a clip for each. A video that a stage
// dead-letters (not a video, unreadable) fails the evaluation, naming it and
// its dataset line.
func (e *Evaluator) Ingest(ctx context.Context) error {
	ds, cfg := e.opts.Dataset, e.cfg
	byID := make(map[string]Video, len(ds.Videos))
	for _, v := range ds.Videos {
		byID[v.VideoID] = v
	}
	failed := make(chan error, 1)
	tapCtx, stopTap := context.WithCancel(ctx)
	defer stopTap()
	tap := kafka.NewTap(cfg.Kafka, cfg.Topics.DeadLetters, true)
	var tapDone sync.WaitGroup
	tapDone.Go(func() {
		for {
			m, err := tap.Next(tapCtx)
			if err != nil {
				return
			}
			v, ok := byID[string(m.Key)]
			if !ok {
				continue
			}
			dl, _ := schemas.ParseDeadLetter(m.Key, m.Value, m.Headers)
			select {
			case failed <- fmt.Errorf("eval: video %q (%s line %d) failed in stage %s: %s",
				v.VideoID, ds.File, v.Line, dl.Stage, dl.Reason):
			default:
			}
		}
	})
	defer func() {
		stopTap()
		tapDone.Wait()
		tap.Close()
	}()

	start := time.Now()
	outs := make([]pipeline.Output, 0, len(ds.Videos))
	for _, v := range ds.Videos {
		job := schemas.VideoJob{VideoID: v.VideoID, URI: v.URI, Source: "eval"}
		value, err := schemas.Encode(&job)
		if err != nil {
			return fmt.Errorf("eval: video %q: %w", v.VideoID, err)
		}
		outs = append(outs, pipeline.Output{Topic: cfg.Topics.Videos, Key: []byte(v.VideoID), Value: value})
	}
	if err := kafka.Produce(ctx, cfg.Kafka, outs...); err != nil {
		return fmt.Errorf("eval: publishing video jobs: %w", err)
	}
	fmt.Fprintf(e.opts.Progress, "ingesting %d videos through sample -> encode (%s frames) -> pool (%s) -> index\n",
		len(outs), e.opts.Codec, e.opts.Pooling)

	want := len(ds.Videos)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last, lastShown := -1, time.Now()
	for {
		n, err := e.app.Store().Count(ctx, cfg.Store.Collection, sinks.Filter{})
		if err != nil && !errors.Is(err, sinks.ErrNotFound) {
			return fmt.Errorf("eval: %w", err)
		}
		if n >= want {
			fmt.Fprintf(e.opts.Progress, "indexed %d videos in %.1fs\n", n, time.Since(start).Seconds())
			return nil
		}
		if n != last && time.Since(lastShown) > 5*time.Second {
			fmt.Fprintf(e.opts.Progress, "indexed %d of %d videos\n", n, want)
			last, lastShown = n, time.Now()
		}
		select {
		case err := <-failed:
			return err
		case <-e.stopped:
			return fmt.Errorf("eval: the stages stopped with %d of %d videos indexed: %v", n, want, e.runErr)
		case <-ctx.Done():
			return fmt.Errorf("eval: %d of %d videos indexed when stopped: %w", n, want, ctx.Err())
		case <-tick.C:
		}
	}
}

// Embed reads every clip vector back from the store, embeds every caption
// with the bundle's text encoder and takes each caption's cosine with every
// video from a store search, as the query stage gets it.
func (e *Evaluator) Embed(ctx context.Context) (*Embeddings, error) {
	ds, store, coll := e.opts.Dataset, e.app.Store(), e.cfg.Store.Collection
	texts, truth := ds.Captions()
	start := time.Now()
	raw, err := e.text.EncodeTexts(ctx, texts)
	if err != nil {
		return nil, fmt.Errorf("eval: embedding captions: %w", err)
	}
	if len(raw) != len(texts) {
		return nil, fmt.Errorf("eval: text encoder returned %d vectors for %d captions", len(raw), len(texts))
	}
	emb := &Embeddings{Texts: texts, Truth: truth, TextVecs: make([][]float32, len(raw))}
	for i, v := range raw {
		emb.TextVecs[i] = query.Normalize(v)
	}
	fmt.Fprintf(e.opts.Progress, "embedded %d captions in %.1fs\n", len(texts), time.Since(start).Seconds())

	col := make(map[string]int, len(ds.Videos))
	for i, v := range ds.Videos {
		col[v.VideoID] = i
	}
	n := len(ds.Videos)
	hits, err := store.Search(ctx, coll, sinks.SearchRequest{Vector: emb.TextVecs[0], TopK: n + 1, WithVectors: true})
	if err != nil {
		return nil, fmt.Errorf("eval: reading clip vectors: %w", err)
	}
	if len(hits) != n {
		return nil, fmt.Errorf("eval: the store holds %d clips for %d videos", len(hits), n)
	}
	emb.VideoVecs = make([][]float32, n)
	for _, h := range hits {
		j, ok := col[h.Payload.VideoID]
		if !ok || emb.VideoVecs[j] != nil {
			return nil, fmt.Errorf("eval: unexpected clip of video %q in the store", h.Payload.VideoID)
		}
		emb.VideoVecs[j] = h.Vector
	}

	emb.Cosine = make([][]float64, len(texts))
	var (
		wg   sync.WaitGroup
		next = make(chan int)
		errs = make([]error, len(texts))
	)
	for range min(runtime.GOMAXPROCS(0), len(texts)) {
		wg.Go(func() {
			for i := range next {
				hits, err := store.Search(ctx, coll, sinks.SearchRequest{Vector: emb.TextVecs[i], TopK: n})
				if err != nil {
					errs[i] = err
					continue
				}
				row := make([]float64, n)
				for _, h := range hits {
					row[col[h.Payload.VideoID]] = float64(h.Score)
				}
				emb.Cosine[i] = row
			}
		})
	}
	for i := range texts {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("eval: searching: %w", err)
	}
	return emb, nil
}

// Score ranks the embeddings at the bundle's temperature (1/logit_scale)
// and labels the report.
func (e *Evaluator) Score(emb *Embeddings) (*Report, error) {
	r, err := Score(emb, ScoreOptions{Temperature: 1 / e.manifest.LogitScale, BankSize: e.opts.BankSize})
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	r.Pooling, r.Model, r.Codec = e.opts.Pooling, e.manifest.Name, e.opts.Codec
	return r, nil
}

// Evaluate runs a whole evaluation: start, ingest, embed, score, close.
func Evaluate(ctx context.Context, o Options) (*Report, error) {
	e, err := Start(ctx, o)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	if err := e.Ingest(ctx); err != nil {
		return nil, err
	}
	emb, err := e.Embed(ctx)
	if err != nil {
		return nil, err
	}
	r, err := e.Score(emb)
	if err != nil {
		return nil, err
	}
	return r, e.Close()
}
