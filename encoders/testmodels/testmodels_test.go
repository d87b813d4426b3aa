package testmodels_test

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
	"gopkg.in/yaml.v3"

	"github.com/vidx/vidx/encoders/onnx/orttest"
	"github.com/vidx/vidx/encoders/testmodels"
	"github.com/vidx/vidx/encoders/tokenizer"
)

const (
	hw      = testmodels.ImageSize * testmodels.ImageSize
	ctxLen  = testmodels.ContextLength
	imgSize = 3 * hw
)

// normalise applies CLIP's normalisation to one [0, 1] value of channel c.
func normalise(v float32, c int) float32 {
	mean := [3]float32{0.48145466, 0.4578275, 0.40821073}
	std := [3]float32{0.26862954, 0.26130258, 0.27577711}
	return (v - mean[c]) / std[c]
}

// solidImage is one CLIP-normalised 224x224 image of a single colour.
func solidImage(rgb [3]float32) []float32 {
	px := make([]float32, imgSize)
	for c := range 3 {
		v := normalise(rgb[c], c)
		for i := range hw {
			px[c*hw+i] = v
		}
	}
	return px
}

// noiseImages are n distinct random images, normalised.
func noiseImages(n int) []float32 {
	r := rand.New(rand.NewPCG(7, 11))
	px := make([]float32, n*imgSize)
	for i := range px {
		px[i] = normalise(r.Float32(), (i/hw)%3)
	}
	return px
}

// runImage embeds n images laid out NCHW, returning [n][dim].
func runImage(t *testing.T, s *ort.DynamicAdvancedSession, px []float32, n, dim int) [][]float32 {
	t.Helper()
	in, err := ort.NewTensor(ort.NewShape(int64(n), 3, testmodels.ImageSize, testmodels.ImageSize), px[:n*imgSize])
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	return runOutput(t, s, []ort.Value{in}, n, dim)
}

// runText embeds n token sequences; mask is nil for ids-only models.
func runText(t *testing.T, s *ort.DynamicAdvancedSession, ids, mask []int64, n, dim int) [][]float32 {
	t.Helper()
	shape := ort.NewShape(int64(n), ctxLen)
	in, err := ort.NewTensor(shape, ids[:n*ctxLen])
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	inputs := []ort.Value{in}
	if mask != nil {
		m, err := ort.NewTensor(shape, mask[:n*ctxLen])
		if err != nil {
			t.Fatal(err)
		}
		defer m.Destroy()
		inputs = append(inputs, m)
	}
	return runOutput(t, s, inputs, n, dim)
}

func runOutput(t *testing.T, s *ort.DynamicAdvancedSession, inputs []ort.Value, n, dim int) [][]float32 {
	t.Helper()
	outs := []ort.Value{nil}
	if err := s.Run(inputs, outs); err != nil {
		t.Fatal(err)
	}
	defer outs[0].Destroy()
	out, ok := outs[0].(*ort.Tensor[float32])
	if !ok {
		t.Fatalf("output is %T, want float32 tensor", outs[0])
	}
	if got, want := out.GetShape(), ort.NewShape(int64(n), int64(dim)); !got.Equals(want) {
		t.Fatalf("output shape %v, want %v", got, want)
	}
	data := out.GetData()
	rows := make([][]float32, n)
	for i := range rows {
		rows[i] = append([]float32(nil), data[i*dim:(i+1)*dim]...)
		for j, v := range rows[i] {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("row %d[%d] = %v", i, j, v)
			}
		}
		if norm(rows[i]) < 1e-3 {
			t.Fatalf("row %d is (near) zero", i)
		}
	}
	return rows
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func cosine(a, b []float32) float64 {
	var d float64
	for i := range a {
		d += float64(a[i]) * float64(b[i])
	}
	return d / (norm(a) * norm(b))
}

