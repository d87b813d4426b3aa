package bundle_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/testmodels"
)

// The generated bundles as written, temporal head included, agree with
// their models.
func TestCheckGeneratedBundles(t *testing.T) {
	tiny, color := testBundles(t)
	for _, dir := range []string{tiny, color} {
		m, err := bundle.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Check(nil).Err(); err != nil {
			t.Errorf("%s: %v", m.Name, err)
		}
	}
}

// hfExport lays out the tiny CLIP bundle as a Hugging Face ONNX export: the
// towers renamed under sub, the tokenizer and configs at the top, no
// vidx-model.yaml. files overrides or adds files (nil data removes one).
func hfExport(t *testing.T, sub string, files map[string][]byte) string {
	t.Helper()
	tiny, _ := testBundles(t)
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(tiny, name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	layout := map[string][]byte{
		filepath.Join(sub, bundle.HFVisionModel): read(testmodels.ImageFile),
		filepath.Join(sub, bundle.HFTextModel):   read(testmodels.TextFile),
		bundle.HFVocab:                           read(testmodels.VocabFile),
		bundle.HFMerges:                          read(testmodels.MergesFile),
	}
	for name, data := range files {
		if data == nil {
			delete(layout, name)
		} else {
			layout[name] = data
		}
	}
	dir := t.TempDir()
	for name, data := range layout {
		writeFile(t, dir, name, data)
	}
	return dir
}

// dynamicText is the tiny CLIP text tower with a dynamic sequence axis.
func dynamicText(t *testing.T) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dynamic")
	if err := testmodels.WriteTinyCLIPDynamicBundle(dir); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, testmodels.TextFile))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func hasAssumption(m *bundle.Manifest, substr string) bool {
	for _, a := range m.Assumptions {
		if strings.Contains(a, substr) {
			return true
		}
	}
	return false
}

