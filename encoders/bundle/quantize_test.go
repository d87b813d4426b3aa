package bundle_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/encoders/testmodels"
)

const quantizeScript = "../../scripts/quantize.py"

// requireQuantizer skips unless python3 and the quantizer's virtual
// environment (scripts/setup.sh --test prepares it) are available.
func requireQuantizer(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("skipping: python3 not found (the int8 quantizer is a Python script)")
	}
	if out, err := exec.Command("python3", quantizeScript, "--setup").CombinedOutput(); err != nil {
		t.Skipf("skipping: the quantizer's virtual environment could not be prepared (run scripts/setup.sh --test; needs pip and PyPI): %v: %s", err, out)
	}
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

func TestQuantizeTinyBundle(t *testing.T) {
	requireQuantizer(t)
	rt, err := onnx.NewRuntime("")
	if errors.Is(err, onnx.ErrLibraryMissing) {
		t.Skipf("skipping: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()

	dir := t.TempDir()
	if err := testmodels.WriteAll(dir); err != nil {
		t.Fatal(err)
	}
	fixed, dynamic := filepath.Join(dir, "tiny-clip"), filepath.Join(dir, "tiny-dynamic")
	if err := testmodels.WriteTinyCLIPDynamicBundle(dynamic); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	tests := []struct {
		src, name, wantName string
	}{
		{fixed, "", "test-tiny-clip-int8"},
		{fixed, "tiny-q", "tiny-q"},
		// The quantized text tower keeps its dynamic sequence axis.
		{dynamic, "tiny-dynamic-q", "tiny-dynamic-q"},
	}
	for _, tc := range tests {
		src := tc.src
		t.Run(tc.wantName, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "out")
			q, err := bundle.Quantize(ctx, src, dst, bundle.QuantizeOptions{Script: quantizeScript, Name: tc.name})
			if err != nil {
				t.Fatal(err)
			}
			if q.Name != tc.wantName {
				t.Errorf("name %q, want %q", q.Name, tc.wantName)
			}
			f32, err := bundle.Load(src)
			if err != nil {
				t.Fatal(err)
			}
			// The models are replaced (int8 weights are about a quarter of the
			// size), everything else is copied byte for byte.
			for _, f := range []string{f32.Image.ONNX, f32.Text.ONNX} {
				a, b := fileSize(t, f32.Path(f)), fileSize(t, q.Path(f))
				if b >= a {
					t.Errorf("%s: quantized %d bytes, float32 %d: not smaller", f, b, a)
				}
			}
			for _, f := range []string{f32.Temporal.ONNX, f32.Text.Tokenizer.Vocab, f32.Text.Tokenizer.Merges} {
				a, _ := os.ReadFile(f32.Path(f))
				b, err := os.ReadFile(q.Path(f))
				if err != nil || string(a) != string(b) {
					t.Errorf("%s not copied unchanged (err %v)", f, err)
				}
			}
			if q.EmbeddingDim != f32.EmbeddingDim || q.Image.Size != f32.Image.Size || q.Image.Input != f32.Image.Input || q.Text.ContextLength != f32.Text.ContextLength ||
				q.Text.DynamicLength != f32.Text.DynamicLength {
				t.Errorf("manifest changed beyond the name: %+v vs %+v", q, f32)
			}

			opts := onnx.SessionOptions{IntraOpThreads: 1}
			imgA, err := rt.NewImageEncoder(f32, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer imgA.Close()
			imgB, err := rt.NewImageEncoder(q, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer imgB.Close()
			const n = 6
			px := make([]float32, n*3*imgA.ImageSize()*imgA.ImageSize())
			r := rand.New(rand.NewPCG(1, 2))
			for i := range px {
				px[i] = float32(r.NormFloat64())
			}
			va, err := imgA.EncodeImages(ctx, px, n)
			if err != nil {
				t.Fatal(err)
			}
			vb, err := imgB.EncodeImages(ctx, px, n)
			if err != nil {
				t.Fatal(err)
			}
			for i := range va {
				if c := cosine(va[i], vb[i]); c < 0.99 {
					t.Errorf("image %d: cosine to float32 %.4f, want >= 0.99", i, c)
				}
			}

			txtA, err := rt.NewTextEncoder(f32, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer txtA.Close()
			txtB, err := rt.NewTextEncoder(q, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer txtB.Close()
			if err := q.Check(nil).Err(); err != nil {
				t.Error(err)
			}
			texts := []string{"a red square", "a person walking a dog", "blue"}
			ta, err := txtA.EncodeTexts(ctx, texts)
			if err != nil {
				t.Fatal(err)
			}
			tb, err := txtB.EncodeTexts(ctx, texts)
			if err != nil {
				t.Fatal(err)
			}
			for i := range ta {
				if c := cosine(ta[i], tb[i]); c < 0.99 {
					t.Errorf("text %q: cosine to float32 %.4f, want >= 0.99", texts[i], c)
				}
			}
		})
	}
}

func TestQuantizeErrors(t *testing.T) {
	dir := t.TempDir()
	if err := testmodels.WriteAll(dir); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "tiny-clip")
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		src, dst string
		opts     bundle.QuantizeOptions
		isTool   bool
	}{
		{"no script", src, filepath.Join(t.TempDir(), "a"), bundle.QuantizeOptions{}, false},
		{"missing source", filepath.Join(dir, "nope"), filepath.Join(t.TempDir(), "a"), bundle.QuantizeOptions{Script: quantizeScript}, false},
		{"destination not empty", src, full, bundle.QuantizeOptions{Script: quantizeScript}, false},
		{"no python", src, filepath.Join(t.TempDir(), "a"), bundle.QuantizeOptions{Script: quantizeScript, Python: "/nonexistent/python3"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := bundle.Quantize(context.Background(), tc.src, tc.dst, tc.opts)
			if err == nil {
				t.Fatal("no error")
			}
			if got := errors.Is(err, bundle.ErrQuantizeTool); got != tc.isTool {
				t.Errorf("errors.Is(ErrQuantizeTool) = %v for %v", got, err)
			}
			if _, serr := os.Stat(tc.dst); tc.dst != full && serr == nil {
				t.Errorf("%s written despite the error", tc.dst)
			}
		})
	}
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
