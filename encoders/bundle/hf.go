package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// File names of a Hugging Face CLIP ONNX export: one model per tower (as
// written by optimum or transformers.js, often under onnx/), the tokenizer
// and the JSON configs the model card ships.
const (
	HFVisionModel        = "vision_model.onnx"
	HFTextModel          = "text_model.onnx"
	HFTokenizerJSON      = "tokenizer.json"
	HFVocab              = "vocab.json"
	HFMerges             = "merges.txt"
	HFConfig             = "config.json"
	HFPreprocessorConfig = "preprocessor_config.json"
	HFTokenizerConfig    = "tokenizer_config.json"
	HFSpecialTokensMap   = "special_tokens_map.json"
	OpenAIBPE            = "bpe_simple_vocab_16e6.txt.gz"
)

// hfSubdirs are where the files of an export are looked for, in order.
var hfSubdirs = []string{"", "onnx"}

// ErrNotBundle is wrapped by Load's error for a directory that has neither
// vidx-model.yaml nor a recognisable Hugging Face ONNX export.
var ErrNotBundle = errors.New("not a model bundle")

// Infer builds a manifest for a directory without vidx-model.yaml that holds
// a Hugging Face ONNX export: vision_model.onnx and text_model.onnx (in dir
// or dir/onnx), tokenizer.json or vocab.json + merges.txt (or OpenAI's
// bpe_simple_vocab_16e6.txt.gz), and optionally config.json,
// preprocessor_config.json and tokenizer_config.json.
//
// Tensor names and fixed sizes are read from the ONNX graphs (no ONNX
// Runtime needed); what the graphs leave open comes from the JSON configs,
// and what nothing says falls back to OpenAI CLIP's values. Every choice
// not read from a graph is listed in Manifest.Assumptions.
func Infer(dir string) (*Manifest, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("model bundle %s: %w", dir, err)
	}
	m, err := infer(abs)
	if err != nil {
		return nil, fmt.Errorf("model bundle %s: %w", abs, err)
	}
	return m, nil
}

type hfInference struct {
	dir     string
	m       *Manifest
	assumed []string
}

func (h *hfInference) assume(format string, args ...any) {
	h.assumed = append(h.assumed, fmt.Sprintf(format, args...))
}

// locate returns the path of name relative to dir, trying each of
// hfSubdirs, or "".
func (h *hfInference) locate(name string) string {
	for _, sub := range hfSubdirs {
		rel := filepath.Join(sub, name)
		if fi, err := os.Stat(filepath.Join(h.dir, rel)); err == nil && !fi.IsDir() {
			return rel
		}
	}
	return ""
}

// onnxFiles lists the ONNX files where an export keeps them (quantized or
// fp16 variants, a combined model.onnx), for error messages.
func (h *hfInference) onnxFiles() []string {
	var found []string
	for _, sub := range hfSubdirs {
		matches, _ := filepath.Glob(filepath.Join(h.dir, sub, "*.onnx"))
		for _, p := range matches {
			rel, _ := filepath.Rel(h.dir, p)
			found = append(found, rel)
		}
	}
	return found
}

// readJSON decodes the first of name found into v; it returns the relative
// path, or "" when the file is absent.
func (h *hfInference) readJSON(name string, v any) (string, error) {
	rel := h.locate(name)
	if rel == "" {
		return "", nil
	}
	data, err := os.ReadFile(filepath.Join(h.dir, rel))
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return "", fmt.Errorf("%s: %w", rel, err)
	}
	return rel, nil
}

// hfConfig holds the config.json fields used: a full CLIPConfig has the
// tower settings under text_config / vision_config, a single-tower config
// (CLIPVisionConfig, CLIPTextConfig) at the top level.
type hfConfig struct {
	NameOrPath            string    `json:"_name_or_path"`
	ProjectionDim         int       `json:"projection_dim"`
	ImageSize             int       `json:"image_size"`
	MaxPositionEmbeddings int       `json:"max_position_embeddings"`
	TextConfig            *hfConfig `json:"text_config"`
	VisionConfig          *hfConfig `json:"vision_config"`
}

