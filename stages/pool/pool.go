// Package pool is the pool stage: it turns a clip's frame embeddings into
// one clip embedding.
package pool

import (
	"context"
	"fmt"
	"math"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
)

// Pooling modes.
const (
	// MeanP is CLIP4Clip's parameter-free mean pooling.
	MeanP = "meanP"
	// SeqTransf is CLIP4Clip's temporal transformer, run from the bundle's
	// temporal model.
	SeqTransf = "seqTransf"
)

// Settings are the pool stage's tunables, as a deployment sets them.
type Settings struct {
	// Mode is MeanP (parameter-free) or SeqTransf (the bundle's temporal
	// head). It is recorded with the collection: vectors pooled one way
	// cannot be searched or indexed alongside vectors pooled the other.
	Mode string `yaml:"mode"`
}

// WithDefaults fills unset fields.
func (s Settings) WithDefaults() Settings {
	if s.Mode == "" {
		s.Mode = MeanP
	}
	return s
}

// Validate checks the settings after defaults.
func (s Settings) Validate() error {
	if s.Mode != MeanP && s.Mode != SeqTransf {
		return fmt.Errorf("mode %q is not supported (want %s or %s)", s.Mode, MeanP, SeqTransf)
	}
	return nil
}

// Pooler pools several clips at once so a model-based pooler can run one
// padded batch. Each element of clips is one clip's frame embeddings.
type Pooler interface {
	Pool(ctx context.Context, clips [][][]float32) ([][]float32, error)
	Mode() string
}

// MeanPooler computes CLIP4Clip's meanP: L2-normalise every frame, average
// the frames, L2-normalise the average. Normalising first matters: frames
// with larger raw norms must not dominate the clip.
type MeanPooler struct{}

// Mode returns MeanP.
func (MeanPooler) Mode() string { return MeanP }

// Pool implements Pooler.
func (MeanPooler) Pool(_ context.Context, clips [][][]float32) ([][]float32, error) {
	out := make([][]float32, len(clips))
	for i, frames := range clips {
		v, err := MeanPool(frames)
		if err != nil {
			// The frames themselves cannot be pooled: retrying cannot help.
			return nil, pipeline.Poison(fmt.Errorf("clip %d: %w", i, err))
		}
		out[i] = v
	}
	return out, nil
}

// MeanPool pools one clip with meanP.
func MeanPool(frames [][]float32) ([]float32, error) {
	if len(frames) == 0 {
		return nil, fmt.Errorf("meanP: clip has no frames")
	}
	dim := len(frames[0])
	acc := make([]float64, dim)
	for i, f := range frames {
		if len(f) != dim {
			return nil, fmt.Errorf("meanP: frame %d has %d values, frame 0 has %d", i, len(f), dim)
		}
		n := norm(f)
		if n == 0 {
			return nil, fmt.Errorf("meanP: frame %d embedding is zero", i)
		}
		for j, x := range f {
			acc[j] += float64(x) / n
		}
	}
	var s float64
	for j := range acc {
		acc[j] /= float64(len(frames))
		s += acc[j] * acc[j]
	}
	if s == 0 {
		return nil, fmt.Errorf("meanP: frames cancel out to a zero vector")
	}
	inv := 1 / math.Sqrt(s)
	out := make([]float32, dim)
	for j, x := range acc {
		out[j] = float32(x * inv)
	}
	return out, nil
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// Config configures the pool stage.
type Config struct {
	OutputTopic string `yaml:"output_topic"`
	// Model is the bundle the frame embeddings must come from.
	Model string `yaml:"model"`
}

// Handler pools clips.
type Handler struct {
	cfg    Config
	pooler Pooler
}

// New returns the pool handler.
func New(cfg Config, p Pooler) (*Handler, error) {
	if cfg.Model == "" {
		return nil, fmt.Errorf("pool: model name is required")
	}
	if cfg.OutputTopic == "" {
		cfg.OutputTopic = "clip-embeddings"
	}
	return &Handler{cfg: cfg, pooler: p}, nil
}

// Handle pools every clip of the batch in one Pooler call.
func (h *Handler) Handle(ctx context.Context, batch []pipeline.Message) []pipeline.Result {
	res := make([]pipeline.Result, len(batch))
	var slots []int
	var headers []schemas.ClipHeader
	var clips [][][]float32
	for i, m := range batch {
		e, err := schemas.DecodeEmbeddings(schemas.KindFrameEmbeddings, m.Value)
		if err != nil {
			res[i].Err = pipeline.Poison(err)
			continue
		}
		if e.Header.Model != h.cfg.Model {
			res[i].Err = pipeline.Poisonf("frame embeddings of model %q reached a pool stage for model %q", e.Header.Model, h.cfg.Model)
			continue
		}
		slots, headers, clips = append(slots, i), append(headers, e.Header), append(clips, e.Vectors)
	}
	if len(clips) == 0 {
		return res
	}
	pooled, err := h.pooler.Pool(ctx, clips)
	if err == nil && len(pooled) != len(clips) {
		err = fmt.Errorf("pooler returned %d vectors for %d clips", len(pooled), len(clips))
	}
	if err != nil && pipeline.IsPoison(err) && len(clips) > 1 {
		// One clip's frames broke the batch: pool clip by clip so only the
		// clips at fault are dead-lettered.
		pooled, err = h.poolEach(ctx, clips, slots, res), nil
	}
	if err != nil {
		for _, i := range slots {
			res[i].Err = fmt.Errorf("pool %d clips: %w", len(clips), err)
		}
		return res
	}
	for k, i := range slots {
		if res[i].Err != nil {
			continue // failed on its own in poolEach
		}
		hd := headers[k]
		hd.Pooling = h.pooler.Mode()
		value, err := schemas.EncodeEmbeddings(schemas.KindClipEmbedding, &schemas.Embeddings{Header: hd, Vectors: [][]float32{pooled[k]}})
		if err != nil {
			res[i].Err = pipeline.Poison(err)
			continue
		}
		res[i].Outputs = []pipeline.Output{{Topic: h.cfg.OutputTopic, Key: []byte(hd.VideoID), Value: value}}
	}
	return res
}

// poolEach pools the clips one at a time, recording each failure in res.
func (h *Handler) poolEach(ctx context.Context, clips [][][]float32, slots []int, res []pipeline.Result) [][]float32 {
	out := make([][]float32, len(clips))
	for k := range clips {
		v, err := h.pooler.Pool(ctx, clips[k:k+1])
		if err == nil && len(v) != 1 {
			err = fmt.Errorf("pooler returned %d vectors for 1 clip", len(v))
		}
		if err != nil {
			res[slots[k]].Err = fmt.Errorf("pool clip: %w", err)
			continue
		}
		out[k] = v[0]
	}
	return out
}
