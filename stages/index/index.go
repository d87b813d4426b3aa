// Package index is the index stage: it writes clip embeddings to the vector
// store, one point per clip, and replaces a re-ingested video's clips.
//
// # Re-ingest
//
// Every clip of a video job carries its run's generation, and the run's last
// clip the number of clips the run produced (schemas.ClipHeader). Once that
// many clips of the generation are in the store, the stage deletes the
// video's points of older generations (sinks.Store.DeleteOlder). The new
// clips are written before the old ones are deleted, so a search finds the
// old clips, the new ones or for a moment both, never neither. A crash
// between the two steps leaves both: the batch was not committed, so it is
// redelivered, written again (point ids are stable) and the delete runs
// then. Stream windows carry no generation and are only ever added.
//
// # Delete
//
// A delete command on the videos topic (a tombstone keyed by the video id
// with the vidx-command: delete header, schemas.IsDeleteCommand) deletes
// the video: the stage reads that topic too, in the same consumer group, and
// removes the video's points of runs that began before the delete, stream
// windows included (sinks.Store.DeleteOlder with the tombstone's time as
// the generation), so a delete read again later does not remove the video
// ingested since. One replica handles
// each delete, against the store every replica shares, so all agree. Video
// jobs on the topic are the sample stage's and are skipped here. Clips of
// a job that began before the delete and are still on their way are
// dropped when they reach the replica that deleted the video (their
// generation is older than the delete); other replicas, or a replica
// restarted since, index them, and deleting again removes them.
//
// Clips of a video travel keyed by video id, so they reach the stage in
// order and the last clip normally completes its generation. When a clip of
// the run is still being retried, the stage remembers the generation and
// replaces once the clip is written. Clips of the run that were
// dead-lettered keep the generation incomplete: the older clips then stay,
// next to the new ones, until the dead letters are replayed into the same
// stage process or the video is ingested again.
package index

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
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
	Count(ctx context.Context, collection string, f sinks.Filter) (int, error)
	DeleteOlder(ctx context.Context, collection, videoID string, generation int64) (int, error)
}

// Option configures a Handler.
type Option func(*Handler)

// WithLogger sets the logger; the default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(h *Handler) {
		if l != nil {
			h.log = l
		}
	}
}

// WithVideosTopic names the topic whose tombstones delete videos; messages
// of that topic are delete commands or jobs (ignored), never clips.
func WithVideosTopic(topic string) Option {
	return func(h *Handler) { h.videosTopic = topic }
}

// maxPending bounds the generations remembered while some of their clips are
// still missing; the oldest is forgotten first (its older clips then stay
// until the video is ingested again).
const maxPending = 4096

// genKey names one run of one video.
type genKey struct {
	video string
	gen   int64
}

// Handler indexes clip embeddings.
type Handler struct {
	spec  sinks.CollectionSpec
	store Store
	now   func() time.Time
	log   *slog.Logger

	mu sync.Mutex
	// pending holds generations whose last clip is indexed but not yet all
	// of their clips, with the clip count they need.
	pending map[genKey]int
	order   []genKey // insertion order of pending, for the bound

	videosTopic string
	// deleted holds when each video was last deleted here (microseconds,
	// comparable with clip generations), bounded like pending.
	deleted      map[string]int64
	deletedOrder []string
}

// New ensures the collection exists with spec and returns the handler. A
// collection holding another model's or pooling's vectors is refused.
func New(ctx context.Context, spec sinks.CollectionSpec, store Store, opts ...Option) (*Handler, error) {
	if spec.Distance == "" {
		spec.Distance = "cosine"
	}
	if spec.Name == "" || spec.Model == "" || spec.Pooling == "" || spec.Dim <= 0 {
		return nil, fmt.Errorf("index: collection name, model, pooling and dim are required (got %+v)", spec)
	}
	if err := store.EnsureCollection(ctx, spec); err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	h := &Handler{spec: spec, store: store, now: time.Now, log: slog.Default(), pending: map[genKey]int{}, deleted: map[string]int64{}}
	for _, o := range opts {
		o(h)
	}
	return h, nil
}

