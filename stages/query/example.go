package query

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // query images may be JPEG
	_ "image/png"  // or PNG
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/vidx/vidx/encoders"
	"github.com/vidx/vidx/encoders/preprocess"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/telemetry"
)

// Option configures a Handler.
type Option func(*Handler)

// WithImageEncoder lets the stage answer image queries with the bundle's
// image tower; mean and std are the bundle's normalisation (zero: CLIP's).
func WithImageEncoder(enc encoders.ImageEncoder, mean, std [3]float32) Option {
	return func(h *Handler) {
		if std == ([3]float32{}) {
			mean, std = preprocess.CLIPMean(), preprocess.CLIPStd()
		}
		h.image, h.mean, h.std = enc, mean, std
	}
}

// maxImagePixels bounds a decoded query image (about 36 megapixels), so a
// small file that claims huge dimensions cannot exhaust memory.
const maxImagePixels = 6000 * 6000

func invalid(format string, args ...any) error {
	return &QueryError{Code: schemas.ErrCodeInvalidQuery, Msg: fmt.Sprintf(format, args...)}
}

// decodeQueryImage turns a base64 JPEG or PNG into the CLIP crop the
// sample stage makes of a video frame: shorter side resized to size with
// PIL's bicubic filter, then centre-cropped.
func decodeQueryImage(b64 string, size int) (*image.RGBA, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, invalid("image is not valid base64: %v", err)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(raw))
	if err != nil {
		return nil, invalid("image does not decode as JPEG or PNG: %v", err)
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width*cfg.Height > maxImagePixels {
		return nil, invalid("image is %dx%d; at most %d pixels are accepted", cfg.Width, cfg.Height, maxImagePixels)
	}
	img, _, err := image.Decode(bytes.NewReader(raw))
	if err != nil {
		return nil, invalid("image (%s) does not decode: %v", format, err)
	}
	return preprocess.ResizeCrop(img, size), nil
}

// encodeImages embeds the image queries at idx in one batch. A query
// whose image cannot be read fails alone (failed[i]); the error return is
// for the encoder failing the whole batch.
func (h *Handler) encodeImages(ctx context.Context, queries []schemas.Query, idx []int, qvecs [][]float32, failed []error) error {
	if h.image == nil {
		for _, i := range idx {
			failed[i] = invalid("image queries are not available: this query stage has no image encoder")
		}
		return nil
	}
	size := h.image.ImageSize()
	var crops []*image.RGBA
	var ok []int
	for _, i := range idx {
		crop, err := decodeQueryImage(queries[i].Image, size)
		if err != nil {
			failed[i] = err
			continue
		}
		crops = append(crops, crop)
		ok = append(ok, i)
	}
	if len(crops) == 0 {
		return nil
	}
	pixels := make([]float32, len(crops)*3*size*size)
	preprocess.Normalize(pixels, crops, h.mean, h.std)
	ectx, span := telemetry.Start(ctx, "image encode", trace.WithAttributes(attribute.Int("vidx.batch_size", len(crops))))
	start := time.Now()
	vecs, err := h.image.EncodeImages(ectx, pixels, len(crops))
	model := metric.WithAttributes(attribute.String("model", "image"))
	telemetry.From(ctx).Instruments().InferenceSeconds.Record(ctx, time.Since(start).Seconds(), model)
	telemetry.End(span, err)
	if err != nil {
		return fmt.Errorf("encode query images: %w", err)
	}
	if len(vecs) != len(ok) {
		return fmt.Errorf("image encoder returned %d vectors for %d images", len(vecs), len(ok))
	}
	for k, i := range ok {
		qvecs[i] = Normalize(vecs[k])
	}
	return nil
}

// maxClipsPerVideo bounds the search that finds a like query's clip.
const maxClipsPerVideo = 100000

// clipVector returns the stored vector of an indexed clip. Among several
// runs of the video (a re-ingest in progress) the newest wins.
func (h *Handler) clipVector(ctx context.Context, ref schemas.ClipRef) ([]float32, error) {
	// Any direction will do: the filter picks the video, and every one of
	// its clips is returned.
	probe := make([]float32, h.text.Dim())
	probe[0] = 1
	hits, err := h.store.Search(ctx, h.cfg.Collection, sinks.SearchRequest{
		Vector: probe, TopK: maxClipsPerVideo, Filter: sinks.Filter{VideoIDs: []string{ref.VideoID}}, WithVectors: true, Exact: true,
	})
	if errors.Is(err, sinks.ErrNotFound) {
		return nil, invalid("like: video %q clip %d is not in the index (nothing is indexed yet)", ref.VideoID, ref.ClipIndex)
	}
	if err != nil {
		return nil, searchError(h.cfg.Collection, err)
	}
	var best *sinks.Hit
	for i := range hits {
		p := hits[i].Payload
		if p.ClipIndex == ref.ClipIndex && (best == nil || p.Generation > best.Payload.Generation) {
			best = &hits[i]
		}
	}
	if best == nil {
		return nil, invalid("like: video %q clip %d is not in the index", ref.VideoID, ref.ClipIndex)
	}
	return Normalize(best.Vector), nil
}
