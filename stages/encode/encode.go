// Package encode is the encode stage: it decodes the frames of sampled clips
// and embeds them with the image encoder, batching frames across clips.
package encode

import (
	"context"
	"fmt"
	"image"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/vidx/vidx/encoders"
	"github.com/vidx/vidx/encoders/preprocess"
	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/telemetry"
)

// Config configures the encode stage.
type Config struct {
	// Model names the bundle; it travels with the embeddings so later stages
	// can refuse vectors of another model.
	Model       string     `yaml:"model"`
	Mean        [3]float32 `yaml:"-"`
	Std         [3]float32 `yaml:"-"`
	OutputTopic string     `yaml:"output_topic"`
}

// Handler embeds clips. It is safe for concurrent use when the encoder is.
type Handler struct {
	cfg Config
	enc encoders.ImageEncoder
}

// New returns the encode handler.
func New(cfg Config, enc encoders.ImageEncoder) (*Handler, error) {
	if cfg.Model == "" {
		return nil, fmt.Errorf("encode: model name is required")
	}
	if cfg.OutputTopic == "" {
		cfg.OutputTopic = "frame-embeddings"
	}
	if cfg.Std == ([3]float32{}) {
		cfg.Mean, cfg.Std = preprocess.CLIPMean(), preprocess.CLIPStd()
	}
	return &Handler{cfg: cfg, enc: enc}, nil
}

// Frames decodes a clip's frames into CLIP crops of the given size.
func Frames(c *schemas.Clip, size int) ([]*image.RGBA, error) {
	if c.Header.Size != size {
		return nil, pipeline.Poisonf("clip %s/%d has %dpx frames, the image encoder takes %dpx", c.Header.VideoID, c.Header.ClipIndex, c.Header.Size, size)
	}
	imgs := make([]*image.RGBA, len(c.Frames))
	for i, f := range c.Frames {
		img, err := schemas.DecodeFrame(f, c.Header.Codec, size)
		if err != nil {
			return nil, pipeline.Poison(fmt.Errorf("clip %s/%d frame %d: %w", c.Header.VideoID, c.Header.ClipIndex, i, err))
		}
		imgs[i] = img
	}
	return imgs, nil
}

// Embed runs the image encoder over images in one call; the encoder splits
// it into its own batch size.
func (h *Handler) Embed(ctx context.Context, imgs []*image.RGBA) (_ [][]float32, err error) {
	tel := telemetry.From(ctx)
	size := h.enc.ImageSize()
	pixels := make([]float32, len(imgs)*3*size*size)
	_, span := telemetry.Start(ctx, "preprocess", trace.WithAttributes(attribute.Int("vidx.frames", len(imgs))))
	preprocess.Normalize(pixels, imgs, h.cfg.Mean, h.cfg.Std)
	span.End()

	ctx, span = telemetry.Start(ctx, "inference image", trace.WithAttributes(
		attribute.String("vidx.model", h.cfg.Model), attribute.Int("vidx.batch_size", len(imgs))))
	defer func() { telemetry.End(span, err) }()
	start := time.Now()
	vecs, err := h.enc.EncodeImages(ctx, pixels, len(imgs))
	model := metric.WithAttributes(attribute.String("model", "image"))
	tel.Instruments().InferenceSeconds.Record(ctx, time.Since(start).Seconds(), model)
	tel.Instruments().InferenceBatch.Record(ctx, int64(len(imgs)), model)
	if err != nil {
		return nil, fmt.Errorf("encode %d frames: %w", len(imgs), err)
	}
	if len(vecs) != len(imgs) {
		return nil, fmt.Errorf("image encoder returned %d vectors for %d frames", len(vecs), len(imgs))
	}
	return vecs, nil
}

// Handle embeds every frame of the batch's clips in one encoder call, so
// small clips still fill the encoder's batches.
func (h *Handler) Handle(ctx context.Context, batch []pipeline.Message) []pipeline.Result {
	res := make([]pipeline.Result, len(batch))
	size := h.enc.ImageSize()
	type item struct {
		slot   int
		header schemas.ClipHeader
		first  int
		n      int
	}
	var items []item
	var all []*image.RGBA
	for i, m := range batch {
		clip, err := schemas.DecodeClip(m.Value)
		if err != nil {
			res[i].Err = pipeline.Poison(err)
			continue
		}
		imgs, err := Frames(&clip, size)
		if err != nil {
			res[i].Err = err
			continue
		}
		items = append(items, item{slot: i, header: clip.Header, first: len(all), n: len(imgs)})
		all = append(all, imgs...)
	}
	if len(all) == 0 {
		return res
	}
	vecs, err := h.Embed(ctx, all)
	if err != nil {
		for _, it := range items {
			res[it.slot].Err = err
		}
		return res
	}
	for _, it := range items {
		hd := it.header
		hd.Codec, hd.Size = "", 0
		hd.Dim, hd.Model = h.enc.Dim(), h.cfg.Model
		value, err := schemas.EncodeEmbeddings(schemas.KindFrameEmbeddings, &schemas.Embeddings{Header: hd, Vectors: vecs[it.first : it.first+it.n]})
		if err != nil {
			res[it.slot].Err = pipeline.Poison(err)
			continue
		}
		res[it.slot].Outputs = []pipeline.Output{{Topic: h.cfg.OutputTopic, Key: []byte(hd.VideoID), Value: value}}
		telemetry.From(ctx).Instruments().ClipsEncoded.Add(ctx, 1)
	}
	return res
}
