// Package sinks holds the vector-store contract shared by the index and query
// stages. Implementations live in sub-packages (embedded, qdrant).
package sinks

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// Store is a collection-oriented vector store with cosine similarity.
type Store interface {
	// EnsureCollection creates the collection when missing. When it exists
	// with another dimension, distance, model or pooling it returns an error
	// wrapping ErrIncompatible and changes nothing.
	EnsureCollection(ctx context.Context, spec CollectionSpec) error
	// Upsert writes points; a point whose ID exists is replaced, so
	// redelivered messages do not create duplicates.
	Upsert(ctx context.Context, collection string, points []Point) error
	// Search returns at most req.TopK hits ordered by descending cosine.
	Search(ctx context.Context, collection string, req SearchRequest) ([]Hit, error)
	// DeleteVideo removes every point of a video and returns how many.
	DeleteVideo(ctx context.Context, collection, videoID string) (int, error)
	// DeleteOlder removes the points of a video whose Payload.Generation is
	// below generation, points without a generation included, and returns
	// how many. A re-ingested video calls it once every clip of its new
	// generation is written, so searches see the old clips or the new ones
	// (for a moment both), never neither.
	DeleteOlder(ctx context.Context, collection, videoID string, generation int64) (int, error)
	// Count returns the number of points matching f.
	Count(ctx context.Context, collection string, f Filter) (int, error)
	// Collection returns the stored spec, or an error wrapping ErrNotFound.
	Collection(ctx context.Context, name string) (CollectionSpec, error)
	Close() error
}

var (
	// ErrNotFound is returned for a collection that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrIncompatible is returned when a collection exists with settings that
	// differ from the requested ones (vectors of two models must never mix).
	ErrIncompatible = errors.New("incompatible collection")
	// ErrInvalid is returned for a request that can never succeed (a vector
	// of the wrong dimension, NaN values, a bad collection name): callers
	// must not retry it.
	ErrInvalid = errors.New("invalid input")
	// ErrCapacity is returned when the store refuses writes because it is
	// full or at a configured limit (Qdrant's strict mode: points count,
	// storage size; a full disk). The data is fine and the same write
	// succeeds once an operator raises the limit or frees space, so callers
	// retry with backoff and alert; they must never drop the data.
	ErrCapacity = errors.New("store at capacity")
	// ErrRejected is returned when the store refuses a request for good
	// although the data is fine (a single point over a rate limit's whole
	// budget): repeating it cannot succeed and the store's settings need
	// changing. Callers surface it loudly instead of retrying forever.
	ErrRejected = errors.New("store rejected the request")
)

// MinSquaredNorm is the smallest squared L2 norm a vector may have. Qdrant
// leaves cosine vectors whose squared norm is below float32's machine
// epsilon unnormalised (lib/segment/src/spaces/tools.rs), so they score
// about 0 against everything; both stores refuse them with ErrInvalid.
const MinSquaredNorm = 1.1920929e-7

// CheckVector reports why v cannot be stored in a cosine collection of
// dimension dim: a wrong length, a non-finite component, or no direction
// (squared norm below MinSquaredNorm). The error wraps ErrInvalid.
func CheckVector(v []float32, dim int) error {
	if len(v) != dim {
		return fmt.Errorf("%w: vector has %d dimensions, collection has %d", ErrInvalid, len(v), dim)
	}
	var sum float64
	for i, x := range v {
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%w: vector component %d is %v", ErrInvalid, i, x)
		}
		sum += f * f
	}
	if sum < MinSquaredNorm {
		return fmt.Errorf("%w: vector has no direction (squared norm %.3g below %.3g)", ErrInvalid, sum, MinSquaredNorm)
	}
	return nil
}

// CollectionSpec describes a collection. Model and Pooling record which
// bundle and pooling mode produced the vectors.
type CollectionSpec struct {
	Name     string `json:"name"`
	Dim      int    `json:"dim"`
	Distance string `json:"distance"` // "cosine"
	Model    string `json:"model"`
	Pooling  string `json:"pooling"`
}

// Compatible returns nil when other can be written to or queried from a
// collection created with s.
func (s CollectionSpec) Compatible(other CollectionSpec) error {
	switch {
	case s.Dim != other.Dim:
		return fmt.Errorf("%w: collection %q has dimension %d, requested %d", ErrIncompatible, s.Name, s.Dim, other.Dim)
	case s.Distance != other.Distance:
		return fmt.Errorf("%w: collection %q uses distance %q, requested %q", ErrIncompatible, s.Name, s.Distance, other.Distance)
	case s.Model != other.Model:
		return fmt.Errorf("%w: collection %q holds vectors of model %q, requested %q", ErrIncompatible, s.Name, s.Model, other.Model)
	case s.Pooling != other.Pooling:
		return fmt.Errorf("%w: collection %q holds vectors pooled with %q, requested %q", ErrIncompatible, s.Name, s.Pooling, other.Pooling)
	}
	return nil
}

