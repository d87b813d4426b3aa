package onnx

import (
	"context"
	"errors"
	"fmt"

	ort "github.com/yalue/onnxruntime_go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/vidx/vidx/encoders"
	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/tokenizer"
	"github.com/vidx/vidx/telemetry"
)

var _ encoders.TextEncoder = (*TextEncoder)(nil)

// TextEncoder tokenizes texts with the bundle's tokenizer and runs its text
// model. It is safe for concurrent use.
type TextEncoder struct {
	sess   *session
	ctxLen int
	padID  int64
	mask   bool
	// dynamic: the model takes any sequence length up to ctxLen, so a
	// batch is cut after its last end-of-text (bundle.TextSpec.DynamicLength).
	dynamic  bool
	eot      int64 // end-of-text id; -1 in tests of attended without one
	dim      int
	maxBatch int
	tok      *tokenizer.Tokenizer // safe for concurrent use
}

// NewTextEncoder loads m's tokenizer and opens its text model, then runs one
// empty text through it so that a manifest that does not fit the model fails
// here.
func (r *Runtime) NewTextEncoder(m *bundle.Manifest, o SessionOptions) (*TextEncoder, error) {
	if m == nil {
		return nil, errors.New("onnx: NewTextEncoder: nil manifest")
	}
	spec := m.Text
	label := fmt.Sprintf("model %s text (%s)", m.Name, spec.ONNX)
	maxBatch, err := o.maxBatch()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	tok, err := m.LoadTokenizer()
	if err != nil {
		return nil, err
	}
	in := []string{spec.InputIDs}
	seqDim, seqField := int64(spec.ContextLength), "text.context_length"
	if spec.DynamicLength {
		seqDim, seqField = dynamicDim, "text.dynamic_length"
	}
	specs := []tensorSpec{{"text.input_ids", spec.InputIDs, ort.TensorElementDataTypeInt64,
		[]int64{-1, seqDim}, []string{"", seqField}}}
	if spec.AttentionMask != "" {
		in = append(in, spec.AttentionMask)
		specs = append(specs, tensorSpec{"text.attention_mask", spec.AttentionMask, ort.TensorElementDataTypeInt64,
			[]int64{-1, seqDim}, []string{"", seqField}})
	}
	outSpec := tensorSpec{"text.output", spec.Output, ort.TensorElementDataTypeFloat,
		[]int64{-1, int64(m.EmbeddingDim)}, []string{"", "embedding_dim"}}
	sess, err := r.openSession(label, m.Path(spec.ONNX), in, spec.Output, o)
	if err != nil {
		return nil, err
	}
	e := &TextEncoder{
		sess:     sess,
		ctxLen:   spec.ContextLength,
		padID:    spec.PadID,
		mask:     spec.AttentionMask != "",
		dynamic:  spec.DynamicLength,
		dim:      m.EmbeddingDim,
		maxBatch: maxBatch,
		tok:      tok,
		eot:      int64(tok.EOT()),
	}
	if _, err := e.EncodeTexts(context.Background(), []string{""}); err != nil {
		if derr := sess.diagnose(specs, outSpec); derr != nil {
			err = derr
		}
		sess.Close()
		return nil, err
	}
	return e, nil
}

// Dim is the embedding width.
func (e *TextEncoder) Dim() int { return e.dim }

// ContextLength is the longest token sequence fed to the model: every
// sequence, unless DynamicLength.
func (e *TextEncoder) ContextLength() int { return e.ctxLen }

// DynamicLength reports whether a batch is fed only up to its last
// end-of-text token rather than padded to ContextLength.
func (e *TextEncoder) DynamicLength() bool { return e.dynamic }

// MaxBatch is the largest number of texts sent through one Run.
func (e *TextEncoder) MaxBatch() int { return e.maxBatch }

