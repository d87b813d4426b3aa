package bench

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/config"
	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/pipeline/kafka"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/sinks/embedded"
)

// queryKafkaFigures time queries end to end over Kafka, as a service asking
// them sees it: each query is published on the queries topic of an
// embedded broker, answered by the query stage of an App with its default
// settings, and read back from the results topic by a consumer that stays
// subscribed. The baseline is the same work without Kafka or the stage (a
// bare text-tower run and a plain scan), alternating query by query. tag
// goes into the figures' names ("_int8" for the quantized bundle); spin
// sets model.allow_spinning for the stage's sessions.
func (c *Config) queryKafkaFigures(ctx context.Context, rt *onnx.Runtime, m *bundle.Manifest, n int, tag string, spin bool) ([]Figure, error) {
	queries := 100
	if c.Quick {
		queries = 4
	}
	dir, err := os.MkdirTemp("", "vidx-bench-kafka-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.LogLevel = "error"
	cfg.Embedded.Broker, cfg.Embedded.BrokerPort = true, 0
	cfg.Model.Bundle, cfg.Model.ORTLib = m.Dir, c.ORTLib
	cfg.Model.IntraOpThreads = c.Threads
	cfg.Model.AllowSpinning = spin
	cfg.Telemetry.Addr = ""
	flat, err := fillStore(ctx, cfg, m, n)
	if err != nil {
		return nil, err
	}
	// A running query stage's bank is full of recent queries; start it full
	// so every measured query reranks against the whole text axis.
	bank := filepath.Join(dir, "bank.txt")
	if err := writeBank(bank, cfg.Stages.Query.BankSize); err != nil {
		return nil, err
	}
	cfg.Stages.Query.BankFile = bank

	quiet := slog.New(slog.DiscardHandler)
	a, err := app.New(ctx, cfg, []string{app.StageQuery}, quiet)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	defer func() {
		stop()
		<-done
	}()
	kc := a.Kafka()
	p := kafka.NewProducer(kc, pipeline.Backoff{Min: 10 * time.Millisecond, Max: time.Second}, quiet)
	defer p.Close()
	tap := kafka.NewTap(kc, cfg.Topics.Results, false)
	defer tap.Close()
	var took []float64 // the stage's own time per answer (took_ms)
	ask := func(ctx context.Context, id, text string) error {
		value, err := schemas.Encode(&schemas.Query{SchemaVersion: schemas.Version, QueryID: id, Text: text, TopK: 10})
		if err != nil {
			return err
		}
		if err := p.Produce(ctx, pipeline.Output{Topic: cfg.Topics.Queries, Key: []byte(id), Value: value}); err != nil {
			return err
		}
		for {
			msg, err := tap.Next(ctx)
			if err != nil {
				return err
			}
			if r, err := schemas.DecodeResult(msg.Value); err == nil && r.QueryID == id {
				if r.Error != nil {
					return fmt.Errorf("query %s: %s: %s", id, r.Error.Code, r.Error.Message)
				}
				took = append(took, r.TookMS)
				return nil
			}
		}
	}
	// The results consumer joins its group and the stage its own while the
	// first queries are asked: ask until one is answered in time.
	for i := 0; ; i++ {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := ask(wctx, fmt.Sprintf("warm-up-%d", i), fmt.Sprintf("warm-up query number %d", i))
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil || i == 24 {
			return nil, fmt.Errorf("query stage never answered: %w", err)
		}
	}

	base, err := c.newQueryBaseline(rt, m, flat)
	if err != nil {
		return nil, err
	}
	defer base.close()
	var vl, bl []float64
	// Every measured text is new to the stage, so none is answered from
	// its text cache; the repeats below are.
	measure := func(texts []string, id string) (vl, bl []float64, err error) {
		took = took[:0]
		for i, q := range texts {
			start := time.Now()
			if err := ask(ctx, fmt.Sprintf("%s-%d", id, i), q); err != nil {
				return nil, nil, err
			}
			vl = append(vl, time.Since(start).Seconds()*1000)
			ms, _, err := base.query(q)
			if err != nil {
				return nil, nil, err
			}
			bl = append(bl, ms)
		}
		return vl, bl, nil
	}
	texts := make([]string, queries)
	for i := range texts {
		texts[i] = benchQuery(i)
	}
	vl, bl, err = measure(texts, "q")
	if err != nil {
		return nil, err
	}
	note := fmt.Sprintf("%d clips, top %d candidates re-ranked against a full bank of %d, %d distinct queries one at a time through the embedded broker and the query stage (eager batches); the stage's handler took p50 %.3g ms, p99 %.3g ms of it",
		n, topK, cfg.Stages.Query.BankSize, queries, percentile(took, 50), percentile(took, 99))
	against := "bare text-tower run + plain scan of a flat array, in process"
	figs := []Figure{
		{Name: fmt.Sprintf("query_kafka%s_p50_%d", tag, n), Unit: "ms", Vidx: percentile(vl, 50), Baseline: percentile(bl, 50), Against: against, Note: note},
		{Name: fmt.Sprintf("query_kafka%s_p99_%d", tag, n), Unit: "ms", Vidx: percentile(vl, 99), Baseline: percentile(bl, 99), Against: against, Note: note},
	}
	// The same texts asked again, as a search page asks for the next page
	// or other filters: the stage's text cache (query.text_cache) holds
	// their embeddings.
	vl, bl, err = measure(texts[:min(len(texts), len(benchQueries))], "again")
	if err != nil {
		return nil, err
	}
	note = fmt.Sprintf("%d queries asked before, answered with the text cache's embeddings; the stage's handler took p50 %.3g ms, p99 %.3g ms of it",
		len(vl), percentile(took, 50), percentile(took, 99))
	figs = append(figs,
		Figure{Name: fmt.Sprintf("query_kafka%s_repeat_p50_%d", tag, n), Unit: "ms", Vidx: percentile(vl, 50), Baseline: percentile(bl, 50), Against: against, Note: note},
		Figure{Name: fmt.Sprintf("query_kafka%s_repeat_p99_%d", tag, n), Unit: "ms", Vidx: percentile(vl, 99), Baseline: percentile(bl, 99), Against: against, Note: note})
	for i := range figs {
		figs[i].Ratio = figs[i].Baseline / figs[i].Vidx
	}
	return figs, nil
}

// spinComparison sets the query stage's default (no spinning) against a
// run with model.allow_spinning, from the p50 and p99 figures of both.
func spinComparison(def, spun []Figure, n int) []Figure {
	var out []Figure
	for _, p := range []string{"p50", "p99"} {
		name := fmt.Sprintf("query_kafka_%s_%d", p, n)
		a, b := figureNamed(def, name), figureNamed(spun, name)
		if a == nil || b == nil {
			continue
		}
		out = append(out, Figure{Name: fmt.Sprintf("query_kafka_%s_nospin_%d", p, n), Unit: "ms", Vidx: a.Vidx, Baseline: b.Vidx,
			Against: "the same queries to a stage with model.allow_spinning: true", Ratio: b.Vidx / a.Vidx,
			Note: "default: ONNX Runtime's threads sleep between and within runs; the spinning stage ran right after"})
	}
	return out
}

func figureNamed(figs []Figure, name string) *Figure {
	for i := range figs {
		if figs[i].Name == name {
			return &figs[i]
		}
	}
	return nil
}

// fillStore writes n random unit vectors into the embedded store cfg
// names, in the collection its query stage searches, and returns them as
// one flat array for the baseline scan.
func fillStore(ctx context.Context, cfg config.Config, m *bundle.Manifest, n int) ([]float32, error) {
	path, err := cfg.StorePath()
	if err != nil {
		return nil, err
	}
	store, err := embedded.Open(path, embedded.Options{NoSync: true, CompactMinDead: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	defer store.Close()
	spec := sinks.CollectionSpec{Name: cfg.Store.Collection, Dim: m.EmbeddingDim, Distance: "cosine", Model: m.Name, Pooling: cfg.Stages.Pool.Mode}
	return fillCollection(ctx, store, spec, n)
}

// fillCollection creates spec in store and fills it with n random unit
// vectors, 12 clips a video, returning them as one flat array.
func fillCollection(ctx context.Context, store sinks.Store, spec sinks.CollectionSpec, n int) ([]float32, error) {
	if err := store.EnsureCollection(ctx, spec); err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(3, 4))
	flat := make([]float32, 0, n*spec.Dim)
	now := time.Now()
	for start := 0; start < n; start += 1000 {
		pts := make([]sinks.Point, min(1000, n-start))
		for i := range pts {
			v := unitVector(r, spec.Dim)
			flat = append(flat, v...)
			pts[i] = sinks.Point{ID: fmt.Sprintf("clip-%07d", start+i), Vector: v, Payload: sinks.Payload{
				VideoID: fmt.Sprintf("video-%d", (start+i)/12), ClipIndex: (start + i) % 12, StartS: float64((start+i)%12) * 10,
				EndS: float64((start+i)%12)*10 + 10, Frames: 12, IngestedAt: now}}
		}
		if err := store.Upsert(ctx, spec.Name, pts); err != nil {
			return nil, err
		}
	}
	return flat, nil
}

// writeBank writes n distinct captions, one a line, for the query stage's
// bank_file.
func writeBank(path string, n int) error {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s, take %d\n", benchQueries[i%len(benchQueries)], i)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