// Point is one clip vector with its payload.
type Point struct {
	ID      string    `json:"id"`
	Vector  []float32 `json:"vector"`
	Payload Payload   `json:"payload"`
}

// Payload is what a search result needs to name the clip.
type Payload struct {
	VideoID    string            `json:"video_id"`
	Source     string            `json:"source,omitempty"`
	ClipIndex  int               `json:"clip_index"`
	StartS     float64           `json:"start_s"`
	EndS       float64           `json:"end_s"`
	Frames     int               `json:"frames"`
	IngestedAt time.Time         `json:"ingested_at"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	// Generation is the ingest generation of a video job's clip
	// (schemas.ClipHeader.Generation); 0 for stream windows and points
	// written before generations existed. DeleteOlder uses it.
	Generation int64 `json:"generation,omitempty"`
	// WallStart is when a live stream's window began (wall clock); zero
	// for clips of video files.
	WallStart time.Time `json:"wall_start,omitzero"`
}

// Filter restricts a search or count. Zero values mean no restriction.
type Filter struct {
	VideoIDs []string `json:"video_ids,omitempty"`
	Sources  []string `json:"sources,omitempty"`
	// StartFrom and StartTo bound the clip's start time in seconds.
	StartFrom *float64 `json:"start_from,omitempty"`
	StartTo   *float64 `json:"start_to,omitempty"`
	// Generation, when set, keeps only points of that ingest generation.
	Generation *int64 `json:"generation,omitempty"`
	// Metadata keeps points whose metadata has every key with exactly the
	// given value.
	Metadata map[string]string `json:"metadata,omitempty"`
	// WallFrom and WallTo bound Payload.WallStart (inclusive); a point
	// without a wall-clock start never passes a wall-clock bound.
	WallFrom *time.Time `json:"wall_from,omitempty"`
	WallTo   *time.Time `json:"wall_to,omitempty"`
}

// Match reports whether p passes the filter.
func (f Filter) Match(p Payload) bool {
	if len(f.VideoIDs) > 0 && !contains(f.VideoIDs, p.VideoID) {
		return false
	}
	if len(f.Sources) > 0 && !contains(f.Sources, p.Source) {
		return false
	}
	if f.StartFrom != nil && p.StartS < *f.StartFrom {
		return false
	}
	if f.StartTo != nil && p.StartS > *f.StartTo {
		return false
	}
	if f.Generation != nil && p.Generation != *f.Generation {
		return false
	}
	for k, v := range f.Metadata {
		if got, ok := p.Metadata[k]; !ok || got != v {
			return false
		}
	}
	if (f.WallFrom != nil || f.WallTo != nil) && p.WallStart.IsZero() {
		return false
	}
	if f.WallFrom != nil && p.WallStart.Before(*f.WallFrom) {
		return false
	}
	if f.WallTo != nil && p.WallStart.After(*f.WallTo) {
		return false
	}
	return true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// SearchRequest asks for the TopK nearest points to Vector.
type SearchRequest struct {
	Vector      []float32
	TopK        int
	Filter      Filter
	WithVectors bool
	// Exact asks for an exact (brute-force) search. Qdrant's HNSW search is
	// approximate once a collection is indexed; the embedded store is
	// always exact. Checks that compare rankings set it.
	Exact bool
}

// Hit is a search result. Score is the cosine similarity.
type Hit struct {
	Point
	Score float32 `json:"score"`
}

// pointNamespace scopes vidx point ids; it is itself a UUIDv5 of a fixed name
// so ids are stable across releases.
var pointNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("vidx:point"))

// PointID is the deterministic id of a clip vector: UUIDv5 of the video id,
// the segment bounds (millisecond precision) and the model name. A redelivered
// clip maps to the same id, which makes upserts idempotent.
func PointID(videoID string, startS, endS float64, model string) string {
	key := videoID + "\x00" + strconv.FormatInt(int64(startS*1000+0.5), 10) + "\x00" +
		strconv.FormatInt(int64(endS*1000+0.5), 10) + "\x00" + model
	return uuid.NewSHA1(pointNamespace, []byte(key)).String()
}
