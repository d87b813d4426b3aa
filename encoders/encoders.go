// Package encoders holds the model contracts the stages depend on. The ONNX
// Runtime implementation lives in encoders/onnx; CLIP preprocessing in
// encoders/preprocess and the BPE tokenizer in encoders/tokenizer.
package encoders

import "context"

// ImageEncoder embeds preprocessed images.
type ImageEncoder interface {
	// EncodeImages embeds n images laid out as float32 NCHW
	// (n x 3 x ImageSize() x ImageSize()), already normalised with the
	// model's mean and std. It returns n vectors of Dim() floats as the model
	// produced them (not re-normalised).
	EncodeImages(ctx context.Context, pixels []float32, n int) ([][]float32, error)
	ImageSize() int
	Dim() int
}

// TextEncoder embeds text queries.
type TextEncoder interface {
	// EncodeTexts tokenizes and embeds each text, returning one vector of
	// Dim() floats per text (not re-normalised).
	EncodeTexts(ctx context.Context, texts []string) ([][]float32, error)
	Dim() int
}
