package app

import (
	"context"
	"fmt"
	"image"

	"github.com/vidx/vidx/encoders/bundle"
	"github.com/vidx/vidx/encoders/onnx"
	"github.com/vidx/vidx/media"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/stages/encode"
	"github.com/vidx/vidx/stages/pool"
)

// CodecNone keeps frames as decoded: no clip message codec in between.
const CodecNone = "none"

// NewPooler builds a pooling mode as the pool stage does: meanP, or
// seqTransf on the bundle's temporal head. close releases its session.
func NewPooler(mode string, m *bundle.Manifest, rt *onnx.Runtime, o onnx.SessionOptions) (p pool.Pooler, close func() error, err error) {
	switch mode {
	case pool.MeanP:
		return pool.MeanPooler{}, func() error { return nil }, nil
	case pool.SeqTransf:
		if !m.HasTemporal() {
			return nil, nil, fmt.Errorf("pooling %s: model bundle %s has no temporal model (temporal.onnx in vidx-model.yaml)", pool.SeqTransf, m.Name)
		}
		enc, err := rt.NewTemporalEncoder(m, o)
		if err != nil {
			return nil, nil, err
		}
		p, err := pool.NewSeqTransfPooler(enc)
		if err != nil {
			enc.Close()
			return nil, nil, err
		}
		return p, enc.Close, nil
	}
	return nil, nil, fmt.Errorf("pooling %q: want %s or %s", mode, pool.MeanP, pool.SeqTransf)
}

// EmbedOptions choose how EmbedVideo treats frames between the stages.
type EmbedOptions struct {
	// Pooling is pool.MeanP or pool.SeqTransf.
	Pooling string
	// Codec passes each crop through the clip message codec first
	// (schemas.CodecJPEG, what the pipeline sends by default, or
	// schemas.CodecPNG), or not at all (CodecNone).
	Codec   string
	Quality int
}

// VideoEmbedding is what the stages would compute for one video.
type VideoEmbedding struct {
	Clips []media.Clip
	// Frames[i][j] is the embedding of clip i's frame j; Pooled[i] clip i's.
	Frames  [][][]float32
	Pooled  [][]float32
	Pooling string
}

// EmbedVideo runs the sample, encode and pool stages' own code on one video
// in process, without Kafka: every kept frame is embedded in one batch, as
// the encode stage batches across clips, and each clip pooled as the pool
// stage pools it.
func EmbedVideo(ctx context.Context, m *bundle.Manifest, rt *onnx.Runtime, so onnx.SessionOptions, d *media.Decoder, uri string, o EmbedOptions) (VideoEmbedding, error) {
	switch o.Codec {
	case CodecNone, schemas.CodecJPEG, schemas.CodecPNG:
	default:
		return VideoEmbedding{}, fmt.Errorf("codec %q: want %s, %s or %s", o.Codec, CodecNone, schemas.CodecJPEG, schemas.CodecPNG)
	}
	pooler, closePooler, err := NewPooler(o.Pooling, m, rt, so)
	if err != nil {
		return VideoEmbedding{}, err
	}
	defer closePooler()
	imgEnc, err := rt.NewImageEncoder(m, so)
	if err != nil {
		return VideoEmbedding{}, err
	}
	defer imgEnc.Close()
	h, err := encode.New(encode.Config{Model: m.Name, Mean: triple(m.Image.Mean), Std: triple(m.Image.Std)}, imgEnc)
	if err != nil {
		return VideoEmbedding{}, err
	}
	var (
		out  = VideoEmbedding{Pooling: pooler.Mode()}
		imgs []*image.RGBA
	)
	err = d.Clips(ctx, uri, func(c media.Clip) error {
		for _, f := range c.Frames {
			img, err := viaCodec(f.Image, o.Codec, o.Quality, imgEnc.ImageSize())
			if err != nil {
				return err
			}
			imgs = append(imgs, img)
		}
		out.Clips = append(out.Clips, c)
		return nil
	})
	if err != nil {
		return VideoEmbedding{}, err
	}
	vecs, err := h.Embed(ctx, imgs)
	if err != nil {
		return VideoEmbedding{}, err
	}
	out.Frames = make([][][]float32, len(out.Clips))
	k := 0
	for i, c := range out.Clips {
		out.Frames[i] = vecs[k : k+len(c.Frames)]
		k += len(c.Frames)
	}
	if out.Pooled, err = pooler.Pool(ctx, out.Frames); err != nil {
		return VideoEmbedding{}, err
	}
	return out, nil
}

// viaCodec round-trips a crop through the clip message codec, to see the
// embeddings the pipeline itself computes from JPEG frames.
func viaCodec(img *image.RGBA, codec string, quality, size int) (*image.RGBA, error) {
	if codec == CodecNone {
		return img, nil
	}
	data, err := schemas.EncodeFrame(img, codec, quality)
	if err != nil {
		return nil, err
	}
	return schemas.DecodeFrame(data, codec, size)
}
