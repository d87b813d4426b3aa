package pool

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/vidx/vidx/pipeline"
)

// TemporalModel runs a bundle's temporal head: clips of 1..MaxFrames frame
// embeddings, Dim wide, in; one normalised embedding per clip out. It is
// what the pool stage needs of encoders/onnx's TemporalEncoder, so the stage
// itself does not depend on ONNX Runtime.
type TemporalModel interface {
	Pool(ctx context.Context, clips [][][]float32) ([][]float32, error)
	MaxFrames() int
	Dim() int
}

// SeqTransfPooler pools with CLIP4Clip's temporal transformer (seqTransf),
// run by a TemporalModel. A batch of clips with different frame counts goes
// through the model in one padded call.
type SeqTransfPooler struct {
	model TemporalModel
}

// NewSeqTransfPooler returns a seqTransf pooler running m.
func NewSeqTransfPooler(m TemporalModel) (*SeqTransfPooler, error) {
	if m == nil {
		return nil, errors.New("seqTransf: no temporal model")
	}
	if m.MaxFrames() <= 0 || m.Dim() <= 0 {
		return nil, fmt.Errorf("seqTransf: temporal model takes %d frames of width %d", m.MaxFrames(), m.Dim())
	}
	return &SeqTransfPooler{model: m}, nil
}

// Mode returns SeqTransf.
func (*SeqTransfPooler) Mode() string { return SeqTransf }

// Pool implements Pooler. Clips the model cannot take (no frames, more than
// MaxFrames, frames of another width, non-finite values) are refused as
// poison before anything runs, naming the first such clip; a failure of the
// model itself is returned as it is, for the stage to retry. A non-finite
// output is poison too: the same frames would give it again.
func (p *SeqTransfPooler) Pool(ctx context.Context, clips [][][]float32) ([][]float32, error) {
	for i, frames := range clips {
		if err := p.check(frames); err != nil {
			return nil, pipeline.Poison(fmt.Errorf("clip %d: %w", i, err))
		}
	}
	if len(clips) == 0 {
		return nil, nil
	}
	out, err := p.model.Pool(ctx, clips)
	if err != nil {
		return nil, fmt.Errorf("seqTransf: %w", err)
	}
	if len(out) != len(clips) {
		return nil, fmt.Errorf("seqTransf: temporal model returned %d vectors for %d clips", len(out), len(clips))
	}
	for i, v := range out {
		if len(v) != p.model.Dim() {
			return nil, fmt.Errorf("seqTransf: temporal model returned %d values for clip %d, want %d", len(v), i, p.model.Dim())
		}
		if j := nonFinite(v); j >= 0 {
			return nil, pipeline.Poison(fmt.Errorf("clip %d: seqTransf: temporal model output[%d] is %v", i, j, v[j]))
		}
	}
	return out, nil
}

func (p *SeqTransfPooler) check(frames [][]float32) error {
	switch limit, dim := p.model.MaxFrames(), p.model.Dim(); {
	case len(frames) == 0:
		return errors.New("seqTransf: clip has no frames")
	case len(frames) > limit:
		return fmt.Errorf("seqTransf: clip has %d frames, the temporal model takes at most %d (sample with max_frames <= %d)", len(frames), limit, limit)
	default:
		for f, v := range frames {
			if len(v) != dim {
				return fmt.Errorf("seqTransf: frame %d has %d values, the temporal model takes %d", f, len(v), dim)
			}
			if j := nonFinite(v); j >= 0 {
				return fmt.Errorf("seqTransf: frame %d value %d is %v", f, j, v[j])
			}
		}
	}
	return nil
}

// nonFinite returns the index of the first NaN or infinite value, or -1.
func nonFinite(v []float32) int {
	for j, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return j
		}
	}
	return -1
}
