package schemas

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// Stream registry actions (topic "streams", compacted, keyed by stream_id).
// Add and update are the same upsert: the latest record of a key is the
// stream's spec. Remove, or a tombstone (a record with no value), stops the
// stream.
const (
	ActionAdd    = "add"
	ActionUpdate = "update"
	ActionRemove = "remove"
)

// MaxStreamWindowS bounds a stream window and stride: a window is held in
// memory until it is complete.
const MaxStreamWindowS = 3600

// Stream run states reported on the "stream-state" topic and by the sample
// stage's status API.
const (
	StreamStarting     = "starting"     // owned, decoder being started
	StreamRunning      = "running"      // frames arriving
	StreamReconnecting = "reconnecting" // the source failed or stalled; retrying with backoff
	StreamFailed       = "failed"       // refused or invalid; waits for a new spec
	StreamEnded        = "ended"        // a file or VOD source was indexed to its end
	StreamStopped      = "stopped"      // the owner gave it up (shutdown or rebalance)
	StreamRemoved      = "removed"      // removed from the registry
)

// StreamSpec registers a source that the sample stage keeps indexing until
// it is removed: a live stream (HLS, RTSP, RTMP, SRT, an endless HTTP
// stream) or a long file, cut into windows of Segment.WindowS seconds every
// Segment.StrideS seconds.
type StreamSpec struct {
	SchemaVersion int    `json:"schema_version"`
	StreamID      string `json:"stream_id"`
	// Action is add (default), update or remove.
	Action string `json:"action,omitempty"`
	// Version orders updates of one stream: a record with a lower version
	// than the one running is ignored, so a late producer cannot roll a
	// stream back. Zero means unversioned.
	Version int64  `json:"version,omitempty"`
	URI     string `json:"uri,omitempty"`
	Source  string `json:"source,omitempty"`
	// Segment overrides the stage's stream window defaults; its mode, when
	// set, must be "window".
	Segment  *Segment          `json:"segment,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Removed reports whether the record removes its stream.
func (s *StreamSpec) Removed() bool { return s.Action == ActionRemove }

// Validate checks the spec's fields.
func (s *StreamSpec) Validate() error {
	const kind = "stream spec"
	if err := checkID(kind, "stream_id", s.StreamID); err != nil {
		return err
	}
	switch s.Action {
	case "", ActionAdd, ActionUpdate:
		if s.URI == "" {
			return invalidf(kind, "uri is required to %s stream %q", orDefault(s.Action, ActionAdd), s.StreamID)
		}
	case ActionRemove:
	default:
		return invalidf(kind, "action %q is not one of add, update, remove", s.Action)
	}
	if s.Version < 0 {
		return invalidf(kind, "version %d must not be negative", s.Version)
	}
	if len(s.URI) > MaxURILen {
		return invalidf(kind, "uri longer than %d bytes", MaxURILen)
	}
	if len(s.Source) > MaxIDLen {
		return invalidf(kind, "source longer than %d bytes", MaxIDLen)
	}
	if len(s.Metadata) > MaxMetadataLen {
		return invalidf(kind, "more than %d metadata entries", MaxMetadataLen)
	}
	if seg := s.Segment; seg != nil {
		if seg.Mode != "" && seg.Mode != ModeWindow {
			return invalidf(kind, "segment.mode %q: streams are always cut into windows", seg.Mode)
		}
		if seg.SceneThreshold != 0 || seg.MinShotS != 0 || seg.MaxShotS != 0 {
			return invalidf(kind, "segment.scene_threshold, min_shot_s and max_shot_s are for shots mode, which streams do not have")
		}
		switch seg.Selection {
		case "", SelectUniform, SelectHead, SelectTail:
		default:
			return invalidf(kind, "segment.selection %q is not one of uniform, head, tail", seg.Selection)
		}
		if seg.FPS < 0 || seg.FPS > 30 || math.IsNaN(seg.FPS) {
			return invalidf(kind, "segment.fps %v out of range (0, 30]", seg.FPS)
		}
		if seg.MaxFrames < 0 || seg.MaxFrames > 64 {
			return invalidf(kind, "segment.max_frames %d out of range [1, 64]", seg.MaxFrames)
		}
		for name, v := range map[string]float64{"window_s": seg.WindowS, "stride_s": seg.StrideS} {
			if v < 0 || v > MaxStreamWindowS || math.IsNaN(v) {
				return invalidf(kind, "segment.%s %v out of range (0, %d]", name, v, MaxStreamWindowS)
			}
		}
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// DecodeStreamSpec parses and validates a record of the "streams" topic. A
// nil value is a tombstone and decodes to a remove of key.
func DecodeStreamSpec(key, value []byte) (StreamSpec, error) {
	if value == nil {
		s := StreamSpec{SchemaVersion: Version, StreamID: string(key), Action: ActionRemove}
		return s, s.Validate()
	}
	var s StreamSpec
	if err := decodeStrict("stream spec", value, &s); err != nil {
		return StreamSpec{}, err
	}
	if err := s.Validate(); err != nil {
		return StreamSpec{}, err
	}
	if len(key) > 0 && string(key) != s.StreamID {
		return StreamSpec{}, invalidf("stream spec", "record key %q differs from stream_id %q", key, s.StreamID)
	}
	return s, nil
}

// StreamWindow is a window that was emitted as a clip. StartS and EndS are
// in stream time (seconds on the source's clock); WallStart and WallEnd are
// when the window's bounds were seen, for live sources.
type StreamWindow struct {
	Index     int       `json:"index"`
	StartS    float64   `json:"start_s"`
	EndS      float64   `json:"end_s"`
	Frames    int       `json:"frames"`
	WallStart time.Time `json:"wall_start,omitzero"`
	WallEnd   time.Time `json:"wall_end,omitzero"`
}

// StreamState is the last known state of one stream (topic "stream-state",
// compacted, keyed by stream_id). The record written after a window's clip
// was acknowledged is the resume point of the stream: a new owner continues
// after LastWindow.
type StreamState struct {
	SchemaVersion int    `json:"schema_version"`
	StreamID      string `json:"stream_id"`
	State         string `json:"state"`
	// URI is the source, with any password redacted.
	URI         string `json:"uri,omitempty"`
	SpecVersion int64  `json:"spec_version,omitempty"`
	// Live says how stream time is kept: the source's own clock (live) or
	// the position in the file (files and VOD playlists, resumed by seeking).
	Live       bool          `json:"live"`
	LastWindow *StreamWindow `json:"last_window,omitempty"`
	// Windows counts the windows emitted since the stream was registered.
	Windows   int64     `json:"windows"`
	Restarts  int64     `json:"restarts,omitempty"`
	Error     string    `json:"error,omitempty"`
	Owner     string    `json:"owner,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Validate checks the state's fields.
func (s *StreamState) Validate() error {
	const kind = "stream state"
	if err := checkID(kind, "stream_id", s.StreamID); err != nil {
		return err
	}
	switch s.State {
	case StreamStarting, StreamRunning, StreamReconnecting, StreamFailed, StreamEnded, StreamStopped, StreamRemoved:
	default:
		return invalidf(kind, "state %q is not a stream state", s.State)
	}
	if w := s.LastWindow; w != nil {
		if w.Index < 0 || w.StartS < 0 || w.EndS < w.StartS || math.IsNaN(w.StartS) || math.IsNaN(w.EndS) || math.IsInf(w.EndS, 0) {
			return invalidf(kind, "bad last window %d [%v, %v]", w.Index, w.StartS, w.EndS)
		}
	}
	if s.Windows < 0 || s.Restarts < 0 {
		return invalidf(kind, "negative counters")
	}
	return nil
}

// DecodeStreamState parses and validates a record of the "stream-state" topic.
func DecodeStreamState(data []byte) (StreamState, error) {
	var s StreamState
	if err := decodeStrict("stream state", data, &s); err != nil {
		return StreamState{}, err
	}
	return s, s.Validate()
}

// EncodeStream marshals a StreamSpec or StreamState, stamping the schema
// version.
func EncodeStream(v any) ([]byte, error) {
	switch m := v.(type) {
	case *StreamSpec:
		m.SchemaVersion = Version
	case *StreamState:
		m.SchemaVersion = Version
	default:
		return nil, fmt.Errorf("schemas: %T is not a stream message type", v)
	}
	return json.Marshal(v)
}
