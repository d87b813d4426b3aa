package bench

import (
	"context"
	"fmt"
	"image"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/media"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/stages/encode"
)

// batch is the encode stage's image-encoder batch (config model.max_batch).
const batch = onnx.DefaultMaxBatch

// rounds and batches per round of the interleaved encode measurements:
// vidx and its baselines take turns so that load from other processes falls
// on all alike; each figure is the median round. Many short rounds, because
// on a shared host the int8 kernels' speed can change by a third within
// seconds.
func (c *Config) encodeRounds() (rounds, batches int) {
	if c.Quick {
		return 1, 1
	}
	return 8, 3
}

func (c *Config) sessionOptions(noSpin bool) onnx.SessionOptions {
	return onnx.SessionOptions{IntraOpThreads: c.Threads, InterOpThreads: 1, MaxBatch: batch, NoSpinning: noSpin}
}

// encodeFigures also returns the fp32 rates, whose bare loops are the
// pipeline figures' yardstick.
func (c *Config) encodeFigures(ctx context.Context, rt *onnx.Runtime, fp32, int8 *bundle.Manifest, video string) ([]Figure, encodeRates, error) {
	models := map[string]*bundle.Manifest{"fp32": fp32}
	if int8 != nil {
		models["int8"] = int8
	}
	rates, err := c.encodeRates(ctx, rt, models)
	if err != nil {
		return nil, encodeRates{}, err
	}
	var figs []Figure
	note := fmt.Sprintf("batch %d, %d intra-op threads", batch, c.Threads)
	for _, kind := range []string{"fp32", "int8"} {
		r, ok := rates[kind]
		if !ok {
			continue
		}
		figs = append(figs,
			Figure{Name: "encode_" + kind, Unit: "images/s", Vidx: r.vidx, Baseline: r.bare, Against: "bare onnxruntime_go loop, same session options (vidx's: no spinning)", Ratio: r.vidx / r.bare,
				Note: note},
			Figure{Name: "encode_" + kind + "_nospin", Unit: "images/s", Vidx: r.vidx, Baseline: r.bareSpin, Against: "bare loop with ONNX Runtime's default (spinning on)", Ratio: r.vidx / r.bareSpin,
				Note: note})
	}
	if int8 != nil {
		figs = append(figs, Figure{Name: "int8_speed", Unit: "images/s", Vidx: rates["int8"].vidx, Baseline: rates["fp32"].vidx,
			Against: "vidx fp32", Ratio: rates["int8"].vidx / rates["fp32"].vidx, Note: "rounds of both models interleaved"})
		f, err := c.cosineFigure(ctx, rt, fp32, int8, video)
		if err != nil {
			return nil, encodeRates{}, err
		}
		figs = append(figs, f)
	}
	f, err := c.spinFigures(ctx, rt, fp32, video)
	if err != nil {
		return nil, encodeRates{}, err
	}
	return append(figs, f...), rates["fp32"], nil
}

// encodeRates are images/s of one model: vidx's ImageEncoder with vidx's
// session options (no spinning), a bare loop with the same options, and a
// bare loop with ONNX Runtime's own default (spinning on).
type encodeRates struct{ vidx, bare, bareSpin float64 }

// bestBare is the faster bare loop: the yardstick the pipeline figures
// divide by, so neither spinning setting flatters them.
func (r encodeRates) bestBare() float64 { return max(r.bare, r.bareSpin) }