// Handle upserts the batch's clips in one call, then replaces the videos
// whose new generation is complete. Point ids derive from the clip, so a
// redelivered batch overwrites the same points.
func (h *Handler) Handle(ctx context.Context, batch []pipeline.Message) []pipeline.Result {
	res := make([]pipeline.Result, len(batch))
	var points []sinks.Point
	var slots []int
	var headers []*schemas.ClipHeader
	now := h.now().UTC()
	var deletes []int
	for i, m := range batch {
		if h.videosTopic != "" && m.Topic == h.videosTopic {
			if schemas.IsDeleteCommand(m.Value, m.Headers) {
				deletes = append(deletes, i)
			}
			continue
		}
		e, err := schemas.DecodeEmbeddings(schemas.KindClipEmbedding, m.Value)
		if err != nil {
			res[i].Err = pipeline.Poison(err)
			continue
		}
		hd := e.Header
		if h.deletedBefore(hd.VideoID, hd.Generation) {
			h.log.InfoContext(ctx, "dropping a clip of a deleted video", "video_id", hd.VideoID, "clip_index", hd.ClipIndex)
			continue
		}
		if hd.Model != h.spec.Model || hd.Pooling != h.spec.Pooling || hd.Dim != h.spec.Dim {
			res[i].Err = pipeline.Poisonf("clip embedding of model %q pooled with %q (dim %d) cannot go into collection %q of model %q pooled with %q (dim %d)",
				hd.Model, hd.Pooling, hd.Dim, h.spec.Name, h.spec.Model, h.spec.Pooling, h.spec.Dim)
			continue
		}
		// Both stores refuse such a vector; saying so here names the clip
		// and spares the store a batch it would reject whole.
		if err := sinks.CheckVector(e.Vectors[0], h.spec.Dim); err != nil {
			res[i].Err = pipeline.Poison(fmt.Errorf("clip %d of %s [%gs, %gs]: %w; cosine similarity needs a direction",
				hd.ClipIndex, hd.VideoID, hd.StartS, hd.EndS, err))
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
				Generation: hd.Generation,
				WallStart:  hd.WallStart,
			},
		})
		slots = append(slots, i)
		headers = append(headers, &hd)
	}
	defer h.deleteVideos(ctx, batch, deletes, res)
	if len(points) == 0 {
		return res
	}
	if err := h.upsert(ctx, points); err != nil {
		err = fmt.Errorf("upsert %d points into %s: %w", len(points), h.spec.Name, err)
		if errors.Is(err, sinks.ErrInvalid) {
			// The batch is rejected whole; upsert one by one to find the bad
			// points and dead-letter only those.
			h.upsertEach(ctx, points, slots, res)
		} else {
			err = h.storeError(ctx, err)
			for _, i := range slots {
				res[i].Err = err
			}
		}
	}
	h.replace(ctx, headers, slots, res)
	return res
}

// deleteVideos runs the batch's delete commands, after its clips are
// written: a delete and clips of one batch come from different topics, with
// no order between them, and deleting last leaves nothing behind.
func (h *Handler) deleteVideos(ctx context.Context, batch []pipeline.Message, slots []int, res []pipeline.Result) {
	for _, i := range slots {
		id := string(batch[i].Key)
		if err := (&schemas.VideoJob{VideoID: id, URI: "-"}).Validate(); err != nil {
			res[i].Err = pipeline.Poison(fmt.Errorf("delete command: %w", err))
			continue
		}
		at := batch[i].Time
		if at.IsZero() {
			at = h.now()
		}
		h.markDeleted(id, at.UnixMicro())
		// Only clips of runs that began before the delete: a delete read
		// again (a new consumer group, a replay) must not remove the video
		// ingested since.
		n, err := h.store.DeleteOlder(ctx, h.spec.Name, id, at.UnixMicro())
		if err != nil {
			res[i].Err = h.storeError(ctx, fmt.Errorf("delete video %s from %s: %w", id, h.spec.Name, err))
			continue
		}
		h.log.InfoContext(ctx, "deleted video", "video_id", id, "points", n)
	}
}

func (h *Handler) markDeleted(id string, at int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k := range h.pending {
		if k.video == id {
			delete(h.pending, k)
		}
	}
	if _, ok := h.deleted[id]; !ok {
		if len(h.deletedOrder) >= maxPending {
			delete(h.deleted, h.deletedOrder[0])
			h.deletedOrder = h.deletedOrder[1:]
		}
		h.deletedOrder = append(h.deletedOrder, id)
	}
	h.deleted[id] = max(h.deleted[id], at)
}

// deletedBefore reports whether a clip of generation gen belongs to a job
// that began before the video was deleted here.
func (h *Handler) deletedBefore(id string, gen int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	at, ok := h.deleted[id]
	return ok && gen != 0 && gen < at
}

