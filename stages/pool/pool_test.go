package pool_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/stages/pool"
)

const model = "clip-vit-b32"

func near(a, b []float32, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i])-float64(b[i])) > tol {
			return false
		}
	}
	return true
}

func l2(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func scale(v []float32, k float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = x * k
	}
	return out
}

// plainMean averages the raw frames and normalises the average: the pooling
// meanP must not be.
func plainMean(frames [][]float32) []float32 {
	acc := make([]float32, len(frames[0]))
	for _, f := range frames {
		for j, x := range f {
			acc[j] += x / float32(len(frames))
		}
	}
	return scale(acc, float32(1/l2(acc)))
}

func TestMeanPool(t *testing.T) {
	a, b, c := []float32{3, 4, 0}, []float32{0, 0, 10}, []float32{0, -0.5, 0}
	cases := []struct {
		name   string
		frames [][]float32
		// By hand: normalise each frame, average, normalise.
		want []float32
	}{
		{"single frame", [][]float32{a}, []float32{0.6, 0.8, 0}},
		// (0.6, 0.8, 0) and (0, 0, 1) average to (0.3, 0.4, 0.5), of norm
		// sqrt(0.5).
		{"two frames", [][]float32{a, b}, []float32{0.3 / 0.70710678, 0.4 / 0.70710678, 0.5 / 0.70710678}},
		// (0.6, 0.8, 0) + (0, 0, 1) + (0, -1, 0) = (0.6, -0.2, 1), of norm
		// sqrt(1.4).
		{"three frames", [][]float32{a, b, c}, []float32{0.6 / 1.18321596, -0.2 / 1.18321596, 1 / 1.18321596}},
		{"frame norms do not matter", [][]float32{scale(a, 1000), scale(b, 0.001), scale(c, 7)}, []float32{0.6 / 1.18321596, -0.2 / 1.18321596, 1 / 1.18321596}},
		{"repeated frame", [][]float32{a, a, a, a}, []float32{0.6, 0.8, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pool.MeanPool(tc.frames)
			if err != nil {
				t.Fatal(err)
			}
			if !near(got, tc.want, 1e-6) {
				t.Fatalf("MeanPool = %v, want %v", got, tc.want)
			}
			if n := l2(got); math.Abs(n-1) > 1e-6 {
				t.Fatalf("pooled vector has norm %v", n)
			}
		})
	}
}

// TestMeanPoolNormalisesFirst proves the order of operations: averaging raw
// frames lets the frame with the largest norm dominate the clip.
func TestMeanPoolNormalisesFirst(t *testing.T) {
	for _, frames := range [][][]float32{
		{{3, 4, 0}, {0, 0, 10}},
		{{3, 4, 0}, {0, 0, 10}, {0, -0.5, 0}},
		{{100, 1, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 1}},
	} {
		got, err := pool.MeanPool(frames)
		if err != nil {
			t.Fatal(err)
		}
		plain := plainMean(frames)
		if near(got, plain, 0.05) {
			t.Fatalf("MeanPool(%v) = %v matches the plain mean %v: frames were not normalised first", frames, got, plain)
		}
	}
	// Sanity check of the check: for frames of equal norm both orders agree.
	same := [][]float32{{1, 0}, {0, 1}}
	got, err := pool.MeanPool(same)
	if err != nil {
		t.Fatal(err)
	}
	if !near(got, plainMean(same), 1e-6) {
		t.Fatalf("MeanPool(%v) = %v, plain mean %v", same, got, plainMean(same))
	}
}

