// Package app assembles vidx from its configuration: the broker connection
// (or the embedded broker), the store, the model bundle and the stages.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/pipeline/kafka/embedded"
	"github.com/vidx/vidx/sinks"
	embeddedstore "github.com/vidx/vidx/sinks/embedded"
	"github.com/vidx/vidx/sinks/qdrant"
	"github.com/vidx/vidx/sourceguard"
	"github.com/vidx/vidx/stages/encode"
	"github.com/vidx/vidx/stages/index"
	"github.com/vidx/vidx/stages/pool"
	"github.com/vidx/vidx/stages/query"
	"github.com/vidx/vidx/stages/sample"
	"github.com/vidx/vidx/stages/sample/streams"
	"github.com/vidx/vidx/telemetry"
)

// Stage names.
const (
	StageSample = "sample"
	StageEncode = "encode"
	StagePool   = "pool"
	StageIndex  = "index"
	StageQuery  = "query"
)

// AllStages lists the stage names in pipeline order (the order of Stages).
var AllStages = stageNames()

func stageNames() []string {
	names := make([]string, len(Stages))
	for i, s := range Stages {
		names[i] = s.Name
	}
	return names
}

// App is an assembled vidx process running some or all stages.
type App struct {
	Config config.Config
	log    *slog.Logger

	broker   *embedded.Broker
	store    sinks.Store
	runtime  *onnx.Runtime
	manifest *bundle.Manifest
	closers  []func() error

	stages []*kafka.Stage
	tel    *telemetry.Telemetry
	// Query is the query handler when the query stage runs here.
	Query *query.Handler
	// Encode is the encode handler when the encode stage runs here.
	Encode *encode.Handler
	// Streams runs the registered streams when the sample stage runs here;
	// its Status is what this replica indexes.
	Streams *streams.Service
	// web is the HTTP API and search page when the query stage runs here
	// and http.addr is set.
	web *webServer
}

// Option configures an App.
type Option func(*App)

// WithTelemetry traces and measures every stage with t.
func WithTelemetry(t *telemetry.Telemetry) Option {
	return func(a *App) { a.tel = t }
}

