package testmodels_test

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/vidx/vidx/encoders/onnx/orttest"
	"github.com/vidx/vidx/encoders/testmodels"
)

const (
	tFrames = testmodels.TemporalMaxFrames
	tDim    = testmodels.TinyDim
)

// temporalClip is one padded row of the temporal head's input.
type temporalClip struct {
	frames []float32 // [tFrames * tDim]
	mask   []float32 // [tFrames]
}

// randomClip has n unit-variance frames followed by padding filled with pad.
func randomClip(r *rand.Rand, n int, pad float32) temporalClip {
	c := temporalClip{frames: make([]float32, tFrames*tDim), mask: make([]float32, tFrames)}
	for i := range c.frames {
		if i < n*tDim {
			c.frames[i] = float32(r.NormFloat64())
		} else {
			c.frames[i] = pad
		}
	}
	for i := range n {
		c.mask[i] = 1
	}
	return c
}

func runTemporal(t *testing.T, s *ort.DynamicAdvancedSession, clips ...temporalClip) [][]float32 {
	t.Helper()
	var frames, mask []float32
	for _, c := range clips {
		frames, mask = append(frames, c.frames...), append(mask, c.mask...)
	}
	n := int64(len(clips))
	fr, err := ort.NewTensor(ort.NewShape(n, tFrames, tDim), frames)
	if err != nil {
		t.Fatal(err)
	}
	defer fr.Destroy()
	m, err := ort.NewTensor(ort.NewShape(n, tFrames), mask)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Destroy()
	return runOutput(t, s, []ort.Value{fr, m}, len(clips), tDim)
}

// meanP is CLIP4Clip's parameter-free pooling of the valid frames.
func meanP(c temporalClip) []float32 {
	acc := make([]float32, tDim)
	for f := range tFrames {
		if c.mask[f] == 0 {
			continue
		}
		row := c.frames[f*tDim : (f+1)*tDim]
		n := float32(norm(row))
		for j, x := range row {
			acc[j] += x / n
		}
	}
	n := float32(norm(acc))
	for j := range acc {
		acc[j] /= n
	}
	return acc
}

// TestTinyTemporal checks the seqTransf head's contract with ONNX Runtime:
// unit-norm output, padding that cannot leak into the result, batching that
// changes nothing, and a result that depends on frame order and on the
// transformer (it is not meanP). Exact parity with a reference computation
// is checked in encoders/onnx, through the runner.
func TestTinyTemporal(t *testing.T) {
	orttest.Require(t)
	dir := t.TempDir()
	if err := testmodels.WriteTinyCLIPBundle(dir); err != nil {
		t.Fatal(err)
	}
	s := orttest.SessionFile(t, filepath.Join(dir, testmodels.TemporalFile),
		[]string{testmodels.TemporalFrames, testmodels.TemporalMask}, []string{testmodels.TemporalOutput})
	r := rand.New(rand.NewPCG(5, 9))

	var clips []temporalClip
	for n := 1; n <= tFrames; n++ {
		clips = append(clips, randomClip(r, n, 0))
	}
	batch := runTemporal(t, s, clips...)
	for i, c := range clips {
		n := i + 1
		if d := math.Abs(norm(batch[i]) - 1); d > 1e-5 {
			t.Errorf("%d frames: output norm differs from 1 by %g", n, d)
		}
		one := runTemporal(t, s, c)[0]
		if d := maxAbsDiff(one, batch[i]); d > 1e-5 {
			t.Errorf("%d frames: batch of %d differs from single by %g", n, len(clips), d)
		}

		junk := temporalClip{frames: slices.Clone(c.frames), mask: c.mask}
		for j := n * tDim; j < len(junk.frames); j++ {
			junk.frames[j] = float32(100 * r.NormFloat64())
		}
		if d := maxAbsDiff(runTemporal(t, s, junk)[0], one); d > 1e-5 {
			t.Errorf("%d frames: padding content changed the output by %g", n, d)
		}
		if n < tFrames {
			all := temporalClip{frames: junk.frames, mask: slices.Repeat([]float32{1}, tFrames)}
			if d := maxAbsDiff(runTemporal(t, s, all)[0], one); d < 1e-2 {
				t.Errorf("%d frames: marking the padding valid changed the output by only %g; frame_mask unused?", n, d)
			}
		}
		if n >= 2 {
			rev := temporalClip{frames: slices.Clone(c.frames), mask: c.mask}
			for f := range n {
				copy(rev.frames[f*tDim:(f+1)*tDim], c.frames[(n-1-f)*tDim:(n-f)*tDim])
			}
			if d := maxAbsDiff(runTemporal(t, s, rev)[0], one); d < 1e-3 {
				t.Errorf("%d frames: reversing the frames changed the output by only %g; position embeddings unused?", n, d)
			}
		}
		if c := cosine(one, meanP(c)); c > 0.999 {
			t.Errorf("%d frames: output is meanP (cosine %.5f); the transformer did nothing", n, c)
		} else if c < 0.3 {
			t.Errorf("%d frames: cosine with meanP is %.3f; the frame residual is missing?", n, c)
		}
	}
}

func TestTemporalWeights(t *testing.T) {
	a, b := testmodels.TinyTemporalWeights(), testmodels.TinyTemporalWeights()
	if a.Dim != tDim || a.MaxFrames != tFrames || a.Heads != 2 || len(a.Blocks) != testmodels.TemporalLayers {
		t.Fatalf("tiny temporal head: dim %d, max frames %d, heads %d, %d blocks", a.Dim, a.MaxFrames, a.Heads, len(a.Blocks))
	}
	if len(a.Position) != tFrames*tDim || len(a.Blocks[0].FCWeight) != 4*tDim*tDim || len(a.Blocks[3].ProjBias) != tDim {
		t.Fatalf("tensor sizes: position %d, c_fc %d, c_proj bias %d", len(a.Position), len(a.Blocks[0].FCWeight), len(a.Blocks[3].ProjBias))
	}
	if !slices.Equal(a.Position, b.Position) || !slices.Equal(a.Blocks[3].ProjWeight, b.Blocks[3].ProjWeight) {
		t.Fatal("the same seed gave different weights")
	}
	if slices.Equal(a.Blocks[0].QWeight, a.Blocks[1].QWeight) || slices.Equal(a.Blocks[0].QWeight, a.Blocks[0].KWeight) {
		t.Fatal("weights repeat across tensors")
	}
	for _, tc := range []struct{ dim, heads int }{{32, 1}, {64, 1}, {128, 2}, {512, 8}, {768, 12}} {
		if h := testmodels.TemporalHeads(tc.dim); h != tc.heads {
			t.Errorf("TemporalHeads(%d) = %d, want %d", tc.dim, h, tc.heads)
		}
	}
}
