package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/vidx/vidx/app"
	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/stages/pool"
)

// modelFlags open a bundle and ONNX Runtime for the embedding commands.
type modelFlags struct {
	bundle   string
	ortLib   string
	threads  int
	maxBatch int
}

func (f *modelFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.bundle, "bundle", "", "model bundle directory (env VIDX_BUNDLE)")
	fs.StringVar(&f.ortLib, "ort-lib", "", "ONNX Runtime shared library (env VIDX_ORT_LIB)")
	fs.IntVar(&f.threads, "threads", 0, "ONNX Runtime intra-op threads (default: one per core)")
	fs.IntVar(&f.maxBatch, "max-batch", 0, "items per model run (default 8)")
}

func (f *modelFlags) sessionOptions() onnx.SessionOptions {
	return onnx.SessionOptions{IntraOpThreads: f.threads, MaxBatch: f.maxBatch}
}

// open loads the bundle, logging what was assumed about a Hugging Face
// export, checks it against its models and loads ONNX Runtime.
func (f *modelFlags) open(stderr io.Writer) (*bundle.Manifest, *onnx.Runtime, error) {
	dir := f.bundle
	if dir == "" {
		dir = os.Getenv("VIDX_BUNDLE")
	}
	if dir == "" {
		return nil, nil, fmt.Errorf("--bundle is required (a model bundle directory)")
	}
	m, err := bundle.Load(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, a := range m.Assumptions {
		fmt.Fprintf(stderr, "vidx: model bundle %s: assumed %s\n", m.Dir, a)
	}
	rep := m.Check(bundle.ReadModelIO)
	for _, w := range rep.Warnings() {
		fmt.Fprintf(stderr, "vidx: model bundle %s: %s\n", m.Dir, w)
	}
	if err := rep.Err(); err != nil {
		return nil, nil, err
	}
	rt, err := onnx.NewRuntime(f.ortLib)
	if err != nil {
		return nil, nil, err
	}
	return m, rt, nil
}

// textEmbedding is one line of `vidx embed-text --json`.
type textEmbedding struct {
	Model     string    `json:"model"`
	Text      string    `json:"text"`
	IDs       []int64   `json:"ids"`
	Embedding []float32 `json:"embedding"`
	Norm      float64   `json:"norm"`
}

func cmdEmbedText(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("embed-text", stderr, "embed-text --bundle DIR [--json] TEXT...\n\n"+
		"Embeds each TEXT with the bundle's text model, as the query stage does. With --json, prints\n"+
		`one {"model", "text", "ids", "embedding", "norm"} object per line; the embedding is the`+"\n"+
		"model's output as is (not normalised), norm its L2 norm.")
	var mf modelFlags
	mf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON lines")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	texts := fs.Args()
	m, rt, err := mf.open(stderr)
	if err != nil {
		return err
	}
	defer rt.Close()
	enc, err := rt.NewTextEncoder(m, mf.sessionOptions())
	if err != nil {
		return err
	}
	defer enc.Close()
	vecs, err := enc.EncodeTexts(ctx, texts)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(stdout)
	je := json.NewEncoder(w)
	je.SetEscapeHTML(false)
	for i, text := range texts {
		te := textEmbedding{Model: m.Name, Text: text, IDs: enc.Tokenize(text), Embedding: vecs[i], Norm: l2(vecs[i])}
		if *asJSON {
			if err := je.Encode(te); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(w, "%q\n  %d-d, norm %.6g: %s\n", text, len(te.Embedding), te.Norm, preview(te.Embedding))
	}
	return w.Flush()
}

// videoEmbedding is the output of `vidx embed-video --json`.
type videoEmbedding struct {
	Model    string       `json:"model"`
	Dim      int          `json:"dim"`
	File     string       `json:"file"`
	Pooling  string       `json:"pooling"`
	Codec    string       `json:"codec"`
	Sampling samplingJSON `json:"sampling"`
	Clips    []clipJSON   `json:"clips"`
}

type clipJSON struct {
	Index     int         `json:"index"`
	StartS    float64     `json:"start_s"`
	EndS      float64     `json:"end_s"`
	Frames    []frameJSON `json:"frames"`
	Embedding []float32   `json:"embedding"` // pooled: unit length
}

type frameJSON struct {
	Frame     int       `json:"frame"` // index among the video's sampled frames
	TimeS     float64   `json:"time_s"`
	Embedding []float32 `json:"embedding"` // the image model's output as is
}

func cmdEmbedVideo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("embed-video", stderr, "embed-video --bundle DIR [--json] [--pooling meanP|seqTransf] [sampling flags] FILE\n\n"+
		"Samples FILE as the sample stage does, embeds every kept frame with the image model as the\n"+
		"encode stage does, and pools each clip as the pool stage does. See docs/models.md for the JSON.")
	var mf modelFlags
	mf.register(fs)
	var sf samplingFlags
	sf.register(fs)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pooling := fs.String("pooling", pool.MeanP, "clip pooling: meanP (CLIP4Clip's mean of normalised frames) or seqTransf (the bundle's temporal model)")
	codec := fs.String("codec", app.CodecNone, "pass the crops through the clip message codec first: none, jpeg (what the pipeline sends by default) or png")
	quality := fs.Int("quality", 95, "JPEG quality with --codec jpeg (the sample stage's default)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	uri := fs.Arg(0)
	switch *codec {
	case app.CodecNone, schemas.CodecJPEG, schemas.CodecPNG:
	default:
		return fmt.Errorf("embed-video: --codec %q: want none, jpeg or png", *codec)
	}
	if *pooling != pool.MeanP && *pooling != pool.SeqTransf {
		return fmt.Errorf("embed-video: --pooling %q: want %s or %s", *pooling, pool.MeanP, pool.SeqTransf)
	}
	m, rt, err := mf.open(stderr)
	if err != nil {
		return err
	}
	defer rt.Close()
	// Crops at the model's size: 224 for every CLIP the pipeline runs.
	d, err := sf.decoder(m.Image.Size)
	if err != nil {
		return err
	}
	emb, err := app.EmbedVideo(ctx, m, rt, mf.sessionOptions(), d, uri, app.EmbedOptions{Pooling: *pooling, Codec: *codec, Quality: *quality})
	if err != nil {
		return fmt.Errorf("embed-video: %w", err)
	}
	clips, perClip, pooled := emb.Clips, emb.Frames, emb.Pooled

	o := d.Options()
	out := videoEmbedding{Model: m.Name, Dim: m.EmbeddingDim, File: uri, Pooling: emb.Pooling, Codec: *codec, Sampling: samplingOf(o)}
	for i, c := range clips {
		cj := clipJSON{Index: c.Index, StartS: c.StartS, EndS: c.EndS, Embedding: pooled[i]}
		for j, f := range c.Frames {
			cj.Frames = append(cj.Frames, frameJSON{Frame: frameIndex(f.TimeS, o.FPS), TimeS: f.TimeS, Embedding: perClip[i][j]})
		}
		out.Clips = append(out.Clips, cj)
	}
	if *asJSON {
		je := json.NewEncoder(stdout)
		je.SetEscapeHTML(false)
		return je.Encode(out)
	}
	w := bufio.NewWriter(stdout)
	fmt.Fprintf(w, "%s: model %s (%d-d), %s pooling, %d clip(s)\n", uri, m.Name, m.EmbeddingDim, out.Pooling, len(out.Clips))
	for _, c := range out.Clips {
		times := make([]string, len(c.Frames))
		for j, f := range c.Frames {
			times[j] = fmt.Sprintf("%g", f.TimeS)
		}
		fmt.Fprintf(w, "clip %d [%gs, %gs): %d frames at %s s\n  pooled: %s\n", c.Index, c.StartS, c.EndS, len(c.Frames), strings.Join(times, " "), preview(c.Embedding))
	}
	return w.Flush()
}

func l2(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// preview shows the first few values of a vector.
func preview(v []float32) string {
	const n = 6
	parts := make([]string, 0, n+1)
	for i, x := range v {
		if i == n {
			parts = append(parts, fmt.Sprintf("... (%d values)", len(v)))
			break
		}
		parts = append(parts, fmt.Sprintf("%.5f", x))
	}
	return "[" + strings.Join(parts, " ") + "]"
}