func TestMeanPoolErrors(t *testing.T) {
	cases := []struct {
		name   string
		frames [][]float32
		want   string
	}{
		{"no frames", nil, "no frames"},
		{"empty frames", [][]float32{}, "no frames"},
		{"ragged frames", [][]float32{{1, 2, 3}, {1, 2}}, "frame 1 has 2 values, frame 0 has 3"},
		{"zero frame", [][]float32{{1, 2}, {0, 0}}, "frame 1 embedding is zero"},
		{"frames cancel out", [][]float32{{3, 4}, {-6, -8}}, "zero vector"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := pool.MeanPool(tc.frames)
			if err == nil {
				t.Fatalf("MeanPool = %v, want an error", v)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestMeanPooler(t *testing.T) {
	var p pool.MeanPooler
	if p.Mode() != pool.MeanP || pool.MeanP != "meanP" {
		t.Fatalf("Mode() = %q", p.Mode())
	}
	clips := [][][]float32{{{3, 4, 0}}, {{3, 4, 0}, {0, 0, 10}}}
	out, err := p.Pool(context.Background(), clips)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 {
		t.Fatalf("%d vectors for 2 clips", len(out))
	}
	for i, c := range clips {
		want, _ := pool.MeanPool(c)
		if !near(out[i], want, 0) {
			t.Errorf("clip %d: %v, want %v", i, out[i], want)
		}
	}
	_, err = p.Pool(context.Background(), [][][]float32{{{1, 0}}, {{0, 0}}})
	if err == nil || !pipeline.IsPoison(err) || !strings.Contains(err.Error(), "clip 1") {
		t.Fatalf("degenerate clip: error %v, want poison naming clip 1", err)
	}
}

type frameMsg struct {
	clip   int
	model  string
	frames [][]float32
}

func frameEmbeddings(t testing.TB, m frameMsg) pipeline.Message {
	t.Helper()
	times := make([]float64, len(m.frames))
	for i := range times {
		times[i] = float64(m.clip*10) + float64(i)
	}
	h := schemas.ClipHeader{
		VideoID:    "video7",
		Source:     "msrvtt",
		ClipIndex:  m.clip,
		StartS:     float64(m.clip * 10),
		EndS:       float64(m.clip*10 + 10),
		FrameTimes: times,
		Metadata:   map[string]string{"k": "v"},
		Dim:        len(m.frames[0]),
		Model:      m.model,
	}
	value, err := schemas.EncodeEmbeddings(schemas.KindFrameEmbeddings, &schemas.Embeddings{Header: h, Vectors: m.frames})
	if err != nil {
		t.Fatal(err)
	}
	return pipeline.Message{Topic: "frame-embeddings", Offset: int64(m.clip), Key: []byte(h.VideoID), Value: value}
}

func TestNew(t *testing.T) {
	if _, err := pool.New(pool.Config{}, pool.MeanPooler{}); err == nil {
		t.Fatal("New accepted a config without a model")
	}
}

func TestHandle(t *testing.T) {
	h, err := pool.New(pool.Config{Model: model}, pool.MeanPooler{})
	if err != nil {
		t.Fatal(err)
	}
	clipEmb, err := schemas.EncodeEmbeddings(schemas.KindClipEmbedding, &schemas.Embeddings{
		Header:  schemas.ClipHeader{VideoID: "v", FrameTimes: []float64{0}, Dim: 2, Model: model, Pooling: pool.MeanP},
		Vectors: [][]float32{{1, 0}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ok := func(clip int, frames ...[]float32) frameMsg {
		return frameMsg{clip: clip, model: model, frames: frames}
	}
	type outcome int
	const (
		pooled outcome = iota
		poison
	)
	cases := []struct {
		name  string
		batch []pipeline.Message
		want  []outcome
	}{
		{"one clip", []pipeline.Message{frameEmbeddings(t, ok(0, []float32{3, 4, 0}, []float32{0, 0, 10}))}, []outcome{pooled}},
		{"model mismatch", []pipeline.Message{frameEmbeddings(t, frameMsg{clip: 0, model: "clip-vit-b16", frames: [][]float32{{1, 0}}})}, []outcome{poison}},
		{"garbage", []pipeline.Message{{Value: []byte("garbage bytes")}}, []outcome{poison}},
		{"empty value", []pipeline.Message{{}}, []outcome{poison}},
		{"clip embedding instead of frames", []pipeline.Message{{Value: clipEmb}}, []outcome{poison}},
		{"zero frame alone", []pipeline.Message{frameEmbeddings(t, ok(0, []float32{0, 0}))}, []outcome{poison}},
		{"mixed batch", []pipeline.Message{
			frameEmbeddings(t, ok(0, []float32{3, 4, 0}, []float32{0, 0, 10})),
			{Value: []byte("VIDX not really")},
			frameEmbeddings(t, ok(2, []float32{1, 1, 1})),
			frameEmbeddings(t, frameMsg{clip: 3, model: "other", frames: [][]float32{{1, 2, 3}}}),
			frameEmbeddings(t, ok(4, []float32{0, 0, 1}, []float32{0, 2, 0}, []float32{-3, 0, 0})),
			{Value: clipEmb},
			frameEmbeddings(t, ok(6, []float32{5})),
		}, []outcome{pooled, poison, pooled, poison, pooled, poison, pooled}},
		// One clip whose frames cannot be pooled must not take the other
		// clips of its batch down with it.
		{"degenerate clip in a batch", []pipeline.Message{
			frameEmbeddings(t, ok(0, []float32{1, 2})),
			frameEmbeddings(t, ok(1, []float32{1, 2}, []float32{0, 0})),
			frameEmbeddings(t, ok(2, []float32{2, 1})),
			frameEmbeddings(t, ok(3, []float32{1, 0}, []float32{-1, 0})),
		}, []outcome{pooled, poison, pooled, poison}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := h.Handle(context.Background(), tc.batch)
			if len(res) != len(tc.batch) {
				t.Fatalf("%d results for %d messages", len(res), len(tc.batch))
			}
			for i, r := range res {
				if tc.want[i] == poison {
					if !pipeline.IsPoison(r.Err) || len(r.Outputs) != 0 {
						t.Errorf("message %d: err %v, %d outputs; want poison", i, r.Err, len(r.Outputs))
					}
					continue
				}
				if r.Err != nil {
					t.Errorf("message %d: %v", i, r.Err)
					continue
				}
				in, err := schemas.DecodeEmbeddings(schemas.KindFrameEmbeddings, tc.batch[i].Value)
				if err != nil {
					t.Fatal(err)
				}
				if len(r.Outputs) != 1 {
					t.Fatalf("message %d: %d outputs", i, len(r.Outputs))
				}
				o := r.Outputs[0]
				if o.Topic != "clip-embeddings" || string(o.Key) != in.Header.VideoID {
					t.Errorf("message %d: output to %q keyed %q", i, o.Topic, o.Key)
				}
				out, err := schemas.DecodeEmbeddings(schemas.KindClipEmbedding, o.Value)
				if err != nil {
					t.Fatalf("message %d: output is not a clip embedding: %v", i, err)
				}
				wantHeader := in.Header
				wantHeader.Pooling = pool.MeanP
				if out.Header.Pooling != "meanP" || out.Header.ClipIndex != in.Header.ClipIndex ||
					out.Header.Model != model || out.Header.Dim != in.Header.Dim ||
					len(out.Header.FrameTimes) != len(in.Header.FrameTimes) || out.Header.Metadata["k"] != "v" {
					t.Errorf("message %d: header %+v, want %+v", i, out.Header, wantHeader)
				}
				want, err := pool.MeanPool(in.Vectors)
				if err != nil {
					t.Fatal(err)
				}
				if len(out.Vectors) != 1 || !near(out.Vectors[0], want, 0) {
					t.Errorf("message %d: vector %v, want %v", i, out.Vectors, want)
				}
			}
		})
	}
}

// fakePooler records its calls and fails when told to.
type fakePooler struct {
	calls [][][][]float32
	err   error
}

func (p *fakePooler) Mode() string { return "seqTransf" }

func (p *fakePooler) Pool(_ context.Context, clips [][][]float32) ([][]float32, error) {
	p.calls = append(p.calls, clips)
	if p.err != nil {
		return nil, p.err
	}
	out := make([][]float32, len(clips))
	for i, c := range clips {
		out[i] = c[len(c)-1] // the last frame
	}
	return out, nil
}

func TestHandlePoolerBatching(t *testing.T) {
	p := &fakePooler{}
	h, err := pool.New(pool.Config{Model: model, OutputTopic: "pooled"}, p)
	if err != nil {
		t.Fatal(err)
	}
	batch := []pipeline.Message{
		frameEmbeddings(t, frameMsg{clip: 0, model: model, frames: [][]float32{{1, 0}, {0, 1}}}),
		{Value: []byte("junk")},
		frameEmbeddings(t, frameMsg{clip: 2, model: model, frames: [][]float32{{2, 2}, {3, 1}, {4, 0}}}),
	}
	res := h.Handle(context.Background(), batch)
	if len(p.calls) != 1 || len(p.calls[0]) != 2 {
		t.Fatalf("pooler called %d times (%v); want once with the 2 valid clips", len(p.calls), p.calls)
	}
	if !pipeline.IsPoison(res[1].Err) {
		t.Fatalf("junk message: %v", res[1].Err)
	}
	for i, want := range map[int][]float32{0: {0, 1}, 2: {4, 0}} {
		if res[i].Err != nil || len(res[i].Outputs) != 1 || res[i].Outputs[0].Topic != "pooled" {
			t.Fatalf("message %d: %+v", i, res[i])
		}
		out, err := schemas.DecodeEmbeddings(schemas.KindClipEmbedding, res[i].Outputs[0].Value)
		if err != nil {
			t.Fatal(err)
		}
		if out.Header.Pooling != "seqTransf" || !near(out.Vectors[0], want, 0) || out.Header.ClipIndex != i {
			t.Errorf("message %d: pooling %q clip %d vector %v, want seqTransf clip %d %v", i, out.Header.Pooling, out.Header.ClipIndex, out.Vectors[0], i, want)
		}
	}

	// A pooler failure that is not the messages' fault fails every clip of
	// the call with a retriable-or-unknown error, never poison.
	p.calls, p.err = nil, errors.New("runtime out of memory")
	res = h.Handle(context.Background(), batch)
	if len(p.calls) != 1 {
		t.Fatalf("pooler called %d times after a transient error; want once", len(p.calls))
	}
	for _, i := range []int{0, 2} {
		if !errors.Is(res[i].Err, p.err) || pipeline.IsPoison(res[i].Err) || len(res[i].Outputs) != 0 {
			t.Errorf("message %d: err %v (poison %v), want the pooler error, not poison", i, res[i].Err, pipeline.IsPoison(res[i].Err))
		}
	}
	if !pipeline.IsPoison(res[1].Err) {
		t.Errorf("junk message: %v", res[1].Err)
	}
}