func TestInferHuggingFace(t *testing.T) {
	tiny, _ := testBundles(t)
	vocab, err := os.ReadFile(filepath.Join(tiny, testmodels.VocabFile))
	if err != nil {
		t.Fatal(err)
	}
	merges, err := os.ReadFile(filepath.Join(tiny, testmodels.MergesFile))
	if err != nil {
		t.Fatal(err)
	}
	tok := tokenizerJSON(t, vocab, merges)
	configs := map[string][]byte{
		bundle.HFConfig: []byte(`{"_name_or_path": "openai/clip-vit-base-patch32", "projection_dim": 128,
			"text_config": {"max_position_embeddings": 77}, "vision_config": {"image_size": 224}}`),
		bundle.HFPreprocessorConfig: []byte(`{"crop_size": {"height": 224, "width": 224}, "size": {"shortest_edge": 224},
			"do_center_crop": true, "do_normalize": true, "do_resize": true, "resample": 3,
			"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}`),
		bundle.HFTokenizerConfig: []byte(`{"pad_token": {"content": "<|endoftext|>", "lstrip": false}, "model_max_length": 77}`),
	}
	eot := func(m *bundle.Manifest) int64 {
		tk, err := m.LoadTokenizer()
		if err != nil {
			t.Fatal(err)
		}
		return int64(tk.EOT())
	}

	cases := []struct {
		name  string
		sub   string
		files map[string][]byte
		check func(t *testing.T, m *bundle.Manifest)
	}{
		{"onnx subfolder with configs", "onnx", configs, func(t *testing.T, m *bundle.Manifest) {
			if m.Name != "openai/clip-vit-base-patch32" || m.Image.Mean[0] != 0.5 || m.Image.Std[2] != 0.25 {
				t.Errorf("name %q mean %v std %v", m.Name, m.Image.Mean, m.Image.Std)
			}
			if m.Text.PadID != eot(m) || !hasAssumption(m, `pad_token "<|endoftext|>" from tokenizer_config.json`) {
				t.Errorf("pad_id %d, assumptions %q", m.Text.PadID, m.Assumptions)
			}
			if m.Image.ONNX != filepath.Join("onnx", bundle.HFVisionModel) || m.Text.ONNX != filepath.Join("onnx", bundle.HFTextModel) {
				t.Errorf("files %s %s", m.Image.ONNX, m.Text.ONNX)
			}
		}},
		{"flat without configs", "", nil, func(t *testing.T, m *bundle.Manifest) {
			if m.Name != filepath.Base(m.Dir) || m.Text.PadID != 0 || m.Image.Mean[0] != bundle.DefaultMean[0] {
				t.Errorf("name %q pad %d mean %v", m.Name, m.Text.PadID, m.Image.Mean)
			}
			for _, want := range []string{"the directory name", "text.pad_id 0", "CLIP's; no image_mean"} {
				if !hasAssumption(m, want) {
					t.Errorf("no assumption mentions %q: %q", want, m.Assumptions)
				}
			}
		}},
		{"tokenizer.json preferred", "onnx", map[string][]byte{bundle.HFTokenizerJSON: tok}, func(t *testing.T, m *bundle.Manifest) {
			if m.Text.Tokenizer.TokenizerJSON != bundle.HFTokenizerJSON || m.Text.Tokenizer.Vocab != "" {
				t.Errorf("tokenizer %+v", m.Text.Tokenizer)
			}
		}},
		{"tokenizer.json alone", "", map[string][]byte{bundle.HFTokenizerJSON: tok, bundle.HFVocab: nil, bundle.HFMerges: nil,
			bundle.HFSpecialTokensMap: []byte(`{"pad_token": "<|endoftext|>"}`)}, func(t *testing.T, m *bundle.Manifest) {
			if m.Text.Tokenizer.TokenizerJSON != bundle.HFTokenizerJSON || m.Text.PadID != eot(m) {
				t.Errorf("tokenizer %+v pad %d", m.Text.Tokenizer, m.Text.PadID)
			}
		}},
		{"processor that differs from CLIP's", "", map[string][]byte{bundle.HFPreprocessorConfig: []byte(
			`{"crop_size": 224, "size": 256, "resample": 2, "do_center_crop": true}`)}, func(t *testing.T, m *bundle.Manifest) {
			for _, want := range []string{"resizes the short side to 256", "resample 2"} {
				if !hasAssumption(m, want) {
					t.Errorf("no assumption mentions %q: %q", want, m.Assumptions)
				}
			}
		}},
		{"dynamic sizes from configs", "", map[string][]byte{
			bundle.HFVisionModel: rawModel([][]byte{valueInfo("pixel_values", elemFloat, "batch", 3, "height", "width")},
				[][]byte{valueInfo("image_embeds", elemFloat, "batch", "dim")}),
			bundle.HFTextModel: rawModel([][]byte{valueInfo("input_ids", elemInt64, "batch", "seq"), valueInfo("attention_mask", elemInt64, "batch", "seq")},
				[][]byte{valueInfo("text_embeds", elemFloat, "batch", "dim")}),
			bundle.HFConfig:             []byte(`{"projection_dim": 768, "text_config": {"max_position_embeddings": 64}}`),
			bundle.HFPreprocessorConfig: []byte(`{"crop_size": {"height": 336, "width": 336}}`),
		}, func(t *testing.T, m *bundle.Manifest) {
			if m.EmbeddingDim != 768 || m.Image.Size != 336 || m.Text.ContextLength != 64 || !m.Text.DynamicLength {
				t.Errorf("dim %d size %d ctx %d dynamic length %v", m.EmbeddingDim, m.Image.Size, m.Text.ContextLength, m.Text.DynamicLength)
			}
			for _, want := range []string{"embedding_dim 768 (config.json projection_dim", "image.size 336 (preprocessor_config.json crop_size",
				"text.context_length 64 (config.json max_position_embeddings", "text.dynamic_length true (input_ids has a dynamic sequence axis"} {
				if !hasAssumption(m, want) {
					t.Errorf("no assumption mentions %q: %q", want, m.Assumptions)
				}
			}
		}},
		{"dynamic-length text tower", "onnx", map[string][]byte{filepath.Join("onnx", bundle.HFTextModel): dynamicText(t)},
			func(t *testing.T, m *bundle.Manifest) {
				if !hasAssumption(m, "text.dynamic_length true") || !hasAssumption(m, "text.context_length 77 (CLIP's") {
					t.Errorf("assumptions %q", m.Assumptions)
				}
			}},
		{"unusual tensor names", "", map[string][]byte{
			bundle.HFVisionModel: rawModel([][]byte{valueInfo("image", elemFloat, "batch", 3, 224, 224)},
				[][]byte{valueInfo("embedding", elemFloat, "batch", 128)}),
			bundle.HFTextModel: rawModel([][]byte{valueInfo("tokens", elemInt64, "batch", 77)},
				[][]byte{valueInfo("embedding", elemFloat, "batch", 128)}),
		}, func(t *testing.T, m *bundle.Manifest) {
			if m.Image.Input != "image" || m.Image.Output != "embedding" || m.Text.InputIDs != "tokens" || m.Text.AttentionMask != "" {
				t.Errorf("image %+v text %+v", m.Image, m.Text)
			}
			if !hasAssumption(m, `image.input "image"`) || !hasAssumption(m, `text.input_ids "tokens"`) {
				t.Errorf("assumptions %q", m.Assumptions)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := hfExport(t, c.sub, c.files)
			m, err := bundle.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if m.Layout != bundle.LayoutHuggingFace || m.Dir != dir {
				t.Errorf("layout %q dir %q", m.Layout, m.Dir)
			}
			if m.Image.Input == "" || m.Text.Output == "" || m.EmbeddingDim <= 0 || m.Image.Size <= 0 || m.Text.ContextLength <= 0 {
				t.Errorf("incomplete manifest %+v", m)
			}
			if !hasAssumption(m, "logit_scale 100") {
				t.Errorf("assumptions %q", m.Assumptions)
			}
			// The inferred manifest agrees with the graphs it came from.
			if c.files[bundle.HFVisionModel] == nil {
				if err := m.Check(nil).Err(); err != nil {
					t.Error(err)
				}
				if m.EmbeddingDim != testmodels.TinyDim || m.Image.Size != 224 || m.Text.ContextLength != 77 || m.Text.AttentionMask != "attention_mask" {
					t.Errorf("dim %d size %d ctx %d mask %q", m.EmbeddingDim, m.Image.Size, m.Text.ContextLength, m.Text.AttentionMask)
				}
				if want := c.files[filepath.Join(c.sub, bundle.HFTextModel)] != nil; m.Text.DynamicLength != want {
					t.Errorf("text.dynamic_length %v, want %v", m.Text.DynamicLength, want)
				}
			}
			c.check(t, m)
		})
	}
}

func TestInferErrors(t *testing.T) {
	cases := []struct {
		name     string
		files    map[string][]byte
		notFound bool // ErrNotBundle
		want     []string
	}{
		{"no text model", map[string][]byte{bundle.HFTextModel: nil}, true,
			[]string{"vidx-model.yaml", "vision_model.onnx", "no text_model.onnx"}},
		{"combined model only", map[string][]byte{bundle.HFTextModel: nil, bundle.HFVisionModel: nil, "model.onnx": {1}}, true,
			[]string{"combined CLIP export", "vision_model.onnx"}},
		{"other names", map[string][]byte{bundle.HFTextModel: nil, bundle.HFVisionModel: nil, "onnx/clip_image.onnx": {1}}, true,
			[]string{"onnx/clip_image.onnx", "write vidx-model.yaml"}},
		{"no tokenizer", map[string][]byte{bundle.HFVocab: nil, bundle.HFMerges: nil}, false,
			[]string{"text.tokenizer", "no tokenizer files"}},
		{"vocab without merges", map[string][]byte{bundle.HFMerges: nil}, false,
			[]string{"text.tokenizer", "merges.txt"}},
		{"vision model not onnx", map[string][]byte{bundle.HFVisionModel: []byte("<html>rate limited</html>")}, false,
			[]string{"image.onnx", "vision_model.onnx", "not an ONNX model"}},
		{"no projection", map[string][]byte{bundle.HFVisionModel: rawModel(
			[][]byte{valueInfo("pixel_values", elemFloat, "batch", 3, 224, 224)},
			[][]byte{valueInfo("last_hidden_state", elemFloat, "batch", 50, 768), valueInfo("pooler_output", elemFloat, "batch", 768)})}, false,
			[]string{"image.output", `no "image_embeds"`, "CLIPVisionModelWithProjection"}},
		{"towers disagree", map[string][]byte{bundle.HFVisionModel: rawModel(
			[][]byte{valueInfo("pixel_values", elemFloat, "batch", 3, 224, 224)},
			[][]byte{valueInfo("image_embeds", elemFloat, "batch", 512)})}, false,
			[]string{"embedding_dim", "image_embeds is [batch,512]", "text_embeds is [N,128]"}},
		{"no width anywhere", map[string][]byte{
			bundle.HFVisionModel: rawModel([][]byte{valueInfo("pixel_values", elemFloat, "b", 3, 224, 224)}, [][]byte{valueInfo("image_embeds", elemFloat, "b", "d")}),
			bundle.HFTextModel:   rawModel([][]byte{valueInfo("input_ids", elemInt64, "b", 77)}, [][]byte{valueInfo("text_embeds", elemFloat, "b", "d")})}, false,
			[]string{"embedding_dim", "projection_dim"}},
		{"bad config.json", map[string][]byte{bundle.HFConfig: []byte("{")}, false,
			[]string{"config.json", "unexpected end of JSON"}},
		{"non-square crop", map[string][]byte{bundle.HFPreprocessorConfig: []byte(`{"crop_size": {"height": 224, "width": 320}}`)}, false,
			[]string{"preprocessor_config.json", "crop_size", "not square"}},
		{"bad vocab for pad lookup", map[string][]byte{bundle.HFVocab: []byte("[1, 2"), bundle.HFTokenizerConfig: []byte(`{"pad_token": "<|endoftext|>"}`)}, false,
			[]string{"text.pad_id", "text.tokenizer.vocab", "vocab.json"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := hfExport(t, "", c.files)
			_, err := bundle.Load(dir)
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, bundle.ErrNotBundle) != c.notFound {
				t.Errorf("errors.Is(err, ErrNotBundle) = %v", !c.notFound)
			}
			for _, w := range append(c.want, dir) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// tokenizerJSON builds a minimal Hugging Face tokenizer.json from vocab.json
// and merges.txt contents.
func tokenizerJSON(t *testing.T, vocab, merges []byte) []byte {
	t.Helper()
	var lines []string
	for i, l := range strings.Split(strings.TrimSpace(string(merges)), "\n") {
		if i == 0 && strings.HasPrefix(l, "#") {
			continue
		}
		lines = append(lines, `"`+strings.ReplaceAll(strings.ReplaceAll(l, `\`, `\\`), `"`, `\"`)+`"`)
	}
	return []byte(`{"version": "1.0", "added_tokens": [], "model": {"type": "BPE", "vocab": ` + string(vocab) +
		`, "merges": [` + strings.Join(lines, ",") + `]}}`)
}
