package pool_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/encoders/testmodels"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/stages/pool"
)

// fakeTemporal pools a clip to its first frame plus 0.1 per frame in the
// last component, so a result shows which clip and how many frames it came
// from.
type fakeTemporal struct {
	maxFrames, dim int
	calls          [][][][]float32
	err            error
	out            func(clips [][][]float32) [][]float32
}

func (m *fakeTemporal) MaxFrames() int { return m.maxFrames }
func (m *fakeTemporal) Dim() int       { return m.dim }

func (m *fakeTemporal) Pool(_ context.Context, clips [][][]float32) ([][]float32, error) {
	m.calls = append(m.calls, clips)
	if m.err != nil {
		return nil, m.err
	}
	if m.out != nil {
		return m.out(clips), nil
	}
	out := make([][]float32, len(clips))
	for i, c := range clips {
		out[i] = append([]float32(nil), c[0]...)
		out[i][m.dim-1] += 0.1 * float32(len(c))
	}
	return out, nil
}

func frames(n, dim int, v float32) [][]float32 {
	out := make([][]float32, n)
	for i := range out {
		out[i] = make([]float32, dim)
		for j := range out[i] {
			out[i][j] = v + float32(i)
		}
	}
	return out
}

func TestNewSeqTransfPooler(t *testing.T) {
	if _, err := pool.NewSeqTransfPooler(nil); err == nil {
		t.Error("accepted a nil model")
	}
	if _, err := pool.NewSeqTransfPooler(&fakeTemporal{maxFrames: 0, dim: 4}); err == nil {
		t.Error("accepted a model taking 0 frames")
	}
	p, err := pool.NewSeqTransfPooler(&fakeTemporal{maxFrames: 12, dim: 4})
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode() != pool.SeqTransf || pool.SeqTransf != "seqTransf" {
		t.Fatalf("Mode() = %q", p.Mode())
	}
}