// hfPreprocessor is preprocessor_config.json (CLIPImageProcessor). Sizes
// are either a number or an object, depending on the transformers version.
type hfPreprocessor struct {
	CropSize     json.RawMessage `json:"crop_size"`
	Size         json.RawMessage `json:"size"`
	ImageMean    []float32       `json:"image_mean"`
	ImageStd     []float32       `json:"image_std"`
	Resample     *int            `json:"resample"`
	DoCenterCrop *bool           `json:"do_center_crop"`
	DoResize     *bool           `json:"do_resize"`
	DoNormalize  *bool           `json:"do_normalize"`
}

// pilBicubic is PIL.Image.BICUBIC, CLIP's resampling filter.
const pilBicubic = 3

// hfSize reads 224, {"height": 224, "width": 224} or {"shortest_edge": 224}.
// It returns 0 when absent and an error for anything else.
func hfSize(raw json.RawMessage) (int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var n float64
	if err := json.Unmarshal(raw, &n); err == nil {
		return int(n), nil
	}
	var fields map[string]int
	if err := json.Unmarshal(raw, &fields); err != nil {
		return 0, fmt.Errorf("size %s: want a number or an object of sizes", raw)
	}
	h, w, short := fields["height"], fields["width"], fields["shortest_edge"]
	switch {
	case short > 0:
		return short, nil
	case h > 0 && h == w:
		return h, nil
	case h > 0 || w > 0:
		return 0, fmt.Errorf("size %s is not square; vidx crops squares", raw)
	}
	return 0, nil
}

// hfTokenizerConfig is the part of tokenizer_config.json and
// special_tokens_map.json used: the pad token, a string or an AddedToken
// object.
type hfTokenizerConfig struct {
	PadToken       json.RawMessage `json:"pad_token"`
	ModelMaxLength float64         `json:"model_max_length"`
}

func (c *hfTokenizerConfig) pad() string {
	if len(c.PadToken) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(c.PadToken, &s) == nil {
		return s
	}
	var obj struct {
		Content string `json:"content"`
	}
	if json.Unmarshal(c.PadToken, &obj) == nil {
		return obj.Content
	}
	return ""
}