// EncodeTexts embeds texts, MaxBatch at a time.
func (e *TextEncoder) EncodeTexts(ctx context.Context, texts []string) ([][]float32, error) {
	vecs := make([][]float32, 0, len(texts))
	for start := 0; start < len(texts); start += e.maxBatch {
		end := min(start+e.maxBatch, len(texts))
		chunk, err := e.encodeChunk(ctx, texts[start:end])
		if err != nil {
			return nil, err
		}
		vecs = append(vecs, chunk...)
	}
	return vecs, nil
}

// Tokenize returns the ids the model would see for text, padded to
// ContextLength.
func (e *TextEncoder) Tokenize(text string) []int64 {
	return e.tok.Tokenize(text, e.ctxLen, e.padID)
}

func (e *TextEncoder) encodeChunk(ctx context.Context, texts []string) ([][]float32, error) {
	b := len(texts)
	_, span := telemetry.Start(ctx, "tokenize", trace.WithAttributes(attribute.Int("vidx.texts", b)))
	ids, mask, L, err := e.batch(texts)
	span.SetAttributes(attribute.Int("vidx.text_length", L))
	span.End()
	if err != nil {
		return nil, err
	}

	if err := e.sess.acquire(); err != nil {
		return nil, err
	}
	defer e.sess.release()
	shape := ort.NewShape(int64(b), int64(L))
	idsT, err := ort.NewTensor(shape, ids)
	if err != nil {
		return nil, fmt.Errorf("%s: input_ids tensor: %w", e.sess.label, err)
	}
	defer idsT.Destroy()
	inputs := []ort.Value{idsT}
	if mask != nil {
		maskT, err := ort.NewTensor(shape, mask)
		if err != nil {
			return nil, fmt.Errorf("%s: attention_mask tensor: %w", e.sess.label, err)
		}
		defer maskT.Destroy()
		inputs = append(inputs, maskT)
	}
	out, err := e.sess.run(ctx, inputs...)
	if err != nil {
		return nil, err
	}
	return e.sess.embeddings(out, b, e.dim)
}

// batch tokenizes texts into row-major [len(texts), L] ids, and the
// attention mask when the model takes one. L is ContextLength, or for a
// dynamic-length model the longest row up to its end-of-text: positions
// after a row's end-of-text never reach its output (causal mask, pooling at
// end-of-text), so shorter rows keep their padding and longer ones lose
// nothing.
func (e *TextEncoder) batch(texts []string) (ids, mask []int64, L int, err error) {
	rows := make([][]int64, len(texts))
	lens := make([]int, len(texts))
	L = e.ctxLen
	if e.dynamic {
		L = 1
	}
	for i, text := range texts {
		row := e.Tokenize(text)
		if len(row) != e.ctxLen {
			return nil, nil, 0, fmt.Errorf("%s: tokenizer returned %d ids for text %d, want context_length %d",
				e.sess.label, len(row), i, e.ctxLen)
		}
		rows[i], lens[i] = row, e.attended(row)
		if e.dynamic {
			L = max(L, lens[i])
		}
	}
	ids = make([]int64, len(texts)*L)
	if e.mask {
		mask = make([]int64, len(texts)*L)
	}
	for i, row := range rows {
		copy(ids[i*L:(i+1)*L], row)
		if mask != nil {
			for j := range lens[i] {
				mask[i*L+j] = 1
			}
		}
	}
	return ids, mask, L, nil
}

// attended is how many leading positions of row the model should attend to:
// start-of-text up to and including the first end-of-text. Searching for eot
// rather than for the first pad matters both ways: CLIP exports pad with 0,
// which is also the real token "!", and Hugging Face pads with eot itself.
func (e *TextEncoder) attended(row []int64) int {
	if e.eot >= 0 {
		for j := 1; j < len(row); j++ {
			if row[j] == e.eot {
				return j + 1
			}
		}
	}
	// No eot (the tokenizer always ends with one, but a caller-built row
	// may not): everything up to the last non-pad id.
	for j := len(row) - 1; j >= 0; j-- {
		if row[j] != e.padID {
			return j + 1
		}
	}
	return 0
}

// Close releases the session. The encoder must not be used afterwards.
func (e *TextEncoder) Close() error { return e.sess.Close() }
