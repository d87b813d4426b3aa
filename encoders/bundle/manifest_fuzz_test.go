package bundle

import (
	"math"
	"testing"
)

// FuzzParse feeds arbitrary YAML to the manifest parser. Whatever it
// accepts must be usable without further checks by the encoders: a name,
// positive sizes, and finite preprocessing constants and logit scale (a
// NaN mean or scale would silently turn every embedding or score to NaN).
func FuzzParse(f *testing.F) {
	f.Add([]byte(`name: clip-vit-b32
embedding_dim: 512
logit_scale: 100
image: {onnx: image.onnx, input: pixel_values, output: image_embeds, size: 224,
        mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711]}
text:  {onnx: text.onnx, input_ids: input_ids, attention_mask: attention_mask, output: text_embeds,
        context_length: 77, pad_id: 0, tokenizer: {vocab: vocab.json, merges: merges.txt}}
temporal: {onnx: temporal.onnx, frames: frame_embeds, mask: frame_mask, output: video_embeds, max_frames: 12}
`))
	f.Add([]byte("name: m\nembedding_dim: 4\nimage: {onnx: i.onnx}\ntext: {onnx: t.onnx, tokenizer: {bpe: b.txt.gz}}\n"))
	f.Add([]byte("name: m\nembedding_dim: 4\nlogit_scale: .nan\nimage: {onnx: i.onnx, mean: [.nan, 0, 0]}\ntext: {onnx: t.onnx, tokenizer: {bpe: b.txt.gz}}\n"))
	f.Add([]byte("name: m\nembedding_dim: 4\nimage: {onnx: i.onnx, std: [.inf, 1, 1]}\ntext: {onnx: t.onnx, tokenizer: {tokenizer_json: t.json}}\n"))
	f.Add([]byte("imput: x\n"))
	f.Add([]byte("&a [*a, *a]"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		if m.Name == "" || m.EmbeddingDim <= 0 || m.Image.Size <= 0 || m.Text.ContextLength <= 0 {
			t.Fatalf("accepted a manifest with empty name or non-positive sizes: %+v", m)
		}
		finite := func(field string, v float64) {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("accepted non-finite %s = %v", field, v)
			}
		}
		finite("logit_scale", m.LogitScale)
		for i := range 3 {
			finite("image.mean", float64(m.Image.Mean[i]))
			finite("image.std", float64(m.Image.Std[i]))
		}
		if m.Temporal != nil && m.Temporal.MaxFrames <= 0 {
			t.Fatalf("accepted temporal.max_frames %d", m.Temporal.MaxFrames)
		}
	})
}