func infer(dir string) (*Manifest, error) {
	h := &hfInference{dir: dir, m: &Manifest{Dir: dir, Layout: LayoutHuggingFace}}
	m := h.m

	vision, text := h.locate(HFVisionModel), h.locate(HFTextModel)
	if vision == "" || text == "" {
		return nil, h.layoutError(vision, text)
	}
	visionIO, err := ReadModelIO(filepath.Join(dir, vision))
	if err != nil {
		return nil, fmt.Errorf("image.onnx (%s): %w", vision, err)
	}
	textIO, err := ReadModelIO(filepath.Join(dir, text))
	if err != nil {
		return nil, fmt.Errorf("text.onnx (%s): %w", text, err)
	}

	var cfg hfConfig
	cfgFile, err := h.readJSON(HFConfig, &cfg)
	if err != nil {
		return nil, err
	}
	var pre hfPreprocessor
	preFile, err := h.readJSON(HFPreprocessorConfig, &pre)
	if err != nil {
		return nil, err
	}
	var tokCfg hfTokenizerConfig
	tokCfgFile, err := h.readJSON(HFTokenizerConfig, &tokCfg)
	if err != nil {
		return nil, err
	}
	if tokCfg.pad() == "" {
		var special hfTokenizerConfig
		f, err := h.readJSON(HFSpecialTokensMap, &special)
		if err != nil {
			return nil, err
		}
		if special.pad() != "" {
			tokCfg.PadToken, tokCfgFile = special.PadToken, f
		}
	}
	visionCfg, textCfg := &cfg, &cfg
	if cfg.VisionConfig != nil {
		visionCfg = cfg.VisionConfig
	}
	if cfg.TextConfig != nil {
		textCfg = cfg.TextConfig
	}

	// Name: it identifies the model in the index, so say where it came from.
	if cfg.NameOrPath != "" {
		m.Name = cfg.NameOrPath
		h.assume("name %q (config.json _name_or_path)", m.Name)
	} else {
		m.Name = filepath.Base(dir)
		h.assume("name %q (the directory name; the index records it, so keep it stable)", m.Name)
	}
	m.LogitScale = DefaultLogitScale
	h.assume("logit_scale %d (trained CLIP's exp(logit_scale); config.json's logit_scale_init_value is the value before training)", DefaultLogitScale)

	// Image tower.
	m.Image.ONNX = vision
	in, err := pick(visionIO.Inputs, DefaultImageInput, func(t Tensor) bool { return t.Elem == ElemFloat && len(t.Dims) == 4 })
	if err != nil {
		return nil, fmt.Errorf("image.input: %s: %w", vision, err)
	}
	if in.Name != DefaultImageInput {
		h.assume("image.input %q (the only float32 4-D input of %s)", in.Name, vision)
	}
	out, err := pick(visionIO.Outputs, DefaultImageOutput, embeddingLike)
	if err != nil {
		if hint := projectionHint(visionIO.Outputs); hint != "" {
			err = fmt.Errorf("%w; %s", err, hint)
		}
		return nil, fmt.Errorf("image.output: %s: %w", vision, err)
	}
	if out.Name != DefaultImageOutput {
		h.assume("image.output %q (the only 2-D output of %s)", out.Name, vision)
	}
	m.Image.Input, m.Image.Output = in.Name, out.Name
	imageOut := out

	if err := h.imageSize(in, visionCfg, &pre, preFile, cfgFile); err != nil {
		return nil, err
	}
	h.normalisation(&pre, preFile)

	// Text tower.
	m.Text.ONNX = text
	ids, err := pick(textIO.Inputs, DefaultTextInputIDs, func(t Tensor) bool {
		return (t.Elem == ElemInt64 || t.Elem == ElemInt32) && !strings.Contains(t.Name, "mask") && !strings.Contains(t.Name, "position")
	})
	if err != nil {
		return nil, fmt.Errorf("text.input_ids: %s: %w", text, err)
	}
	if ids.Name != DefaultTextInputIDs {
		h.assume("text.input_ids %q (the only integer input of %s that is not a mask)", ids.Name, text)
	}
	m.Text.InputIDs = ids.Name
	if _, ok := textIO.Input("attention_mask"); ok {
		m.Text.AttentionMask = "attention_mask"
	} else if masks := filter(textIO.Inputs, func(t Tensor) bool { return strings.Contains(t.Name, "mask") }); len(masks) == 1 {
		m.Text.AttentionMask = masks[0].Name
		h.assume("text.attention_mask %q (the only mask input of %s)", masks[0].Name, text)
	}
	out, err = pick(textIO.Outputs, DefaultTextOutput, embeddingLike)
	if err != nil {
		if hint := projectionHint(textIO.Outputs); hint != "" {
			err = fmt.Errorf("%w; %s", err, hint)
		}
		return nil, fmt.Errorf("text.output: %s: %w", text, err)
	}
	if out.Name != DefaultTextOutput {
		h.assume("text.output %q (the only 2-D output of %s)", out.Name, text)
	}
	m.Text.Output = out.Name
	textOut := out

	if err := h.embeddingDim(imageOut, textOut, vision, text, &cfg, cfgFile); err != nil {
		return nil, err
	}
	h.contextLength(ids, textCfg, &tokCfg, cfgFile, tokCfgFile)
	if err := h.tokenizer(); err != nil {
		return nil, err
	}
	if err := h.padID(&tokCfg, tokCfgFile); err != nil {
		return nil, err
	}

	m.applyDefaults()
	if err := m.validate(); err != nil {
		return nil, err
	}
	if err := m.checkFiles(); err != nil {
		return nil, err
	}
	m.Assumptions = h.assumed
	return m, nil
}

