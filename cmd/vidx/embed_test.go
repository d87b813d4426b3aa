package main

import (
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/encoders/testmodels"
	"github.com/vidx/vidx/stages/pool"
)

func requireORT(t *testing.T) {
	t.Helper()
	if !haveORT() {
		t.Skipf("ONNX Runtime not found at %s (run make setup)", onnx.DefaultLibPath())
	}
}

func cosine(a, b []float32) float64 {
	var dot float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
	}
	return dot / (l2(a) * l2(b))
}

func TestEmbedText(t *testing.T) {
	requireORT(t)
	dir := tinyBundle(t)
	texts := []string{"a red car", "a dog playing with a ball", ""}
	out, stderr, err := runCmd(t, append([]string{"embed-text", "--bundle", dir, "--json", "--threads", "1"}, texts...)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	got := readJSONLines[textEmbedding](t, []byte(out))
	if len(got) != len(texts) {
		t.Fatalf("%d lines for %d texts:\n%s", len(got), len(texts), out)
	}

	// The same numbers the query stage's encoder gives.
	m, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := onnx.NewRuntime("")
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	enc, err := rt.NewTextEncoder(m, onnx.SessionOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	want, err := enc.EncodeTexts(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range got {
		if g.Text != texts[i] || g.Model != testmodels.TinyCLIPName || !reflect.DeepEqual(g.IDs, enc.Tokenize(texts[i])) {
			t.Errorf("line %d: text %q model %q ids %v", i, g.Text, g.Model, g.IDs)
		}
		if !reflect.DeepEqual(g.Embedding, want[i]) {
			t.Errorf("line %d: embedding differs from the text encoder's", i)
		}
		if math.Abs(g.Norm-l2(want[i])) > 1e-9 || len(g.Embedding) != testmodels.TinyDim {
			t.Errorf("line %d: norm %g, %d values", i, g.Norm, len(g.Embedding))
		}
	}
	if reflect.DeepEqual(got[0].Embedding, got[1].Embedding) {
		t.Error("different texts gave the same embedding")
	}

	out, _, err = runCmd(t, "embed-text", "--bundle", dir, "a red car")
	if err != nil || !strings.Contains(out, `"a red car"`) || !strings.Contains(out, "128-d, norm") {
		t.Errorf("readable output %q, err %v", out, err)
	}
}

func embedVideo(t *testing.T, args ...string) videoEmbedding {
	t.Helper()
	out, stderr, err := runCmd(t, append([]string{"embed-video", "--json", "--threads", "1"}, args...)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var v videoEmbedding
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return v
}

func TestEmbedVideo(t *testing.T) {
	requireORT(t)
	color := filepath.Join(t.TempDir(), "color")
	if err := testmodels.WriteColorBundle(color); err != nil {
		t.Fatal(err)
	}
	red := testVideo(t, "red.mp4", "color=c=red:size=320x240:rate=10:duration=3")

	v := embedVideo(t, "--bundle", color, red)
	if v.Model != testmodels.ColorName || v.Dim != testmodels.ColorDim || v.Pooling != pool.MeanP || v.Codec != "none" || v.File != red {
		t.Errorf("header %+v", v)
	}
	if v.Sampling.FPS != 1 || v.Sampling.MaxFrames != 12 || v.Sampling.Mode != "whole" || v.Sampling.Size != 224 {
		t.Errorf("sampling %+v", v.Sampling)
	}
	if len(v.Clips) != 1 || len(v.Clips[0].Frames) != 3 {
		t.Fatalf("clips %+v", v.Clips)
	}
	c := v.Clips[0]
	var frames [][]float32
	for i, f := range c.Frames {
		if f.TimeS != float64(i) || f.Frame != i || len(f.Embedding) != testmodels.ColorDim {
			t.Errorf("frame %d: time %g index %d, %d values", i, f.TimeS, f.Frame, len(f.Embedding))
		}
		frames = append(frames, f.Embedding)
	}
	want, err := pool.MeanPool(frames)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Embedding, want) {
		t.Errorf("pooled embedding is not meanP of the frame embeddings")
	}

	// The colour model's embedding carries meaning: a red video is closest
	// to the text "red".
	out, _, err := runCmd(t, "embed-text", "--bundle", color, "--json", "red", "blue", "green")
	if err != nil {
		t.Fatal(err)
	}
	texts := readJSONLines[textEmbedding](t, []byte(out))
	best, bestCos := "", -2.0
	for _, te := range texts {
		if cs := cosine(c.Embedding, te.Embedding); cs > bestCos {
			best, bestCos = te.Text, cs
		}
	}
	if best != "red" {
		t.Errorf("red video is closest to %q (cosine %.3f)", best, bestCos)
	}

	// Through the pipeline's JPEG codec the crops change slightly.
	j := embedVideo(t, "--bundle", color, "--codec", "jpeg", red)
	if j.Codec != "jpeg" || len(j.Clips) != 1 {
		t.Fatalf("jpeg: %+v", j)
	}
	if cs := cosine(j.Clips[0].Embedding, c.Embedding); cs < 0.999 {
		t.Errorf("jpeg pooled cosine to direct = %.5f", cs)
	}
}

func TestEmbedVideoModes(t *testing.T) {
	requireORT(t)
	tiny := tinyBundle(t)
	video := testVideo(t, "v.mp4", "testsrc2=size=640x480:rate=10:duration=4")

	windows := embedVideo(t, "--bundle", tiny, "--mode", "window", "--window", "2", "--stride", "2", video)
	if len(windows.Clips) != 2 || windows.Clips[1].Index != 1 || windows.Clips[1].StartS != 2 || len(windows.Clips[1].Frames) != 2 || windows.Clips[1].Frames[0].TimeS != 2 {
		t.Fatalf("window clips: %+v", windows.Clips)
	}

	meanP := embedVideo(t, "--bundle", tiny, video)
	if !hasTemporal(t, tiny) {
		t.Skip("the tiny bundle has no temporal model to test seqTransf with")
	}
	seq := embedVideo(t, "--bundle", tiny, "--pooling", pool.SeqTransf, video)
	if seq.Pooling != pool.SeqTransf || len(seq.Clips) != 1 {
		t.Fatalf("seqTransf: %+v", seq)
	}
	if !reflect.DeepEqual(seq.Clips[0].Frames, meanP.Clips[0].Frames) {
		t.Error("frame embeddings depend on the pooling mode")
	}
	if n := l2(seq.Clips[0].Embedding); math.Abs(n-1) > 1e-4 {
		t.Errorf("seqTransf embedding norm %g", n)
	}
	if reflect.DeepEqual(seq.Clips[0].Embedding, meanP.Clips[0].Embedding) {
		t.Error("seqTransf gave meanP's embedding")
	}
}

func hasTemporal(t *testing.T, dir string) bool {
	m, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m.HasTemporal()
}

func TestEmbedErrors(t *testing.T) {
	t.Setenv("VIDX_BUNDLE", "")
	color := filepath.Join(t.TempDir(), "color")
	if err := testmodels.WriteColorBundle(color); err != nil {
		t.Fatal(err)
	}
	bad := editBundle(t, color, replaceOnce("embedding_dim: 64", "embedding_dim: 32"), nil)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"embed-text", "red"}, "--bundle is required"},
		{[]string{"embed-text", "--bundle", bad, "red"}, "embedding_dim: is 32"},
		{[]string{"embed-video", "--bundle", color, "--codec", "webp", "v.mp4"}, `--codec "webp"`},
	}
	if haveORT() {
		cases = append(cases,
			struct {
				args []string
				want string
			}{[]string{"embed-video", "--bundle", color, "--pooling", "maxP", "v.mp4"}, `--pooling "maxP"`},
			struct {
				args []string
				want string
			}{[]string{"embed-video", "--bundle", color, "--pooling", "seqTransf", "v.mp4"}, "no temporal model"})
	}
	for _, c := range cases {
		if _, _, err := runCmd(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want %q", c.args, err, c.want)
		}
	}
	for _, args := range [][]string{{"embed-text", "--bundle", color}, {"embed-video", "--bundle", color}} {
		if _, _, err := runCmd(t, args...); err != errUsage {
			t.Errorf("%v: err = %v, want usage", args, err)
		}
	}
}
