// Package testmodels generates small, deterministic model bundles for tests
// and demos, since no pretrained CLIP can be downloaded where vidx is built.
//
// Two bundles follow the same contract as a real CLIP export (see
// encoders/bundle):
//
//   - the colour bundle (WriteColorBundle) has hand-set weights whose
//     embeddings carry meaning, so retrieval can be checked end to end: the
//     query "red" ranks a solid red video first;
//   - the tiny CLIP bundle (WriteTinyCLIPBundle) has the real architecture
//     (ViT image tower, causal text transformer with end-of-text pooling,
//     CLIP4Clip's seqTransf temporal head) at toy size with seeded random
//     weights, so the runtime is exercised on the operators, shapes and
//     batching a real model uses.
//
// Every file is a pure function of the code: writing a bundle twice gives
// identical bytes.
package testmodels

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vidx/vidx/encoders/onnxbuild"
	"github.com/vidx/vidx/encoders/tokenizer"
)

// Embedding dimensions of the two bundles.
const (
	ColorDim = 64
	TinyDim  = 128
)

// Tensor names, sizes and file names shared by both bundles; they match the
// defaults of encoders/bundle.
const (
	ImageSize     = 224
	ContextLength = 77
	PadID         = 0
	LogitScale    = 100

	ImageInput        = "pixel_values"
	ImageOutput       = "image_embeds"
	TextInputIDs      = "input_ids"
	TextAttentionMask = "attention_mask"
	TextOutput        = "text_embeds"

	ImageFile    = "image.onnx"
	TextFile     = "text.onnx"
	VocabFile    = "vocab.json"
	MergesFile   = "merges.txt"
	ManifestFile = "vidx-model.yaml"

	ColorName    = "test-color"
	TinyCLIPName = "test-tiny-clip"
)

// endOfWord marks a word-final token in a CLIP BPE vocabulary.
const endOfWord = "</w>"

// clipMean and clipStd are CLIP's RGB normalisation, which the bundles
// declare and the colour image tower undoes.
// They are float64 so the manifest can spell them exactly as published.
func clipMean() [3]float64 { return [3]float64{0.48145466, 0.4578275, 0.40821073} }
func clipStd() [3]float64  { return [3]float64{0.26862954, 0.26130258, 0.27577711} }

// vocabWords is the word list the bundles' BPE vocabulary is trained on: the
// palette words plus words common in test queries, so that these tokenize to
// whole-word tokens.
func vocabWords() []string {
	words := []string{
		"a", "an", "the", "of", "in", "on", "with", "and", "at", "to", "is",
		"video", "clip", "screen", "frame", "image", "photo", "picture", "scene",
		"something", "color", "colour", "solid", "bright", "dark", "light",
		"person", "man", "woman", "child", "dog", "cat", "car", "ball", "tree",
		"sky", "sea", "water", "grass", "fire", "road", "room", "street",
		"walking", "running", "playing", "talking", "cooking", "driving",
		"jumping", "dancing", "singing", "eating", "swimming",
	}
	for _, c := range Colors() {
		words = append(words, c.Words...)
	}
	return words
}

// WriteColorBundle writes a model bundle whose embeddings carry meaning: the
// image encoder maps an image's mean colour to a direction, the text encoder
// maps colour words to the same directions, so the query "red" ranks a red
// video first. See Colors for the palette and color.go for the computation.
func WriteColorBundle(dir string) error {
	vocab, err := writeTokenizer(dir)
	if err != nil {
		return fmt.Errorf("colour bundle: %w", err)
	}
	text, err := colorTextModel(vocab)
	if err != nil {
		return fmt.Errorf("colour bundle: %w", err)
	}
	if err := writeModels(dir, colorImageModel(), text); err != nil {
		return fmt.Errorf("colour bundle: %w", err)
	}
	if err := writeManifest(dir, ColorName, ColorDim, false, false, false); err != nil {
		return fmt.Errorf("colour bundle: %w", err)
	}
	return nil
}

// WriteTinyCLIPBundle writes a small but real CLIP-shaped bundle: a ViT (Conv
// patch embedding 32x32 stride 32 on 224x224 -> 49 patches, class token,
// position embeddings, 2 pre-LayerNorm transformer blocks with multi-head
// self-attention and QuickGELU MLP, ln_post on the class token, projection to
// TinyDim) and a text transformer (token + position embeddings, causal and
// attention masks, 2 blocks, ln_final, features at the argmax(input_ids)
// position, i.e. the end-of-text token as CLIP does, projection to TinyDim).
// Weights come from a fixed-seed PCG generator, scaled so activations stay
// near unit variance. The embeddings are meaningless but deterministic.
// The bundle also has a temporal head (TemporalModel with
// TinyTemporalWeights), so it can be pooled with meanP or seqTransf.
func WriteTinyCLIPBundle(dir string) error {
	return writeTinyCLIP(dir, false)
}

