package onnx

import (
	"context"
	"errors"
	"fmt"
	"math"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/vidx/vidx/encoders/bundle"
)

// ErrNoTemporal is returned (wrapped) by NewTemporalEncoder for a bundle
// without a temporal section: such a bundle can only be pooled with meanP.
var ErrNoTemporal = errors.New("model bundle has no temporal head")

// ErrInvalidClip is wrapped by the errors TemporalEncoder.Pool returns for a
// clip that cannot be pooled however often it is retried: no frames, more
// frames than max_frames, or frames of the wrong width.
var ErrInvalidClip = errors.New("invalid clip")

// normTolerance is how far from 1 the norm of a temporal output may be. The
// bundle contract says video_embeds are normalised; a head exported without
// the final normalisation would otherwise give vectors whose cosine
// similarities are silently wrong.
const normTolerance = 1e-3

// TemporalEncoder runs a bundle's temporal head (CLIP4Clip seqTransf):
// clips of 1..MaxFrames frame embeddings in, one normalised clip embedding
// out. It is safe for concurrent use.
type TemporalEncoder struct {
	sess      *session
	maxFrames int
	dim       int
	maxBatch  int
}

// NewTemporalEncoder opens m's temporal model. Clips are sent MaxBatch
// (o.MaxBatch, DefaultMaxBatch when 0) at a time, each padded to max_frames.
// One single-frame clip is run through the model so that a manifest that
// does not fit it (tensor names, max_frames, embedding_dim, an output that
// is not normalised) fails here.
func (r *Runtime) NewTemporalEncoder(m *bundle.Manifest, o SessionOptions) (*TemporalEncoder, error) {
	if m == nil {
		return nil, errors.New("onnx: NewTemporalEncoder: nil manifest")
	}
	if m.Temporal == nil {
		return nil, fmt.Errorf("model %s (%s): %w (no temporal section in %s)", m.Name, m.Dir, ErrNoTemporal, bundle.ManifestFile)
	}
	spec := *m.Temporal
	label := fmt.Sprintf("model %s temporal (%s)", m.Name, spec.ONNX)
	maxBatch, err := o.maxBatch()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	if spec.MaxFrames <= 0 {
		return nil, fmt.Errorf("%s: temporal.max_frames must be > 0, got %d", label, spec.MaxFrames)
	}
	sess, err := r.openSession(label, m.Path(spec.ONNX), []string{spec.Frames, spec.Mask}, spec.Output, o)
	if err != nil {
		return nil, err
	}
	e := &TemporalEncoder{sess: sess, maxFrames: spec.MaxFrames, dim: m.EmbeddingDim, maxBatch: maxBatch}
	if err := e.probe(); err != nil {
		t, d := int64(spec.MaxFrames), int64(m.EmbeddingDim)
		in := []tensorSpec{
			{"temporal.frames", spec.Frames, ort.TensorElementDataTypeFloat,
				[]int64{-1, t, d}, []string{"", "temporal.max_frames", "embedding_dim"}},
			{"temporal.mask", spec.Mask, ort.TensorElementDataTypeFloat,
				[]int64{-1, t}, []string{"", "temporal.max_frames"}},
		}
		out := tensorSpec{"temporal.output", spec.Output, ort.TensorElementDataTypeFloat,
			[]int64{-1, d}, []string{"", "embedding_dim"}}
		if derr := sess.diagnose(in, out); derr != nil {
			err = derr
		}
		sess.Close()
		return nil, err
	}
	return e, nil
}

// probe pools one single-frame clip and checks that the result is a unit
// vector.
func (e *TemporalEncoder) probe() error {
	frame := make([]float32, e.dim)
	for i := range frame {
		frame[i] = float32(1 / math.Sqrt(float64(e.dim)))
	}
	out, err := e.Pool(context.Background(), [][][]float32{{frame}})
	if err != nil {
		return err
	}
	var s float64
	for _, x := range out[0] {
		s += float64(x) * float64(x)
	}
	if n := math.Sqrt(s); !(math.Abs(n-1) <= normTolerance) {
		return fmt.Errorf("%s: output %q has norm %.4g, want 1: the temporal head must end with CLIP4Clip's "+
			"normalise-mean-normalise (L2-normalise frames, mean over valid frames, L2-normalise)", e.sess.label, e.sess.out, n)
	}
	return nil
}

// MaxFrames is the most frames a clip may have (the model's sequence
// length).
func (e *TemporalEncoder) MaxFrames() int { return e.maxFrames }

// Dim is the width of frame and clip embeddings.
func (e *TemporalEncoder) Dim() int { return e.dim }

// MaxBatch is the largest number of clips sent through one Run.
func (e *TemporalEncoder) MaxBatch() int { return e.maxBatch }

// Pool pools each clip (its frame embeddings, 1..MaxFrames of them, each
// Dim wide) into one normalised embedding. Clips of different lengths share
// a run: each is padded with zero frames to MaxFrames and the mask marks its
// real frames, which the head attends to and averages over. A clip that
// cannot be pooled fails the whole call with an error wrapping
// ErrInvalidClip and naming the clip; nothing is run then.
func (e *TemporalEncoder) Pool(ctx context.Context, clips [][][]float32) ([][]float32, error) {
	for i, frames := range clips {
		if err := e.checkClip(frames); err != nil {
			return nil, fmt.Errorf("%s: clip %d: %w", e.sess.label, i, err)
		}
	}
	out := make([][]float32, 0, len(clips))
	for start := 0; start < len(clips); start += e.maxBatch {
		chunk, err := e.poolChunk(ctx, clips[start:min(start+e.maxBatch, len(clips))])
		if err != nil {
			return nil, err
		}
		out = append(out, chunk...)
	}
	return out, nil
}

func (e *TemporalEncoder) checkClip(frames [][]float32) error {
	switch {
	case len(frames) == 0:
		return fmt.Errorf("%w: no frames", ErrInvalidClip)
	case len(frames) > e.maxFrames:
		return fmt.Errorf("%w: %d frames, the temporal head takes at most temporal.max_frames = %d", ErrInvalidClip, len(frames), e.maxFrames)
	}
	for f, v := range frames {
		if len(v) != e.dim {
			return fmt.Errorf("%w: frame %d has %d values, want embedding_dim %d", ErrInvalidClip, f, len(v), e.dim)
		}
	}
	return nil
}

func (e *TemporalEncoder) poolChunk(ctx context.Context, clips [][][]float32) ([][]float32, error) {
	b, t, d := len(clips), e.maxFrames, e.dim
	frames := make([]float32, b*t*d)
	mask := make([]float32, b*t)
	for i, clip := range clips {
		for f, v := range clip {
			copy(frames[(i*t+f)*d:], v)
			mask[i*t+f] = 1
		}
	}

	if err := e.sess.acquire(); err != nil {
		return nil, err
	}
	defer e.sess.release()
	framesT, err := ort.NewTensor(ort.NewShape(int64(b), int64(t), int64(d)), frames)
	if err != nil {
		return nil, fmt.Errorf("%s: frames tensor: %w", e.sess.label, err)
	}
	defer framesT.Destroy()
	maskT, err := ort.NewTensor(ort.NewShape(int64(b), int64(t)), mask)
	if err != nil {
		return nil, fmt.Errorf("%s: mask tensor: %w", e.sess.label, err)
	}
	defer maskT.Destroy()
	out, err := e.sess.run(ctx, framesT, maskT)
	if err != nil {
		return nil, err
	}
	return e.sess.embeddings(out, b, d)
}

// Close releases the session. The encoder must not be used afterwards.
func (e *TemporalEncoder) Close() error { return e.sess.Close() }
