package bundle_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/testmodels"
)

// writeBundle writes manifest and empty placeholder files into a fresh
// directory; the placeholders only need to exist for Load.
func writeBundle(t *testing.T, manifest string, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range files {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, bundle.ManifestFile), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

const minimal = `
name: tiny
embedding_dim: 16
image: {onnx: image.onnx}
text:
  onnx: text.onnx
  tokenizer: {bpe: bpe.txt.gz}
`

var minimalFiles = []string{"image.onnx", "text.onnx", "bpe.txt.gz"}

func TestLoadDefaults(t *testing.T) {
	dir := writeBundle(t, minimal, minimalFiles...)
	m, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(m.Dir) {
		t.Errorf("Dir %q is not absolute", m.Dir)
	}
	if m.Name != "tiny" || m.EmbeddingDim != 16 || m.LogitScale != bundle.DefaultLogitScale {
		t.Errorf("name/dim/logit_scale = %q/%d/%g", m.Name, m.EmbeddingDim, m.LogitScale)
	}
	im := m.Image
	if im.Input != "pixel_values" || im.Output != "image_embeds" || im.Size != 224 {
		t.Errorf("image defaults: %+v", im)
	}
	if len(im.Mean) != 3 || im.Mean[0] != 0.48145466 || len(im.Std) != 3 || im.Std[2] != 0.27577711 {
		t.Errorf("mean/std defaults: %v %v", im.Mean, im.Std)
	}
	tx := m.Text
	if tx.InputIDs != "input_ids" || tx.Output != "text_embeds" || tx.ContextLength != 77 || tx.PadID != 0 {
		t.Errorf("text defaults: %+v", tx)
	}
	if tx.AttentionMask != "" {
		t.Errorf("attention_mask defaulted to %q; omitted must mean ids only", tx.AttentionMask)
	}
	if m.Temporal != nil || m.HasTemporal() {
		t.Errorf("temporal = %+v, want nil", m.Temporal)
	}
	if got, want := m.Path("image.onnx"), filepath.Join(m.Dir, "image.onnx"); got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
	if got := m.Path("/abs/x.onnx"); got != "/abs/x.onnx" {
		t.Errorf("Path(abs) = %q", got)
	}

	// Defaults must not alias package state.
	m.Image.Mean[0] = 9
	if bundle.DefaultMean[0] == 9 {
		t.Error("manifest mean aliases DefaultMean")
	}
}

func TestLoadFull(t *testing.T) {
	const full = `
name: clip-vit-b32
embedding_dim: 512
logit_scale: 50
image:  {onnx: models/image.onnx, input: px, output: emb, size: 336,
         mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
text:   {onnx: text.onnx, input_ids: ids, attention_mask: am, output: temb,
         context_length: 32, pad_id: 49407,
         tokenizer: {vocab: vocab.json, merges: merges.txt}}
temporal: {onnx: temporal.onnx, frames: f, mask: fm, output: v, max_frames: 8}
`
	dir := writeBundle(t, full, "models/image.onnx", "text.onnx", "vocab.json", "merges.txt", "temporal.onnx")
	// Load also accepts the manifest file itself.
	m, err := bundle.Load(filepath.Join(dir, bundle.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if m.LogitScale != 50 || m.Image.Size != 336 || m.Image.Input != "px" || m.Image.Mean[1] != 0.5 || m.Image.Std[0] != 0.25 {
		t.Errorf("image: %+v (logit %g)", m.Image, m.LogitScale)
	}
	if m.Path(m.Image.ONNX) != filepath.Join(m.Dir, "models", "image.onnx") {
		t.Errorf("image path %q", m.Path(m.Image.ONNX))
	}
	tx := m.Text
	if tx.InputIDs != "ids" || tx.AttentionMask != "am" || tx.Output != "temb" || tx.ContextLength != 32 || tx.PadID != 49407 {
		t.Errorf("text: %+v", tx)
	}
	if tx.Tokenizer.Vocab != "vocab.json" || tx.Tokenizer.Merges != "merges.txt" {
		t.Errorf("tokenizer: %+v", tx.Tokenizer)
	}
	tp := m.Temporal
	if tp == nil || tp.Frames != "f" || tp.Mask != "fm" || tp.Output != "v" || tp.MaxFrames != 8 {
		t.Errorf("temporal: %+v", tp)
	}
}

func TestTemporalDefaults(t *testing.T) {
	dir := writeBundle(t, minimal+"temporal: {onnx: t.onnx}\n", append(minimalFiles, "t.onnx")...)
	m, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	tp := m.Temporal
	if tp.Frames != "frame_embeds" || tp.Mask != "frame_mask" || tp.Output != "video_embeds" || tp.MaxFrames != 12 {
		t.Errorf("temporal defaults: %+v", tp)
	}
}

func TestLoadErrors(t *testing.T) {
	tok := "  tokenizer: {bpe: bpe.txt.gz}\n"
	cases := []struct {
		name     string
		manifest string
		files    []string
		want     string // substring of the error
	}{
		{"no name", "embedding_dim: 4\nimage: {onnx: image.onnx}\ntext:\n  onnx: text.onnx\n" + tok, minimalFiles, "name is required"},
		{"zero dim", "name: x\nimage: {onnx: image.onnx}\ntext:\n  onnx: text.onnx\n" + tok, minimalFiles, "embedding_dim must be > 0"},
		{"negative dim", "name: x\nembedding_dim: -3\nimage: {onnx: image.onnx}\ntext:\n  onnx: text.onnx\n" + tok, minimalFiles, "embedding_dim must be > 0"},
		{"no image onnx", "name: x\nembedding_dim: 4\ntext:\n  onnx: text.onnx\n" + tok, minimalFiles, "image.onnx is required"},
		{"no text onnx", "name: x\nembedding_dim: 4\nimage: {onnx: image.onnx}\ntext:\n" + tok, minimalFiles, "text.onnx is required"},
		{"missing image file", minimal, []string{"text.onnx", "bpe.txt.gz"}, "image.onnx: file"},
		{"missing text file", minimal, []string{"image.onnx", "bpe.txt.gz"}, "text.onnx: file"},
		{"missing bpe file", minimal, []string{"image.onnx", "text.onnx"}, "text.tokenizer.bpe: file"},
		{"missing temporal file", minimal + "temporal: {onnx: t.onnx}\n", minimalFiles, "temporal.onnx: file"},
		{"no tokenizer", "name: x\nembedding_dim: 4\nimage: {onnx: image.onnx}\ntext: {onnx: text.onnx}\n", minimalFiles, "text.tokenizer: one of"},
		{"two tokenizers", "name: x\nembedding_dim: 4\nimage: {onnx: image.onnx}\ntext:\n  onnx: text.onnx\n  tokenizer: {bpe: b, tokenizer_json: t}\n", minimalFiles, "give only one"},
		{"vocab without merges", "name: x\nembedding_dim: 4\nimage: {onnx: image.onnx}\ntext:\n  onnx: text.onnx\n  tokenizer: {vocab: v}\n", minimalFiles, "vocab and merges"},
		{"bad mean", strings.Replace(minimal, "{onnx: image.onnx}", "{onnx: image.onnx, mean: [0.5]}", 1), minimalFiles, "image.mean needs 3"},
		{"zero std", strings.Replace(minimal, "{onnx: image.onnx}", "{onnx: image.onnx, std: [1, 0, 1]}", 1), minimalFiles, "image.std[1] must be > 0"},
		{"unknown key", strings.Replace(minimal, "{onnx: image.onnx}", "{onnx: image.onnx, imput: x}", 1), minimalFiles, "imput"},
		{"empty", "", nil, "empty"},
		{"not yaml", "name: [", nil, "vidx-model.yaml"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeBundle(t, c.manifest, c.files...)
			_, err := bundle.Load(dir)
			if err == nil {
				t.Fatalf("Load succeeded, want error containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestLoadMissingDir(t *testing.T) {
	_, err := bundle.Load(filepath.Join(t.TempDir(), "nope"))
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("err = %v", err)
	}
	_, err = bundle.Load(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), bundle.ManifestFile) {
		t.Fatalf("err = %v, want it to name %s", err, bundle.ManifestFile)
	}
}

func TestLoadTokenizer(t *testing.T) {
	dir := t.TempDir()
	if err := testmodels.WriteColorBundle(dir); err != nil {
		t.Fatal(err)
	}
	m, err := bundle.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Text.AttentionMask != "" || m.EmbeddingDim != testmodels.ColorDim {
		t.Errorf("colour bundle: mask %q, dim %d", m.Text.AttentionMask, m.EmbeddingDim)
	}
	tok, err := m.LoadTokenizer()
	if err != nil {
		t.Fatal(err)
	}
	ids := tok.Tokenize("a red screen", m.Text.ContextLength, m.Text.PadID)
	if len(ids) != m.Text.ContextLength || ids[0] != int64(tok.SOT()) || ids[4] != int64(tok.EOT()) || ids[5] != m.Text.PadID {
		t.Errorf("Tokenize = %v", ids[:8])
	}

	// A tokenizer file that exists but is not a tokenizer fails with the
	// field named.
	if err := os.WriteFile(filepath.Join(dir, testmodels.MergesFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, testmodels.VocabFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := m.LoadTokenizer(); err == nil || !strings.Contains(err.Error(), "text.tokenizer") {
		t.Errorf("broken tokenizer: err = %v", err)
	}
}
