package onnx

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/vidx/vidx/encoders/onnxbuild"
	"github.com/vidx/vidx/encoders/testmodels"
)

// seqTransfReference computes CLIP4Clip's seqTransf pooling of one clip in
// float64, straight from the definition in CLIP4Clip's modeling.py
// (_loose_similarity, sim_header "seqTransf") and module_cross.py
// (TransformerClip), with the weights the generated head holds. Only the
// clip's own frames are fed: padding, masked as keys in the model, must not
// matter.
//
//	x = frames + frame_position_embeddings[0:n]
//	x = resblocks(x): x += attn(ln_1(x)); x += c_proj(QuickGELU(c_fc(ln_2(x))))
//	x = x + frames
//	v = mean_t(x_t / |x_t|); v / |v|
func seqTransfReference(w *testmodels.TemporalWeights, frames [][]float32) []float64 {
	n, d := len(frames), w.Dim
	x := make([][]float64, n)
	for t, f := range frames {
		x[t] = make([]float64, d)
		for j := range d {
			x[t][j] = float64(f[j]) + float64(w.Position[t*d+j])
		}
	}
	for i := range w.Blocks {
		b := &w.Blocks[i]
		h := refLayerNorm(x, b.LN1Weight, b.LN1Bias)
		a := refAttention(h, b, d, w.Heads)
		for t := range x {
			for j := range d {
				x[t][j] += a[t][j]
			}
		}
		h = refLayerNorm(x, b.LN2Weight, b.LN2Bias)
		h = refLinear(h, b.FCWeight, b.FCBias, d, 4*d)
		for t := range h {
			for j, v := range h[t] {
				h[t][j] = v / (1 + math.Exp(-1.702*v))
			}
		}
		h = refLinear(h, b.ProjWeight, b.ProjBias, 4*d, d)
		for t := range x {
			for j := range d {
				x[t][j] += h[t][j]
			}
		}
	}
	mean := make([]float64, d)
	for t := range x {
		row := make([]float64, d)
		for j := range d {
			row[j] = x[t][j] + float64(frames[t][j])
		}
		nrm := refNorm(row)
		for j := range d {
			mean[j] += row[j] / nrm / float64(n)
		}
	}
	nrm := refNorm(mean)
	for j := range mean {
		mean[j] /= nrm
	}
	return mean
}