// encodeRates measures the three rates of encodeRates for every model, in
// rounds that rotate through all of them: on a shared host the int8
// kernels' speed moves by a third from one minute to the next, and only
// interleaving lets int8_speed compare the two models under the same load.
func (c *Config) encodeRates(ctx context.Context, rt *onnx.Runtime, models map[string]*bundle.Manifest) (map[string]encodeRates, error) {
	type runner struct {
		kind, what string
		run        func() error
	}
	var runs []runner
	var closers []func()
	defer func() {
		for _, f := range slices.Backward(closers) {
			f()
		}
	}()
	o := c.sessionOptions(true)
	for _, kind := range slices.Sorted(maps.Keys(models)) {
		m := models[kind]
		enc, err := rt.NewImageEncoder(m, o)
		if err != nil {
			return nil, err
		}
		closers = append(closers, func() { enc.Close() })
		size := m.Image.Size
		px := randomPixels(batch*3*size*size, 1)
		in, err := ort.NewTensor(ort.NewShape(batch, 3, int64(size), int64(size)), px)
		if err != nil {
			return nil, err
		}
		closers = append(closers, func() { in.Destroy() })
		bare, err := newBareImage(m, o, in)
		if err != nil {
			return nil, err
		}
		closers = append(closers, bare.Destroy)
		spin, err := newBareImage(m, c.sessionOptions(false), in)
		if err != nil {
			return nil, err
		}
		closers = append(closers, spin.Destroy)
		runs = append(runs,
			runner{kind, "vidx", func() error {
				_, err := enc.EncodeImages(ctx, px, batch)
				return err
			}},
			runner{kind, "bare", bare.Run},
			runner{kind, "bare_spinning", spin.Run})
	}
	// Warm-up: the first runs size ONNX Runtime's memory arena.
	for range 2 {
		for _, r := range runs {
			if err := r.run(); err != nil {
				return nil, err
			}
		}
	}
	rounds, batches := c.encodeRounds()
	got := make([][]float64, len(runs))
	for round := range rounds {
		for k := range runs {
			// Each round starts with another runner, so none always
			// follows the same one.
			i := (round + k) % len(runs)
			// A spinning pool keeps its threads busy for a moment after
			// its last run; let them settle before the next one is timed.
			if err := pipeline.Sleep(ctx, settle); err != nil {
				return nil, err
			}
			r, err := rate(ctx, batches, batch, runs[i].run)
			if err != nil {
				return nil, err
			}
			got[i] = append(got[i], r)
		}
	}
	out := map[string]encodeRates{}
	for i, r := range runs {
		c.Logger.Info("encode", "model", models[r.kind].Name, "run", r.what, "images_per_s", got[i])
		e := out[r.kind]
		switch r.what {
		case "vidx":
			e.vidx = median(got[i])
		case "bare":
			e.bare = median(got[i])
		default:
			e.bareSpin = median(got[i])
		}
		out[r.kind] = e
	}
	return out, nil
}

// bareImage is an image tower bound once to its input and its own output.
type bareImage struct {
	s   *ort.AdvancedSession
	out *ort.Tensor[float32]
}

func newBareImage(m *bundle.Manifest, o onnx.SessionOptions, in *ort.Tensor[float32]) (*bareImage, error) {
	so, err := o.ORTOptions()
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	b := &bareImage{}
	if b.out, err = ort.NewEmptyTensor[float32](ort.NewShape(batch, int64(m.EmbeddingDim))); err != nil {
		return nil, err
	}
	if b.s, err = ort.NewAdvancedSession(m.Path(m.Image.ONNX), []string{m.Image.Input}, []string{m.Image.Output},
		[]ort.Value{in}, []ort.Value{b.out}, so); err != nil {
		b.out.Destroy()
		return nil, err
	}
	return b, nil
}

func (b *bareImage) Run() error { return b.s.Run() }

func (b *bareImage) Destroy() {
	b.s.Destroy()
	b.out.Destroy()
}

// settle is the pause before each timed block of encoder runs.
const settle = 100 * time.Millisecond

// rate times n calls of fn, each handling per items, as items/s.
func rate(ctx context.Context, n, per int, fn func() error) (float64, error) {
	start := time.Now()
	for range n {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := fn(); err != nil {
			return 0, err
		}
	}
	return float64(n*per) / time.Since(start).Seconds(), nil
}

