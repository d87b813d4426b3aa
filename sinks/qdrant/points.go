package qdrant

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/google/uuid"
	qc "github.com/qdrant/go-client/qdrant"

	"github.com/vidx/vidx/sinks"
)

// checkVector rejects what Qdrant would reject or silently mangle: a cosine
// collection leaves a vector with (almost) no length unnormalised, so it
// would score about 0 against every query. The rule is sinks.CheckVector,
// shared with the embedded store.
func checkVector(v []float32, dim int) error { return sinks.CheckVector(v, dim) }

// Upsert writes points in batches of Config.UpsertBatch with wait=true. A
// point whose id exists is replaced. If any point is invalid nothing is sent
// and the error wraps sinks.ErrInvalid. When a later batch fails the earlier
// ones stay written; repeating the call is safe because ids are stable.
func (s *Store) Upsert(ctx context.Context, collection string, points []sinks.Point) error {
	spec, err := s.spec(ctx, collection)
	if err != nil {
		return err
	}
	structs := make([]*qc.PointStruct, len(points))
	for i, p := range points {
		id, err := uuid.Parse(p.ID)
		if err != nil {
			return fmt.Errorf("%w: point %d: id %q is not a UUID (use sinks.PointID)", sinks.ErrInvalid, i, p.ID)
		}
		if err := checkVector(p.Vector, spec.Dim); err != nil {
			return fmt.Errorf("point %q: %w", p.ID, err)
		}
		payload, err := encodePayload(p.Payload)
		if err != nil {
			return fmt.Errorf("point %q: %w", p.ID, err)
		}
		structs[i] = &qc.PointStruct{
			Id:      qc.NewIDUUID(id.String()),
			Vectors: qc.NewVectorsDense(p.Vector),
			Payload: payload,
		}
	}
	done := 0
	for batch := range slices.Chunk(structs, int(s.batch.Load())) {
		if err := s.upsertBatch(ctx, collection, batch); err != nil {
			if errors.Is(err, sinks.ErrNotFound) {
				s.forget(collection)
			}
			return fmt.Errorf("upsert points %d-%d of %d into %q: %w", done, done+len(batch)-1, len(structs), collection, err)
		}
		done += len(batch)
	}
	return nil
}

// upsertBatch sends one batch. A batch the server refuses for its size
// alone (strict mode's upsert_max_batchsize, a rate limit's whole budget,
// the message size limit) is split and sent again in parts, and later
// calls use the smaller size; only a single point that is refused this way
// fails, with sinks.ErrRejected.
func (s *Store) upsertBatch(ctx context.Context, collection string, batch []*qc.PointStruct) error {
	err := s.call(ctx, "upsert", func(ctx context.Context) error {
		resp, err := s.client.GetPointsClient().Upsert(ctx, &qc.UpsertPoints{
			CollectionName: collection,
			Wait:           qc.PtrOf(true),
			Points:         batch,
			Timeout:        s.serverTimeout(),
		})
		if err != nil {
			return err
		}
		return checkUpdate(resp.GetResult())
	})
	var tl *tooLargeError
	if !errors.As(err, &tl) || len(batch) == 1 {
		return err
	}
	size := tl.limit
	if size <= 0 || size >= len(batch) {
		size = (len(batch) + 1) / 2
	}
	if old := s.batch.Load(); int64(size) < old && s.batch.CompareAndSwap(old, int64(size)) {
		s.log.Warn("qdrant refused an upsert batch for its size; sending smaller batches (lower store.qdrant.upsert_batch to match the server)",
			"collection", collection, "batch", len(batch), "now", size, "err", err)
	}
	for part := range slices.Chunk(batch, size) {
		if err := s.upsertBatch(ctx, collection, part); err != nil {
			return err
		}
	}
	return nil
}