// layoutError explains why dir is not an export vidx can read.
func (h *hfInference) layoutError(vision, text string) error {
	others := h.onnxFiles()
	switch {
	case vision == "" && text == "":
		if len(others) == 0 {
			return fmt.Errorf("%w: no %s, and no Hugging Face ONNX export (%s and %s, in the folder or its onnx/ subfolder)",
				ErrNotBundle, ManifestFile, HFVisionModel, HFTextModel)
		}
		if slices.ContainsFunc(others, func(p string) bool { return filepath.Base(p) == "model.onnx" }) {
			return fmt.Errorf("%w: no %s; model.onnx is a combined CLIP export that needs pixel_values and input_ids together: export the towers separately as %s and %s (CLIPVisionModelWithProjection, CLIPTextModelWithProjection), or write %s naming the files",
				ErrNotBundle, ManifestFile, HFVisionModel, HFTextModel, ManifestFile)
		}
		return fmt.Errorf("%w: no %s, and none of the ONNX files found (%s) is named %s or %s; write %s to name them",
			ErrNotBundle, ManifestFile, strings.Join(others, ", "), HFVisionModel, HFTextModel, ManifestFile)
	case vision == "":
		return fmt.Errorf("%w: no %s; found the text tower %s but no %s (ONNX files: %s)",
			ErrNotBundle, ManifestFile, text, HFVisionModel, strings.Join(others, ", "))
	default:
		return fmt.Errorf("%w: no %s; found the image tower %s but no %s (ONNX files: %s)",
			ErrNotBundle, ManifestFile, vision, HFTextModel, strings.Join(others, ", "))
	}
}

// pick returns the tensor called name, else the only tensor that fits.
func pick(ts []Tensor, name string, fits func(Tensor) bool) (Tensor, error) {
	if t, ok := find(ts, name); ok {
		return t, nil
	}
	cands := filter(ts, fits)
	if len(cands) == 1 {
		return cands[0], nil
	}
	if len(cands) == 0 {
		return Tensor{}, fmt.Errorf("no %q and no other candidate among %s", name, Describe(ts))
	}
	return Tensor{}, fmt.Errorf("no %q and several candidates (%s); write %s to choose", name, Describe(cands), ManifestFile)
}

// embeddingLike is an output that can stand in for image_embeds or
// text_embeds: 2-D, and not the un-projected hidden states that exports of
// CLIPVisionModel / CLIPTextModel return, which share the shape of an
// embedding but not its space.
func embeddingLike(t Tensor) bool {
	return len(t.Dims) == 2 && t.Name != "pooler_output" && t.Name != "last_hidden_state"
}

func filter(ts []Tensor, keep func(Tensor) bool) []Tensor {
	var out []Tensor
	for _, t := range ts {
		if keep(t) {
			out = append(out, t)
		}
	}
	return out
}

func (h *hfInference) imageSize(in Tensor, cfg *hfConfig, pre *hfPreprocessor, preFile, cfgFile string) error {
	m := h.m
	crop, err := hfSize(pre.CropSize)
	if err != nil {
		return fmt.Errorf("%s: crop_size: %w", preFile, err)
	}
	resize, err := hfSize(pre.Size)
	if err != nil {
		return fmt.Errorf("%s: size: %w", preFile, err)
	}
	switch {
	case len(in.Dims) == 4 && in.Dims[2] > 0 && in.Dims[2] == in.Dims[3]:
		m.Image.Size = int(in.Dims[2]) // a fact of the graph, not an assumption
	case crop > 0:
		m.Image.Size = crop
		h.assume("image.size %d (%s crop_size; the image model's input has no fixed size)", crop, preFile)
	case cfg.ImageSize > 0:
		m.Image.Size = cfg.ImageSize
		h.assume("image.size %d (%s image_size)", cfg.ImageSize, cfgFile)
	default:
		m.Image.Size = DefaultImageSize
		h.assume("image.size %d (CLIP's; neither the model nor a config gives one)", DefaultImageSize)
	}
	if preFile == "" {
		return nil
	}
	// vidx always does CLIP's own transform; say so where the export's
	// processor config asks for something else, since retrieval numbers
	// depend on it.
	if resize > 0 && resize != m.Image.Size {
		h.assume("preprocessing: %s resizes the short side to %d before cropping %d; vidx resizes it straight to image.size %d, as OpenAI CLIP does",
			preFile, resize, m.Image.Size, m.Image.Size)
	}
	if crop > 0 && crop != m.Image.Size {
		h.assume("preprocessing: %s crops %d but the image model takes %d; vidx crops image.size %d", preFile, crop, m.Image.Size, m.Image.Size)
	}
	if pre.Resample != nil && *pre.Resample != pilBicubic {
		h.assume("preprocessing: %s asks for resample %d; vidx always resizes with bicubic (3), as CLIP does", preFile, *pre.Resample)
	}
	if pre.DoCenterCrop != nil && !*pre.DoCenterCrop {
		h.assume("preprocessing: %s turns the center crop off; vidx always center-crops", preFile)
	}
	if pre.DoResize != nil && !*pre.DoResize {
		h.assume("preprocessing: %s turns resizing off; vidx always resizes", preFile)
	}
	return nil
}

