package schemas

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits that keep one message from exhausting a stage.
const (
	MaxIDLen       = 256
	MaxURILen      = 4096
	MaxQueryText   = 2048
	MaxTopK        = 1000
	MaxMetadataLen = 64
	// MaxImageLen bounds a query image's base64 text (about 720 KiB of
	// JPEG or PNG), so a query fits Kafka's default 1 MiB message size.
	MaxImageLen = 960 << 10
)

// Segment modes and frame selections a VideoJob may ask for.
const (
	ModeWhole  = "whole"
	ModeWindow = "window"
	ModeShots  = "shots"

	SelectUniform = "uniform"
	SelectHead    = "head"
	SelectTail    = "tail"
)

// Segment overrides the sample stage's defaults for one video.
type Segment struct {
	Mode      string  `json:"mode,omitempty"`
	FPS       float64 `json:"fps,omitempty"`
	MaxFrames int     `json:"max_frames,omitempty"`
	Selection string  `json:"selection,omitempty"`
	WindowS   float64 `json:"window_s,omitempty"`
	StrideS   float64 `json:"stride_s,omitempty"`
	// Shots mode: a scene-change score above SceneThreshold (0..1) starts
	// a shot; shorter than MinShotS joins the next, longer than MaxShotS is
	// split into windows.
	SceneThreshold float64 `json:"scene_threshold,omitempty"`
	MinShotS       float64 `json:"min_shot_s,omitempty"`
	MaxShotS       float64 `json:"max_shot_s,omitempty"`
}

