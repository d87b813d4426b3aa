package bench

import (
	"context"
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/media"
	"github.com/vidx/vidx/stages/encode"
)

// batch is the encode stage's image-encoder batch (config model.max_batch).
const batch = onnx.DefaultMaxBatch

// rounds and batches per round of the interleaved encode measurements:
// vidx and its baseline alternate so that load from other processes falls
// on both alike; each figure is the median round.
func (c *Config) encodeRounds() (rounds, batches int) {
	if c.Quick {
		return 1, 1
	}
	return 3, 6
}

func (c *Config) sessionOptions(noSpin bool) onnx.SessionOptions {
	return onnx.SessionOptions{IntraOpThreads: c.Threads, InterOpThreads: 1, MaxBatch: batch, NoSpinning: noSpin}
}

func (c *Config) encodeFigures(ctx context.Context, rt *onnx.Runtime, fp32, int8 *bundle.Manifest, video string) ([]Figure, error) {
	var figs []Figure
	rates := map[string]float64{}
	for _, m := range []*bundle.Manifest{fp32, int8} {
		if m == nil {
			continue
		}
		kind := "fp32"
		if m == int8 {
			kind = "int8"
		}
		v, b, err := c.encodeVsBare(ctx, rt, m, c.sessionOptions(false))
		if err != nil {
			return nil, err
		}
		rates[kind] = v
		figs = append(figs, Figure{Name: "encode_" + kind, Unit: "images/s", Vidx: v, Baseline: b, Against: "bare onnxruntime_go loop, same session options", Ratio: v / b,
			Note: fmt.Sprintf("batch %d, %d intra-op threads", batch, c.Threads)})
	}
	if int8 != nil {
		figs = append(figs, Figure{Name: "int8_speed", Unit: "images/s", Vidx: rates["int8"], Baseline: rates["fp32"],
			Against: "vidx fp32", Ratio: rates["int8"] / rates["fp32"]})
		f, err := c.cosineFigure(ctx, rt, fp32, int8, video)
		if err != nil {
			return nil, err
		}
		figs = append(figs, f)
	}
	f, err := c.spinFigures(ctx, rt, fp32, video)
	if err != nil {
		return nil, err
	}
	return append(figs, f...), nil
}

// encodeVsBare returns images/s of vidx's ImageEncoder and of a bare loop
// over the same model and options.
func (c *Config) encodeVsBare(ctx context.Context, rt *onnx.Runtime, m *bundle.Manifest, o onnx.SessionOptions) (vidx, bare float64, err error) {
	enc, err := rt.NewImageEncoder(m, o)
	if err != nil {
		return 0, 0, err
	}
	defer enc.Close()
	size := m.Image.Size
	px := randomPixels(batch*3*size*size, 1)

	so, err := o.ORTOptions()
	if err != nil {
		return 0, 0, err
	}
	defer so.Destroy()
	in, err := ort.NewTensor(ort.NewShape(batch, 3, int64(size), int64(size)), px)
	if err != nil {
		return 0, 0, err
	}
	defer in.Destroy()
	out, err := ort.NewEmptyTensor[float32](ort.NewShape(batch, int64(m.EmbeddingDim)))
	if err != nil {
		return 0, 0, err
	}
	defer out.Destroy()
	s, err := ort.NewAdvancedSession(m.Path(m.Image.ONNX), []string{m.Image.Input}, []string{m.Image.Output},
		[]ort.Value{in}, []ort.Value{out}, so)
	if err != nil {
		return 0, 0, err
	}
	defer s.Destroy()

	rounds, batches := c.encodeRounds()
	runVidx := func() error {
		_, err := enc.EncodeImages(ctx, px, batch)
		return err
	}
	// Warm-up: the first runs size ONNX Runtime's memory arena.
	for range 2 {
		if err := runVidx(); err != nil {
			return 0, 0, err
		}
		if err := s.Run(); err != nil {
			return 0, 0, err
		}
	}
	var vr, br []float64
	for range rounds {
		r, err := rate(ctx, batches, batch, runVidx)
		if err != nil {
			return 0, 0, err
		}
		vr = append(vr, r)
		if r, err = rate(ctx, batches, batch, s.Run); err != nil {
			return 0, 0, err
		}
		br = append(br, r)
	}
	c.Logger.Info("encode", "model", m.Name, "vidx", vr, "bare", br)
	return median(vr), median(br), nil
}

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
