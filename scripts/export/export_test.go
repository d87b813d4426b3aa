// Package export_test proves scripts/export_bundle.py: for each checkpoint
// layout it exports a small randomly initialised CLIP (and, for CLIP4Clip,
// a seqTransf head), asks torch for reference outputs on fixed inputs, and
// checks that the bundle run through vidx's encoders and ONNX Runtime gives
// the same embeddings.
package export_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/encoders/tokenizer"
)

const (
	script = "../export_bundle.py"
	// The tiny architecture: two heads per tower and in the temporal head,
	// so head splitting is exercised; patch 32 at 224 keeps CLIP's image
	// contract with 50 tokens.
	width     = 128
	embedDim  = 128
	maxFrames = 12

	minCosine  = 0.9999
	maxAbsDiff = 1e-4
	// Cosine hides small errors (1 - cos grows with the square of the
	// relative error), so image and text vectors must also agree to 0.1%
	// in L2; float32 torch and ONNX Runtime agree far closer than that.
	maxRelErr   = 1e-3
	numImages   = 3
	imageSize   = 224
	scriptLimit = 3 * time.Minute
)

var texts = []string{
	"a man is playing a guitar on stage",
	"A woman slices tomatoes in the kitchen.",
	"",
	"Café crème brûlée at 9:30 — isn't it 100% délicieux?!",
	// Longer than CLIP4Clip's 32 tokens: truncation keeps end-of-text in
	// the last slot, where argmax pooling must still find it.
	strings.Repeat("a red car drives slowly along the coast road at sunset ", 5),
}