func TestSeqTransfPool(t *testing.T) {
	const dim = 3
	nan := float32(math.NaN())
	cases := []struct {
		name   string
		clips  [][][]float32
		err    error // the model's error
		out    func([][][]float32) [][]float32
		calls  int
		poison bool
		want   []string // error substrings; none for success
	}{
		{name: "mixed frame counts", clips: [][][]float32{frames(1, dim, 1), frames(4, dim, 2), frames(2, dim, 3)}, calls: 1},
		{name: "no clips", calls: 0},
		{name: "too many frames", clips: [][][]float32{frames(4, dim, 1), frames(5, dim, 1)}, poison: true, want: []string{"clip 1", "5 frames", "at most 4"}},
		{name: "no frames", clips: [][][]float32{{}}, poison: true, want: []string{"clip 0", "no frames"}},
		{name: "wrong width", clips: [][][]float32{frames(2, dim, 1), frames(2, dim+1, 1)}, poison: true, want: []string{"clip 1", "frame 0 has 4 values", "takes 3"}},
		{name: "NaN frame", clips: [][][]float32{{{1, nan, 0}}}, poison: true, want: []string{"clip 0", "frame 0 value 1 is NaN"}},
		{name: "model failure", clips: [][][]float32{frames(1, dim, 1)}, err: errors.New("session closed"), calls: 1, want: []string{"session closed"}},
		{name: "short output", clips: [][][]float32{frames(1, dim, 1), frames(1, dim, 1)}, calls: 1,
			out: func(c [][][]float32) [][]float32 { return [][]float32{{1, 0, 0}} }, want: []string{"1 vectors for 2 clips"}},
		{name: "narrow output", clips: [][][]float32{frames(1, dim, 1)}, calls: 1,
			out: func(c [][][]float32) [][]float32 { return [][]float32{{1, 0}} }, want: []string{"2 values for clip 0, want 3"}},
		{name: "NaN output", clips: [][][]float32{frames(1, dim, 1), frames(1, dim, 1)}, calls: 1, poison: true,
			out: func(c [][][]float32) [][]float32 { return [][]float32{{1, 0, 0}, {0, nan, 0}} }, want: []string{"clip 1", "output[1] is NaN"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &fakeTemporal{maxFrames: 4, dim: dim, err: tc.err, out: tc.out}
			p, err := pool.NewSeqTransfPooler(m)
			if err != nil {
				t.Fatal(err)
			}
			out, err := p.Pool(context.Background(), tc.clips)
			if len(m.calls) != tc.calls {
				t.Errorf("model called %d times, want %d", len(m.calls), tc.calls)
			}
			if len(tc.want) > 0 {
				if err == nil {
					t.Fatalf("Pool = %v, want an error", out)
				}
				if pipeline.IsPoison(err) != tc.poison {
					t.Errorf("error %v: poison %v, want %v", err, pipeline.IsPoison(err), tc.poison)
				}
				if tc.err != nil && !errors.Is(err, tc.err) {
					t.Errorf("error %v does not wrap the model's", err)
				}
				for _, s := range tc.want {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != len(tc.clips) {
				t.Fatalf("%d vectors for %d clips", len(out), len(tc.clips))
			}
			if tc.calls == 1 && len(m.calls[0]) != len(tc.clips) {
				t.Errorf("model got %d clips in its one call, want %d", len(m.calls[0]), len(tc.clips))
			}
			for i, c := range tc.clips {
				want := append([]float32(nil), c[0]...)
				want[dim-1] += 0.1 * float32(len(c))
				if !near(out[i], want, 0) {
					t.Errorf("clip %d: %v, want %v", i, out[i], want)
				}
			}
		})
	}
}

// TestHandleSeqTransf runs the handler on a batch of clips with every frame
// count, one too long and one from another model: the valid clips go through
// the model in one call per attempt and come out stamped seqTransf; the bad
// ones are poison and do not take the others down.
func TestHandleSeqTransf(t *testing.T) {
	m := &fakeTemporal{maxFrames: 12, dim: 4}
	p, err := pool.NewSeqTransfPooler(m)
	if err != nil {
		t.Fatal(err)
	}
	h, err := pool.New(pool.Config{Model: model}, p)
	if err != nil {
		t.Fatal(err)
	}
	var batch []pipeline.Message
	for n := 1; n <= 12; n++ {
		batch = append(batch, frameEmbeddings(t, frameMsg{clip: n, model: model, frames: frames(n, 4, float32(n))}))
	}
	res := h.Handle(context.Background(), batch)
	if len(m.calls) != 1 || len(m.calls[0]) != 12 {
		t.Fatalf("model called %d times; want once with 12 clips", len(m.calls))
	}
	for i, r := range res {
		if r.Err != nil || len(r.Outputs) != 1 {
			t.Fatalf("clip %d: %+v", i, r)
		}
		out, err := schemas.DecodeEmbeddings(schemas.KindClipEmbedding, r.Outputs[0].Value)
		if err != nil {
			t.Fatal(err)
		}
		if out.Header.Pooling != pool.SeqTransf || out.Header.ClipIndex != i+1 || len(out.Header.FrameTimes) != i+1 {
			t.Errorf("clip %d: header %+v", i, out.Header)
		}
		if got, want := out.Vectors[0][3], float32(i+1)+0.1*float32(i+1); math.Abs(float64(got-want)) > 1e-6 {
			t.Errorf("clip %d: last component %v, want %v", i, got, want)
		}
	}

	m.calls = nil
	bad := append(batch[:3:3],
		frameEmbeddings(t, frameMsg{clip: 13, model: model, frames: frames(13, 4, 1)}),
		frameEmbeddings(t, frameMsg{clip: 14, model: "other", frames: frames(2, 4, 1)}),
		batch[5])
	res = h.Handle(context.Background(), bad)
	for i, r := range res {
		wantPoison := i == 3 || i == 4
		if pipeline.IsPoison(r.Err) != wantPoison || (r.Err == nil) != (len(r.Outputs) == 1) {
			t.Errorf("message %d: err %v, %d outputs; want poison %v", i, r.Err, len(r.Outputs), wantPoison)
		}
	}
	if !strings.Contains(res[3].Err.Error(), "13 frames") {
		t.Errorf("too-long clip: %v", res[3].Err)
	}
}

// tinyTemporal opens the tiny CLIP bundle's temporal head, skipping when
// ONNX Runtime is not installed.
func tinyTemporal(tb testing.TB, maxBatch int) *onnx.TemporalEncoder {
	tb.Helper()
	rt, err := onnx.NewRuntime("")
	if errors.Is(err, onnx.ErrLibraryMissing) {
		tb.Skipf("skipping: %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rt.Close() })
	m, err := bundle.Load(tinyBundle(tb))
	if err != nil {
		tb.Fatal(err)
	}
	enc, err := rt.NewTemporalEncoder(m, onnx.SessionOptions{IntraOpThreads: 2, InterOpThreads: 1, MaxBatch: maxBatch})
	if err != nil {
		tb.Fatal(err)
	}
	return enc
}

var tiny struct {
	once sync.Once
	dir  string
	err  error
}

func tinyBundle(tb testing.TB) string {
	tb.Helper()
	tiny.once.Do(func() {
		tiny.dir, tiny.err = os.MkdirTemp("", "vidx-pool-test-")
		if tiny.err == nil {
			tiny.err = testmodels.WriteTinyCLIPBundle(tiny.dir)
		}
	})
	if tiny.err != nil {
		tb.Fatal(tiny.err)
	}
	return tiny.dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tiny.dir != "" {
		os.RemoveAll(tiny.dir)
	}
	os.Exit(code)
}

// countingModel counts calls to a real model.
type countingModel struct {
	pool.TemporalModel
	calls int
}

func (c *countingModel) Pool(ctx context.Context, clips [][][]float32) ([][]float32, error) {
	c.calls++
	return c.TemporalModel.Pool(ctx, clips)
}

// TestHandleSeqTransfONNX runs the handler with the tiny bundle's real
// seqTransf head: one padded run for a batch of 1..12-frame clips, with the
// same vectors as pooling each clip alone, unit norm, and not meanP.
func TestHandleSeqTransfONNX(t *testing.T) {
	enc := tinyTemporal(t, 16)
	model := &countingModel{TemporalModel: enc}
	p, err := pool.NewSeqTransfPooler(model)
	if err != nil {
		t.Fatal(err)
	}
	h, err := pool.New(pool.Config{Model: testmodels.TinyCLIPName}, p)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(8, 8))
	var batch []pipeline.Message
	var clips [][][]float32
	for n := 1; n <= enc.MaxFrames(); n++ {
		c := make([][]float32, n)
		for f := range c {
			c[f] = make([]float32, enc.Dim())
			for j := range c[f] {
				c[f][j] = float32(rng.NormFloat64())
			}
		}
		clips = append(clips, c)
		batch = append(batch, frameEmbeddings(t, frameMsg{clip: n, model: testmodels.TinyCLIPName, frames: c}))
	}
	res := h.Handle(context.Background(), batch)
	if model.calls != 1 {
		t.Fatalf("temporal model ran %d times for one batch, want 1", model.calls)
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("clip %d: %v", i, r.Err)
		}
		out, err := schemas.DecodeEmbeddings(schemas.KindClipEmbedding, r.Outputs[0].Value)
		if err != nil {
			t.Fatal(err)
		}
		alone, err := enc.Pool(context.Background(), clips[i:i+1])
		if err != nil {
			t.Fatal(err)
		}
		if !near(out.Vectors[0], alone[0], 1e-5) {
			t.Errorf("%d frames: batched vector differs from the clip pooled alone", i+1)
		}
		if n := l2(out.Vectors[0]); math.Abs(n-1) > 1e-5 {
			t.Errorf("%d frames: norm %v", i+1, n)
		}
		mp, err := pool.MeanPool(clips[i])
		if err != nil {
			t.Fatal(err)
		}
		if near(out.Vectors[0], mp, 1e-2) {
			t.Errorf("%d frames: seqTransf gave the meanP vector", i+1)
		}
	}
}
