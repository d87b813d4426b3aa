// Package bundle loads a model bundle: a directory holding ONNX models, the
// tokenizer files and a vidx-model.yaml manifest that says how to drive them.
//
// Keeping the tensor names, preprocessing constants and tokenizer choice in
// the manifest (rather than in code) lets any CLIP-family export be used
// without recompiling, as long as it follows the image-in/embedding-out and
// ids-in/embedding-out shape contract.
package bundle

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/vidx/vidx/encoders/tokenizer"
)

// ManifestFile is the manifest's file name inside a bundle directory.
const ManifestFile = "vidx-model.yaml"

// Bundle layouts (Manifest.Layout).
const (
	LayoutManifest    = "vidx-model.yaml"
	LayoutHuggingFace = "huggingface"
)

// Defaults applied by Load to fields the manifest leaves out. The numbers are
// those of OpenAI CLIP, which nearly every CLIP4Clip/CLIP2TV checkpoint keeps.
const (
	DefaultImageSize     = 224
	DefaultContextLength = 77
	DefaultLogitScale    = 100
	DefaultMaxFrames     = 12

	DefaultImageInput     = "pixel_values"
	DefaultImageOutput    = "image_embeds"
	DefaultTextInputIDs   = "input_ids"
	DefaultTextOutput     = "text_embeds"
	DefaultTemporalFrames = "frame_embeds"
	DefaultTemporalMask   = "frame_mask"
	DefaultTemporalOutput = "video_embeds"
)

// DefaultMean and DefaultStd are CLIP's per-channel RGB normalisation.
var (
	DefaultMean = [3]float32{0.48145466, 0.4578275, 0.40821073}
	DefaultStd  = [3]float32{0.26862954, 0.26130258, 0.27577711}
)

// Manifest describes a bundle. Relative file names are resolved against Dir
// with Path.
type Manifest struct {
	// Dir is the absolute bundle directory; it is not part of the YAML.
	Dir string `yaml:"-"`
	// Layout is LayoutManifest, or LayoutHuggingFace when the manifest was
	// inferred from a Hugging Face export (see Infer).
	Layout string `yaml:"-"`
	// Assumptions lists what Infer guessed rather than read, in words
	// ("logit_scale 100 (CLIP's trained value; ...)"), to be shown to the
	// user. It is empty for a bundle with a manifest.
	Assumptions []string `yaml:"-"`

	Name         string  `yaml:"name"`
	EmbeddingDim int     `yaml:"embedding_dim"`
	LogitScale   float64 `yaml:"logit_scale"`

	Image ImageSpec `yaml:"image"`
	Text  TextSpec  `yaml:"text"`
	// Temporal is nil when the bundle has no temporal (sequence) model and
	// frame embeddings are pooled without one.
	Temporal *TemporalSpec `yaml:"temporal,omitempty"`
}

// ImageSpec is the image tower: NCHW float32 in, [n, embedding_dim] out.
type ImageSpec struct {
	ONNX   string    `yaml:"onnx"`
	Input  string    `yaml:"input"`
	Output string    `yaml:"output"`
	Size   int       `yaml:"size"`
	Mean   []float32 `yaml:"mean,flow"`
	Std    []float32 `yaml:"std,flow"`
}

// TextSpec is the text tower: int64 ids [n, context_length] (plus an optional
// mask) in, [n, embedding_dim] out; [n, L] with L <= context_length when
// DynamicLength is set.
type TextSpec struct {
	ONNX     string `yaml:"onnx"`
	InputIDs string `yaml:"input_ids"`
	// AttentionMask is empty for models that take ids only (the original
	// OpenAI export finds the end of text by argmax over ids instead).
	AttentionMask string `yaml:"attention_mask"`
	Output        string `yaml:"output"`
	ContextLength int    `yaml:"context_length"`
	// DynamicLength says the model's sequence axis is dynamic (any length
	// up to ContextLength), so that ids may stop at the batch's last
	// end-of-text token. That is exact for CLIP's text tower, whose causal
	// mask keeps every position blind to the ones after it, and much cheaper
	// for short queries. False (bundles exported before it existed, or with
	// a fixed axis) feeds ContextLength ids.
	DynamicLength bool          `yaml:"dynamic_length,omitempty"`
	PadID         int64         `yaml:"pad_id"`
	Tokenizer     TokenizerSpec `yaml:"tokenizer"`
}