// WriteTinyCLIPDynamicBundle writes the tiny CLIP bundle with a text tower
// whose sequence axis is dynamic (text.dynamic_length), as
// scripts/export_bundle.py exports real models. Its weights are those of
// WriteTinyCLIPBundle, so both bundles embed every text alike.
func WriteTinyCLIPDynamicBundle(dir string) error {
	return writeTinyCLIP(dir, true)
}

func writeTinyCLIP(dir string, dynamicLength bool) error {
	vocab, err := writeTokenizer(dir)
	if err != nil {
		return fmt.Errorf("tiny CLIP bundle: %w", err)
	}
	size, err := vocabSize(vocab)
	if err != nil {
		return fmt.Errorf("tiny CLIP bundle: %w", err)
	}
	if err := writeModels(dir, tinyImageModel(), tinyTextModel(size, dynamicLength)); err != nil {
		return fmt.Errorf("tiny CLIP bundle: %w", err)
	}
	if err := TemporalModel(TinyTemporalWeights()).WriteFile(filepath.Join(dir, TemporalFile)); err != nil {
		return fmt.Errorf("tiny CLIP bundle: temporal model: %w", err)
	}
	if err := writeManifest(dir, TinyCLIPName, TinyDim, true, true, dynamicLength); err != nil {
		return fmt.Errorf("tiny CLIP bundle: %w", err)
	}
	return nil
}

// WriteAll writes the colour bundle to dir/color and the tiny CLIP bundle to
// dir/tiny-clip.
func WriteAll(dir string) error {
	if err := WriteColorBundle(filepath.Join(dir, "color")); err != nil {
		return err
	}
	return WriteTinyCLIPBundle(filepath.Join(dir, "tiny-clip"))
}

// writeTokenizer trains the BPE vocabulary on vocabWords and writes
// vocab.json and merges.txt into dir, creating it.
func writeTokenizer(dir string) (map[string]int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create bundle directory: %w", err)
	}
	vocab, merges := tokenizer.TrainBPE(vocabWords())
	if err := tokenizer.WriteFiles(dir, vocab, merges); err != nil {
		return nil, fmt.Errorf("write tokenizer files: %w", err)
	}
	return vocab, nil
}

// vocabSize is the number of rows an embedding table indexed by token id
// needs.
func vocabSize(vocab map[string]int) (int, error) {
	size := 0
	for tok, id := range vocab {
		if id < 0 {
			return 0, fmt.Errorf("token %q has negative id %d", tok, id)
		}
		size = max(size, id+1)
	}
	if size == 0 {
		return 0, fmt.Errorf("empty vocabulary")
	}
	return size, nil
}

func writeModels(dir string, image, text *onnxbuild.Model) error {
	if err := image.WriteFile(filepath.Join(dir, ImageFile)); err != nil {
		return fmt.Errorf("image model: %w", err)
	}
	if err := text.WriteFile(filepath.Join(dir, TextFile)); err != nil {
		return fmt.Errorf("text model: %w", err)
	}
	return nil
}

// writeManifest writes vidx-model.yaml; withMask says whether the text model
// takes an attention_mask input, withTemporal whether the bundle has a
// seqTransf head in TemporalFile, dynamicLength whether the text model's
// sequence axis is dynamic.
func writeManifest(dir, name string, dim int, withMask, withTemporal, dynamicLength bool) error {
	floats := func(v [3]float64) string {
		s := make([]string, len(v))
		for i, f := range v {
			s[i] = strconv.FormatFloat(f, 'g', -1, 64)
		}
		return "[" + strings.Join(s, ", ") + "]"
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Generated by vidx (encoders/testmodels); regenerate rather than edit.\n")
	fmt.Fprintf(&b, "name: %s\nembedding_dim: %d\nlogit_scale: %d\n", name, dim, LogitScale)
	fmt.Fprintf(&b, "image:\n  onnx: %s\n  input: %s\n  output: %s\n  size: %d\n  mean: %s\n  std: %s\n",
		ImageFile, ImageInput, ImageOutput, ImageSize, floats(clipMean()), floats(clipStd()))
	fmt.Fprintf(&b, "text:\n  onnx: %s\n  input_ids: %s\n", TextFile, TextInputIDs)
	if withMask {
		fmt.Fprintf(&b, "  attention_mask: %s\n", TextAttentionMask)
	}
	fmt.Fprintf(&b, "  output: %s\n  context_length: %d\n  pad_id: %d\n  tokenizer:\n    vocab: %s\n    merges: %s\n",
		TextOutput, ContextLength, PadID, VocabFile, MergesFile)
	if dynamicLength {
		fmt.Fprintf(&b, "  dynamic_length: true\n")
	}
	if withTemporal {
		fmt.Fprintf(&b, "temporal:\n  onnx: %s\n  frames: %s\n  mask: %s\n  output: %s\n  max_frames: %d\n",
			TemporalFile, TemporalFrames, TemporalMask, TemporalOutput, TemporalMaxFrames)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return nil
}