// python returns the interpreter with torch and onnx, or skips.
func python(t *testing.T) string {
	t.Helper()
	py := os.Getenv("VIDX_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	cmd := exec.Command(py, "-c", "import torch, onnx, numpy")
	cmd.Env = append(os.Environ(), "OPENBLAS_NUM_THREADS=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("%s cannot import torch, onnx and numpy (install Debian's python3-torch python3-onnx python3-numpy; scripts/setup.sh does): %v: %s",
			py, err, lastLine(out))
	}
	return py
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

func ortRuntime(t *testing.T) *onnx.Runtime {
	t.Helper()
	lib := onnx.DefaultLibPath()
	if _, err := os.Stat(lib); err != nil {
		t.Skipf("ONNX Runtime library not found at %s (run make setup or set VIDX_ORT_LIB)", lib)
	}
	rt, err := onnx.NewRuntime(lib)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// tokenizerDir is CLIP's real vocabulary when the shared folder is there,
// else a small vocabulary trained on the test texts (49408-row embeddings
// either way, so the model's shapes do not depend on it).
func tokenizerDir(t *testing.T) string {
	t.Helper()
	var candidates []string
	if env := os.Getenv("VIDX_SHARED_DIR"); env != "" {
		candidates = append(candidates, filepath.Join(env, "clip-tokenizer"), env)
	}
	candidates = append(candidates, filepath.Join("..", "..", "..", "shared", "clip-tokenizer"))
	for _, dir := range candidates {
		if _, err := os.Stat(filepath.Join(dir, "bpe_simple_vocab_16e6.txt.gz")); err == nil {
			return dir
		}
	}
	t.Logf("CLIP tokenizer files not found (tried %v): using a vocabulary trained on the test texts", candidates)
	vocab, merges := tokenizer.TrainBPE(texts)
	dir := filepath.Join(t.TempDir(), "tokenizer")
	if err := tokenizer.WriteFiles(dir, vocab, merges); err != nil {
		t.Fatal(err)
	}
	return dir
}

func loadTokenizer(t *testing.T, dir string) *tokenizer.Tokenizer {
	t.Helper()
	var (
		tok *tokenizer.Tokenizer
		err error
	)
	if gz := filepath.Join(dir, "bpe_simple_vocab_16e6.txt.gz"); fileExists(gz) {
		tok, err = tokenizer.LoadBPEGz(gz)
	} else {
		tok, err = tokenizer.Load(filepath.Join(dir, "vocab.json"), filepath.Join(dir, "merges.txt"))
	}
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// images are smooth, distinct, deterministic patterns in the range of
// CLIP-normalised pixels, NCHW.
func images() []float32 {
	px := make([]float32, 0, numImages*3*imageSize*imageSize)
	for n := range numImages {
		for c := range 3 {
			for y := range imageSize {
				for x := range imageSize {
					fx, fy := float64(x)/imageSize, float64(y)/imageSize
					v := math.Sin(fx*float64(3+2*n)+float64(c)) * math.Cos(fy*float64(2+n)-float64(c*n))
					v += 0.5 * math.Sin((fx+fy)*float64(7*(n+1)))
					px = append(px, float32(1.5*v))
				}
			}
		}
	}
	return px
}

// frames are per-clip frame embeddings for masks of every length: clip i
// has i+1 valid frames. Padded slots hold noise rather than zeros, so a
// head that lets padding through cannot pass.
func frames() (data []float32, mask []float32, valid []int) {
	rng := rand.New(rand.NewPCG(4, 2))
	b := maxFrames
	data = make([]float32, b*maxFrames*embedDim)
	for i := range data {
		data[i] = float32(rng.NormFloat64())
	}
	mask = make([]float32, b*maxFrames)
	valid = make([]int, b)
	for i := range b {
		valid[i] = i + 1
		for j := range valid[i] {
			mask[i*maxFrames+j] = 1
		}
	}
	return data, mask, valid
}

func writeFloats(t *testing.T, path string, xs []float32) {
	t.Helper()
	buf := make([]byte, 4*len(xs))
	for i, x := range xs {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(x))
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

type tensorFile struct {
	File  string `json:"file"`
	Shape []int  `json:"shape"`
}

type request struct {
	Images    *tensorFile `json:"images,omitempty"`
	InputIDs  [][]int64   `json:"input_ids,omitempty"`
	Frames    *tensorFile `json:"frames,omitempty"`
	FrameMask [][]float32 `json:"frame_mask,omitempty"`
	Output    string      `json:"output"`
}

type reference struct {
	ImageEmbeds [][]float32 `json:"image_embeds"`
	TextEmbeds  [][]float32 `json:"text_embeds"`
	VideoEmbeds [][]float32 `json:"video_embeds"`
	LogitScale  float64     `json:"logit_scale"`
}

func runScript(t *testing.T, py string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), scriptLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), "OPENBLAS_NUM_THREADS=1", "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return dot / math.Sqrt(na*nb)
}

func relErr(got, want []float32) float64 {
	var d, n float64
	for i := range want {
		e := float64(got[i]) - float64(want[i])
		d += e * e
		n += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(d / n)
}

func maxAbs(a, b []float32) float64 {
	var m float64
	for i := range a {
		m = max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

// checkCosines asserts got[i] ~ want[i] for every i, and that the wanted
// vectors differ from each other, so that a model ignoring its input could
// not pass.
func checkCosines(t *testing.T, what string, got, want [][]float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d vectors from vidx, %d from torch", what, len(got), len(want))
	}
	worst, worstRel := 1.0, 0.0
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("%s %d: dim %d from vidx, %d from torch", what, i, len(got[i]), len(want[i]))
		}
		c := cosine(got[i], want[i])
		worst = min(worst, c)
		if !(c >= minCosine) {
			t.Errorf("%s %d: cosine to torch %.6f, want >= %g", what, i, c, minCosine)
		}
		r := relErr(got[i], want[i])
		worstRel = max(worstRel, r)
		if !(r <= maxRelErr) {
			t.Errorf("%s %d: |vidx - torch| / |torch| = %.3g, want <= %g", what, i, r, maxRelErr)
		}
	}
	for i := 1; i < len(want); i++ {
		if c := cosine(want[0], want[i]); c > 0.999 {
			t.Errorf("%s 0 and %d: torch outputs have cosine %.5f; the inputs should give distinct embeddings", what, i, c)
		}
	}
	t.Logf("%s: %d vectors, lowest cosine to torch %.7f, largest relative L2 error %.2g", what, len(want), worst, worstRel)
}

type exportCase struct {
	name, format string
	args         []string
	ckpt         string // relative to the case directory
	context      int
	temporal     bool
}

func TestExportParity(t *testing.T) {
	if testing.Short() {
		t.Skip("exports four models with torch (about 20 s)")
	}
	py := python(t)
	rt := ortRuntime(t)
	tokDir := tokenizerDir(t)
	tok := loadTokenizer(t, tokDir)
	pixels := images()

	// For openai the reference is the torch module that was exported, so
	// that case checks torch -> ONNX -> vidx. The hf cases compare with an
	// independent implementation of transformers' CLIPModel on the
	// checkpoint's own names, which also covers the shared CLIP modules and
	// the renaming; clip4clip compares the head with CLIP4Clip's code path.
	cases := []exportCase{
		{name: "openai-torchscript", format: "openai", ckpt: "ViT-tiny.pt", context: 77,
			args: []string{"--save-as", "torchscript"}},
		{name: "hf", format: "hf", ckpt: "clip-tiny", context: 77},
		// Also the fixed-length text export, as bundles were before
		// text.dynamic_length.
		{name: "hf-gelu-safetensors", format: "hf", ckpt: "clip-tiny", context: 77,
			args: []string{"--hidden-act", "gelu", "--save-as", "safetensors", "--seed", "3", "--fixed-text-length"}},
		{name: "clip4clip", format: "clip4clip", ckpt: "pytorch_model.bin.4", context: 32, temporal: true,
			// The lowest supported opset, where LayerNormalization is not
			// yet an ONNX op and torch decomposes it.
			args: []string{"--temporal-layers", "4", "--opset", "14"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFloats(t, filepath.Join(dir, "images.f32"), pixels)
			req := request{
				Images: &tensorFile{File: "images.f32", Shape: []int{numImages, 3, imageSize, imageSize}},
				Output: "reference.json",
			}
			for _, text := range texts {
				req.InputIDs = append(req.InputIDs, tok.Tokenize(text, tc.context, 0))
			}
			var (
				frameData, frameMask []float32
				valid                []int
			)
			if tc.temporal {
				frameData, frameMask, valid = frames()
				writeFloats(t, filepath.Join(dir, "frames.f32"), frameData)
				req.Frames = &tensorFile{File: "frames.f32", Shape: []int{len(valid), maxFrames, embedDim}}
				for i := range valid {
					req.FrameMask = append(req.FrameMask, frameMask[i*maxFrames:(i+1)*maxFrames])
				}
			}
			reqPath := filepath.Join(dir, "request.json")
			writeJSON(t, reqPath, req)

			out := filepath.Join(dir, "bundle")
			args := append([]string{
				"--format", tc.format, "--random-init",
				"--checkpoint", filepath.Join(dir, tc.ckpt), "--out", out, "--tokenizer", tokDir,
				"--name", "tiny-" + tc.name, "--reference", reqPath,
				"--width", fmt.Sprint(width), "--layers", "2", "--patch-size", "32",
				"--image-size", fmt.Sprint(imageSize), "--embed-dim", fmt.Sprint(embedDim),
				"--max-frames", fmt.Sprint(maxFrames),
			}, tc.args...)
			start := time.Now()
			log, err := runScript(t, py, args...)
			if err != nil {
				t.Fatalf("export_bundle.py: %v\n%s", err, log)
			}
			t.Logf("export + reference: %.1fs", time.Since(start).Seconds())
			var ref reference
			readJSON(t, filepath.Join(dir, "reference.json"), &ref)

			m, err := bundle.Load(out)
			if err != nil {
				t.Fatalf("exported bundle does not load: %v", err)
			}
			checkManifest(t, m, tc, ref)

			img, err := rt.NewImageEncoder(m, onnx.SessionOptions{IntraOpThreads: 1, MaxBatch: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			// MaxBatch 2 over 3 images runs batches of 2 and 1: neither is
			// the batch size the model was traced with.
			gotImg, err := img.EncodeImages(t.Context(), pixels, numImages)
			if err != nil {
				t.Fatal(err)
			}
			checkCosines(t, "image", gotImg, ref.ImageEmbeds)

			txt, err := rt.NewTextEncoder(m, onnx.SessionOptions{IntraOpThreads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer txt.Close()
			for i, text := range texts {
				// The torch side saw these ids; the bundle's own tokenizer
				// (the copied files) must produce the same.
				if got := txt.Tokenize(text); !slices.Equal(got, req.InputIDs[i]) {
					t.Fatalf("text %d: bundle tokenizer gives %v, test sent torch %v", i, got, req.InputIDs[i])
				}
			}
			gotTxt, err := txt.EncodeTexts(t.Context(), texts)
			if err != nil {
				t.Fatal(err)
			}
			checkCosines(t, "text", gotTxt, ref.TextEmbeds)
			if m.Text.DynamicLength {
				// torch saw every text padded to context_length; vidx fed
				// each batch only up to its last end-of-text. One at a
				// time, each text runs at its own length.
				var alone [][]float32
				for _, text := range texts {
					v, err := txt.EncodeTexts(t.Context(), []string{text})
					if err != nil {
						t.Fatal(err)
					}
					alone = append(alone, v[0])
				}
				checkCosines(t, "text one at a time, unpadded", alone, ref.TextEmbeds)
			}

			if tc.temporal {
				checkTemporal(t, m, frameData, frameMask, valid, ref.VideoEmbeds)
			}
			if tc.format == "hf" && tc.args == nil {
				checkErrors(t, py, tokDir, filepath.Join(dir, tc.ckpt))
			}
		})
	}
}

func checkManifest(t *testing.T, m *bundle.Manifest, tc exportCase, ref reference) {
	t.Helper()
	if m.Name != "tiny-"+tc.name || m.EmbeddingDim != embedDim || m.Image.Size != imageSize ||
		m.Text.ContextLength != tc.context || m.Text.AttentionMask != "" {
		t.Errorf("manifest: name %q, embedding_dim %d, image.size %d, context_length %d, attention_mask %q; want %q, %d, %d, %d, none",
			m.Name, m.EmbeddingDim, m.Image.Size, m.Text.ContextLength, m.Text.AttentionMask,
			"tiny-"+tc.name, embedDim, imageSize, tc.context)
	}
	if want := !slices.Contains(tc.args, "--fixed-text-length"); m.Text.DynamicLength != want {
		t.Errorf("manifest text.dynamic_length = %v, want %v", m.Text.DynamicLength, want)
	}
	// A fresh CLIP starts at logit_scale = log(1/0.07); the manifest holds
	// its exponential.
	if want := 1 / 0.07; math.Abs(m.LogitScale-want) > 1e-4 || math.Abs(ref.LogitScale-want) > 1e-4 {
		t.Errorf("logit_scale: manifest %g, torch %g, want %g", m.LogitScale, ref.LogitScale, want)
	}
	if m.HasTemporal() != tc.temporal {
		t.Fatalf("manifest temporal = %v, want %v", m.Temporal, tc.temporal)
	}
	if tc.temporal && (m.Temporal.MaxFrames != maxFrames || m.Temporal.Frames != "frame_embeds" ||
		m.Temporal.Mask != "frame_mask" || m.Temporal.Output != "video_embeds") {
		t.Errorf("manifest temporal = %+v", *m.Temporal)
	}
}

// temporalSession runs temporal.onnx directly. The Runtime from the caller
// keeps ONNX Runtime's environment alive while it is open.
type temporalSession struct {
	s *ort.DynamicAdvancedSession
}

func (ts temporalSession) run(t *testing.T, data, mask []float32, b, frames int) [][]float32 {
	t.Helper()
	in, err := ort.NewTensor(ort.NewShape(int64(b), int64(frames), embedDim), data)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	mk, err := ort.NewTensor(ort.NewShape(int64(b), int64(frames)), mask)
	if err != nil {
		t.Fatal(err)
	}
	defer mk.Destroy()
	outs := []ort.Value{nil}
	if err := ts.s.Run([]ort.Value{in, mk}, outs); err != nil {
		t.Fatalf("temporal.onnx with [%d %d %d]: %v", b, frames, embedDim, err)
	}
	defer outs[0].Destroy()
	out := outs[0].(*ort.Tensor[float32])
	if shape := out.GetShape(); len(shape) != 2 || shape[0] != int64(b) || shape[1] != embedDim {
		t.Fatalf("video_embeds shape %v, want [%d %d]", shape, b, embedDim)
	}
	flat := slices.Clone(out.GetData())
	vecs := make([][]float32, b)
	for i := range vecs {
		vecs[i] = flat[i*embedDim : (i+1)*embedDim]
	}
	return vecs
}

func checkTemporal(t *testing.T, m *bundle.Manifest, data, mask []float32, valid []int, want [][]float32) {
	t.Helper()
	tp := m.Temporal
	s, err := ort.NewDynamicAdvancedSession(m.Path(tp.ONNX), []string{tp.Frames, tp.Mask}, []string{tp.Output}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	ts := temporalSession{s: s}
	b := len(valid)
	if len(want) != b {
		t.Fatalf("torch returned %d video embeddings, want %d", len(want), b)
	}
	per := maxFrames * embedDim

	check := func(what string, got, want []float32) {
		t.Helper()
		if d := maxAbs(got, want); !(d <= maxAbsDiff) {
			t.Errorf("%s: max |vidx - torch| = %.3g, want <= %g", what, d, maxAbsDiff)
		}
		var norm float64
		for _, x := range got {
			norm += float64(x) * float64(x)
		}
		if math.Abs(math.Sqrt(norm)-1) > 1e-5 {
			t.Errorf("%s: |video_embeds| = %.6f, want 1 (pooled output is L2-normalised)", what, math.Sqrt(norm))
		}
	}

	// One padded batch mixing every length 1..12.
	mixed := ts.run(t, data, mask, b, maxFrames)
	worst := 0.0
	for i := range b {
		check(fmt.Sprintf("mixed batch, %d valid frames", valid[i]), mixed[i], want[i])
		worst = max(worst, maxAbs(mixed[i], want[i]))
	}
	t.Logf("temporal: mixed batch of lengths 1..%d, max |vidx - torch| = %.3g", maxFrames, worst)

	for i := range b {
		n := valid[i]
		// Alone, padded to max_frames: batch composition must not matter.
		alone := ts.run(t, data[i*per:(i+1)*per], mask[i*maxFrames:(i+1)*maxFrames], 1, maxFrames)
		check(fmt.Sprintf("%d valid frames alone", n), alone[0], want[i])
		// Unpadded, T = n: padding must be invisible, and the frame axis
		// is dynamic.
		ones := make([]float32, n)
		for j := range ones {
			ones[j] = 1
		}
		exact := ts.run(t, data[i*per:i*per+n*embedDim], ones, 1, n)
		check(fmt.Sprintf("%d frames unpadded", n), exact[0], want[i])

		// The head must do more than CLIP4Clip's meanP would.
		meanP := make([]float64, embedDim)
		for j := range n {
			f := data[i*per+j*embedDim : i*per+(j+1)*embedDim]
			var norm float64
			for _, x := range f {
				norm += float64(x) * float64(x)
			}
			for k, x := range f {
				meanP[k] += float64(x) / math.Sqrt(norm)
			}
		}
		var norm float64
		for _, x := range meanP {
			norm += x * x
		}
		var diff float64
		for k, x := range meanP {
			diff = max(diff, math.Abs(x/math.Sqrt(norm)-float64(want[i][k])))
		}
		if diff < 1e-2 {
			t.Errorf("%d valid frames: torch's seqTransf output is within %.3g of meanP; the random head should transform the frames", n, diff)
		}
	}
}

// checkErrors runs the script on inputs it must refuse, with a message that
// says what is wrong.
func checkErrors(t *testing.T, py, tokDir, hfDir string) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pt")
	if err := os.WriteFile(garbage, []byte("this is not a checkpoint"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"not a checkpoint", []string{"--format", "openai", "--checkpoint", garbage}, "not a readable torch checkpoint"},
		{"hf weights as openai", []string{"--format", "openai", "--checkpoint", filepath.Join(hfDir, "pytorch_model.bin")}, "use --format hf"},
		{"hf weights as clip4clip", []string{"--format", "clip4clip", "--checkpoint", filepath.Join(hfDir, "pytorch_model.bin")}, "no clip.* weights"},
		{"missing checkpoint", []string{"--format", "hf", "--checkpoint", filepath.Join(dir, "nowhere")}, "no such file or directory"},
		{"vocabulary larger than the model", []string{"--format", "openai", "--random-init", "--vocab-size", "300",
			"--checkpoint", filepath.Join(dir, "small-vocab.pt")}, "wrong tokenizer for this model"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Each case is mostly Python start-up; overlap them.
			t.Parallel()
			out := filepath.Join(dir, "bundle-"+strings.ReplaceAll(c.name, " ", "-"))
			log, err := runScript(t, py, append(c.args, "--out", out, "--tokenizer", tokDir, "-q")...)
			if err == nil {
				t.Fatalf("export succeeded, want an error containing %q\n%s", c.want, log)
			}
			if !strings.Contains(log, c.want) {
				t.Errorf("error output does not contain %q:\n%s", c.want, log)
			}
			if strings.Contains(log, "Traceback") {
				t.Errorf("a traceback instead of a clear error:\n%s", log)
			}
			if _, err := bundle.Load(out); err == nil {
				t.Errorf("a failed export left a loadable bundle in %s", out)
			}
		})
	}
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