// TokenizerSpec names the tokenizer files; exactly one form is used:
// Vocab+Merges (Hugging Face CLIPTokenizer files), BPE (OpenAI's gzipped
// merges list) or TokenizerJSON (a Hugging Face tokenizer.json).
type TokenizerSpec struct {
	Vocab         string `yaml:"vocab"`
	Merges        string `yaml:"merges"`
	BPE           string `yaml:"bpe"`
	TokenizerJSON string `yaml:"tokenizer_json"`
}

// TemporalSpec is the optional frame-sequence model (CLIP4Clip seqTransf,
// CLIP2TV): [n, max_frames, dim] frames and [n, max_frames] mask in,
// [n, dim] out.
type TemporalSpec struct {
	ONNX      string `yaml:"onnx"`
	Frames    string `yaml:"frames"`
	Mask      string `yaml:"mask"`
	Output    string `yaml:"output"`
	MaxFrames int    `yaml:"max_frames"`
}

// Load reads dir/vidx-model.yaml (dir may also be the manifest file itself),
// fills in defaults and validates the result, including that every file it
// names exists. A directory without vidx-model.yaml is read as a Hugging Face
// ONNX export with Infer.
func Load(dir string) (*Manifest, error) {
	path := dir
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("model bundle %s: %w", dir, err)
	} else if fi.IsDir() {
		path = filepath.Join(dir, ManifestFile)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return Infer(dir)
		}
	} else {
		dir = filepath.Dir(dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("model bundle %s: %w", dir, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("model bundle %s: %w", dir, err)
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("model bundle %s: %s: %w", dir, ManifestFile, err)
	}
	m.Dir = abs
	m.Layout = LayoutManifest
	if err := m.checkFiles(); err != nil {
		return nil, fmt.Errorf("model bundle %s (%s): %w", m.Name, abs, err)
	}
	return m, nil
}

// Parse decodes a manifest, applies defaults and validates everything except
// file existence (which needs Dir). Unknown keys are rejected so that a typo
// such as "imput" fails loudly instead of silently falling back to a default.
func Parse(data []byte) (*Manifest, error) {
	var m Manifest
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("manifest is empty")
		}
		return nil, err
	}
	m.applyDefaults()
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Path resolves a file name from the manifest against the bundle directory.
func (m *Manifest) Path(rel string) string {
	if rel == "" || filepath.IsAbs(rel) {
		return rel
	}
	return filepath.Join(m.Dir, rel)
}