func maxAbsDiff(a, b []float32) float64 {
	var m float64
	for i := range a {
		m = max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
}

// tokenize turns texts into padded ids with the bundle's own vocabulary, and
// the matching attention mask (ones up to and including end of text).
func tokenize(t *testing.T, dir string, texts ...string) (ids, mask []int64) {
	t.Helper()
	tok, err := tokenizer.Load(filepath.Join(dir, testmodels.VocabFile), filepath.Join(dir, testmodels.MergesFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range texts {
		row := tok.Tokenize(text, ctxLen, testmodels.PadID)
		if len(row) != ctxLen {
			t.Fatalf("%q: %d ids, want %d", text, len(row), ctxLen)
		}
		eot := argmax(row)
		for i := range row {
			mask = append(mask, boolInt(i <= eot))
		}
		ids = append(ids, row...)
	}
	return ids, mask
}

func argmax(ids []int64) int {
	best := 0
	for i, v := range ids {
		if v > ids[best] {
			best = i
		}
	}
	return best
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func TestDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	if err := testmodels.WriteAll(a); err != nil {
		t.Fatal(err)
	}
	if err := testmodels.WriteAll(b); err != nil {
		t.Fatal(err)
	}
	for _, bundle := range []string{"color", "tiny-clip"} {
		files := []string{
			testmodels.ImageFile, testmodels.TextFile, testmodels.VocabFile,
			testmodels.MergesFile, testmodels.ManifestFile,
		}
		if bundle == "tiny-clip" {
			files = append(files, testmodels.TemporalFile)
		} else if _, err := os.Stat(filepath.Join(a, bundle, testmodels.TemporalFile)); err == nil {
			t.Errorf("%s has a %s; only the tiny CLIP bundle has a temporal head", bundle, testmodels.TemporalFile)
		}
		for _, name := range files {
			x, err := os.ReadFile(filepath.Join(a, bundle, name))
			if err != nil {
				t.Fatal(err)
			}
			y, err := os.ReadFile(filepath.Join(b, bundle, name))
			if err != nil {
				t.Fatal(err)
			}
			if len(x) == 0 || !bytes.Equal(x, y) {
				t.Errorf("%s/%s: %d and %d bytes, not identical", bundle, name, len(x), len(y))
			}
		}
	}
}

// manifest mirrors the fields of vidx-model.yaml the tests check.
type manifest struct {
	Name         string  `yaml:"name"`
	EmbeddingDim int     `yaml:"embedding_dim"`
	LogitScale   float64 `yaml:"logit_scale"`
	Image        struct {
		ONNX, Input, Output string
		Size                int
		Mean, Std           []float32
	} `yaml:"image"`
	Text struct {
		ONNX          string `yaml:"onnx"`
		InputIDs      string `yaml:"input_ids"`
		AttentionMask string `yaml:"attention_mask"`
		Output        string `yaml:"output"`
		ContextLength int    `yaml:"context_length"`
		PadID         *int64 `yaml:"pad_id"`
		Tokenizer     struct {
			Vocab, Merges string
		} `yaml:"tokenizer"`
	} `yaml:"text"`
	Temporal *struct {
		ONNX      string `yaml:"onnx"`
		Frames    string `yaml:"frames"`
		Mask      string `yaml:"mask"`
		Output    string `yaml:"output"`
		MaxFrames int    `yaml:"max_frames"`
	} `yaml:"temporal"`
}

func TestManifests(t *testing.T) {
	dir := t.TempDir()
	if err := testmodels.WriteAll(dir); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sub, name, mask string
		dim             int
		temporal        string
	}{
		{"color", testmodels.ColorName, "", testmodels.ColorDim, "none"},
		{"tiny-clip", testmodels.TinyCLIPName, testmodels.TextAttentionMask, testmodels.TinyDim,
			"temporal.onnx frame_embeds frame_mask video_embeds 12"},
	} {
		raw, err := os.ReadFile(filepath.Join(dir, tc.sub, testmodels.ManifestFile))
		if err != nil {
			t.Fatal(err)
		}
		var m manifest
		if err := yaml.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s: %v", tc.sub, err)
		}
		want := fmt.Sprintf("%s %d 100 image.onnx pixel_values image_embeds 224 [0.48145467 0.4578275 0.40821072] [0.26862955 0.2613026 0.2757771] "+
			"text.onnx input_ids %q text_embeds 77 0 vocab.json merges.txt", tc.name, tc.dim, tc.mask)
		var pad int64 = -1
		if m.Text.PadID != nil {
			pad = *m.Text.PadID
		}
		got := fmt.Sprintf("%s %d %v %s %s %s %d %v %v %s %s %q %s %d %d %s %s", m.Name, m.EmbeddingDim, m.LogitScale,
			m.Image.ONNX, m.Image.Input, m.Image.Output, m.Image.Size, m.Image.Mean, m.Image.Std,
			m.Text.ONNX, m.Text.InputIDs, m.Text.AttentionMask, m.Text.Output, m.Text.ContextLength, pad,
			m.Text.Tokenizer.Vocab, m.Text.Tokenizer.Merges)
		if got != want {
			t.Errorf("%s manifest:\n got %s\nwant %s", tc.sub, got, want)
		}
		temporal := "none"
		if tp := m.Temporal; tp != nil {
			temporal = fmt.Sprintf("%s %s %s %s %d", tp.ONNX, tp.Frames, tp.Mask, tp.Output, tp.MaxFrames)
		}
		if temporal != tc.temporal {
			t.Errorf("%s manifest temporal section: got %s, want %s", tc.sub, temporal, tc.temporal)
		}
	}
}

func TestTinyCLIPImage(t *testing.T) {
	orttest.Require(t)
	dir := t.TempDir()
	if err := testmodels.WriteTinyCLIPBundle(dir); err != nil {
		t.Fatal(err)
	}
	s := orttest.SessionFile(t, filepath.Join(dir, testmodels.ImageFile), []string{testmodels.ImageInput}, []string{testmodels.ImageOutput})
	const n = 8
	px := noiseImages(n)
	copy(px[(n-1)*imgSize:], solidImage([3]float32{0.5, 0.5, 0.5})) // a flat image too
	batch := runImage(t, s, px, n, testmodels.TinyDim)
	three := runImage(t, s, px, 3, testmodels.TinyDim)
	for i := range n {
		one := runImage(t, s, px[i*imgSize:], 1, testmodels.TinyDim)[0]
		if d := maxAbsDiff(one, batch[i]); d > 1e-4 {
			t.Errorf("image %d: batch of %d differs from single by %g", i, n, d)
		}
		if i < 3 {
			if d := maxAbsDiff(one, three[i]); d > 1e-4 {
				t.Errorf("image %d: batch of 3 differs from single by %g", i, d)
			}
		}
		for j := range i {
			if c := cosine(batch[i], batch[j]); c > 0.9999 {
				t.Errorf("images %d and %d embed alike (cosine %.6f)", i, j, c)
			}
		}
	}
}

func TestTinyCLIPText(t *testing.T) {
	orttest.Require(t)
	dir := t.TempDir()
	if err := testmodels.WriteTinyCLIPBundle(dir); err != nil {
		t.Fatal(err)
	}
	s := orttest.SessionFile(t, filepath.Join(dir, testmodels.TextFile),
		[]string{testmodels.TextInputIDs, testmodels.TextAttentionMask}, []string{testmodels.TextOutput})
	texts := []string{
		"a dog running", "a dog running on the grass", "a cat", "a red car",
		"something green", "", "the sky at night", "a man walking a dog",
	}
	ids, mask := tokenize(t, dir, texts...)
	n, dim := len(texts), testmodels.TinyDim
	batch := runText(t, s, ids, mask, n, dim)
	three := runText(t, s, ids, mask, 3, dim)
	for i := range n {
		one := runText(t, s, ids[i*ctxLen:], mask[i*ctxLen:], 1, dim)[0]
		if d := maxAbsDiff(one, batch[i]); d > 1e-4 {
			t.Errorf("%q: batch of %d differs from single by %g", texts[i], n, d)
		}
		if i < 3 {
			if d := maxAbsDiff(one, three[i]); d > 1e-4 {
				t.Errorf("%q: batch of 3 differs from single by %g", texts[i], d)
			}
		}
		for j := range i {
			if c := cosine(batch[i], batch[j]); c > 0.9999 {
				t.Errorf("%q and %q embed alike (cosine %.6f)", texts[i], texts[j], c)
			}
		}
	}

	// The embedding is read at the end-of-text position: tokens after it
	// (here: junk instead of padding, masked out) change nothing, while
	// masking a token before it does.
	row, rowMask := ids[:ctxLen], mask[:ctxLen]
	eot := argmax(row)
	junk := append([]int64(nil), row...)
	for i := eot + 1; i < ctxLen; i++ {
		junk[i] = int64(1 + i%200)
	}
	if d := maxAbsDiff(runText(t, s, junk, rowMask, 1, dim)[0], batch[0]); d > 1e-5 {
		t.Errorf("tokens after end of text changed the embedding by %g", d)
	}
	hidden := append([]int64(nil), rowMask...)
	hidden[1] = 0
	if d := maxAbsDiff(runText(t, s, row, hidden, 1, dim)[0], batch[0]); d < 1e-3 {
		t.Errorf("masking a word changed the embedding by only %g; attention_mask unused?", d)
	}
}

func TestColorRanking(t *testing.T) {
	orttest.Require(t)
	dir := t.TempDir()
	if err := testmodels.WriteColorBundle(dir); err != nil {
		t.Fatal(err)
	}
	img := orttest.SessionFile(t, filepath.Join(dir, testmodels.ImageFile), []string{testmodels.ImageInput}, []string{testmodels.ImageOutput})
	txt := orttest.SessionFile(t, filepath.Join(dir, testmodels.TextFile), []string{testmodels.TextInputIDs}, []string{testmodels.TextOutput})

	colors := testmodels.Colors()
	var px []float32
	for _, c := range colors {
		px = append(px, solidImage(c.RGB)...)
	}
	// Off-palette frames must still embed to finite, non-zero vectors.
	px = append(px, solidImage([3]float32{0.3, 0.6, 0.2})...)
	px = append(px, noiseImages(1)...)
	videos := runImage(t, img, px, len(colors)+2, testmodels.ColorDim)

	var queries []string
	var want []int
	for k, c := range colors {
		for _, w := range c.Words {
			for _, q := range []string{"%s", "a %s screen", "something %s", "A video of the colour %s."} {
				queries = append(queries, fmt.Sprintf(q, w))
				want = append(want, k)
			}
		}
	}
	queries = append(queries, "a dog running", "", "!!!")
	ids, _ := tokenize(t, dir, queries...)
	embs := runText(t, txt, ids, nil, len(queries), testmodels.ColorDim)

	for qi, q := range queries {
		if qi >= len(want) {
			continue // colourless queries: finite and non-zero is all runText checks
		}
		best, second := -1, -1
		score := func(v int) float64 { return cosine(embs[qi], videos[v]) }
		for v := range colors {
			switch {
			case best < 0 || score(v) > score(best):
				best, second = v, best
			case second < 0 || score(v) > score(second):
				second = v
			}
		}
		if best != want[qi] {
			t.Errorf("%q ranks %v first, want %v", q, colors[best].Words, colors[want[qi]].Words)
		} else if margin := score(best) - score(second); margin < 0.5 {
			t.Errorf("%q: margin %.3f over %v is too small", q, margin, colors[second].Words)
		}
	}
	if t.Failed() {
		t.Logf("query %q tokens: %v", queries[0], ids[:8])
	}
}