// query builds the QueryPoints request of one search.
func query(collection string, spec sinks.CollectionSpec, req sinks.SearchRequest, indexed []string, timeout *uint64) (*qc.QueryPoints, error) {
	if req.TopK < 1 {
		return nil, fmt.Errorf("%w: top_k must be positive, got %d", sinks.ErrInvalid, req.TopK)
	}
	if err := checkVector(req.Vector, spec.Dim); err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	filter, err := encodeFilter(req.Filter, indexed)
	if err != nil {
		return nil, err
	}
	q := &qc.QueryPoints{
		CollectionName: collection,
		Query:          qc.NewQueryDense(req.Vector),
		Filter:         filter,
		Limit:          qc.PtrOf(uint64(req.TopK)),
		WithPayload:    qc.NewWithPayload(true),
		WithVectors:    qc.NewWithVectors(req.WithVectors),
		Timeout:        timeout,
	}
	if req.Exact {
		q.Params = &qc.SearchParams{Exact: qc.PtrOf(true)}
	}
	return q, nil
}

// Search returns the req.TopK points nearest to req.Vector among those
// matching req.Filter, best first, with their vectors when asked. Qdrant's
// HNSW search is approximate; exact ties may come in any order.
func (s *Store) Search(ctx context.Context, collection string, req sinks.SearchRequest) ([]sinks.Hit, error) {
	spec, err := s.spec(ctx, collection)
	if err != nil {
		return nil, err
	}
	q, err := query(collection, spec, req, s.cfg.MetadataIndexes, s.serverTimeout())
	if err != nil {
		return nil, err
	}
	var resp *qc.QueryResponse
	err = s.call(ctx, "query", func(ctx context.Context) (err error) {
		resp, err = s.client.GetPointsClient().Query(ctx, q)
		return err
	})
	if err != nil {
		if errors.Is(err, sinks.ErrNotFound) {
			s.forget(collection)
		}
		return nil, fmt.Errorf("search %q: %w", collection, err)
	}
	return decodeHits(resp.GetResult(), req.WithVectors)
}

// batchBytes bounds the estimated size of one QueryBatch reply; larger
// micro-batches are split into several calls.
const batchBytes = 32 << 20

// SearchBatch runs several searches in as few round trips as the reply size
// allows (QueryBatchPoints). Result i answers reqs[i].
func (s *Store) SearchBatch(ctx context.Context, collection string, reqs []sinks.SearchRequest) ([][]sinks.Hit, error) {
	spec, err := s.spec(ctx, collection)
	if err != nil {
		return nil, err
	}
	queries := make([]*qc.QueryPoints, len(reqs))
	for i, r := range reqs {
		if queries[i], err = query(collection, spec, r, s.cfg.MetadataIndexes, nil); err != nil {
			return nil, fmt.Errorf("search %d of %d: %w", i, len(reqs), err)
		}
	}
	out := make([][]sinks.Hit, 0, len(reqs))
	for start := 0; start < len(reqs); {
		end, size := start, 0
		for end < len(reqs) {
			n := reqs[end].TopK * 256 // payload and framing
			if reqs[end].WithVectors {
				n += reqs[end].TopK * 4 * spec.Dim
			}
			if end > start && size+n > batchBytes {
				break
			}
			size += n
			end++
		}
		var resp *qc.QueryBatchResponse
		err := s.call(ctx, "query batch", func(ctx context.Context) (err error) {
			resp, err = s.client.GetPointsClient().QueryBatch(ctx, &qc.QueryBatchPoints{
				CollectionName: collection,
				QueryPoints:    queries[start:end],
				Timeout:        s.serverTimeout(),
			})
			return err
		})
		if err != nil {
			if errors.Is(err, sinks.ErrNotFound) {
				s.forget(collection)
			}
			return nil, fmt.Errorf("search %q (batch of %d): %w", collection, end-start, err)
		}
		if got := len(resp.GetResult()); got != end-start {
			return nil, fmt.Errorf("search %q: qdrant answered %d of %d queries", collection, got, end-start)
		}
		for i, r := range resp.GetResult() {
			hits, err := decodeHits(r.GetResult(), reqs[start+i].WithVectors)
			if err != nil {
				return nil, err
			}
			out = append(out, hits)
		}
		start = end
	}
	return out, nil
}

