package onnx

import (
	"context"
	"errors"
	"fmt"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/vidx/vidx/encoders"
	"github.com/vidx/vidx/encoders/bundle"
)

var _ encoders.ImageEncoder = (*ImageEncoder)(nil)

// ImageEncoder runs a bundle's image model. It is safe for concurrent use.
type ImageEncoder struct {
	sess     *session
	size     int
	dim      int
	maxBatch int
}

// NewImageEncoder opens m's image model. It runs one blank image through it
// so that a manifest that does not fit the model (tensor names, image size,
// embedding_dim) fails here rather than on the first real batch.
func (r *Runtime) NewImageEncoder(m *bundle.Manifest, o SessionOptions) (*ImageEncoder, error) {
	if m == nil {
		return nil, errors.New("onnx: NewImageEncoder: nil manifest")
	}
	spec := m.Image
	label := fmt.Sprintf("model %s image (%s)", m.Name, spec.ONNX)
	maxBatch, err := o.maxBatch()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	sess, err := r.openSession(label, m.Path(spec.ONNX), []string{spec.Input}, spec.Output, o)
	if err != nil {
		return nil, err
	}
	e := &ImageEncoder{sess: sess, size: spec.Size, dim: m.EmbeddingDim, maxBatch: maxBatch}
	probe := make([]float32, e.pixelsPerImage())
	if _, err := e.EncodeImages(context.Background(), probe, 1); err != nil {
		size := int64(spec.Size)
		in := tensorSpec{"image.input", spec.Input, ort.TensorElementDataTypeFloat,
			[]int64{-1, 3, size, size}, []string{"", "", "image.size", "image.size"}}
		out := tensorSpec{"image.output", spec.Output, ort.TensorElementDataTypeFloat,
			[]int64{-1, int64(m.EmbeddingDim)}, []string{"", "embedding_dim"}}
		if derr := sess.diagnose([]tensorSpec{in}, out); derr != nil {
			err = derr
		}
		sess.Close()
		return nil, err
	}
	return e, nil
}

func (e *ImageEncoder) pixelsPerImage() int { return 3 * e.size * e.size }

// ImageSize is the square input side in pixels.
func (e *ImageEncoder) ImageSize() int { return e.size }

// Dim is the embedding width.
func (e *ImageEncoder) Dim() int { return e.dim }

// MaxBatch is the largest number of images sent through one Run.
func (e *ImageEncoder) MaxBatch() int { return e.maxBatch }

// EncodeImages embeds n NCHW images, MaxBatch at a time. The input tensors
// wrap the caller's pixels without copying, so pixels must not change until
// EncodeImages returns.
func (e *ImageEncoder) EncodeImages(ctx context.Context, pixels []float32, n int) ([][]float32, error) {
	per := e.pixelsPerImage()
	if n < 0 {
		return nil, fmt.Errorf("%s: negative image count %d", e.sess.label, n)
	}
	if len(pixels) != n*per {
		return nil, fmt.Errorf("%s: got %d floats for %d images, want %d (n x 3 x %d x %d)",
			e.sess.label, len(pixels), n, n*per, e.size, e.size)
	}
	vecs := make([][]float32, 0, n)
	for start := 0; start < n; start += e.maxBatch {
		b := min(e.maxBatch, n-start)
		chunk, err := e.encodeChunk(ctx, pixels[start*per:(start+b)*per], b)
		if err != nil {
			return nil, err
		}
		vecs = append(vecs, chunk...)
	}
	return vecs, nil
}

func (e *ImageEncoder) encodeChunk(ctx context.Context, pixels []float32, b int) ([][]float32, error) {
	if err := e.sess.acquire(); err != nil {
		return nil, err
	}
	defer e.sess.release()
	s := int64(e.size)
	in, err := ort.NewTensor(ort.NewShape(int64(b), 3, s, s), pixels)
	if err != nil {
		return nil, fmt.Errorf("%s: input tensor: %w", e.sess.label, err)
	}
	defer in.Destroy()
	out, err := e.sess.run(ctx, in)
	if err != nil {
		return nil, err
	}
	return e.sess.embeddings(out, b, e.dim)
}

// Close releases the session. The encoder must not be used afterwards.
func (e *ImageEncoder) Close() error { return e.sess.Close() }