func (h *hfInference) normalisation(pre *hfPreprocessor, preFile string) {
	m := h.m
	switch {
	case pre.DoNormalize != nil && !*pre.DoNormalize:
		m.Image.Mean, m.Image.Std = []float32{0, 0, 0}, []float32{1, 1, 1}
		h.assume("image.mean [0 0 0], image.std [1 1 1] (%s turns normalisation off)", preFile)
	case len(pre.ImageMean) == 3 && len(pre.ImageStd) == 3:
		m.Image.Mean, m.Image.Std = pre.ImageMean, pre.ImageStd
		h.assume("image.mean %v, image.std %v (%s)", pre.ImageMean, pre.ImageStd, preFile)
	default:
		m.Image.Mean = append([]float32(nil), DefaultMean[:]...)
		m.Image.Std = append([]float32(nil), DefaultStd[:]...)
		h.assume("image.mean %v, image.std %v (CLIP's; no image_mean/image_std in a %s)", m.Image.Mean, m.Image.Std, HFPreprocessorConfig)
	}
}

func (h *hfInference) embeddingDim(imageOut, textOut Tensor, vision, text string, cfg *hfConfig, cfgFile string) error {
	last := func(t Tensor) int64 {
		if len(t.Dims) == 0 {
			return -1
		}
		return t.Dims[len(t.Dims)-1]
	}
	di, dt := last(imageOut), last(textOut)
	switch {
	case di > 0 && dt > 0 && di != dt:
		return fmt.Errorf("embedding_dim: %s's %s is %s but %s's %s is %s; the towers do not share an embedding space",
			vision, imageOut.Name, imageOut.ShapeString(), text, textOut.Name, textOut.ShapeString())
	case di > 0:
		h.m.EmbeddingDim = int(di)
	case dt > 0:
		h.m.EmbeddingDim = int(dt)
	case cfg.ProjectionDim > 0:
		h.m.EmbeddingDim = cfg.ProjectionDim
		h.assume("embedding_dim %d (%s projection_dim; the model outputs have no fixed width)", cfg.ProjectionDim, cfgFile)
	default:
		return fmt.Errorf("embedding_dim: the outputs of %s and %s have no fixed width and no %s gives projection_dim; write %s",
			vision, text, HFConfig, ManifestFile)
	}
	return nil
}

func (h *hfInference) contextLength(ids Tensor, cfg *hfConfig, tok *hfTokenizerConfig, cfgFile, tokFile string) {
	m := h.m
	switch {
	case len(ids.Dims) == 2 && ids.Dims[1] > 0:
		m.Text.ContextLength = int(ids.Dims[1])
	case cfg.MaxPositionEmbeddings > 0:
		m.Text.ContextLength = cfg.MaxPositionEmbeddings
		h.assume("text.context_length %d (%s max_position_embeddings)", cfg.MaxPositionEmbeddings, cfgFile)
	case tok.ModelMaxLength > 0 && tok.ModelMaxLength <= 1<<16 && tok.ModelMaxLength == math.Trunc(tok.ModelMaxLength):
		m.Text.ContextLength = int(tok.ModelMaxLength)
		h.assume("text.context_length %d (%s model_max_length)", m.Text.ContextLength, tokFile)
	default:
		m.Text.ContextLength = DefaultContextLength
		h.assume("text.context_length %d (CLIP's; neither the model nor a config gives one)", DefaultContextLength)
	}
	if len(ids.Dims) == 2 && ids.Dims[1] < 0 {
		// transformers cuts the position ids and the causal mask to the
		// input's length, so an export with a dynamic sequence axis runs
		// any length, and CLIP's end-of-text pooling behind the causal
		// mask gives the same embedding without the padding.
		m.Text.DynamicLength = true
		h.assume("text.dynamic_length true (%s has a dynamic sequence axis; CLIP's causal text tower embeds a text alike fed only up to its end token)", ids.Name)
	}
}