func decodeHits(points []*qc.ScoredPoint, withVectors bool) ([]sinks.Hit, error) {
	hits := make([]sinks.Hit, len(points))
	for i, sp := range points {
		id := pointID(sp.GetId())
		p, err := decodePayload(sp.GetPayload())
		if err != nil {
			return nil, fmt.Errorf("point %s: %w", id, err)
		}
		hits[i] = sinks.Hit{Point: sinks.Point{ID: id, Payload: p}, Score: sp.GetScore()}
		if withVectors {
			v := sp.GetVectors().GetVector().GetDenseVector().GetData()
			if len(v) == 0 {
				return nil, fmt.Errorf("point %s: qdrant returned no vector although it was requested", id)
			}
			hits[i].Vector = v
		}
	}
	return hits, nil
}

func pointID(id *qc.PointId) string {
	if u, ok := id.GetPointIdOptions().(*qc.PointId_Uuid); ok {
		return u.Uuid
	}
	return strconv.FormatUint(id.GetNum(), 10)
}

// Count returns the exact number of points matching f.
func (s *Store) Count(ctx context.Context, collection string, f sinks.Filter) (int, error) {
	filter, err := encodeFilter(f, s.cfg.MetadataIndexes)
	if err != nil {
		return 0, err
	}
	return s.count(ctx, collection, filter)
}

func (s *Store) count(ctx context.Context, collection string, f *qc.Filter) (int, error) {
	var resp *qc.CountResponse
	err := s.call(ctx, "count", func(ctx context.Context) (err error) {
		resp, err = s.client.GetPointsClient().Count(ctx, &qc.CountPoints{
			CollectionName: collection,
			Filter:         f,
			// Qdrant estimates unless asked for an exact count.
			Exact:   qc.PtrOf(true),
			Timeout: s.serverTimeout(),
		})
		return err
	})
	if err != nil {
		if errors.Is(err, sinks.ErrNotFound) {
			s.forget(collection)
		}
		return 0, fmt.Errorf("count %q: %w", collection, err)
	}
	return int(resp.GetResult().GetCount()), nil
}

// DeleteVideo removes every point of videoID with wait=true and returns how
// many there were. Qdrant's delete does not report a count, so the points
// are counted first; points written concurrently for the same video may be
// deleted without being counted.
func (s *Store) DeleteVideo(ctx context.Context, collection, videoID string) (int, error) {
	n, err := s.deleteFilter(ctx, collection, &qc.Filter{Must: []*qc.Condition{qc.NewMatchKeyword(FieldVideoID, videoID)}})
	if err != nil {
		return 0, fmt.Errorf("delete video %q from %q: %w", videoID, collection, err)
	}
	return n, nil
}

// DeleteOlder removes the points of videoID whose generation is below
// generation, points without a generation included, with wait=true, and
// returns how many there were.
func (s *Store) DeleteOlder(ctx context.Context, collection, videoID string, generation int64) (int, error) {
	if generation < 0 {
		return 0, fmt.Errorf("%w: generation %d is negative", sinks.ErrInvalid, generation)
	}
	n, err := s.deleteFilter(ctx, collection, olderFilter(videoID, generation))
	if err != nil {
		return 0, fmt.Errorf("delete generations of video %q older than %d from %q: %w", videoID, generation, collection, err)
	}
	return n, nil
}

func (s *Store) deleteFilter(ctx context.Context, collection string, f *qc.Filter) (int, error) {
	n, err := s.count(ctx, collection, f)
	if err != nil || n == 0 {
		return 0, err
	}
	err = s.call(ctx, "delete", func(ctx context.Context) error {
		resp, err := s.client.GetPointsClient().Delete(ctx, &qc.DeletePoints{
			CollectionName: collection,
			Wait:           qc.PtrOf(true),
			Points:         qc.NewPointsSelectorFilter(f),
			Timeout:        s.serverTimeout(),
		})
		if err != nil {
			return err
		}
		return checkUpdate(resp.GetResult())
	})
	if err != nil {
		if errors.Is(err, sinks.ErrNotFound) {
			s.forget(collection)
		}
		return 0, err
	}
	return n, nil
}
