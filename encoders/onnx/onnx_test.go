package onnx

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/testmodels"
)

// bundles holds the generated test bundles, written once per test binary.
var bundles struct {
	once        sync.Once
	dir         string
	tiny, color string
	err         error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bundles.dir != "" {
		os.RemoveAll(bundles.dir)
	}
	os.Exit(code)
}

func bundleDirs(t testing.TB) (tiny, color string) {
	t.Helper()
	bundles.once.Do(func() {
		bundles.dir, bundles.err = os.MkdirTemp("", "vidx-onnx-test-")
		if bundles.err != nil {
			return
		}
		bundles.tiny = filepath.Join(bundles.dir, "tiny")
		bundles.color = filepath.Join(bundles.dir, "color")
		if bundles.err = testmodels.WriteTinyCLIPBundle(bundles.tiny); bundles.err != nil {
			return
		}
		bundles.err = testmodels.WriteColorBundle(bundles.color)
	})
	if bundles.err != nil {
		t.Fatal(bundles.err)
	}
	return bundles.tiny, bundles.color
}

// newTestRuntime opens the runtime for one test, skipping when the shared
// library is not installed.
func newTestRuntime(t testing.TB) *Runtime {
	t.Helper()
	r, err := NewRuntime("")
	if errors.Is(err, ErrLibraryMissing) {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

func loadBundle(t testing.TB, dir string) *bundle.Manifest {
	t.Helper()
	m, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// editManifest copies the bundle at src into a temp dir with its manifest
// rewritten by edit, so tests can break one field at a time.
func editManifest(t *testing.T, src string, edit func(string) string) *bundle.Manifest {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == bundle.ManifestFile {
			edited := edit(string(data))
			if edited == string(data) {
				t.Fatal("manifest edit changed nothing")
			}
			data = []byte(edited)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return loadBundle(t, dst)
}

var testOpts = SessionOptions{IntraOpThreads: 1, InterOpThreads: 1}

func randomPixels(n, size int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 0))
	px := make([]float32, n*3*size*size)
	for i := range px {
		px[i] = float32(rng.NormFloat64())
	}
	return px
}

func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

func TestImageEncoderBatching(t *testing.T) {
	r := newTestRuntime(t)
	tiny, _ := bundleDirs(t)
	m := loadBundle(t, tiny)

	single, err := r.NewImageEncoder(m, SessionOptions{IntraOpThreads: 1, MaxBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer single.Close()
	if single.ImageSize() != testmodels.ImageSize || single.Dim() != testmodels.TinyDim {
		t.Fatalf("size/dim = %d/%d", single.ImageSize(), single.Dim())
	}

	const maxN = 8
	size := single.ImageSize()
	per := 3 * size * size
	px := randomPixels(maxN, size, 1)
	ref := make([][]float32, maxN)
	for i := range ref {
		v, err := single.EncodeImages(context.Background(), px[i*per:(i+1)*per], 1)
		if err != nil {
			t.Fatal(err)
		}
		ref[i] = v[0]
	}
	if maxAbsDiff(ref[0], ref[1]) < 1e-3 {
		t.Fatal("different images gave the same embedding; the test would prove nothing")
	}

	for _, c := range []struct{ n, maxBatch int }{{1, 0}, {5, 2}, {8, 0}, {8, 3}} {
		t.Run(fmt.Sprintf("n=%d/max=%d", c.n, c.maxBatch), func(t *testing.T) {
			enc, err := r.NewImageEncoder(m, SessionOptions{IntraOpThreads: 1, MaxBatch: c.maxBatch})
			if err != nil {
				t.Fatal(err)
			}
			defer enc.Close()
			got, err := enc.EncodeImages(context.Background(), px[:c.n*per], c.n)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != c.n {
				t.Fatalf("got %d vectors, want %d", len(got), c.n)
			}
			for i, v := range got {
				if len(v) != testmodels.TinyDim {
					t.Fatalf("vector %d has %d dims", i, len(v))
				}
				if d := maxAbsDiff(v, ref[i]); d > 1e-4 {
					t.Errorf("image %d differs from its single-image embedding by %g", i, d)
				}
			}
		})
	}
}

func TestImageEncoderInputErrors(t *testing.T) {
	r := newTestRuntime(t)
	tiny, _ := bundleDirs(t)
	enc, err := r.NewImageEncoder(loadBundle(t, tiny), testOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	ctx := context.Background()
	per := 3 * enc.ImageSize() * enc.ImageSize()

	if _, err := enc.EncodeImages(ctx, make([]float32, 2*per-1), 2); err == nil || !strings.Contains(err.Error(), "want") {
		t.Errorf("short input: err = %v", err)
	}
	if _, err := enc.EncodeImages(ctx, make([]float32, per), 2); err == nil {
		t.Error("n larger than the pixels: no error")
	}
	if _, err := enc.EncodeImages(ctx, nil, -1); err == nil {
		t.Error("negative n: no error")
	}
	if v, err := enc.EncodeImages(ctx, nil, 0); err != nil || len(v) != 0 {
		t.Errorf("n=0: %v, %v", v, err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := enc.EncodeImages(cancelled, make([]float32, per), 1); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: err = %v", err)
	}

	enc.Close()
	if _, err := enc.EncodeImages(ctx, make([]float32, per), 1); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("after Close: err = %v", err)
	}
}

// Cancelling the context stops a Run in progress rather than waiting for
// the whole batch.
func TestImageEncoderCancelDuringRun(t *testing.T) {
	r := newTestRuntime(t)
	tiny, _ := bundleDirs(t)
	const n = 32
	enc, err := r.NewImageEncoder(loadBundle(t, tiny), SessionOptions{IntraOpThreads: 1, MaxBatch: n})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	px := randomPixels(n, enc.ImageSize(), 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	if _, err := enc.EncodeImages(ctx, px, n); err != nil {
		t.Fatalf("uncancelled run: %v", err)
	}
	full := time.Since(start)

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(full/10, cancel)
	start = time.Now()
	_, err = enc.EncodeImages(ctx, px, n)
	if err == nil {
		t.Skipf("batch finished in %v, before the cancel at %v", time.Since(start), full/10)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	t.Logf("full batch %v, cancelled after %v", full, time.Since(start))

	// The encoder stays usable.
	if _, err := enc.EncodeImages(context.Background(), px[:len(px)/n], 1); err != nil {
		t.Fatal(err)
	}
}

func TestImageEncoderConcurrent(t *testing.T) {
	r := newTestRuntime(t)
	tiny, _ := bundleDirs(t)
	enc, err := r.NewImageEncoder(loadBundle(t, tiny), SessionOptions{IntraOpThreads: 1, MaxBatch: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	size := enc.ImageSize()
	px := randomPixels(3, size, 2)
	want, err := enc.EncodeImages(context.Background(), px, 3)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			got, err := enc.EncodeImages(context.Background(), px, 3)
			if err != nil {
				t.Error(err)
				return
			}
			for i := range got {
				if d := maxAbsDiff(got[i], want[i]); d > 1e-5 {
					t.Errorf("concurrent run differs by %g", d)
				}
			}
		})
	}
	wg.Wait()
}

func TestManifestMismatch(t *testing.T) {
	r := newTestRuntime(t)
	tiny, color := bundleDirs(t)
	cases := []struct {
		name   string
		src    string
		edit   func(string) string
		text   bool
		substr []string
	}{
		{"image input name", tiny, replace("input: pixel_values", "input: pixels"), false,
			[]string{"image.input", `"pixels"`, "pixel_values"}},
		{"image output name", tiny, replace("output: image_embeds", "output: img"), false,
			[]string{"image.output", `"img"`}},
		{"embedding dim", tiny, replace("embedding_dim: 128", "embedding_dim: 512"), false,
			[]string{"embedding_dim is 512", `"image_embeds" has shape [-1 128]`}},
		{"image size", tiny, replace("size: 224", "size: 112"), false,
			[]string{"model test-tiny-clip image", "image.size is 112", "[-1 3 224 224]"}},
		{"context length", tiny, replace("context_length: 77", "context_length: 64"), true,
			[]string{"model test-tiny-clip text", "text.context_length is 64", `"input_ids" has shape [-1 77]`}},
		{"text ids name", tiny, replace("input_ids: input_ids", "input_ids: ids"), true,
			[]string{"text.input_ids", `"ids"`}},
		{"mask missing", tiny, replace("  attention_mask: attention_mask\n", ""), true,
			[]string{`model input "attention_mask" is not fed`}},
		{"mask on ids-only model", color, replace("  input_ids: input_ids\n", "  input_ids: input_ids\n  attention_mask: attention_mask\n"), true,
			[]string{"text.attention_mask", `"attention_mask" is not an input`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := editManifest(t, c.src, c.edit)
			var err error
			if c.text {
				var e *TextEncoder
				if e, err = r.NewTextEncoder(m, testOpts); err == nil {
					e.Close()
				}
			} else {
				var e *ImageEncoder
				if e, err = r.NewImageEncoder(m, testOpts); err == nil {
					e.Close()
				}
			}
			if err == nil {
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

func replace(old, new string) func(string) string {
	return func(s string) string { return strings.Replace(s, old, new, 1) }
}

func TestTextEncoder(t *testing.T) {
	r := newTestRuntime(t)
	tiny, _ := bundleDirs(t)
	m := loadBundle(t, tiny)
	enc, err := r.NewTextEncoder(m, SessionOptions{IntraOpThreads: 1, MaxBatch: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	if enc.Dim() != testmodels.TinyDim || enc.ContextLength() != testmodels.ContextLength {
		t.Fatalf("dim/context = %d/%d", enc.Dim(), enc.ContextLength())
	}
	texts := []string{"a dog running in the street", "a red car", "", "something!", "a cat"}
	got, err := enc.EncodeTexts(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(texts) {
		t.Fatalf("got %d vectors, want %d", len(got), len(texts))
	}
	for i, text := range texts {
		one, err := enc.EncodeTexts(context.Background(), []string{text})
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbsDiff(got[i], one[0]); d > 1e-4 {
			t.Errorf("text %q: batched differs from single by %g", text, d)
		}
	}
	if maxAbsDiff(got[0], got[1]) < 1e-3 {
		t.Error("different texts gave the same embedding")
	}
	if v, err := enc.EncodeTexts(context.Background(), nil); err != nil || len(v) != 0 {
		t.Errorf("no texts: %v, %v", v, err)
	}
}

// The colour bundle's embeddings mean something: dimension k is palette
// colour k. Both towers must agree on it through the encoders.
func TestColorBundle(t *testing.T) {
	r := newTestRuntime(t)
	_, color := bundleDirs(t)
	m := loadBundle(t, color)
	img, err := r.NewImageEncoder(m, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	txt, err := r.NewTextEncoder(m, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer txt.Close()

	pal := testmodels.Colors()
	size := img.ImageSize()
	plane := size * size
	px := make([]float32, len(pal)*3*plane)
	var queries []string
	for k, c := range pal {
		for ch := range 3 {
			v := (c.RGB[ch] - m.Image.Mean[ch]) / m.Image.Std[ch]
			for i := range plane {
				px[(k*3+ch)*plane+i] = v
			}
		}
		queries = append(queries, "a "+c.Words[0]+" screen")
	}
	iv, err := img.EncodeImages(context.Background(), px, len(pal))
	if err != nil {
		t.Fatal(err)
	}
	tv, err := txt.EncodeTexts(context.Background(), queries)
	if err != nil {
		t.Fatal(err)
	}
	for k := range pal {
		if a := argmax(iv[k]); a != k {
			t.Errorf("solid %s image: strongest dimension %d, want %d", pal[k].Words[0], a, k)
		}
		if a := argmax(tv[k]); a != k {
			t.Errorf("query %q: strongest dimension %d, want %d", queries[k], a, k)
		}
	}
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

func TestAttended(t *testing.T) {
	const sot, eot = 49406, 49407
	cases := []struct {
		name string
		pad  int64
		eot  int64
		row  []int64
		want int
	}{
		{"pad 0", 0, eot, []int64{sot, 5, eot, 0, 0}, 3},
		// CLIP's "!" is id 0, the same as the pad id.
		{"pad-valued token", 0, eot, []int64{sot, 0, 7, eot, 0}, 4},
		// Hugging Face pads with eot: only the first one is attended.
		{"pad is eot", eot, eot, []int64{sot, 5, eot, eot, eot}, 3},
		{"truncated without eot", 0, eot, []int64{sot, 5, 6, 7, 8}, 5},
		{"no special tokens", 0, -1, []int64{5, 6, 0, 0, 0}, 2},
	}
	for _, c := range cases {
		e := &TextEncoder{padID: c.pad, eot: c.eot}
		if got := e.attended(c.row); got != c.want {
			t.Errorf("%s: attended(%v) = %d, want %d", c.name, c.row, got, c.want)
		}
	}
}

func TestRuntime(t *testing.T) {
	r := newTestRuntime(t)
	tiny, _ := bundleDirs(t)

	// A second Runtime on the same library shares the environment, and
	// closing it leaves the first one working.
	r2, err := NewRuntime(r.LibPath())
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r2.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := r2.NewImageEncoder(loadBundle(t, tiny), testOpts); err == nil {
		t.Error("NewImageEncoder on a closed Runtime: no error")
	}

	// Another library cannot be loaded into the same process.
	other := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	if err := os.WriteFile(other, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewRuntime(other); err == nil || !strings.Contains(err.Error(), "already loaded") {
		t.Errorf("different library: err = %v", err)
	}

	ins, outs, err := r.InspectModel(filepath.Join(tiny, testmodels.ImageFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 1 || ins[0].Name != testmodels.ImageInput || len(outs) != 1 || outs[0].Name != testmodels.ImageOutput {
		t.Errorf("inspect: inputs %v outputs %v", ins, outs)
	}
	if _, _, err := r.InspectModel(filepath.Join(tiny, "nope.onnx")); err == nil {
		t.Error("inspect of a missing file: no error")
	}
	if v := r.Version(); v == "" {
		t.Error("empty version")
	}
}

// Closing the Runtime closes encoders still open on it, so their sessions
// never outlive the library.
func TestRuntimeCloseClosesEncoders(t *testing.T) {
	tiny, _ := bundleDirs(t)
	r := newTestRuntime(t)
	enc, err := r.NewImageEncoder(loadBundle(t, tiny), testOpts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	per := 3 * enc.ImageSize() * enc.ImageSize()
	if _, err := enc.EncodeImages(context.Background(), make([]float32, per), 1); err == nil {
		t.Error("encoder still runs after its Runtime was closed")
	}
	if err := enc.Close(); err != nil {
		t.Errorf("Close after Runtime.Close: %v", err)
	}
}

func TestMissingLibrary(t *testing.T) {
	env.mu.Lock()
	live := env.refs > 0
	env.mu.Unlock()
	if live {
		t.Skip("another Runtime is open")
	}
	missing := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	_, err := NewRuntime(missing)
	if !errors.Is(err, ErrLibraryMissing) || !strings.Contains(err.Error(), "VIDX_ORT_LIB") {
		t.Fatalf("err = %v, want ErrLibraryMissing naming VIDX_ORT_LIB", err)
	}
}

func TestDefaultLibPath(t *testing.T) {
	t.Setenv("VIDX_ORT_LIB", "/x/lib.so")
	if got := DefaultLibPath(); got != "/x/lib.so" {
		t.Errorf("with VIDX_ORT_LIB: %q", got)
	}
	t.Setenv("VIDX_ORT_LIB", "")
	t.Setenv("VIDX_CACHE_DIR", "")
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if got, want := DefaultLibPath(), "/home/u/.cache/vidx/onnxruntime-1.24.1/libonnxruntime.so.1"; got != want {
		t.Errorf("default: %q, want %q", got, want)
	}
}
