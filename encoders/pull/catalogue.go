package pull

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/vidx/vidx/encoders/bundle"
)

// Entry is a named bundle of the built-in catalogue: the files to fetch and
// the manifest that makes the directory load with bundle.Load.
type Entry struct {
	Name        string
	Description string
	Homepage    string // where the files are published
	Files       []File
	Manifest    bundle.Manifest
}

// hfCLIP describes a Hugging Face repository with the transformers.js
// layout: onnx/vision_model.onnx (CLIPVisionModelWithProjection: pixel_values
// -> image_embeds), onnx/text_model.onnx (CLIPTextModelWithProjection:
// input_ids -> text_embeds, no attention mask) and a tokenizer.json.
type hfCLIP struct {
	name, repo, desc string
	dim              int
	variant          string // "" for float32, "_quantized" for the int8 export
}

// catalogue is the table behind Catalogue. The revision is "main": the
// repositories publish no release tags, and the hub's X-Linked-Etag (the
// SHA-256 of each LFS file) and git blob ids verify whatever main holds.
var catalogue = []hfCLIP{
	{"clip-vit-base-patch32", "Xenova/clip-vit-base-patch32",
		"OpenAI CLIP ViT-B/32 (the CLIP4Clip backbone), float32 ONNX export", 512, ""},
	{"clip-vit-base-patch16", "Xenova/clip-vit-base-patch16",
		"OpenAI CLIP ViT-B/16, float32 ONNX export", 512, ""},
	{"clip-vit-base-patch32-int8", "Xenova/clip-vit-base-patch32",
		"OpenAI CLIP ViT-B/32, int8 dynamically quantised export: a quarter of the size, a little less accurate", 512, "_quantized"},
	{"clip-vit-base-patch16-int8", "Xenova/clip-vit-base-patch16",
		"OpenAI CLIP ViT-B/16, int8 dynamically quantised export", 512, "_quantized"},
}

func (c hfCLIP) entry() Entry {
	base := "https://huggingface.co/" + c.repo + "/resolve/main/"
	return Entry{
		Name:        c.name,
		Description: c.desc,
		Homepage:    "https://huggingface.co/" + c.repo,
		Files: []File{
			{Path: "vision_model.onnx", URL: base + "onnx/vision_model" + c.variant + ".onnx"},
			{Path: "text_model.onnx", URL: base + "onnx/text_model" + c.variant + ".onnx"},
			{Path: "tokenizer.json", URL: base + "tokenizer.json"},
		},
		Manifest: bundle.Manifest{
			Name:         c.name,
			EmbeddingDim: c.dim,
			LogitScale:   bundle.DefaultLogitScale,
			Image: bundle.ImageSpec{
				ONNX:   "vision_model.onnx",
				Input:  "pixel_values",
				Output: "image_embeds",
				Size:   bundle.DefaultImageSize,
				Mean:   slices.Clone(bundle.DefaultMean[:]),
				Std:    slices.Clone(bundle.DefaultStd[:]),
			},
			Text: bundle.TextSpec{
				ONNX:     "text_model.onnx",
				InputIDs: "input_ids",
				Output:   "text_embeds",
				// The export pools at the argmax of the ids (the end token,
				// 49407, is the largest id), so padding with 0 as
				// clip.tokenize does gives the reference embeddings.
				ContextLength: bundle.DefaultContextLength,
				PadID:         0,
				Tokenizer:     bundle.TokenizerSpec{TokenizerJSON: "tokenizer.json"},
			},
		},
	}
}

// Catalogue returns the built-in entries, sorted by name.
func Catalogue() []Entry {
	out := make([]Entry, 0, len(catalogue))
	for _, c := range catalogue {
		out = append(out, c.entry())
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Lookup finds a catalogue entry by name.
func Lookup(name string) (Entry, error) {
	var names []string
	for _, e := range Catalogue() {
		if e.Name == name {
			return e, nil
		}
		names = append(names, e.Name)
	}
	return Entry{}, fmt.Errorf("%w %q: not a URL and not in the catalogue (%s); `vidx models pull --list` shows it",
		ErrUnknownModel, name, strings.Join(names, ", "))
}

// ManifestYAML renders the entry's manifest as vidx-model.yaml. Empty
// fields are left out so the file reads like a hand-written one; their
// defaults are the same empty values.
func (e Entry) ManifestYAML() ([]byte, error) {
	var doc yaml.Node
	if err := doc.Encode(e.Manifest); err != nil {
		return nil, fmt.Errorf("catalogue entry %s: manifest: %w", e.Name, err)
	}
	pruneEmpty(&doc)
	doc.HeadComment = fmt.Sprintf("Written by `vidx models pull %s` for the files of %s.", e.Name, e.Homepage)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("catalogue entry %s: manifest: %w", e.Name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("catalogue entry %s: manifest: %w", e.Name, err)
	}
	return buf.Bytes(), nil
}

// pruneEmpty drops mapping keys whose value is an empty string or an empty
// mapping.
func pruneEmpty(n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		for _, c := range n.Content {
			pruneEmpty(c)
		}
		return
	}
	kept := n.Content[:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		pruneEmpty(v)
		if v.Kind == yaml.ScalarNode && v.Tag == "!!str" && v.Value == "" {
			continue
		}
		if v.Kind == yaml.MappingNode && len(v.Content) == 0 {
			continue
		}
		kept = append(kept, k, v)
	}
	n.Content = kept
}
