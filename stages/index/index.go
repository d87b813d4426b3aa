// Package index is the index stage: it writes clip embeddings to the vector
// store, one point per clip.
package index

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/schemas"
	"github.com/vidx/vidx/sinks"
	"github.com/vidx/vidx/telemetry"
)

// Store is the part of sinks.Store the index stage uses.
type Store interface {
	EnsureCollection(ctx context.Context, spec sinks.CollectionSpec) error
	Upsert(ctx context.Context, collection string, points []sinks.Point) error
}

// Handler indexes clip embeddings.
type Handler struct {
	spec  sinks.CollectionSpec
	store Store
	now   func() time.Time
}

// New ensures the collection exists with spec and returns the handler. A
// collection holding another model's or pooling's vectors is refused.
func New(ctx context.Context, spec sinks.CollectionSpec, store Store) (*Handler, error) {
	if spec.Distance == "" {
		spec.Distance = "cosine"
	}
	if spec.Name == "" || spec.Model == "" || spec.Pooling == "" || spec.Dim <= 0 {
		return nil, fmt.Errorf("index: collection name, model, pooling and dim are required (got %+v)", spec)
	}
	if err := store.EnsureCollection(ctx, spec); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	return &Handler{spec: spec, store: store, now: time.Now}, nil
}

// Handle upserts the batch's clips in one call. Point ids derive from the
// clip, so a redelivered batch overwrites the same points.
func (h *Handler) Handle(ctx context.Context, batch []pipeline.Message) []pipeline.Result {
	res := make([]pipeline.Result, len(batch))
	var points []sinks.Point
	var slots []int
	now := h.now().UTC()
	for i, m := range batch {
		e, err := schemas.DecodeEmbeddings(schemas.KindClipEmbedding, m.Value)
		if err != nil {
			res[i].Err = pipeline.Poison(err)
			continue
		}
		hd := e.Header
		if hd.Model != h.spec.Model || hd.Pooling != h.spec.Pooling || hd.Dim != h.spec.Dim {
			res[i].Err = pipeline.Poisonf("clip embedding of model %q pooled with %q (dim %d) cannot go into collection %q of model %q pooled with %q (dim %d)",
				hd.Model, hd.Pooling, hd.Dim, h.spec.Name, h.spec.Model, h.spec.Pooling, h.spec.Dim)
			continue
		}
		points = append(points, sinks.Point{
			ID:     sinks.PointID(hd.VideoID, hd.StartS, hd.EndS, hd.Model),
			Vector: e.Vectors[0],
			Payload: sinks.Payload{
				VideoID:    hd.VideoID,
				Source:     hd.Source,
				ClipIndex:  hd.ClipIndex,
				StartS:     hd.StartS,
				EndS:       hd.EndS,
				Frames:     len(hd.FrameTimes),
				IngestedAt: now,
				Metadata:   hd.Metadata,
			},
		})
		slots = append(slots, i)
	}
	if len(points) == 0 {
		return res
	}
	if err := h.upsert(ctx, points); err != nil {
		err = fmt.Errorf("upsert %d points into %s: %w", len(points), h.spec.Name, err)
		if errors.Is(err, sinks.ErrInvalid) {
			// The batch is rejected whole; upsert one by one to find the bad
			// points and dead-letter only those.
			h.upsertEach(ctx, points, slots, res)
			return res
		}
		// The store being down is no fault of the message: keep retrying and
		// keep the offsets uncommitted until it is back.
		err = pipeline.Retryable(err)
		for _, i := range slots {
			res[i].Err = err
		}
	}
	return res
}

func (h *Handler) upsertEach(ctx context.Context, points []sinks.Point, slots []int, res []pipeline.Result) {
	for k, p := range points {
		err := h.store.Upsert(ctx, h.spec.Name, []sinks.Point{p})
		switch {
		case err == nil:
		case errors.Is(err, sinks.ErrInvalid):
			res[slots[k]].Err = pipeline.Poison(fmt.Errorf("upsert clip %d of %s: %w", p.Payload.ClipIndex, p.Payload.VideoID, err))
		default:
			res[slots[k]].Err = pipeline.Retryable(fmt.Errorf("upsert clip %d of %s: %w", p.Payload.ClipIndex, p.Payload.VideoID, err))
		}
	}
}

// upsert writes points inside an "upsert" span and records its latency.
func (h *Handler) upsert(ctx context.Context, points []sinks.Point) (err error) {
	ctx, span := telemetry.Start(ctx, "upsert", trace.WithAttributes(
		attribute.String("vidx.collection", h.spec.Name), attribute.Int("vidx.points", len(points))))
	defer func() { telemetry.End(span, err) }()
	start := time.Now()
	err = h.store.Upsert(ctx, h.spec.Name, points)
	telemetry.From(ctx).Instruments().UpsertSeconds.Record(ctx, time.Since(start).Seconds())
	return err
}
