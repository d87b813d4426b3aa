package schemas_test

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/schemas"
)

func validSpec() schemas.StreamSpec {
	return schemas.StreamSpec{
		StreamID: "cam-1",
		Action:   schemas.ActionAdd,
		Version:  3,
		URI:      "https://cdn.example.com/live/cam1.m3u8",
		Source:   "cameras",
		Segment:  &schemas.Segment{WindowS: 10, StrideS: 5, FPS: 1, MaxFrames: 8},
		Metadata: map[string]string{"site": "lobby"},
	}
}

func TestStreamSpecRoundTrip(t *testing.T) {
	in := validSpec()
	data, err := schemas.EncodeStream(&in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := schemas.DecodeStreamSpec([]byte(in.StreamID), data)
	if err != nil {
		t.Fatal(err)
	}
	in.SchemaVersion = schemas.Version
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
	}
}

func TestDecodeStreamSpecRejects(t *testing.T) {
	cases := []struct {
		name, key, value, want string
	}{
		{"no version", "a", `{"stream_id": "a", "uri": "x"}`, "schema_version is required"},
		{"future version", "a", `{"schema_version": 2, "stream_id": "a", "uri": "x"}`, "unsupported schema version"},
		{"unknown field", "a", `{"schema_version": 1, "stream_id": "a", "uri": "x", "url": "y"}`, "unknown field"},
		{"no id", "", `{"schema_version": 1, "uri": "x"}`, "stream_id is required"},
		{"add without uri", "a", `{"schema_version": 1, "stream_id": "a"}`, "uri is required"},
		{"update without uri", "a", `{"schema_version": 1, "stream_id": "a", "action": "update"}`, "uri is required to update"},
		{"bad action", "a", `{"schema_version": 1, "stream_id": "a", "action": "pause", "uri": "x"}`, "action \"pause\""},
		{"key mismatch", "b", `{"schema_version": 1, "stream_id": "a", "uri": "x"}`, "differs from stream_id"},
		{"negative version", "a", `{"schema_version": 1, "stream_id": "a", "uri": "x", "version": -1}`, "must not be negative"},
		{"whole mode", "a", `{"schema_version": 1, "stream_id": "a", "uri": "x", "segment": {"mode": "whole"}}`, "always cut into windows"},
		{"shots mode", "a", `{"schema_version": 1, "stream_id": "a", "uri": "x", "segment": {"mode": "shots"}}`, "always cut into windows"},
		{"shot settings", "a", `{"schema_version": 1, "stream_id": "a", "uri": "x", "segment": {"max_shot_s": 5}}`, "streams do not have"},
		{"huge window", "a", `{"schema_version": 1, "stream_id": "a", "uri": "x", "segment": {"window_s": 7200}}`, "window_s 7200 out of range"},
		{"negative stride", "a", `{"schema_version": 1, "stream_id": "a", "uri": "x", "segment": {"stride_s": -1}}`, "stride_s -1 out of range"},
		{"fps", "a", `{"schema_version": 1, "stream_id": "a", "uri": "x", "segment": {"fps": 60}}`, "fps 60 out of range"},
		{"selection", "a", `{"schema_version": 1, "stream_id": "a", "uri": "x", "segment": {"selection": "random"}}`, "selection \"random\""},
		{"long uri", "a", `{"schema_version": 1, "stream_id": "a", "uri": "` + strings.Repeat("x", schemas.MaxURILen+1) + `"}`, "uri longer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := schemas.DecodeStreamSpec([]byte(c.key), []byte(c.value))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, schemas.ErrInvalid) && !errors.Is(err, schemas.ErrVersion) {
				t.Errorf("error %v wraps neither ErrInvalid nor ErrVersion", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestDecodeStreamSpecRemove(t *testing.T) {
	for _, c := range []struct {
		name  string
		value []byte
	}{
		{"tombstone", nil},
		{"action", []byte(`{"schema_version": 1, "stream_id": "cam-9", "action": "remove"}`)},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := schemas.DecodeStreamSpec([]byte("cam-9"), c.value)
			if err != nil {
				t.Fatal(err)
			}
			if !s.Removed() || s.StreamID != "cam-9" {
				t.Errorf("got %+v, want a remove of cam-9", s)
			}
		})
	}
	if _, err := schemas.DecodeStreamSpec(nil, nil); err == nil {
		t.Error("a tombstone without a key was accepted")
	}
}

func TestStreamStateRoundTrip(t *testing.T) {
	wall := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	in := schemas.StreamState{
		StreamID: "cam-1", State: schemas.StreamRunning, URI: "rtsp://user:xxxxx@cam/1", SpecVersion: 3, Live: true,
		LastWindow: &schemas.StreamWindow{Index: 41, StartS: 410, EndS: 420, Frames: 10, WallStart: wall, WallEnd: wall.Add(10 * time.Second)},
		Windows:    42, Restarts: 2, Owner: "host-1", UpdatedAt: wall,
	}
	data, err := schemas.EncodeStream(&in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := schemas.DecodeStreamState(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
	}
	// A window of a file has no wall-clock bounds, and they are left out.
	in.LastWindow.WallStart, in.LastWindow.WallEnd = time.Time{}, time.Time{}
	data, _ = schemas.EncodeStream(&in)
	if strings.Contains(string(data), "wall_") {
		t.Errorf("zero wall times encoded: %s", data)
	}
}

func TestDecodeStreamStateRejects(t *testing.T) {
	cases := []struct{ name, value, want string }{
		{"state", `{"schema_version": 1, "stream_id": "a", "state": "sleeping", "live": true, "windows": 0, "updated_at": "2025-01-01T00:00:00Z"}`, "not a stream state"},
		{"window", `{"schema_version": 1, "stream_id": "a", "state": "running", "live": true, "windows": 1, "updated_at": "2025-01-01T00:00:00Z", "last_window": {"index": 1, "start_s": 20, "end_s": 10, "frames": 1}}`, "bad last window"},
		{"counters", `{"schema_version": 1, "stream_id": "a", "state": "running", "live": true, "windows": -1, "updated_at": "2025-01-01T00:00:00Z"}`, "negative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := schemas.DecodeStreamState([]byte(c.value))
			if !errors.Is(err, schemas.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want ErrInvalid mentioning %q", err, c.want)
			}
		})
	}
}

// TestStreamJSONSchemaMatchesGoTypes is TestJSONSchemaMatchesGoTypes for the
// stream topics.
func TestStreamJSONSchemaMatchesGoTypes(t *testing.T) {
	spec, state := loadSchema(t, "stream.schema.json"), loadSchema(t, "stream-state.schema.json")
	cases := []struct {
		name     string
		schema   *jsonSchema
		typ      reflect.Type
		required []string // when it differs from the fields without omitempty
	}{
		{"StreamSpec", spec, reflect.TypeFor[schemas.StreamSpec](), nil},
		{"Segment", spec.Properties["segment"], reflect.TypeFor[schemas.Segment](), nil},
		{"StreamState", state, reflect.TypeFor[schemas.StreamState](), nil},
		{"StreamWindow", state.Properties["last_window"], reflect.TypeFor[schemas.StreamWindow](), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.schema == nil {
				t.Fatal("no schema")
			}
			names, required := jsonFields(t, c.typ)
			props := slices.Sorted(func(yield func(string) bool) {
				for k := range c.schema.Properties {
					if !yield(k) {
						return
					}
				}
			})
			if !slices.Equal(props, names) {
				t.Errorf("schema properties %v, Go fields %v", props, names)
			}
			if req := slices.Sorted(slices.Values(c.schema.Required)); !slices.Equal(req, required) {
				t.Errorf("schema required %v, Go fields without omitempty %v", req, required)
			}
			if string(c.schema.AdditionalProperties) != "false" {
				t.Errorf("schema allows additional properties; the decoder refuses unknown fields")
			}
		})
	}
	if got := spec.Properties["action"].Enum; !slices.Equal(got, []string{schemas.ActionAdd, schemas.ActionUpdate, schemas.ActionRemove}) {
		t.Errorf("action enum %v", got)
	}
	want := []string{schemas.StreamStarting, schemas.StreamRunning, schemas.StreamReconnecting, schemas.StreamFailed,
		schemas.StreamEnded, schemas.StreamStopped, schemas.StreamRemoved}
	if got := state.Properties["state"].Enum; !slices.Equal(got, want) {
		t.Errorf("state enum %v, want %v", got, want)
	}
	seg := spec.Properties["segment"]
	if got := seg.Properties["window_s"].Maximum; got == nil || *got != schemas.MaxStreamWindowS {
		t.Errorf("segment.window_s maximum %v, want %d", got, schemas.MaxStreamWindowS)
	}
	for _, s := range []*jsonSchema{spec, state} {
		if c, ok := s.Properties["schema_version"].Const.(float64); !ok || int(c) != schemas.Version {
			t.Errorf("schema_version const %v", s.Properties["schema_version"].Const)
		}
	}
}

func TestClipHeaderStreamFields(t *testing.T) {
	wall := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	c := schemas.Clip{Header: schemas.ClipHeader{
		VideoID: "cam-1", StreamID: "cam-1", ClipIndex: 7, StartS: 70, EndS: 80, FrameTimes: []float64{70.4},
		Codec: schemas.CodecJPEG, Size: 2, WallStart: wall, WallEnd: wall.Add(10 * time.Second),
	}, Frames: [][]byte{{1}}}
	data, err := schemas.EncodeClip(&c)
	if err != nil {
		t.Fatal(err)
	}
	out, err := schemas.DecodeClip(data)
	if err != nil {
		t.Fatal(err)
	}
	if out.Header.StreamID != "cam-1" || !out.Header.WallStart.Equal(wall) || !out.Header.WallEnd.Equal(wall.Add(10*time.Second)) {
		t.Errorf("header %+v", out.Header)
	}
	c.Header.StreamID = "bad\nid"
	if _, err := schemas.EncodeClip(&c); !errors.Is(err, schemas.ErrInvalid) {
		t.Errorf("stream id with a newline: err = %v", err)
	}
}