// New assembles the named stages. On error everything opened is closed.
func New(ctx context.Context, cfg config.Config, names []string, log *slog.Logger, opts ...Option) (_ *App, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, n := range names {
		if !slices.Contains(AllStages, n) {
			return nil, fmt.Errorf("unknown stage %q (want one of %v)", n, AllStages)
		}
	}
	a := &App{Config: cfg, log: log}
	for _, o := range opts {
		o(a)
	}
	if a.tel == nil {
		a.tel = telemetry.From(ctx)
	}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	needs := func(stages ...string) bool {
		for _, s := range stages {
			if slices.Contains(names, s) {
				return true
			}
		}
		return false
	}
	if needs(StageSample) {
		a.Config.Stages.Sample.DecodeThreads = decodeThreads(cfg.Stages.Sample.DecodeThreads, needs(StageEncode))
	}
	if needs(StageEncode, StagePool, StageIndex, StageQuery) {
		if err := a.loadBundle(); err != nil {
			return nil, err
		}
	}
	if needs(StagePool, StageIndex, StageQuery) {
		if err := a.checkPooling(needs(StageSample), needs(StagePool)); err != nil {
			return nil, err
		}
	}
	if needs(StageIndex, StageQuery) {
		if err := a.openStore(ctx); err != nil {
			return nil, err
		}
	}
	// The broker comes after the model and the store: a bad bundle or an
	// incompatible collection is reported as such, even with Kafka down.
	if cfg.Embedded.Broker {
		if err := a.startBroker(); err != nil {
			return nil, err
		}
	}
	if err := kafka.AwaitTopics(ctx, a.Config.Kafka, a.log, cfg.Topics.All()...); err != nil {
		return nil, err
	}
	if needs(StageSample, StageQuery) {
		if err := kafka.AwaitCompactedTopics(ctx, a.Config.Kafka, a.log, cfg.Topics.Thumbnails); err != nil {
			return nil, err
		}
	}
	for _, n := range AllStages {
		if !needs(n) {
			continue
		}
		st, err := a.buildStage(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("stage %s: %w", n, err)
		}
		a.stages = append(a.stages, st)
	}
	if needs(StageQuery) && cfg.HTTP.Addr != "" {
		if err := a.startWeb(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (a *App) startBroker() error {
	cfg := embedded.BrokerConfig{
		Port:       a.Config.Embedded.BrokerPort,
		Partitions: a.Config.Kafka.Partitions,
		Topics:     a.Config.Topics.All(),
	}
	if a.Config.Embedded.Persist {
		cfg.DataDir = filepath.Join(a.Config.DataDir, "broker")
	}
	b, err := embedded.StartBroker(cfg)
	if err != nil {
		return err
	}
	a.broker = b
	a.Config.Kafka.Brokers = b.Addrs()
	a.closers = append(a.closers, func() error { b.Close(); return nil })
	a.log.Info("embedded broker listening", "addrs", b.Addrs())
	return nil
}

func (a *App) loadBundle() error {
	if a.Config.Model.Bundle == "" {
		return errors.New("model.bundle is not set (a model bundle directory; `vidx models testdata DIR` writes small test bundles)")
	}
	m, err := bundle.Load(a.Config.Model.Bundle)
	if err != nil {
		return err
	}
	for _, s := range m.Assumptions {
		a.log.Info("model bundle: assumed "+s, "bundle", m.Dir)
	}
	// Reading the model headers is cheap and names the manifest field to
	// fix, where a failed session would only say the model did not load.
	check := m.Check(bundle.ReadModelIO)
	for _, w := range check.Warnings() {
		a.log.Warn("model bundle: "+w.String(), "bundle", m.Dir)
	}
	if err := check.Err(); err != nil {
		return err
	}
	lib := a.Config.Model.ORTLib
	if lib == "" {
		lib = onnx.DefaultLibPath()
	}
	rt, err := onnx.NewRuntime(lib)
	if err != nil {
		return err
	}
	a.manifest, a.runtime = m, rt
	a.closers = append(a.closers, rt.Close)
	return nil
}

func (a *App) openStore(ctx context.Context) error {
	s, err := OpenStore(ctx, a.Config, a.log)
	if err != nil {
		return err
	}
	a.store = s
	a.closers = append(a.closers, s.Close)
	return nil
}

// OpenStore opens the vector store cfg.Store.URL names: the embedded store
// (embedded, embedded:///dir) or a Qdrant server (qdrant://HOST:6334).
func OpenStore(ctx context.Context, cfg config.Config, log *slog.Logger) (sinks.Store, error) {
	backend, err := cfg.Store.Backend()
	if err != nil {
		return nil, err
	}
	if backend == config.StoreQdrant {
		s, err := qdrant.Open(ctx, cfg.Store.URL, cfg.Store.Qdrant, log)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		return s, nil
	}
	dir, err := cfg.StorePath()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s, err := embeddedstore.Open(dir, embeddedstore.Options{Logger: log, ScanWorkers: cfg.Store.ScanWorkers})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (a *App) sessionOptions() onnx.SessionOptions {
	return onnx.SessionOptions{
		IntraOpThreads: a.Config.Model.IntraOpThreads,
		InterOpThreads: a.Config.Model.InterOpThreads,
		MaxBatch:       a.Config.Model.MaxBatch,
		NoSpinning:     !a.Config.Model.AllowSpinning,
	}
}

func (a *App) collectionSpec() sinks.CollectionSpec {
	return sinks.CollectionSpec{
		Name:     a.Config.Store.Collection,
		Dim:      a.manifest.EmbeddingDim,
		Distance: "cosine",
		Model:    a.manifest.Name,
		Pooling:  a.Config.Stages.Pool.Mode,
	}
}

func (a *App) buildStage(ctx context.Context, name string) (*kafka.Stage, error) {
	spec, ok := Spec(name)
	if !ok {
		return nil, fmt.Errorf("unknown stage %q", name)
	}
	h, extra, opts, err := spec.build(a, ctx)
	if err != nil {
		return nil, err
	}
	cfg := a.Config
	return kafka.NewStage(kafka.StageConfig{
		Name:            name,
		Topics:          append([]string{spec.Input(cfg.Topics)}, extra...),
		DeadLetterTopic: cfg.Topics.DeadLetters,
		Runtime:         spec.Runtime(cfg.Stages),
	}, cfg.Kafka, h, a.log, kafka.Hooks{}, append(opts, kafka.WithTelemetry(a.tel))...)
}

// decodeThreads resolves stages.sample.decode_threads: a sample stage
// beside the encoder shares its cores, where ffmpeg's frame threads only
// add CPU, so "ffmpeg's choice" (0) becomes one thread there.
func decodeThreads(set int, besideEncoder bool) int {
	if set == 0 && besideEncoder {
		return 1
	}
	return set
}

// buildSample makes the sample stage, and the live streams that run beside
// its job consumer.
func (a *App) buildSample(ctx context.Context) (pipeline.Handler, []string, []kafka.Option, error) {
	cfg, t := a.Config, a.Config.Topics
	s := cfg.Stages.Sample
	guard, err := sourceguard.NewGuard(s.Sources)
	if err != nil {
		return nil, nil, nil, err
	}
	opts := s.Options()
	opts.Guard, opts.Logger = guard, a.log
	handler, err := sample.NewStage(sample.StageConfig{
		Options: opts, Codec: s.Codec, Quality: s.Quality, OutputTopic: t.Clips, ThumbnailTopic: t.Thumbnails,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	// Registered streams run beside the job consumer, on the same policy.
	if a.Streams, err = streams.New(s.Streams, streams.Env{
		Kafka: cfg.Kafka, RegistryTopic: t.Streams, StateTopic: t.StreamState, ClipsTopic: t.Clips, ThumbnailTopic: t.Thumbnails,
		Guard: guard, Codec: s.Codec, Quality: s.Quality, FFmpegPath: s.FFmpeg, Logger: a.log,
	}); err != nil {
		return nil, nil, nil, err
	}
	return handler, nil, nil, nil
}

// buildEncode makes the encode stage over the bundle's image tower.
func (a *App) buildEncode(ctx context.Context) (pipeline.Handler, []string, []kafka.Option, error) {
	t := a.Config.Topics
	enc, err := a.runtime.NewImageEncoder(a.manifest, a.sessionOptions())
	if err != nil {
		return nil, nil, nil, err
	}
	a.closers = append(a.closers, enc.Close)
	handler, err := encode.New(encode.Config{
		Model: a.manifest.Name, Mean: triple(a.manifest.Image.Mean), Std: triple(a.manifest.Image.Std), OutputTopic: t.FrameEmbeddings,
	}, enc)
	if err != nil {
		return nil, nil, nil, err
	}
	a.Encode = handler
	return handler, nil, nil, nil
}

// buildPool makes the pool stage with the configured pooling.
func (a *App) buildPool(ctx context.Context) (pipeline.Handler, []string, []kafka.Option, error) {
	t := a.Config.Topics
	if a.store != nil {
		// The store is open here for an index or query stage of the same
		// process: check early rather than dead-letter every vector.
		if err := a.checkCollection(ctx); err != nil {
			return nil, nil, nil, err
		}
	}
	pooler, err := a.pooler()
	if err != nil {
		return nil, nil, nil, err
	}
	handler, err := pool.New(pool.Config{Model: a.manifest.Name, OutputTopic: t.ClipEmbeddings}, pooler)
	if err != nil {
		return nil, nil, nil, err
	}
	return handler, nil, nil, nil
}

// buildIndex makes the index stage; it also reads delete commands on the
// videos topic.
func (a *App) buildIndex(ctx context.Context) (pipeline.Handler, []string, []kafka.Option, error) {
	t := a.Config.Topics
	handler, err := index.New(ctx, a.collectionSpec(), a.store, index.WithLogger(a.log), index.WithVideosTopic(t.Videos))
	if err != nil {
		return nil, nil, nil, err
	}
	// The videos topic carries delete commands (tombstones) for the index.
	return handler, []string{t.Videos}, nil, nil
}

// buildQuery makes the query stage over the text and image towers.
func (a *App) buildQuery(ctx context.Context) (pipeline.Handler, []string, []kafka.Option, error) {
	cfg, t := a.Config, a.Config.Topics
	if err := a.checkCollection(ctx); err != nil {
		return nil, nil, nil, err
	}
	enc, err := a.runtime.NewTextEncoder(a.manifest, a.sessionOptions())
	if err != nil {
		return nil, nil, nil, err
	}
	a.closers = append(a.closers, enc.Close)
	// The image tower answers image queries ("image" on the queries topic).
	img, err := a.runtime.NewImageEncoder(a.manifest, a.sessionOptions())
	if err != nil {
		return nil, nil, nil, err
	}
	a.closers = append(a.closers, img.Close)
	handler, err := query.New(ctx, query.Config{
		Collection: cfg.Store.Collection, Model: a.manifest.Name, Pooling: cfg.Stages.Pool.Mode,
		Settings: cfg.Stages.Query.Settings, ResultsTopic: t.Results,
	}, enc, a.store, a.log.With("stage", StageQuery),
		query.WithImageEncoder(img, triple(a.manifest.Image.Mean), triple(a.manifest.Image.Std)))
	if err != nil {
		return nil, nil, nil, err
	}
	a.Query = handler
	// A query the stage gives up on is still answered, with the error.
	return handler, nil, []kafka.Option{kafka.WithReply(handler.Reply)}, nil
}

// checkPooling refuses seqTransf with a bundle that has no temporal head:
// the pool stage could not produce such vectors, and an index or query stage
// would create or search a collection that can never be filled. When the
// sample stage runs here too, it also refuses sampling more frames per clip
// than the head takes, since every clip would be dead-lettered; a sample
// stage elsewhere may have its own setting, so that only gets a warning.
func (a *App) checkPooling(sampleHere, poolHere bool) error {
	mode := a.Config.Stages.Pool.Mode
	if mode != pool.SeqTransf {
		return nil
	}
	m := a.manifest
	if !m.HasTemporal() {
		return fmt.Errorf("stages.pool.mode is %s but model bundle %s (%s) has no temporal head (no temporal section in %s): "+
			"use %s, or a bundle exported with its seqTransf weights", mode, m.Name, m.Dir, bundle.ManifestFile, pool.MeanP)
	}
	if s := a.Config.Stages.Sample.MaxFrames; s > m.Temporal.MaxFrames {
		switch {
		case sampleHere:
			return fmt.Errorf("stages.sample.max_frames is %d but the temporal head of model bundle %s takes at most %d frames (temporal.max_frames): "+
				"lower stages.sample.max_frames or use %s", s, m.Name, m.Temporal.MaxFrames, pool.MeanP)
		case poolHere:
			a.log.Warn("clips with more frames than the temporal head takes will be dead-lettered by the pool stage",
				"stages.sample.max_frames", s, "temporal.max_frames", m.Temporal.MaxFrames, "model", m.Name)
		}
	}
	return nil
}

// pooler builds the configured pooling. seqTransf runs the bundle's temporal
// head with the pool stage's batch size, so each handler batch is one padded
// run.
func (a *App) pooler() (pool.Pooler, error) {
	o := a.sessionOptions()
	o.MaxBatch = max(a.Config.Stages.Pool.MaxBatch, 1)
	p, closeP, err := NewPooler(a.Config.Stages.Pool.Mode, a.manifest, a.runtime, o)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, closeP)
	return p, nil
}

// checkCollection refuses to run against a collection built by another
// model or pooling mode; a missing collection is fine (nothing indexed yet).
func (a *App) checkCollection(ctx context.Context) error {
	have, err := a.store.Collection(ctx, a.Config.Store.Collection)
	if errors.Is(err, sinks.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return have.Compatible(a.collectionSpec())
}

// Live fails when a stage has been stuck on one batch for longer than
// telemetry.stuck_after.
func (a *App) Live() error {
	var errs []error
	for _, st := range a.stages {
		errs = append(errs, st.Live(a.Config.Telemetry.StuckAfter))
	}
	return errors.Join(errs...)
}

// Ready fails while the broker or the store cannot be reached, or the HTTP
// API has not read its topics yet. Models are loaded before New returns, so
// a running App has them.
func (a *App) Ready(ctx context.Context) error {
	if err := kafka.Ping(ctx, a.Config.Kafka); err != nil {
		return err
	}
	if a.store != nil {
		if _, err := a.store.Collection(ctx, a.Config.Store.Collection); err != nil && !errors.Is(err, sinks.ErrNotFound) {
			return fmt.Errorf("store: %w", err)
		}
	}
	if a.web != nil {
		// Until the HTTP API has read the topics it would call known videos
		// unknown.
		if err := a.web.tracker.Ready(); err != nil {
			return fmt.Errorf("http: %w", err)
		}
	}
	return nil
}

// Telemetry returns the telemetry the stages record to.
func (a *App) Telemetry() *telemetry.Telemetry { return a.tel }

// Kafka returns the broker settings in use (the embedded broker's address
// when it runs).
func (a *App) Kafka() kafka.Config { return a.Config.Kafka }

// Store returns the vector store, or nil when no stage here needs it.
func (a *App) Store() sinks.Store { return a.store }

// Manifest returns the model bundle, or nil when no stage here needs it.
func (a *App) Manifest() *bundle.Manifest { return a.manifest }

// Run runs every stage until ctx is cancelled.
func (a *App) Run(ctx context.Context) error {
	// Work outside the stage runtime (streams) finds the telemetry here.
	ctx = telemetry.With(ctx, a.tel)
	var wg sync.WaitGroup
	errs := make([]error, len(a.stages))
	for i, st := range a.stages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = st.Run(ctx)
		}()
	}
	if a.web != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.web.run(ctx, a.log)
		}()
	}
	var streamsErr error
	if a.Streams != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			streamsErr = a.Streams.Run(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(append(errs, streamsErr)...)
}

// Close releases everything in reverse order of opening.
func (a *App) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](); err != nil {
			a.log.Warn("close", "err", err)
		}
	}
	a.closers = nil
}

// triple converts a validated three-channel setting.
func triple(v []float32) [3]float32 {
	var t [3]float32
	copy(t[:], v)
	return t
}