// cosineFigure embeds the test video's sampled frames (the sample stage's
// default selection: 12 frames at 1 fps) with both bundles, as the encode
// stage does, and reports the lowest frame-embedding cosine.
func (c *Config) cosineFigure(ctx context.Context, rt *onnx.Runtime, fp32, int8 *bundle.Manifest, video string) (Figure, error) {
	d, err := media.NewDecoder(media.Options{Size: fp32.Image.Size})
	if err != nil {
		return Figure{}, err
	}
	var imgs []*image.RGBA
	if err := d.Clips(ctx, video, func(cl media.Clip) error {
		for _, f := range cl.Frames {
			imgs = append(imgs, f.Image)
		}
		return nil
	}); err != nil {
		return Figure{}, err
	}
	embed := func(m *bundle.Manifest) ([][]float32, error) {
		enc, err := rt.NewImageEncoder(m, c.sessionOptions(true))
		if err != nil {
			return nil, err
		}
		defer enc.Close()
		h, err := encode.New(encode.Config{Model: m.Name, Mean: triple(m.Image.Mean), Std: triple(m.Image.Std)}, enc)
		if err != nil {
			return nil, err
		}
		return h.Embed(ctx, imgs)
	}
	a, err := embed(fp32)
	if err != nil {
		return Figure{}, err
	}
	b, err := embed(int8)
	if err != nil {
		return Figure{}, err
	}
	lo, sum := 1.0, 0.0
	for i := range a {
		cs := cosine(a[i], b[i])
		lo = min(lo, cs)
		sum += cs
	}
	return Figure{Name: "int8_frame_cosine", Unit: "cosine", Vidx: lo, Baseline: 1, Against: "fp32 embeddings of the same frames", Ratio: lo,
		Note: fmt.Sprintf("lowest of %d sampled frames; mean %.5f", len(a), sum/float64(len(a)))}, nil
}

// spinFigures run the encoder and the sampler at once, as vidx up
// --embedded does on one machine, with ONNX Runtime's thread spinning on
// and off. Each figure is the work done in the same wall time.
func (c *Config) spinFigures(ctx context.Context, rt *onnx.Runtime, m *bundle.Manifest, video string) ([]Figure, error) {
	passes := 3
	if c.Quick {
		passes = 1
	}
	measure := func(noSpin bool) (images, frames float64, err error) {
		enc, err := rt.NewImageEncoder(m, c.sessionOptions(noSpin))
		if err != nil {
			return 0, 0, err
		}
		defer enc.Close()
		px := randomPixels(batch*3*m.Image.Size*m.Image.Size, 2)
		if _, err := enc.EncodeImages(ctx, px, batch); err != nil {
			return 0, 0, err
		}
		d, err := media.NewDecoder(media.Options{MaxFrames: 1 << 20, Size: m.Image.Size})
		if err != nil {
			return 0, 0, err
		}
		start := time.Now()
		var (
			wg             sync.WaitGroup
			nFrames        int
			nImages        int
			errS, errE     error
			samplerRunning = make(chan struct{})
		)
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer close(samplerRunning)
			for range passes {
				if errS = d.Clips(ctx, video, func(cl media.Clip) error { nFrames += len(cl.Frames); return nil }); errS != nil {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for {
				select {
				case <-samplerRunning:
					return
				default:
				}
				if _, errE = enc.EncodeImages(ctx, px, batch); errE != nil {
					return
				}
				nImages += batch
			}
		}()
		wg.Wait()
		el := time.Since(start).Seconds()
		if errS != nil || errE != nil {
			return 0, 0, fmt.Errorf("concurrent run: sampler %v, encoder %v", errS, errE)
		}
		return float64(nImages) / el, float64(nFrames) / el, nil
	}
	onI, onF, err := measure(false)
	if err != nil {
		return nil, err
	}
	offI, offF, err := measure(true)
	if err != nil {
		return nil, err
	}
	note := fmt.Sprintf("encoder (%d threads) runs while the sampler decodes the video %d time(s) at 1 fps", c.Threads, passes)
	return []Figure{
		{Name: "beside_ffmpeg_encode_nospin", Unit: "images/s", Vidx: offI, Baseline: onI, Against: "ORT spinning on (its default)", Ratio: offI / onI, Note: note},
		{Name: "beside_ffmpeg_sample_nospin", Unit: "frames/s", Vidx: offF, Baseline: onF, Against: "ORT spinning on (its default)", Ratio: offF / onF,
			Note: note},
	}, nil
}

func randomPixels(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	px := make([]float32, n)
	for i := range px {
		px[i] = float32(r.NormFloat64())
	}
	return px
}

func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func triple(v []float32) [3]float32 {
	var t [3]float32
	copy(t[:], v)
	return t
}