func refNorm(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

func refLayerNorm(x [][]float64, scale, shift []float32) [][]float64 {
	out := make([][]float64, len(x))
	for t, row := range x {
		var mu, v float64
		for _, a := range row {
			mu += a
		}
		mu /= float64(len(row))
		for _, a := range row {
			v += (a - mu) * (a - mu)
		}
		v /= float64(len(row))
		out[t] = make([]float64, len(row))
		for j, a := range row {
			out[t][j] = (a-mu)/math.Sqrt(v+1e-5)*float64(scale[j]) + float64(shift[j])
		}
	}
	return out
}

// refLinear is x @ W + b with W stored [in, out].
func refLinear(x [][]float64, w, b []float32, in, out int) [][]float64 {
	y := make([][]float64, len(x))
	for t, row := range x {
		y[t] = make([]float64, out)
		for o := range out {
			s := float64(b[o])
			for i := range in {
				s += row[i] * float64(w[i*out+o])
			}
			y[t][o] = s
		}
	}
	return y
}

func refAttention(h [][]float64, b *testmodels.TemporalBlock, d, heads int) [][]float64 {
	q := refLinear(h, b.QWeight, b.QBias, d, d)
	k := refLinear(h, b.KWeight, b.KBias, d, d)
	v := refLinear(h, b.VWeight, b.VBias, d, d)
	hd := d / heads
	n := len(h)
	ctx := make([][]float64, n)
	for t := range ctx {
		ctx[t] = make([]float64, d)
	}
	for hh := range heads {
		lo := hh * hd
		for t := range n {
			logits := make([]float64, n)
			top := math.Inf(-1)
			for s := range n {
				var dot float64
				for j := lo; j < lo+hd; j++ {
					dot += q[t][j] * k[s][j]
				}
				logits[s] = dot / math.Sqrt(float64(hd))
				top = max(top, logits[s])
			}
			var z float64
			for s := range logits {
				logits[s] = math.Exp(logits[s] - top)
				z += logits[s]
			}
			for s := range n {
				for j := lo; j < lo+hd; j++ {
					ctx[t][j] += logits[s] / z * v[s][j]
				}
			}
		}
	}
	return refLinear(ctx, b.OutWeight, b.OutBias, d, d)
}

func randomFrames(r *rand.Rand, n, dim int) [][]float32 {
	frames := make([][]float32, n)
	for f := range frames {
		frames[f] = make([]float32, dim)
		for j := range frames[f] {
			frames[f][j] = float32(r.NormFloat64())
		}
	}
	return frames
}

func maxAbsDiff64(a []float32, b []float64) float64 {
	var m float64
	for i := range a {
		m = max(m, math.Abs(float64(a[i])-b[i]))
	}
	return m
}

const parityTol = 1e-4

// TestTemporalParity checks the runner and the generated head together
// against the reference: every clip length 1..max_frames on its own, then
// all of them shuffled into one call whose MaxBatch splits it into uneven
// chunks.
func TestTemporalParity(t *testing.T) {
	r := newTestRuntime(t)
	tiny, _ := bundleDirs(t)
	w := testmodels.TinyTemporalWeights()
	opts := testOpts
	opts.MaxBatch = 5
	enc, err := r.NewTemporalEncoder(loadBundle(t, tiny), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	if enc.MaxFrames() != testmodels.TemporalMaxFrames || enc.Dim() != testmodels.TinyDim || enc.MaxBatch() != 5 {
		t.Fatalf("encoder: max frames %d, dim %d, max batch %d", enc.MaxFrames(), enc.Dim(), enc.MaxBatch())
	}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(21, 4))

	clips := make([][][]float32, enc.MaxFrames())
	want := make([][]float64, len(clips))
	var worst float64
	for n := 1; n <= enc.MaxFrames(); n++ {
		clips[n-1] = randomFrames(rng, n, enc.Dim())
		want[n-1] = seqTransfReference(w, clips[n-1])
		got, err := enc.Pool(ctx, clips[n-1:n])
		if err != nil {
			t.Fatal(err)
		}
		d := maxAbsDiff64(got[0], want[n-1])
		worst = max(worst, d)
		if d > parityTol {
			t.Errorf("%d frames: max abs difference from the reference %g > %g", n, d, parityTol)
		}
	}

	perm := rng.Perm(len(clips))
	mixed := make([][][]float32, len(clips))
	for i, p := range perm {
		mixed[i] = clips[p]
	}
	got, err := enc.Pool(ctx, mixed)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(mixed) {
		t.Fatalf("%d vectors for %d clips", len(got), len(mixed))
	}
	for i, p := range perm {
		d := maxAbsDiff64(got[i], want[p])
		worst = max(worst, d)
		if d > parityTol {
			t.Errorf("mixed batch, clip %d (%d frames): max abs difference %g > %g", i, p+1, d, parityTol)
		}
	}
	t.Logf("worst max abs difference from the float64 reference: %.2e", worst)
}

// TestTemporalReferenceDiscriminates makes sure the parity test could fail:
// the reference tells seqTransf from meanP and from a model that ignores
// frame order, by far more than the tolerance.
func TestTemporalReferenceDiscriminates(t *testing.T) {
	w := testmodels.TinyTemporalWeights()
	frames := randomFrames(rand.New(rand.NewPCG(3, 3)), 6, w.Dim)
	ref := seqTransfReference(w, frames)

	mean := make([]float64, w.Dim)
	for _, f := range frames {
		var s float64
		for _, x := range f {
			s += float64(x) * float64(x)
		}
		for j, x := range f {
			mean[j] += float64(x) / math.Sqrt(s)
		}
	}
	nrm := refNorm(mean)
	meanP := make([]float32, w.Dim)
	for j := range mean {
		meanP[j] = float32(mean[j] / nrm)
	}
	if d := maxAbsDiff64(meanP, ref); d < 100*parityTol {
		t.Errorf("seqTransf reference is within %g of meanP", d)
	}
	rev := make([][]float32, len(frames))
	for i := range frames {
		rev[i] = frames[len(frames)-1-i]
	}
	revRef := seqTransfReference(w, rev)
	out := make([]float32, len(revRef))
	for i, v := range revRef {
		out[i] = float32(v)
	}
	if d := maxAbsDiff64(out, ref); d < 100*parityTol {
		t.Errorf("reversing the frames moves the reference by only %g", d)
	}
}

func TestTemporalErrors(t *testing.T) {
	r := newTestRuntime(t)
	tiny, color := bundleDirs(t)

	_, err := r.NewTemporalEncoder(loadBundle(t, color), testOpts)
	if !errors.Is(err, ErrNoTemporal) || !strings.Contains(err.Error(), "test-color") {
		t.Fatalf("colour bundle: error %v, want ErrNoTemporal naming the model", err)
	}

	enc, err := r.NewTemporalEncoder(loadBundle(t, tiny), testOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	good := randomFrames(rng, 3, enc.Dim())
	ragged := randomFrames(rng, 2, enc.Dim())
	ragged[1] = ragged[1][:enc.Dim()-1]
	cases := []struct {
		name  string
		clips [][][]float32
		want  []string
	}{
		{"too many frames", [][][]float32{good, randomFrames(rng, 13, enc.Dim())}, []string{"clip 1", "13 frames", "max_frames = 12"}},
		{"no frames", [][][]float32{{}, good}, []string{"clip 0", "no frames"}},
		{"wrong width", [][][]float32{good, good, ragged}, []string{"clip 2", "frame 1 has 127 values", "embedding_dim 128"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := enc.Pool(context.Background(), c.clips)
			if err == nil {
				t.Fatalf("Pool = %d vectors, want an error", len(out))
			}
			if !errors.Is(err, ErrInvalidClip) {
				t.Errorf("error %v does not wrap ErrInvalidClip", err)
			}
			for _, s := range c.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
	if out, err := enc.Pool(context.Background(), nil); err != nil || len(out) != 0 {
		t.Errorf("no clips: %v, %v", out, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := enc.Pool(ctx, [][][]float32{good}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: error %v", err)
	}
}

func TestTemporalManifestMismatch(t *testing.T) {
	r := newTestRuntime(t)
	tiny, _ := bundleDirs(t)
	cases := []struct {
		name   string
		edit   func(string) string
		substr []string
	}{
		{"frames name", replace("frames: frame_embeds", "frames: frames"),
			[]string{"model test-tiny-clip temporal", "temporal.frames", `"frames" is not an input`, `model input "frame_embeds" is not fed`}},
		{"mask name", replace("mask: frame_mask", "mask: video_mask"),
			[]string{"temporal.mask", `"video_mask" is not an input`}},
		{"output name", replace("output: video_embeds", "output: pooled"),
			[]string{"temporal.output", `"pooled"`}},
		{"max frames", replace("max_frames: 12", "max_frames: 16"),
			[]string{"temporal.max_frames is 16", `"frame_embeds" has shape [-1 12 128]`}},
		{"embedding dim", replace("embedding_dim: 128", "embedding_dim: 64"),
			[]string{"embedding_dim is 64", `"frame_embeds" has shape [-1 12 128]`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := editManifest(t, tiny, c.edit)
			e, err := r.NewTemporalEncoder(m, testOpts)
			if err == nil {
				e.Close()
				t.Fatal("no error")
			}
			for _, s := range c.substr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

// TestTemporalUnnormalisedHead refuses a head that pools without the final
// normalisation (here: a plain sum of the valid frames), which would make
// cosine similarities meaningless.
func TestTemporalUnnormalisedHead(t *testing.T) {
	r := newTestRuntime(t)
	tiny, _ := bundleDirs(t)
	m := editManifest(t, tiny, replace("max_frames: 12", "max_frames: 4"))
	g := onnxbuild.NewGraph("sum")
	frames := g.Input(testmodels.TemporalFrames, onnxbuild.Float, "N", 4, testmodels.TinyDim)
	mask := g.Input(testmodels.TemporalMask, onnxbuild.Float, "N", 4)
	masked := g.Op("Mul", []string{frames, g.Op("Unsqueeze", []string{mask, g.Int64s(2)})})
	sum := g.Op("ReduceSum", []string{masked, g.Int64s(1)}, onnxbuild.AttrInt("keepdims", 0))
	g.Output(g.Op("Mul", []string{sum, g.Scalar(3)}), testmodels.TemporalOutput, onnxbuild.Float, "N", testmodels.TinyDim)
	if err := g.Model().WriteFile(m.Path(m.Temporal.ONNX)); err != nil {
		t.Fatal(err)
	}
	e, err := r.NewTemporalEncoder(m, testOpts)
	if err == nil {
		e.Close()
		t.Fatal("a head with unnormalised output was accepted")
	}
	for _, s := range []string{"model test-tiny-clip temporal", `"video_embeds" has norm 3`, "normalise-mean-normalise"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}