// LoadTokenizer builds the text tokenizer named by text.tokenizer.
func (m *Manifest) LoadTokenizer() (*tokenizer.Tokenizer, error) {
	t := m.Text.Tokenizer
	var (
		tok *tokenizer.Tokenizer
		err error
	)
	switch {
	case t.TokenizerJSON != "":
		tok, err = tokenizer.LoadTokenizerJSON(m.Path(t.TokenizerJSON))
	case t.BPE != "":
		tok, err = tokenizer.LoadBPEGz(m.Path(t.BPE))
	case t.Vocab != "":
		tok, err = tokenizer.Load(m.Path(t.Vocab), m.Path(t.Merges))
	default:
		return nil, fmt.Errorf("model %s: text.tokenizer: no tokenizer files given", m.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("model %s: text.tokenizer: %w", m.Name, err)
	}
	return tok, nil
}

// HasTemporal reports whether the bundle ships a temporal model.
func (m *Manifest) HasTemporal() bool { return m.Temporal != nil }

func (m *Manifest) applyDefaults() {
	if m.LogitScale == 0 {
		m.LogitScale = DefaultLogitScale
	}
	im := &m.Image
	im.Input = orDefault(im.Input, DefaultImageInput)
	im.Output = orDefault(im.Output, DefaultImageOutput)
	if im.Size == 0 {
		im.Size = DefaultImageSize
	}
	if im.Mean == nil {
		im.Mean = append([]float32(nil), DefaultMean[:]...)
	}
	if im.Std == nil {
		im.Std = append([]float32(nil), DefaultStd[:]...)
	}
	tx := &m.Text
	tx.InputIDs = orDefault(tx.InputIDs, DefaultTextInputIDs)
	tx.Output = orDefault(tx.Output, DefaultTextOutput)
	if tx.ContextLength == 0 {
		tx.ContextLength = DefaultContextLength
	}
	if tp := m.Temporal; tp != nil {
		tp.Frames = orDefault(tp.Frames, DefaultTemporalFrames)
		tp.Mask = orDefault(tp.Mask, DefaultTemporalMask)
		tp.Output = orDefault(tp.Output, DefaultTemporalOutput)
		if tp.MaxFrames == 0 {
			tp.MaxFrames = DefaultMaxFrames
		}
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (m *Manifest) validate() error {
	if m.Name == "" {
		return errors.New("name is required")
	}
	// Every later error names the model, since several bundles may be
	// loaded side by side.
	fail := func(format string, args ...any) error {
		return fmt.Errorf("model %s: "+format, append([]any{m.Name}, args...)...)
	}
	if m.EmbeddingDim <= 0 {
		return fail("embedding_dim must be > 0, got %d", m.EmbeddingDim)
	}
	if !(m.LogitScale >= 0) || math.IsInf(m.LogitScale, 0) {
		return fail("logit_scale must be >= 0 and finite, got %g", m.LogitScale)
	}

	im := m.Image
	if im.ONNX == "" {
		return fail("image.onnx is required")
	}
	if im.Size < 0 {
		return fail("image.size must be > 0, got %d", im.Size)
	}
	if len(im.Mean) != 3 {
		return fail("image.mean needs 3 values (RGB), got %d", len(im.Mean))
	}
	if len(im.Std) != 3 {
		return fail("image.std needs 3 values (RGB), got %d", len(im.Std))
	}
	for i, s := range im.Std {
		if !(s > 0) || math.IsInf(float64(s), 0) {
			return fail("image.std[%d] must be > 0 and finite, got %g", i, s)
		}
	}
	for i, v := range im.Mean {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fail("image.mean[%d] must be finite, got %g", i, v)
		}
	}

	tx := m.Text
	if tx.ONNX == "" {
		return fail("text.onnx is required")
	}
	if tx.ContextLength < 0 {
		return fail("text.context_length must be > 0, got %d", tx.ContextLength)
	}
	if tx.PadID < 0 {
		return fail("text.pad_id must be >= 0, got %d", tx.PadID)
	}
	if tx.AttentionMask != "" && tx.AttentionMask == tx.InputIDs {
		return fail("text.attention_mask and text.input_ids are both %q", tx.InputIDs)
	}
	if err := tx.Tokenizer.validate(); err != nil {
		return fail("%w", err)
	}

	if tp := m.Temporal; tp != nil {
		if tp.ONNX == "" {
			return fail("temporal.onnx is required when temporal is present")
		}
		if tp.MaxFrames < 0 {
			return fail("temporal.max_frames must be > 0, got %d", tp.MaxFrames)
		}
		if tp.Frames == tp.Mask {
			return fail("temporal.frames and temporal.mask are both %q", tp.Frames)
		}
	}
	return nil
}

func (t TokenizerSpec) validate() error {
	forms := 0
	if t.Vocab != "" || t.Merges != "" {
		forms++
		if t.Vocab == "" || t.Merges == "" {
			return errors.New("text.tokenizer: vocab and merges must be given together")
		}
	}
	if t.BPE != "" {
		forms++
	}
	if t.TokenizerJSON != "" {
		forms++
	}
	switch forms {
	case 0:
		return errors.New("text.tokenizer: one of {vocab, merges}, bpe or tokenizer_json is required")
	case 1:
		return nil
	default:
		return errors.New("text.tokenizer: give only one of {vocab, merges}, bpe or tokenizer_json")
	}
}

// checkFiles makes sure every referenced file is present now, so that a
// broken bundle fails at load rather than when the first text or video
// arrives.
func (m *Manifest) checkFiles() error {
	files := []struct{ field, rel string }{
		{"image.onnx", m.Image.ONNX},
		{"text.onnx", m.Text.ONNX},
		{"text.tokenizer.vocab", m.Text.Tokenizer.Vocab},
		{"text.tokenizer.merges", m.Text.Tokenizer.Merges},
		{"text.tokenizer.bpe", m.Text.Tokenizer.BPE},
		{"text.tokenizer.tokenizer_json", m.Text.Tokenizer.TokenizerJSON},
	}
	if m.Temporal != nil {
		files = append(files, struct{ field, rel string }{"temporal.onnx", m.Temporal.ONNX})
	}
	for _, f := range files {
		if f.rel == "" {
			continue
		}
		fi, err := os.Stat(m.Path(f.rel))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("%s: file %s does not exist", f.field, m.Path(f.rel))
			}
			return fmt.Errorf("%s: %w", f.field, err)
		}
		if fi.IsDir() {
			return fmt.Errorf("%s: %s is a directory, want a file", f.field, m.Path(f.rel))
		}
	}
	return nil
}