// storeError classifies an upsert error that is not the data's fault. The
// store being down or full is retried with backoff and the offsets stay
// uncommitted until it is back; a full store is also counted and logged as
// an error, since it needs an operator. A request the store refuses for good
// is not retried forever: it fails the runtime's bounded attempts and is
// dead-lettered with the store's reason, to be replayed once fixed.
func (h *Handler) storeError(ctx context.Context, err error) error {
	inst := telemetry.From(ctx).Instruments()
	switch {
	case errors.Is(err, sinks.ErrCapacity):
		inst.StoreRefusals.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "capacity")))
		h.log.ErrorContext(ctx, "index: the vector store is at capacity; retrying until an operator raises its limits or frees space",
			"collection", h.spec.Name, "err", err)
		return pipeline.Retryable(err)
	case errors.Is(err, sinks.ErrRejected):
		inst.StoreRefusals.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "rejected")))
		h.log.ErrorContext(ctx, "index: the vector store refuses this write for good; fix the store settings and replay the dead letters",
			"collection", h.spec.Name, "err", err)
		return err
	}
	return pipeline.Retryable(err)
}

func (h *Handler) upsertEach(ctx context.Context, points []sinks.Point, slots []int, res []pipeline.Result) {
	for k, p := range points {
		err := h.store.Upsert(ctx, h.spec.Name, []sinks.Point{p})
		switch {
		case err == nil:
		case errors.Is(err, sinks.ErrInvalid):
			res[slots[k]].Err = pipeline.Poison(fmt.Errorf("upsert clip %d of %s: %w", p.Payload.ClipIndex, p.Payload.VideoID, err))
		default:
			res[slots[k]].Err = h.storeError(ctx, fmt.Errorf("upsert clip %d of %s: %w", p.Payload.ClipIndex, p.Payload.VideoID, err))
		}
	}
}

// replace deletes the older generations of the videos whose generation this
// batch completed. headers[k] is the clip of message slots[k]; only clips
// that were written count. A failed delete fails the generation's last clip
// retryably, so that the runtime hands it back and the delete runs again.
func (h *Handler) replace(ctx context.Context, headers []*schemas.ClipHeader, slots []int, res []pipeline.Result) {
	touched := map[genKey][]int{} // written clips of each generation, by message slot
	var keys []genKey
	h.mu.Lock()
	for k, hd := range headers {
		if hd.Generation == 0 || hd.StreamID != "" || res[slots[k]].Err != nil {
			continue
		}
		key := genKey{hd.VideoID, hd.Generation}
		if hd.GenerationClips > 0 {
			h.remember(key, hd.GenerationClips)
		}
		if _, ok := touched[key]; !ok {
			keys = append(keys, key)
		}
		touched[key] = append(touched[key], slots[k])
	}
	want := make(map[genKey]int, len(keys))
	for _, key := range keys {
		if n, ok := h.pending[key]; ok {
			want[key] = n
		}
	}
	h.mu.Unlock()

	for _, key := range keys {
		n, ok := want[key]
		if !ok {
			continue
		}
		if err := h.replaceOne(ctx, key, n); err != nil {
			err = pipeline.Retryable(fmt.Errorf("replace older clips of %s: %w", key.video, err))
			for _, i := range touched[key] {
				res[i].Err = err
			}
		}
	}
}

// remember records that generation key needs n clips. Callers hold mu.
func (h *Handler) remember(key genKey, n int) {
	if _, ok := h.pending[key]; ok {
		return
	}
	if len(h.order) >= maxPending {
		delete(h.pending, h.order[0])
		h.order = h.order[1:]
	}
	h.pending[key] = n
	h.order = append(h.order, key)
}

func (h *Handler) forget(key genKey) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.pending, key)
	for i, k := range h.order {
		if k == key {
			h.order = append(h.order[:i:i], h.order[i+1:]...)
			break
		}
	}
}

// replaceOne deletes the video's older generations once all n clips of the
// generation are stored.
func (h *Handler) replaceOne(ctx context.Context, key genKey, n int) (err error) {
	ctx, span := telemetry.Start(ctx, "replace", trace.WithAttributes(
		attribute.String("vidx.collection", h.spec.Name), attribute.String("vidx.video_id", key.video),
		attribute.Int64("vidx.generation", key.gen)))
	defer func() { telemetry.End(span, err) }()
	have, err := h.store.Count(ctx, h.spec.Name, sinks.Filter{VideoIDs: []string{key.video}, Generation: &key.gen})
	if err != nil {
		return err
	}
	if have < n {
		h.log.DebugContext(ctx, "index: generation incomplete; older clips kept until the rest arrive",
			"video_id", key.video, "generation", key.gen, "indexed", have, "clips", n)
		return nil
	}
	deleted, err := h.store.DeleteOlder(ctx, h.spec.Name, key.video, key.gen)
	if err != nil {
		return err
	}
	h.forget(key)
	if deleted > 0 {
		telemetry.From(ctx).Instruments().ClipsReplaced.Add(ctx, int64(deleted))
		h.log.InfoContext(ctx, "index: re-indexed video replaced its older clips",
			"video_id", key.video, "generation", key.gen, "clips", n, "deleted", deleted)
	}
	return nil
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