// VideoJob asks for one video to be indexed (topic "videos").
type VideoJob struct {
	SchemaVersion int               `json:"schema_version"`
	VideoID       string            `json:"video_id"`
	URI           string            `json:"uri"`
	Source        string            `json:"source,omitempty"`
	Segment       *Segment          `json:"segment,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
}

// Validate checks the job's fields.
func (j *VideoJob) Validate() error {
	const kind = "video job"
	if err := checkID(kind, "video_id", j.VideoID); err != nil {
		return err
	}
	if j.URI == "" {
		return invalidf(kind, "uri is required")
	}
	if len(j.URI) > MaxURILen {
		return invalidf(kind, "uri longer than %d bytes", MaxURILen)
	}
	if len(j.Source) > MaxIDLen {
		return invalidf(kind, "source longer than %d bytes", MaxIDLen)
	}
	if len(j.Metadata) > MaxMetadataLen {
		return invalidf(kind, "more than %d metadata entries", MaxMetadataLen)
	}
	if s := j.Segment; s != nil {
		switch s.Mode {
		case "", ModeWhole, ModeWindow, ModeShots:
		default:
			return invalidf(kind, "segment.mode %q is not one of whole, window, shots", s.Mode)
		}
		if s.SceneThreshold < 0 || s.SceneThreshold >= 1 || math.IsNaN(s.SceneThreshold) {
			return invalidf(kind, "segment.scene_threshold %v out of range (0, 1)", s.SceneThreshold)
		}
		if s.MinShotS < 0 || s.MaxShotS < 0 || math.IsNaN(s.MinShotS) || math.IsNaN(s.MaxShotS) ||
			(s.MaxShotS > 0 && s.MinShotS > s.MaxShotS) {
			return invalidf(kind, "segment.min_shot_s and max_shot_s must be positive, min at most max")
		}
		switch s.Selection {
		case "", SelectUniform, SelectHead, SelectTail:
		default:
			return invalidf(kind, "segment.selection %q is not one of uniform, head, tail", s.Selection)
		}
		if s.FPS < 0 || s.FPS > 30 || math.IsNaN(s.FPS) {
			return invalidf(kind, "segment.fps %v out of range (0, 30]", s.FPS)
		}
		if s.MaxFrames < 0 || s.MaxFrames > 64 {
			return invalidf(kind, "segment.max_frames %d out of range [1, 64]", s.MaxFrames)
		}
		if s.WindowS < 0 || s.StrideS < 0 {
			return invalidf(kind, "segment.window_s and stride_s must be positive")
		}
		if s.Mode == ModeWindow && s.WindowS == 0 {
			return invalidf(kind, "segment.window_s is required in window mode")
		}
	}
	return nil
}

// A delete command on the "videos" topic is a tombstone (key: the video
// id, no value) carrying HeaderCommand: CommandDelete. The header tells it
// from an empty message, which Kafka clients may deliver as a null value
// too and which stays a bad job.
const (
	HeaderCommand = "vidx-command"
	CommandDelete = "delete"
)

// IsDeleteCommand reports whether a message of the "videos" topic is a
// delete command.
func IsDeleteCommand(value []byte, headers map[string]string) bool {
	return len(value) == 0 && headers[HeaderCommand] == CommandDelete
}

// DecodeVideoJob parses and validates a message of the "videos" topic.
func DecodeVideoJob(data []byte) (VideoJob, error) {
	var j VideoJob
	if err := decodeStrict("video job", data, &j); err != nil {
		return VideoJob{}, err
	}
	return j, j.Validate()
}

// Filters restrict a query to some videos, sources or a time range.
type Filters struct {
	VideoIDs  []string `json:"video_ids,omitempty"`
	Sources   []string `json:"sources,omitempty"`
	StartFrom *float64 `json:"start_from,omitempty"`
	StartTo   *float64 `json:"start_to,omitempty"`
	// Metadata keeps clips whose video job's metadata has every key with
	// exactly the given value.
	Metadata map[string]string `json:"metadata,omitempty"`
	// WallFrom and WallTo bound a live stream window's wall-clock start;
	// clips of video files have none and never match a wall-clock bound.
	WallFrom *time.Time `json:"wall_from,omitempty"`
	WallTo   *time.Time `json:"wall_to,omitempty"`
}

// ClipRef names one indexed clip.
type ClipRef struct {
	VideoID   string `json:"video_id"`
	ClipIndex int    `json:"clip_index"`
}

// Query asks for the clips nearest to one of: a text, an image (base64
// JPEG or PNG) or an indexed clip (like) (topic "queries").
type Query struct {
	SchemaVersion int      `json:"schema_version"`
	QueryID       string   `json:"query_id"`
	Text          string   `json:"text,omitempty"`
	Image         string   `json:"image,omitempty"`
	Like          *ClipRef `json:"like,omitempty"`
	TopK          int      `json:"top_k,omitempty"`
	Filters       *Filters `json:"filters,omitempty"`
	// Rerank overrides the stage's dual-softmax mode: none, camoe, symmetric.
	Rerank string `json:"rerank,omitempty"`
	// MinScore drops hits whose score (the one the rerank mode returns:
	// the cosine for none, the dual-softmax score otherwise) is below it.
	MinScore *float64 `json:"min_score,omitempty"`
}

// Validate checks the query's fields.
func (q *Query) Validate() error {
	const kind = "query"
	if err := checkID(kind, "query_id", q.QueryID); err != nil {
		return err
	}
	asks := 0
	for _, set := range []bool{q.Text != "", q.Image != "", q.Like != nil} {
		if set {
			asks++
		}
	}
	switch {
	case asks == 0:
		return invalidf(kind, "text is required (or image, or like)")
	case asks > 1:
		return invalidf(kind, "give one of text, image and like")
	case q.Text != "" && strings.TrimSpace(q.Text) == "":
		return invalidf(kind, "text is required (or image, or like)")
	case len(q.Text) > MaxQueryText || !utf8.ValidString(q.Text):
		return invalidf(kind, "text must be valid UTF-8 of at most %d bytes", MaxQueryText)
	case len(q.Image) > MaxImageLen:
		return invalidf(kind, "image is %d bytes of base64, more than %d", len(q.Image), MaxImageLen)
	}
	if l := q.Like; l != nil {
		if err := checkID(kind, "like.video_id", l.VideoID); err != nil {
			return err
		}
		if l.ClipIndex < 0 {
			return invalidf(kind, "like.clip_index %d is negative", l.ClipIndex)
		}
	}
	if q.TopK < 0 || q.TopK > MaxTopK {
		return invalidf(kind, "top_k %d out of range [1, %d]", q.TopK, MaxTopK)
	}
	switch q.Rerank {
	case "", "none", "camoe", "symmetric":
	default:
		return invalidf(kind, "rerank %q is not one of none, camoe, symmetric", q.Rerank)
	}
	if m := q.MinScore; m != nil && (math.IsNaN(*m) || math.IsInf(*m, 0)) {
		return invalidf(kind, "min_score must be a finite number")
	}
	if f := q.Filters; f != nil {
		if f.StartFrom != nil && f.StartTo != nil && *f.StartFrom > *f.StartTo {
			return invalidf(kind, "filters.start_from is after filters.start_to")
		}
		if f.WallFrom != nil && f.WallTo != nil && f.WallFrom.After(*f.WallTo) {
			return invalidf(kind, "filters.wall_from is after filters.wall_to")
		}
		if len(f.Metadata) > MaxMetadataLen {
			return invalidf(kind, "filters.metadata has more than %d entries", MaxMetadataLen)
		}
		for k := range f.Metadata {
			if k == "" || len(k) > MaxIDLen {
				return invalidf(kind, "filters.metadata keys must be 1 to %d bytes", MaxIDLen)
			}
		}
	}
	return nil
}

// DecodeQuery parses and validates a message of the "queries" topic.
func DecodeQuery(data []byte) (Query, error) {
	var q Query
	if err := decodeStrict("query", data, &q); err != nil {
		return Query{}, err
	}
	return q, q.Validate()
}

// Hit is one ranked clip in a Result.
type Hit struct {
	Rank      int     `json:"rank"`
	VideoID   string  `json:"video_id"`
	Source    string  `json:"source,omitempty"`
	ClipIndex int     `json:"clip_index"`
	StartS    float64 `json:"start_s"`
	EndS      float64 `json:"end_s"`
	// Score is the re-ranked score the list is ordered by; Cosine is the raw
	// text-clip cosine similarity.
	Score  float64 `json:"score"`
	Cosine float64 `json:"cosine"`
}

// Error codes of a Result that could not be answered.
const (
	// ErrCodeInvalidQuery: the query is malformed or asks for something
	// impossible; asking again cannot succeed.
	ErrCodeInvalidQuery = "invalid_query"
	// ErrCodeUnavailable: the stage gave up after retries (store or model
	// down); the same query may succeed later.
	ErrCodeUnavailable = "unavailable"
)

// ResultError says why a query got no hits.
type ResultError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Result answers one Query (topic "results", keyed by query_id). A query
// that cannot be answered still gets a Result, with Error set and no hits.
type Result struct {
	SchemaVersion int          `json:"schema_version"`
	QueryID       string       `json:"query_id"`
	Text          string       `json:"text"`
	Rerank        string       `json:"rerank"`
	Model         string       `json:"model"`
	Hits          []Hit        `json:"hits"`
	Candidates    int          `json:"candidates"`
	BankSize      int          `json:"bank_size"`
	TookMS        float64      `json:"took_ms"`
	AnsweredAt    time.Time    `json:"answered_at"`
	Error         *ResultError `json:"error,omitempty"`
}

// DecodeResult parses a message of the "results" topic.
func DecodeResult(data []byte) (Result, error) {
	var r Result
	if err := decodeStrict("result", data, &r); err != nil {
		return Result{}, err
	}
	if err := checkID("result", "query_id", r.QueryID); err != nil {
		return Result{}, err
	}
	return r, nil
}

// Encode marshals a JSON message, stamping the current schema version.
func Encode(v any) ([]byte, error) {
	switch m := v.(type) {
	case *VideoJob:
		m.SchemaVersion = Version
	case *Query:
		m.SchemaVersion = Version
	case *Result:
		m.SchemaVersion = Version
	default:
		return nil, fmt.Errorf("schemas: %T is not a JSON message type", v)
	}
	return json.Marshal(v)
}

func checkID(kind, field, v string) error {
	switch {
	case v == "":
		return invalidf(kind, "%s is required", field)
	case len(v) > MaxIDLen:
		return invalidf(kind, "%s longer than %d bytes", field, MaxIDLen)
	case !utf8.ValidString(v) || strings.ContainsAny(v, "\x00\n\r"):
		return invalidf(kind, "%s must be printable UTF-8", field)
	}
	return nil
}