func (h *hfInference) tokenizer() error {
	t := &h.m.Text.Tokenizer
	vocab, merges := h.locate(HFVocab), h.locate(HFMerges)
	switch {
	case h.locate(HFTokenizerJSON) != "":
		t.TokenizerJSON = h.locate(HFTokenizerJSON)
	case vocab != "" && merges != "":
		t.Vocab, t.Merges = vocab, merges
	case h.locate(OpenAIBPE) != "":
		t.BPE = h.locate(OpenAIBPE)
	case vocab != "":
		return fmt.Errorf("text.tokenizer: found %s but no %s beside it", vocab, HFMerges)
	default:
		return fmt.Errorf("text.tokenizer: no tokenizer files (%s, or %s + %s, or %s)", HFTokenizerJSON, HFVocab, HFMerges, OpenAIBPE)
	}
	return nil
}

// padID follows the export's own tokenizer config, so that vidx's ids match
// its tokenizer's; for CLIP's causal text model the padding after the end
// token does not change the embedding either way.
func (h *hfInference) padID(tok *hfTokenizerConfig, tokFile string) error {
	pad := tok.pad()
	if pad == "" {
		h.m.Text.PadID = 0
		h.assume("text.pad_id 0 (clip.tokenize's padding; no pad_token in %s or %s)", HFTokenizerConfig, HFSpecialTokensMap)
		return nil
	}
	id, file, err := h.tokenID(pad)
	if err != nil {
		return fmt.Errorf("text.pad_id: %w", err)
	}
	if id < 0 {
		h.m.Text.PadID = 0
		h.assume("text.pad_id 0 (clip.tokenize's padding; pad_token %q from %s is not in %s)", pad, tokFile, file)
		return nil
	}
	h.m.Text.PadID = id
	h.assume("text.pad_id %d (pad_token %q from %s)", id, pad, tokFile)
	return nil
}

// tokenID looks a token up in the chosen tokenizer files; -1 when absent.
func (h *hfInference) tokenID(token string) (int64, string, error) {
	t := h.m.Text.Tokenizer
	switch {
	case t.TokenizerJSON != "":
		var doc struct {
			Model struct {
				Vocab map[string]int64 `json:"vocab"`
			} `json:"model"`
			AddedTokens []struct {
				ID      int64  `json:"id"`
				Content string `json:"content"`
			} `json:"added_tokens"`
		}
		if _, err := h.readJSONAt(t.TokenizerJSON, &doc); err != nil {
			return 0, "", fmt.Errorf("text.tokenizer.tokenizer_json: %w", err)
		}
		for _, a := range doc.AddedTokens {
			if a.Content == token {
				return a.ID, t.TokenizerJSON, nil
			}
		}
		if id, ok := doc.Model.Vocab[token]; ok {
			return id, t.TokenizerJSON, nil
		}
		return -1, t.TokenizerJSON, nil
	case t.Vocab != "":
		var vocab map[string]int64
		if _, err := h.readJSONAt(t.Vocab, &vocab); err != nil {
			return 0, "", fmt.Errorf("text.tokenizer.vocab: %w", err)
		}
		if id, ok := vocab[token]; ok {
			return id, t.Vocab, nil
		}
		return -1, t.Vocab, nil
	}
	// OpenAI's merges list has no pad token of its own.
	return -1, t.BPE, nil
}

func (h *hfInference) readJSONAt(rel string, v any) (string, error) {
	data, err := os.ReadFile(filepath.Join(h.dir, rel))
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return "", fmt.Errorf("parse %s: %w", filepath.Join(h.dir, rel), err)
	}
	return rel, nil
}
